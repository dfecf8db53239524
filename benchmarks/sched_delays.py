"""Who waits for a core, and for how long: both sides' scheduling at one rate (perf sched).

``spreadq bench`` and ``compare_redis.py`` report how long jobs take; ``one_way_legs.py``
splits a job's time into legs and shows that on two cores four workers read each message
one after another. This script asks the kernel directly. It runs the paced shape of each
side at ``--rate`` jobs/s and, a moment into that run, records the scheduler for
``--seconds`` with ``perf sched record``; then, for each process of the run, from ``perf
sched timehist``:

* **wakes a second**: how often it was switched in (woken, or resumed after a preemption);
* **CPU**: milliseconds of CPU it ran a second;
* **wait for a core** (p50/p90/p99): from being woken (or preempted) to running again;
* **slice** (p50/p90/p99): how long it then ran before it blocked or was preempted;
* **waiting behind**: while its processes waited, what the cores ran, each role's share
  of their time (``idle``: a core ran nothing; ``other``: a process of no role).

A process that runs long slices makes the others wait for a core; a job waits for each
process on its way (the producer, the daemon or server, the worker or consumer that runs
it). The spreadq side is ``spreadq bench --raw 0`` (its flood, then its paced run at
``--rate``; the window opens once the paced run has begun), the Redis side
``compare_redis.py``'s, recorded in its run at the same rate. Each prints the paced run's
one-way p99 beside its table. ``--side`` runs one of them; ``--each`` gives each worker
(consumer) a row of its own, named with its pid.

Needs ``perf`` with the scheduler's tracepoints (root, or
``kernel.perf_event_paranoid`` at -1), and for the Redis side what ``compare_redis.py``
needs; without them it says what is missing and exits 0.

    .venv/bin/python benchmarks/sched_delays.py --spread 4803@127.0.0.1 \\
        --spread-pid $(pgrep -x spread) --rate 13000
    .venv/bin/python benchmarks/sched_delays.py --jobs 4000 --rate 2000 --seconds 0.5  # a smoke
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Final

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.table import Table

from spreadq.bench import BenchReport
from spreadq.bench.report import quantile
from spreadq.bench.run import embedded_daemon, run_bench
from spreadq.eventloop import use_uvloop
from spreadq.worker.runtime import tune_collector

__all__ = ["Slice", "behind", "main", "parse_timehist", "summarize"]

OPEN_AFTER: Final = 0.3
"""Seconds into the paced run before the window opens (the run's first turns settle)."""

_LINE = re.compile(
    r"^\s*(\d+\.\d+)\s+\[(\d+)\]\s+(.+?)\[(\d+)(?:/(\d+))?\]\s+(\S+)\s+(\S+)\s+(\S+)"
)
"""A ``perf sched timehist`` row: time, [cpu], comm[tid/pid] (or [pid]), wait, sch delay,
run time (milliseconds)."""


class Slice(BaseModel):
    """One time a process ran: how long it waited for a core first, and how long it ran."""

    model_config = ConfigDict(frozen=True)

    pid: int
    comm: str
    cpu: int
    at: float
    """When it stopped running (seconds, the trace's clock)."""
    delay_ms: float
    run_ms: float

    @property
    def ran(self) -> tuple[float, float]:
        """When it ran (seconds)."""
        return self.at - self.run_ms / 1000, self.at

    @property
    def waited(self) -> tuple[float, float]:
        """When it waited for a core, before it ran (seconds)."""
        start = self.at - self.run_ms / 1000
        return start - self.delay_ms / 1000, start


def parse_timehist(text: str) -> list[Slice]:
    """The rows of ``perf sched timehist`` output, one :class:`Slice` each (idle rows
    and headers left out); a thread's row counts for its process."""
    slices: list[Slice] = []
    for line in text.splitlines():
        row = _LINE.match(line)
        if row is None:
            continue
        at, cpu, comm, first, pid, _wait, delay, run = row.groups()
        if comm == "<idle>":
            continue
        try:
            slices.append(
                Slice(
                    pid=int(pid or first),
                    comm=comm,
                    cpu=int(cpu),
                    at=float(at),
                    delay_ms=float(delay),
                    run_ms=float(run),
                )
            )
        except ValueError:  # a column perf left blank
            continue
    return slices


class Spread(BaseModel):
    """p50, p90 and p99 of one measure, in milliseconds."""

    model_config = ConfigDict(frozen=True)

    p50: float
    p90: float
    p99: float


class RoleFigures(BaseModel):
    """The processes of one role over the window: each one's wakes and CPU a second
    (their mean), and every slice of theirs together."""

    model_config = ConfigDict(frozen=True)

    role: str
    processes: int
    wakes_per_s: float
    cpu_ms_per_s: float
    wait: Spread
    slice: Spread
    behind: dict[str, float]
    """While they waited for a core, each role's share of the cores' time (``other``:
    processes of no role; ``idle``: no process), largest first (:func:`behind`)."""


def _spread(values: Sequence[float]) -> Spread:
    """p50, p90 and p99 of ``values`` (at least one), interpolated between ranks."""
    ordered = sorted(values)
    return Spread(
        p50=quantile(ordered, 0.5), p90=quantile(ordered, 0.9), p99=quantile(ordered, 0.99)
    )


def behind(slices: Sequence[Slice], roles: dict[int, str]) -> dict[str, dict[str, float]]:
    """For each role of ``roles``, what the machine's cores did while its processes
    waited for one: each role's share of the cores' time over those waits (processes of
    no role as ``other``, and ``idle``), largest first; the shares of a role add up to 1.
    """
    runs: dict[int, list[tuple[float, float, str]]] = defaultdict(list)  # by core
    for one in slices:
        runs[one.cpu].append((*one.ran, roles.get(one.pid, "other")))
    for core in runs.values():
        core.sort()
    starts = {cpu: [start for start, _, _ in core] for cpu, core in runs.items()}
    ran: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    waited: dict[str, float] = defaultdict(float)
    for one in slices:
        role = roles.get(one.pid)
        if role is None or one.delay_ms <= 0:
            continue
        low, high = one.waited
        waited[role] += (high - low) * len(runs)
        for cpu, core in runs.items():
            at = max(0, bisect_right(starts[cpu], low) - 1)
            while at < len(core) and core[at][0] < high:
                start, end, other = core[at]
                ran[role][other] += max(0.0, min(end, high) - max(start, low))
                at += 1
    shares: dict[str, dict[str, float]] = {}
    for role, total in waited.items():
        busy = ran[role]
        busy["idle"] = max(0.0, total - sum(busy.values()))
        largest = sorted(busy.items(), key=lambda item: -item[1])
        shares[role] = {other: seconds / total for other, seconds in largest}
    return shares


ROLES: Final = ("producer", "worker", "consumer", "daemon", "server")
"""The roles, in the order they are printed (along a job's way, the relay last)."""


def summarize(slices: Sequence[Slice], roles: dict[int, str], seconds: float) -> list[RoleFigures]:
    """Figures for each role of ``roles`` (pid to role), in the order of :data:`ROLES`
    (a role named after one, ``worker 1234``, where it goes; then any other); processes
    of no role are left out. ``seconds``: the window's length."""
    shares = behind(slices, roles)
    by_role: dict[str, list[Slice]] = defaultdict(list)
    pids: dict[str, set[int]] = defaultdict(set)
    for one in slices:
        role = roles.get(one.pid)
        if role is not None:
            by_role[role].append(one)
            pids[role].add(one.pid)
    figures: list[RoleFigures] = []

    def place(role: str) -> tuple[int, str]:  # "worker 1234" goes where "worker" does
        base = role.split()[0]
        return (ROLES.index(base) if base in ROLES else len(ROLES), role)

    for role in sorted(by_role, key=place):
        taken = by_role[role]
        count = len(pids[role])
        figures.append(
            RoleFigures(
                role=role,
                processes=count,
                wakes_per_s=len(taken) / seconds / count,
                cpu_ms_per_s=sum(s.run_ms for s in taken) / seconds / count,
                wait=_spread([s.delay_ms for s in taken]),
                slice=_spread([s.run_ms for s in taken]),
                behind=shares.get(role, {}),
            )
        )
    return figures


class SideReport(BaseModel):
    """One side's window: its roles' figures and its paced run's one-way p99."""

    model_config = ConfigDict(frozen=True)

    side: str
    rate: float
    one_way_p99_ms: float
    seconds: float
    roles: list[RoleFigures]


# --- processes and the recorder -------------------------------------------------------------


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is ``pid``, with their command lines (Linux ``/proc``)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == pid:
            found[int(entry.name)] = line
    return found


def record(path: Path, seconds: float) -> None:
    """``perf sched record`` of the whole machine for ``seconds``, into ``path``.

    Raises:
        RuntimeError: perf failed (its last words say why).
    """
    done = subprocess.run(
        ["perf", "sched", "record", "-o", str(path), "--", "sleep", str(seconds)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"perf sched record failed: {done.stderr.strip()[-300:]}")


def read_window(path: Path) -> tuple[list[Slice], float]:
    """The recorded slices and the window's length in seconds."""
    text = subprocess.run(
        ["perf", "sched", "timehist", "-i", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    slices = parse_timehist(text)
    if not slices:
        return [], 0.0
    return slices, max(s.at for s in slices) - min(s.at for s in slices)


def each(roles: dict[int, str]) -> dict[int, str]:
    """``roles`` with each worker and consumer a role of its own (``worker 1234``)."""
    return {pid: f"{r} {pid}" if r in ("worker", "consumer") else r for pid, r in roles.items()}


async def open_window(
    data: Path, seconds: float, roles: dict[int, str], role_of: Callable[[str], str]
) -> None:
    """A moment into a paced run: name this process the producer and each of its children
    by ``role_of(command line)`` in ``roles``, then record for ``seconds``."""
    await anyio.sleep(OPEN_AFTER)
    roles[os.getpid()] = "producer"
    for pid, line in children(os.getpid()).items():
        roles[pid] = role_of(line)
    await anyio.to_thread.run_sync(record, data, seconds)


def unavailable() -> str | None:
    """Why perf sched cannot record here (None: it can)."""
    if shutil.which("perf") is None:
        return "perf is not on PATH (apt-get install linux-perf, or linux-tools-$(uname -r))"
    with tempfile.TemporaryDirectory() as folder:
        try:
            record(Path(folder) / "probe.data", 0.01)
        except RuntimeError as error:
            return f"{error} (run as root, or sysctl kernel.perf_event_paranoid=-1)"
    return None


# --- the two sides --------------------------------------------------------------------------


def side_report(
    side: str, args: argparse.Namespace, one_way_p99_ms: float, data: Path, roles: dict[int, str]
) -> SideReport:
    """One side's report: its window recorded in ``data``, its processes named by
    ``roles`` (each worker or consumer apart with ``--each``)."""
    slices, seconds = read_window(data)
    named = each(roles) if args.each else roles
    return SideReport(
        side=side,
        rate=args.rate,
        one_way_p99_ms=one_way_p99_ms,
        seconds=seconds,
        roles=summarize(slices, named, seconds),
    )


def spreadq_side(args: argparse.Namespace, data: Path) -> SideReport:
    """``spreadq bench``'s run (:func:`~spreadq.bench.run.run_bench`, in this process, the
    producer) at ``args.rate``, its paced run recorded."""
    roles: dict[int, str] = {} if args.spread_pid is None else {args.spread_pid: "daemon"}
    window = partial(
        open_window,
        data,
        args.seconds,
        roles,
        lambda line: "daemon" if "--role daemon" in line else "worker",
    )

    async def bench(address: str, name: str) -> BenchReport:
        async with anyio.create_task_group() as tg:

            def progress(note: str) -> None:
                if note.startswith("queue paced"):
                    tg.start_soon(window)

            report = await run_bench(
                address,
                daemon=name,
                workers=args.workers,
                jobs=args.jobs,
                raw=0,
                loop=args.loop,
                progress=progress,
                rate=args.rate,
                rule=args.rule,
            )
        return report

    async def measure() -> BenchReport:
        if args.spread is not None:
            return await bench(args.spread, args.spread)
        async with embedded_daemon(args.loop) as embedded:
            return await bench(embedded.address, "embedded")

    tune_collector()  # the producer, tuned as spreadq bench tunes itself
    report = anyio.run(measure, backend_options={"use_uvloop": use_uvloop(args.loop)})
    return side_report("spreadq", args, report.half_load.one_way.p99_ms, data, roles)


def redis_side(args: argparse.Namespace, data: Path) -> SideReport:
    """``compare_redis.py``'s Redis side, its run at ``args.rate`` recorded."""
    from compare_redis import measure_redis

    roles: dict[int, str] = {}
    window = partial(
        open_window,
        data,
        args.seconds,
        roles,
        lambda line: "consumer" if "redis_consumer" in line else "server",
    )

    binary = shutil.which("redis-server")
    assert binary is not None
    report = anyio.run(
        partial(
            measure_redis,
            binary,
            consumers=args.workers,
            jobs=args.jobs,
            payload=100,
            pipeline=500,
            count=500,
            also_at=args.rate,
            beside_at=window,
        ),
        backend_options={"use_uvloop": use_uvloop(args.loop)},
    )
    assert report.at_rate is not None
    return side_report("Redis Streams", args, report.at_rate.one_way.p99_ms, data, roles)


def render(reports: Sequence[SideReport], console: Console) -> None:
    """One table: a section a side, a row a role."""
    title = f"The scheduler over {reports[0].seconds:.1f} s of each paced run"
    table = Table(
        title=title,
        caption="wait: for a core; slice: then ran (ms, p50 p90 p99); waiting behind: what "
        "the cores ran meanwhile (5% or more)",
    )
    for name in ("side", "role", "wakes/s", "CPU ms/s", "wait", "slice", "waiting behind"):
        table.add_column(name, justify="right" if name in ("wakes/s", "CPU ms/s") else "left")
    for report in reports:
        side = f"{report.side}\none-way p99\n{report.one_way_p99_ms:.2f} ms"
        for figures in report.roles:
            role = figures.role
            if figures.processes > 1:
                role += f"\n(each of {figures.processes})"
            table.add_row(
                side,
                role,
                f"{figures.wakes_per_s:,.0f}",
                f"{figures.cpu_ms_per_s:.0f}",
                " ".join(
                    f"{v:.2f}" for v in (figures.wait.p50, figures.wait.p90, figures.wait.p99)
                ),
                " ".join(
                    f"{v:.2f}" for v in (figures.slice.p50, figures.slice.p90, figures.slice.p99)
                ),
            )
            side = ""
        table.add_section()
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    """Record each side; print the table (or JSON); return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=["both", "spreadq", "redis"], default="both")
    parser.add_argument("--rate", type=float, default=13_000, help="the paced runs' jobs/s")
    parser.add_argument("--jobs", type=int, default=60_000, help="jobs in each side's flood")
    parser.add_argument("--workers", type=int, default=4, help="workers, and Redis consumers")
    parser.add_argument("--rule", default="round_robin", help="spreadq's ownership rule")
    parser.add_argument("--spread", help="measure spreadq on this daemon (default: embedded)")
    parser.add_argument("--spread-pid", type=int, help="with --spread: that daemon's process id")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    parser.add_argument("--seconds", type=float, default=1.5, help="the window's length")
    parser.add_argument(
        "--each",
        action="store_true",
        help="a row for each worker (consumer), named with its pid, not one for them all",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.spread_pid is not None and args.spread is None:
        parser.error("--spread-pid names the daemon of --spread: give both")
    if args.jobs // 2 / args.rate < OPEN_AFTER + args.seconds:
        parser.error("the paced run (--jobs / 2 at --rate) is shorter than the window")
    missing = unavailable()
    if missing is None and args.side != "spreadq":
        from compare_redis import INSTALL, _missing

        redis_missing = _missing()
        missing = None if redis_missing is None else f"{redis_missing}; {INSTALL}"
    if missing is not None:
        print(f"sched_delays: skipped, {missing}")
        return 0
    reports: list[SideReport] = []
    with tempfile.TemporaryDirectory() as folder:
        if args.side in ("both", "spreadq"):
            reports.append(spreadq_side(args, Path(folder) / "spreadq.data"))
        if args.side in ("both", "redis"):
            reports.append(redis_side(args, Path(folder) / "redis.data"))
    if args.json:
        print(json.dumps([report.model_dump(mode="json") for report in reports], indent=2))
    else:
        render(reports, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
