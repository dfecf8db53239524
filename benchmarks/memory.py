"""Worker memory under a long run: N jobs through 4 workers, each worker's RSS over time.

A producer floods ``--jobs`` jobs through ``--workers`` bench workers in ``--samples``
equal rounds (each round waits for its receipts, so the producer holds one round at a
time), and after each round reads every worker's resident set (``VmRSS``) from
``/proc``. It prints one row per sample and a verdict: the growth of each worker from
the first sample (after the first round: imports and buffers are in place by then) to
the last; its growth over the second half of the run, which is what says flat or not
(a worker's outcome history, ``Settings.completed_history`` outcomes in two
generations, fills during the first: a bounded cache, not a leak); and the largest peak
(``VmHWM``). Linux only.

    .venv/bin/python benchmarks/memory.py --jobs 1000000        # the real figure
    .venv/bin/python benchmarks/memory.py --jobs 2000 --samples 4  # a smoke
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence

import anyio
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.table import Table

from spreadq.bench import QUEUE, START_WITHIN, embedded_daemon, queue_run, worker_processes
from spreadq.eventloop import Loop, use_uvloop
from spreadq.producer import Producer

__all__ = ["MemoryReport", "Sample", "main", "measure"]

FLAT_MB = 5.0
"""Growth below this many MiB (or 5 % of the first sample) counts as flat."""
LIMIT_MB = 100.0
"""The resident set a worker should stay under."""


class Sample(BaseModel):
    """Every worker's resident set after ``jobs`` jobs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jobs: int
    seconds: float
    rss_mb: tuple[float, ...]


class MemoryReport(BaseModel):
    """The samples, and what they say."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workers: int
    payload_bytes: int
    jobs: int
    samples: tuple[Sample, ...]
    peak_rss_mb: tuple[float, ...]
    growth_mb: tuple[float, ...]
    """Each worker's RSS at the last sample less at the first."""
    late_growth_mb: tuple[float, ...]
    """Each worker's RSS at the last sample less at the sample halfway through."""
    flat: bool
    """Over the second half, every worker grew less than 5 MiB or 5 %."""
    under_limit: bool
    """Every worker's peak stayed under 100 MiB."""


async def measure(
    *, jobs: int, workers: int, samples: int, payload: int, loop: Loop, spread: str | None
) -> MemoryReport:
    """Run the jobs in ``samples`` rounds and sample the workers' RSS after each.

    Raises:
        ChildProcessError: ``/proc`` cannot be read, or a worker exited.
        TimeoutError: the workers did not start in time.
        ConnectError: the daemon cannot be reached.
    """
    if spread is not None:
        return await _measure(spread, jobs, workers, samples, payload, loop)
    async with embedded_daemon(loop) as daemon:
        return await _measure(daemon.address, jobs, workers, samples, payload, loop)


async def _measure(
    address: str, jobs: int, workers: int, samples: int, payload: int, loop: Loop
) -> MemoryReport:
    per_round = math.ceil(jobs / samples)
    found: list[Sample] = []
    async with (
        Producer(QUEUE, address, plugins=False) as producer,
        worker_processes(address, workers, loop=loop) as pool,
    ):
        with anyio.fail_after(START_WITHIN):
            await producer.wait_for_consumers(workers)
        started = time.monotonic()
        done = 0
        while done < jobs:
            count = min(per_round, jobs - done)
            await queue_run(producer, pool, count, payload)
            done += count
            rss = pool.rss_mb()
            if rss is None:
                raise ChildProcessError("cannot read the workers' memory from /proc")
            found.append(Sample(jobs=done, seconds=time.monotonic() - started, rss_mb=rss))
        peaks = pool.peak_rss_mb()
    assert peaks is not None
    first, last = found[0].rss_mb, found[-1].rss_mb
    half = found[(len(found) - 1) // 2].rss_mb  # the sample at half the jobs, or before
    growth = tuple(b - a for a, b in zip(first, last, strict=True))
    late = tuple(b - a for a, b in zip(half, last, strict=True))
    return MemoryReport(
        workers=workers,
        payload_bytes=payload,
        jobs=jobs,
        samples=tuple(found),
        peak_rss_mb=peaks,
        growth_mb=growth,
        late_growth_mb=late,
        flat=all(g < max(FLAT_MB, 0.05 * a) for g, a in zip(late, half, strict=True)),
        under_limit=max(peaks) < LIMIT_MB,
    )


def render(report: MemoryReport, console: Console) -> None:
    """Print the samples and the verdict."""
    table = Table(
        title=f"worker RSS (MiB): {report.jobs:,} jobs of {report.payload_bytes} B "
        f"through {report.workers} workers"
    )
    table.add_column("jobs", justify="right")
    table.add_column("seconds", justify="right")
    for n in range(report.workers):
        table.add_column(f"worker {n + 1}", justify="right")
    for sample in report.samples:
        table.add_row(
            f"{sample.jobs:,}",
            f"{sample.seconds:,.1f}",
            *(f"{mb:.1f}" for mb in sample.rss_mb),
        )
    console.print(table)
    growth = ", ".join(f"{mb:+.1f}" for mb in report.growth_mb)
    late = ", ".join(f"{mb:+.1f}" for mb in report.late_growth_mb)
    console.print(
        f"growth from the first sample: {growth} MiB; over the second half: {late} MiB "
        f"({'flat' if report.flat else 'NOT flat'}); largest peak "
        f"{max(report.peak_rss_mb):.1f} MiB ({'under' if report.under_limit else 'NOT under'} "
        f"{LIMIT_MB:.0f})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the memory benchmark; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--samples", type=int, default=20, help="rounds, one sample each")
    parser.add_argument("--payload", type=int, default=100, help="bytes per job")
    parser.add_argument("--spread", help="run on this daemon (default: embedded)")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.samples < 1 or args.workers < 1:
        parser.error("--jobs, --samples and --workers must be at least 1")
    loop: Loop = args.loop
    report = anyio.run(
        lambda: measure(
            jobs=args.jobs,
            workers=args.workers,
            samples=args.samples,
            payload=args.payload,
            loop=loop,
            spread=args.spread,
        ),
        backend_options={"use_uvloop": use_uvloop(loop)},
    )
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        render(report, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
