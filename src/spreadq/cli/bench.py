"""``spreadq bench``: the queue benchmark, against the embedded daemon or ``--spread ADDR``.

The measuring lives in :mod:`spreadq.bench` (``benchmarks/bench_queue.py`` calls it
too); this command chooses the daemon, prints the figures as rich tables or JSON, and
serves the benchmark's child processes through hidden options (``--role``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Annotated

import anyio
import typer
from rich.console import Console
from rich.table import Table

from spreadq.cli.exits import EXIT_FAILED, EXIT_USAGE, epilog, shared_exits
from spreadq.errors import JobFailed

if TYPE_CHECKING:
    from spreadq.bench import BenchReport, Role
    from spreadq.eventloop import Loop

__all__ = ["register", "render"]

_LOOPS: dict[str, Loop] = {"auto": "auto", "asyncio": "asyncio", "uvloop": "uvloop"}
_ROLES: dict[str, Role] = {"daemon": "daemon", "worker": "worker", "raw-receiver": "raw-receiver"}


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _us_per_job(seconds: float | None, jobs: int) -> str:
    return "-" if seconds is None else f"{seconds / jobs * 1e6:,.1f}"


def _run_wait(
    cpu: float | None, waited: float | None, seconds: float, mean_slice: float | None
) -> str:
    """A process's milliseconds a second on a CPU and waiting for one, and the
    milliseconds it ran at a time (when known)."""
    if cpu is None or waited is None:
        return "-"
    cell = f"{cpu / seconds * 1e3:,.0f} / {waited / seconds * 1e3:,.0f}"
    return cell if mean_slice is None else f"{cell} · {mean_slice * 1e3:.2f}"


def _mean(values: tuple[float, ...]) -> float:
    return sum(values) / len(values) if values else 0.0


def render(reports: list[BenchReport], console: Console) -> None:
    """Print ``reports`` as four tables: throughput, latency, cost per job, and each
    process's time on a CPU and waiting for one, with how long it ran at a time."""
    if not reports:
        return
    first = reports[0]
    loop = "uvloop" if first.uvloop else "asyncio"
    rates = Table(
        title=f"1 producer, {first.workers} workers, {first.payload_bytes} B payloads, "
        f"no-op handler ({loop}, rule {first.rule})",
    )
    latency = Table(
        title="latency, ms: one way = put() to handler start, round trip = put() to receipt"
    )
    cost = Table(title="cost per job: CPU microseconds of each process, Spread messages")
    busy = Table(
        title="ms a second: on a CPU / ready to run and waiting for one · ms it ran at a time"
    )
    for table in (rates, latency, cost, busy):
        table.add_column("daemon")
        table.add_column("load")
    rates.add_column("jobs/s", justify="right")
    rates.add_column("raw flood msg/s", justify="right")
    rates.add_column("ratio", justify="right")
    rates.add_column("re-sent", justify="right")
    for heading in ("one way p50", "p99", "p999", "round trip p50", "p99", "p999"):
        latency.add_column(heading, justify="right")
    for heading in ("producer", "workers", "daemon", "total", "sent", "delivered"):
        cost.add_column(heading, justify="right")
    for heading in ("producer", "each worker (mean)", "daemon"):
        busy.add_column(heading, justify="right")
    for report in reports:
        paced = "half" if report.paced_rate is None else f"{report.paced_rate:,.0f}/s"
        if report.smooth:
            paced += ", smooth"
        for load, figures in (("flood", report.flood), (paced, report.half_load)):
            raw = report.raw_msgs_per_s
            rates.add_row(
                report.daemon,
                load,
                f"{figures.jobs_per_s:,.0f}",
                "-" if raw is None else f"{raw:,.0f}",
                "-" if figures.ratio_to_raw is None else f"x{figures.ratio_to_raw:.2f}",
                f"{report.resent:,}",
            )
            one, rtt = figures.one_way, figures.round_trip
            latency.add_row(
                report.daemon,
                load,
                *(_ms(v) for v in (one.p50_ms, one.p99_ms, one.p999_ms)),
                *(_ms(v) for v in (rtt.p50_ms, rtt.p99_ms, rtt.p999_ms)),
            )
            cpu, wire, jobs = figures.cpu, figures.wire, figures.jobs
            cost.add_row(
                report.daemon,
                load,
                _us_per_job(None if cpu is None else cpu.producer_s, jobs),
                _us_per_job(None if cpu is None else sum(cpu.workers_s), jobs),
                _us_per_job(None if cpu is None else cpu.daemon_s, jobs),
                _us_per_job(None if cpu is None else cpu.total_s, jobs),
                f"{wire.sent_per_job:.3f}",
                f"{wire.delivered_per_job:.3f}",
            )
            waited, seconds, ran = figures.waited, figures.seconds, figures.mean_slice
            if cpu is not None and waited is not None and seconds > 0:
                busy.add_row(
                    report.daemon,
                    load,
                    _run_wait(
                        cpu.producer_s,
                        waited.producer_s,
                        seconds,
                        None if ran is None else ran.producer_s,
                    ),
                    _run_wait(
                        _mean(cpu.workers_s),
                        _mean(waited.workers_s),
                        seconds,
                        None if ran is None else _mean(ran.workers_s),
                    ),
                    _run_wait(
                        cpu.daemon_s,
                        waited.daemon_s,
                        seconds,
                        None if ran is None else ran.daemon_s,
                    ),
                )
    console.print(rates)
    console.print(latency)
    console.print(cost)
    if busy.row_count:
        console.print(busy)
    for report in reports:
        if report.worker_peak_rss_mb is not None:
            peaks = ", ".join(f"{mb:.1f}" for mb in report.worker_peak_rss_mb)
            console.print(f"{report.daemon}: worker peak RSS (MiB): {peaks}")


def bench(
    ctx: typer.Context,
    spread: Annotated[
        str | None,
        typer.Option(
            "--spread",
            "-s",
            envvar="SPREADQ_SPREAD",
            help="Measure this daemon (PORT, PORT@HOST or a socket path) instead.",
        ),
    ] = None,
    daemon_pid: Annotated[
        int | None,
        typer.Option(
            "--daemon-pid",
            min=1,
            envvar="SPREADQ_BENCH_DAEMON_PID",
            help="With --spread: the daemon's process id, to report its CPU too "
            "(on Linux: pgrep -x spread).",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            max=64,
            envvar="SPREADQ_BENCH_WORKERS",
            help="Worker processes.",
        ),
    ] = 4,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs", "-j", min=1, envvar="SPREADQ_BENCH_JOBS", help="Jobs in the flood run."
        ),
    ] = 20_000,
    raw: Annotated[
        int,
        typer.Option(
            min=0, envvar="SPREADQ_BENCH_RAW", help="Messages in the raw flood (0: skip it)."
        ),
    ] = 20_000,
    payload: Annotated[
        int, typer.Option(min=0, envvar="SPREADQ_BENCH_PAYLOAD", help="Bytes per job.")
    ] = 100,
    ack_interval: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            envvar="SPREADQ_ACK_INTERVAL",
            help="The workers' ACK interval (seconds).",
        ),
    ] = None,
    loop: Annotated[
        str,
        typer.Option(
            envvar="SPREADQ_BENCH_LOOP", help="auto (uvloop when installed), asyncio or uvloop."
        ),
    ] = "auto",
    rate: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            envvar="SPREADQ_BENCH_RATE",
            help="Pace the second run at this many jobs/s instead of half the flood's.",
        ),
    ] = None,
    smooth: Annotated[
        bool,
        typer.Option(
            "--smooth",
            envvar="SPREADQ_BENCH_SMOOTH",
            help="Put each paced job in a turn of the loop of its own as it comes due "
            "(as a server putting one per request does), not a millisecond's at a time.",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", envvar="SPREADQ_BENCH_JSON", help="Print JSON, not tables."),
    ] = False,
    plugins: Annotated[
        bool,
        typer.Option(
            "--plugins",
            envvar="SPREADQ_BENCH_PLUGINS",
            help="Workers load the installed plugins and serve metrics on a free port "
            "(the cost of observability); without it they load none.",
        ),
    ] = False,
    rule: Annotated[
        str,
        typer.Option(
            envvar="SPREADQ_BENCH_RULE",
            help=(
                "The workers' ownership rule: round_robin, sticky, least_loaded, "
                "fill_first, key_affinity."
            ),
        ),
    ] = "round_robin",
    role: Annotated[str | None, typer.Option(hidden=True)] = None,
    address: Annotated[str | None, typer.Option(hidden=True)] = None,
    count: Annotated[int, typer.Option(hidden=True)] = 0,
) -> None:
    """Measure jobs/s, latency, CPU and messages per job against a raw flood, in one run.

    For a flood and for half that rate (or ``--rate``): jobs/s and its ratio to a raw
    flood of the same daemon; one-way (put to handler start) and round-trip (put to
    receipt) latency, p50/p99/p999; CPU seconds of the producer, each worker and the
    daemon (the embedded one, or the ``--spread`` one given ``--daemon-pid``); Spread
    messages sent and delivered per job; each worker's peak RSS.
    """
    from spreadq.bench import embedded_daemon, run_bench, run_role
    from spreadq.eventloop import use_uvloop
    from spreadq.queue.rules import builtin_rules
    from spreadq.settings import Settings
    from spreadq.worker.runtime import tune_collector

    chosen = _LOOPS.get(loop)
    if chosen is None:
        typer.echo(f"error: --loop must be auto, asyncio or uvloop, not {loop!r}", err=True)
        raise typer.Exit(EXIT_USAGE)
    if daemon_pid is not None and spread is None:
        typer.echo("error: --daemon-pid names the daemon of --spread; give both", err=True)
        raise typer.Exit(EXIT_USAGE)
    known = builtin_rules()
    if not plugins and rule not in known:  # a plugin's rule needs --plugins
        names = ", ".join(known)
        typer.echo(f"error: --rule must be one of {names}, not {rule!r}", err=True)
        raise typer.Exit(EXIT_USAGE)
    if role is not None:  # a child process of a running benchmark
        child = _ROLES.get(role)
        if child is None:
            raise typer.BadParameter(f"unknown role {role!r}", param_hint="--role")
        interval = Settings().ack_interval if ack_interval is None else ack_interval
        run_role(
            child,
            address,
            count=count,
            ack_interval=interval,
            loop=chosen,
            plugins=plugins,
            rule=rule,
        )
        return
    log_level: str = ctx.obj["log_level"] if isinstance(ctx.obj, dict) else "warning"
    err = Console(stderr=True)

    def note(message: str) -> None:
        if not as_json:
            err.print(f"[dim]{message}[/dim]")

    def on(target: str, name: str, pid: int | None = None) -> Awaitable[BenchReport]:
        return run_bench(
            target,
            daemon=name,
            daemon_pid=pid,
            workers=workers,
            jobs=jobs,
            raw=raw,
            payload=payload,
            ack_interval=ack_interval,
            plugins=plugins,
            loop=chosen,
            log_level=log_level,
            progress=note,
            rate=rate,
            smooth=smooth,
            rule=rule,
        )

    async def measure() -> BenchReport:
        if spread is not None:
            return await on(spread, spread, daemon_pid)
        async with embedded_daemon(chosen, log_level) as embedded:
            note(f"embedded daemon on {embedded.address}")
            return await on(embedded.address, "embedded", embedded.pid)

    # we are the program, and its producer: tuned as a worker tunes itself. Without it a
    # full collection walking the run's outstanding receipts stalled puts by 30-60 ms
    tune_collector()
    try:
        with shared_exits():
            report = anyio.run(measure, backend_options={"use_uvloop": use_uvloop(chosen)})
    except (TimeoutError, ChildProcessError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except JobFailed as error:  # a no-op job fails only when its workers were lost
        typer.echo(f"error: a job of the run failed, so no figures: {error}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    if as_json:
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        render([report], Console())


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to ``app``."""
    app.command(epilog=epilog("measured", "a run timed out, a worker exited or a job failed"))(
        bench
    )
