"""``spreadq demo``: an embedded daemon, worker processes and a producer, shown live.

It starts the embedded daemon on a free loopback port, several ``spreadq worker``
processes running :data:`app` below, and a producer in this process. The table shows
jobs per second and what each worker has done; part-way through, one worker is killed
with SIGKILL, and the survivors take over its jobs in the same step as the membership
change. Every job is confirmed to the producer before the demo ends.

The demo's App lives in :mod:`spreadq.cli.demo_app`, which the worker processes load
like any user's app.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import anyio
import anyio.abc
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from spreadq.cli.exits import EXIT_FAILED, epilog
from spreadq.producer import Producer, Receipt

if TYPE_CHECKING:
    from spreadq.cli.demo_app import Rendered

__all__ = ["register", "run_demo"]


@dataclass
class _Progress:
    """What the screen shows; written by the demo's tasks, read by the renderer."""

    total: int
    put: int = 0
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    per_member: Counter[str] = field(default_factory=Counter)
    consumers: tuple[str, ...] = ()
    killed: str | None = None
    killed_pid: int | None = None
    in_flight_at_kill: int = 0
    in_flight_done: int = 0
    kill_seq: int = 0
    kill_after: int | None = None
    kill_now: anyio.Event = field(default_factory=anyio.Event)
    events: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        stamp = time.monotonic() - self.started
        self.events.append(f"[dim]{stamp:6.2f}s[/dim]  {message}")
        del self.events[:-6]

    def rate(self) -> float:
        elapsed = (self.finished or time.monotonic()) - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """One plain line of progress, for a screen that is not a terminal."""
        elapsed = (self.finished or time.monotonic()) - self.started
        return (
            f"progress {elapsed:6.1f} s: {self.put:,} of {self.total:,} jobs put, "
            f"{self.done:,} confirmed, {self.failed} failed, {self.rate():,.0f} jobs/s, "
            f"{len(self.consumers)} workers"
        )


def _render(progress: _Progress) -> Panel:
    table = Table(expand=True, show_edge=False)
    table.add_column("worker (Spread private group)")
    table.add_column("jobs run", justify="right")
    table.add_column("share", justify="right")
    table.add_column("status")
    members = sorted(set(progress.per_member) | set(progress.consumers))
    for member in members:
        count = progress.per_member[member]
        share = f"{100 * count / progress.done:.0f}%" if progress.done else "-"
        if member == progress.killed:
            status = Text("killed (SIGKILL)", style="bold red")
        elif member in progress.consumers:
            status = Text("alive", style="green")
        else:
            status = Text("gone", style="yellow")
        table.add_row(member, f"{count:,}", share, status)
    head = Text.from_markup(
        f"jobs put [bold]{progress.put:,}[/bold] / {progress.total:,}   "
        f"confirmed [bold]{progress.done:,}[/bold]   failed {progress.failed}   "
        f"[bold cyan]{progress.rate():,.0f} jobs/s[/bold cyan]"
    )
    if progress.killed_pid is not None:
        head.append_text(
            Text.from_markup(
                f"\nin flight at the kill: [bold]{progress.in_flight_at_kill:,}[/bold] jobs, "
                f"[bold]{progress.in_flight_done:,}[/bold] of them confirmed since"
            )
        )
    log = Text.from_markup("\n".join(progress.events) or "[dim]starting[/dim]")
    return Panel(Group(head, table, log), title="spreadq demo", border_style="blue")


async def _collect(
    progress: _Progress, receipts: anyio.abc.ObjectReceiveStream[tuple[int, Receipt[Rendered]]]
) -> None:
    async with receipts:
        async for seq, receipt in receipts:
            try:
                outcome = await receipt
            except Exception as error:  # a failed job is shown, not fatal
                progress.failed += 1
                progress.note(f"[red]job {seq} failed: {error}[/red]")
                continue
            progress.done += 1
            progress.per_member[outcome.member] += 1
            if progress.kill_after is not None and progress.done >= progress.kill_after:
                progress.kill_now.set()
            if progress.killed_pid is not None and seq < progress.kill_seq:
                progress.in_flight_done += 1


async def _watch_consumers(progress: _Progress, producer: Producer) -> None:
    """Notice the killed worker's member name when it leaves the consumer list."""
    while True:
        current = producer.consumers
        if current != progress.consumers:
            gone = set(progress.consumers) - set(current)
            came = set(current) - set(progress.consumers)
            for member in sorted(came):
                progress.note(f"[green]{member} joined[/green]")
            for member in sorted(gone):
                if progress.killed_pid is not None and progress.killed is None:
                    progress.killed = member
                    progress.note(
                        f"[red]{member} left the view: survivors took over its jobs[/red]"
                    )
                else:
                    progress.note(f"[yellow]{member} left[/yellow]")
            progress.consumers = current
        await anyio.sleep(0.05)  # screen refresh cadence, not synchronisation


@asynccontextmanager
async def _worker_processes(address: str, count: int) -> AsyncIterator[list[anyio.abc.Process]]:
    """Start ``count`` ``spreadq worker`` processes; drain them (SIGTERM) on the way out."""
    command = [sys.executable, "-m", "spreadq", "worker", "spreadq.cli.demo_app:app"]
    command += ["--spread", address]
    processes: list[anyio.abc.Process] = []
    try:
        for _ in range(count):
            process = await anyio.open_process(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            processes.append(process)
        yield processes
    finally:
        with anyio.CancelScope(shield=True):
            for process in processes:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            with anyio.move_on_after(10):
                for process in processes:
                    await process.wait()
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()


async def _repaint(progress: _Progress, console: Console) -> None:
    """Redraw the table eight times a second until cancelled, then once more."""
    with Live(_render(progress), console=console, auto_refresh=False) as screen:
        try:
            while True:
                screen.update(_render(progress), refresh=True)
                await anyio.sleep(1 / 8)
        finally:
            screen.update(_render(progress), refresh=True)


async def _report(
    progress: _Progress,
    interval: float = 1.0,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Print a progress line now and every ``interval`` seconds until cancelled (for a
    stdout that is not a terminal: a pipe, a file, CI), then once more."""
    typer.echo(progress.line())
    task_status.started()
    try:
        while True:
            await anyio.sleep(interval)  # the reporting cadence, not synchronisation
            typer.echo(progress.line())
    finally:
        typer.echo(progress.line())


async def _killer(progress: _Progress, victim: anyio.abc.Process) -> None:
    """SIGKILL ``victim`` once the collectors say enough jobs are confirmed."""
    await progress.kill_now.wait()
    victim.send_signal(signal.SIGKILL)
    progress.killed_pid = victim.pid
    progress.kill_seq = progress.put
    progress.in_flight_at_kill = progress.put - (progress.done + progress.failed)
    progress.note(f"[red]SIGKILL to worker pid {victim.pid}[/red]")


async def run_demo(
    *, workers: int, jobs: int, work_ms: float, kill_at: float | None, live: bool
) -> _Progress:
    """Run the whole demo and return its final progress.

    With ``live``, a table is redrawn on the terminal; without, a progress line is
    printed every second.
    """
    from spreadq.cli.demo_app import QUEUE, Render, Rendered, render
    from spreadq.daemon import serve

    progress = _Progress(total=jobs)
    async with serve(port=0) as daemon, _worker_processes(daemon.address, workers) as processes:
        progress.note(f"embedded daemon on {daemon.address}, {workers} worker processes")
        async with Producer(QUEUE, daemon.address) as producer:
            with anyio.fail_after(60):
                await producer.wait_for_consumers(workers)
            progress.consumers = producer.consumers
            progress.started = time.monotonic()
            async with anyio.create_task_group() as screen:
                screen.start_soon(_watch_consumers, progress, producer)
                if live:
                    screen.start_soon(_repaint, progress, Console())
                else:
                    await screen.start(_report, progress)
                if kill_at is not None:
                    progress.kill_after = max(1, round(kill_at * jobs))
                    screen.start_soon(_killer, progress, processes[1])
                send, receive = anyio.create_memory_object_stream[tuple[int, Receipt[Rendered]]](
                    math.inf
                )
                async with anyio.create_task_group() as collectors:
                    for _ in range(16):
                        collectors.start_soon(_collect, progress, receive.clone())
                    receive.close()
                    async with send:
                        for n in range(jobs):
                            receipt = await producer.put(render, Render(n=n, work_ms=work_ms))
                            progress.put += 1
                            await send.send((n, receipt))
                # the collectors end once every receipt has resolved
                progress.finished = time.monotonic()
                progress.note(f"[bold]all {jobs:,} jobs accounted for[/bold]")
                screen.cancel_scope.cancel()
    return progress


def demo(
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-w",
            min=2,
            max=16,
            envvar="SPREADQ_DEMO_WORKERS",
            help="Worker processes.",
        ),
    ] = 4,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, envvar="SPREADQ_DEMO_JOBS", help="Jobs to put.")
    ] = 20_000,
    work_ms: Annotated[
        float,
        typer.Option(min=0.0, envvar="SPREADQ_DEMO_WORK_MS", help="Milliseconds each job works."),
    ] = 1.0,
    kill_at: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            envvar="SPREADQ_DEMO_KILL_AT",
            help="Kill a worker at this fraction done.",
        ),
    ] = 0.4,
    kill: Annotated[
        bool,
        typer.Option(envvar="SPREADQ_DEMO_KILL", help="Kill one worker part-way through."),
    ] = True,
    live: Annotated[
        bool,
        typer.Option(
            envvar="SPREADQ_DEMO_LIVE",
            help="Draw the live table on a terminal (off, or not a terminal: a progress "
            "line every second).",
        ),
    ] = True,
) -> None:
    """Run the embedded daemon, worker processes and a producer, with live progress."""
    progress = anyio.run(
        lambda: run_demo(
            workers=workers,
            jobs=jobs,
            work_ms=work_ms,
            kill_at=kill_at if kill else None,
            live=live and sys.stdout.isatty(),
        )
    )
    elapsed = (progress.finished or time.monotonic()) - progress.started
    typer.echo(
        f"all {progress.done:,} of {progress.total:,} jobs confirmed in {elapsed:.2f} s "
        f"({progress.rate():,.0f} jobs/s), {progress.failed} failed"
    )
    if progress.killed_pid is not None:
        typer.echo(
            f"worker pid {progress.killed_pid} ({progress.killed or 'unknown member'}) was "
            f"killed with {progress.in_flight_at_kill:,} jobs in flight; "
            f"{progress.in_flight_done:,} of them were confirmed afterwards"
        )
    for member, count in sorted(progress.per_member.items()):
        typer.echo(f"  {member}: {count:,} jobs")
    if progress.done != progress.total:
        raise typer.Exit(EXIT_FAILED)


def register(cli: typer.Typer) -> None:
    """Add the ``demo`` command to ``cli``."""
    cli.command(epilog=epilog("every job confirmed", "a job was not confirmed"))(demo)
