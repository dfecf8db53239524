"""Scale curve: jobs/s, p99 and cost per job for 1, 2, 4, 8 workers x 100 B, 1 KB, 10 KB.

Every consumer receives every job (the WORK group delivers each JOB message to every
member, and each worker's ACKs to every member and the producer), so the daemon's
deliveries and the replicated bookkeeping grow with the number of workers while the
work done grows only with the jobs. This measures that, one ``spreadq bench`` run per
cell on one daemon, and prints one table: flood jobs/s, half-load p99 (one way and
round trip), the CPU microseconds all processes spend per job at flood, and the
messages the daemon delivers per job; then, per payload, each of those relative to
one worker.

    .venv/bin/python benchmarks/scale_curve.py                 # 12 runs: minutes
    .venv/bin/python benchmarks/scale_curve.py --quick         # a smoke: seconds
    .venv/bin/python benchmarks/scale_curve.py --workers 4,8 --payloads 100 --json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import anyio
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.table import Table

from spreadq.bench import BenchReport, embedded_daemon, run_bench
from spreadq.eventloop import Loop, use_uvloop

__all__ = ["CurvePoint", "curve", "main", "point"]


class CurvePoint(BaseModel):
    """One cell of the curve."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workers: int
    payload_bytes: int
    jobs_per_s: float
    """At flood."""
    one_way_p99_ms: float
    """At half load, ``put()`` to handler start."""
    round_trip_p99_ms: float
    """At half load, ``put()`` to receipt."""
    cpu_us_per_job: float | None
    """All processes measured, at flood (the daemon's only when it is ours)."""
    delivered_per_job: float
    """Messages the daemon delivered per job, at flood."""
    ratio_to_raw: float | None


def point(report: BenchReport) -> CurvePoint:
    """The cell one benchmark report gives."""
    flood, half = report.flood, report.half_load
    return CurvePoint(
        workers=report.workers,
        payload_bytes=report.payload_bytes,
        jobs_per_s=flood.jobs_per_s,
        one_way_p99_ms=half.one_way.p99_ms,
        round_trip_p99_ms=half.round_trip.p99_ms,
        cpu_us_per_job=None if flood.cpu is None else flood.cpu.total_s / flood.jobs * 1e6,
        delivered_per_job=flood.wire.delivered_per_job,
        ratio_to_raw=flood.ratio_to_raw,
    )


async def curve(
    workers: Sequence[int],
    payloads: Sequence[int],
    *,
    jobs: int,
    raw: int,
    loop: Loop,
    spread: str | None,
    note: Console,
) -> list[CurvePoint]:
    """Run one benchmark per (workers, payload) on one daemon.

    Raises:
        TimeoutError: child processes did not start in time.
        ConnectError: the daemon cannot be reached.
    """
    points: list[CurvePoint] = []

    async def on(address: str, name: str, pid: int | None) -> None:
        for size in payloads:
            for count in workers:
                note.print(f"[dim]{count} workers, {size} B: {jobs:,} jobs[/dim]")
                report = await run_bench(
                    address,
                    daemon=name,
                    daemon_pid=pid,
                    workers=count,
                    jobs=jobs,
                    raw=raw,
                    payload=size,
                    loop=loop,
                )
                points.append(point(report))

    if spread is not None:
        await on(spread, spread, None)
    else:
        async with embedded_daemon(loop) as daemon:
            await on(daemon.address, "embedded", daemon.pid)
    return points


def _relative(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return "-"
    return f"x{value / base:.2f}"


def render(points: Sequence[CurvePoint], console: Console) -> None:
    """Print the curve, then each figure relative to one worker (or the fewest)."""
    table = Table(title="scale curve: flood jobs/s, half-load p99, cost per job at flood")
    for heading in ("workers", "payload B", "jobs/s", "one way p99 ms", "round trip p99 ms"):
        table.add_column(heading, justify="right")
    for heading in ("CPU us/job", "delivered/job", "ratio to raw"):
        table.add_column(heading, justify="right")
    growth = Table(title="relative to the fewest workers of the same payload")
    for heading in ("workers", "payload B", "jobs/s", "CPU us/job", "delivered/job"):
        growth.add_column(heading, justify="right")
    base: dict[int, CurvePoint] = {}
    for p in sorted(points, key=lambda p: (p.payload_bytes, p.workers)):
        first = base.setdefault(p.payload_bytes, p)
        cpu = "-" if p.cpu_us_per_job is None else f"{p.cpu_us_per_job:,.1f}"
        ratio = "-" if p.ratio_to_raw is None else f"x{p.ratio_to_raw:.2f}"
        table.add_row(
            str(p.workers),
            f"{p.payload_bytes:,}",
            f"{p.jobs_per_s:,.0f}",
            f"{p.one_way_p99_ms:.2f}",
            f"{p.round_trip_p99_ms:.2f}",
            cpu,
            f"{p.delivered_per_job:.3f}",
            ratio,
        )
        growth.add_row(
            str(p.workers),
            f"{p.payload_bytes:,}",
            _relative(p.jobs_per_s, first.jobs_per_s),
            _relative(p.cpu_us_per_job, first.cpu_us_per_job),
            _relative(p.delivered_per_job, first.delivered_per_job),
        )
    console.print(table)
    console.print(growth)


def _numbers(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"positive numbers, comma-separated: {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    """Run the curve; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=_numbers, help="default 1,2,4,8 (--quick: 1,2)")
    parser.add_argument(
        "--payloads", type=_numbers, help="bytes, default 100,1000,10000 (--quick: 100,10000)"
    )
    parser.add_argument("--jobs", type=int, help="jobs per flood run (default 10000; quick 200)")
    parser.add_argument("--raw", type=int, default=0, help="raw flood messages (0: none)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--spread", help="measure on this daemon (default: embedded)")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    parser.add_argument("--json", action="store_true", help="print the points as JSON")
    args = parser.parse_args(argv)
    workers = args.workers or ([1, 2] if args.quick else [1, 2, 4, 8])
    payloads = args.payloads or ([100, 10_000] if args.quick else [100, 1_000, 10_000])
    jobs = args.jobs or (200 if args.quick else 10_000)
    loop: Loop = args.loop
    points = anyio.run(
        lambda: curve(
            workers,
            payloads,
            jobs=jobs,
            raw=args.raw,
            loop=loop,
            spread=args.spread,
            note=Console(stderr=True),
        ),
        backend_options={"use_uvloop": use_uvloop(loop)},
    )
    if args.json:
        print(json.dumps([p.model_dump(mode="json") for p in points], indent=2))
    else:
        render(points, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
