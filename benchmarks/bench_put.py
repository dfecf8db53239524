"""Put benchmark: what ``Producer.put()`` costs a producer, in one process.

A member producer on the embedded daemon (in this process) with no consumer: every put
is admitted (``max_in_flight`` is raised above ``--jobs``) and held, so the figure is the
put alone, from the call to the receipt, with the sender idle behind it (the consumers'
gate is shut); each producer closes without waiting to send them. What a put does
beyond the envelope shows against two baselines measured in the same run:

* the job's envelope alone: :class:`~spreadq.queue.JobSpec` built for the same payload
  (its record head encoded), which every put must do;
* ``asyncio.Queue.put``: the cheapest awaitable hand-over of an object in the process.

With ``--many N`` it also times ``Producer.put_many()`` of the same jobs in groups of
``N`` (a job's share of a call), against the puts of the same run.

Each figure is the best of ``--repeat`` runs of ``--jobs`` puts (a fresh producer and
queue each).

    .venv/bin/python benchmarks/bench_put.py
    .venv/bin/python benchmarks/bench_put.py --jobs 100000 --uvloop
    .venv/bin/python benchmarks/bench_put.py --uvloop --many 16
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time

import anyio

from spreadq import Producer
from spreadq.daemon import serve
from spreadq.queue import JobSpec
from spreadq.settings import Settings
from spreadq.worker.runtime import tune_collector

__all__ = ["main"]

PAYLOAD = b"x" * 100
KIND = "noop"


async def put_seconds(address: str, queue: str, jobs: int, group: int = 0) -> float:
    """Seconds for ``jobs`` puts by kind name of a 100-byte payload, receipts kept: one
    ``put()`` each, or with ``group`` a ``put_many()`` of each ``group`` jobs (the last
    one smaller when ``group`` does not divide ``jobs``)."""
    settings = Settings(max_in_flight=jobs + 1)
    async with Producer(queue, address, settings=settings, close_timeout=0) as producer:
        receipts = []
        gc.collect()
        started = time.perf_counter()
        if group:
            for first in range(0, jobs, group):
                receipts += await producer.put_many(KIND, [PAYLOAD] * min(group, jobs - first))
        else:
            for _ in range(jobs):
                receipts.append(await producer.put(KIND, PAYLOAD))
        seconds = time.perf_counter() - started
        assert len(receipts) == jobs
        assert producer.statistics().put == jobs
        return seconds


def spec_seconds(jobs: int) -> float:
    """Seconds to build ``jobs`` job envelopes of the same shape."""
    started = time.perf_counter()
    for seq in range(jobs):
        JobSpec(seq, KIND, PAYLOAD)
    return time.perf_counter() - started


async def queue_seconds(jobs: int) -> float:
    """Seconds for ``jobs`` awaited puts into an unbounded ``asyncio.Queue``."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    started = time.perf_counter()
    for _ in range(jobs):
        await queue.put(PAYLOAD)
    seconds = time.perf_counter() - started
    assert queue.qsize() == jobs
    return seconds


async def measure(jobs: int, repeat: int, group: int = 0) -> tuple[float, float, float, float]:
    """The best seconds of a put, an envelope, a queue put and (``group`` > 0) a job of
    a ``put_many()`` of ``group``, each per job (0.0 for the last without a group)."""
    puts, specs, queued, many = [], [], [], []
    async with serve() as daemon:
        for run in range(repeat):
            puts.append(await put_seconds(daemon.address, f"bench-put-{run}", jobs))
            specs.append(spec_seconds(jobs))
            queued.append(await queue_seconds(jobs))
            if group:
                many.append(await put_seconds(daemon.address, f"bench-many-{run}", jobs, group))
    best_many = min(many) / jobs if many else 0.0
    return min(puts) / jobs, min(specs) / jobs, min(queued) / jobs, best_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument(
        "--many", type=int, default=0, metavar="N", help="also put_many() in groups of N"
    )
    args = parser.parse_args()
    if args.jobs < 1 or args.repeat < 1 or args.many < 0:
        parser.error("--jobs and --repeat must be at least 1, --many at least 0")
    tune_collector()  # as a producer program that puts at a high rate would
    put, spec, queued, many = anyio.run(
        measure, args.jobs, args.repeat, args.many, backend_options={"use_uvloop": args.uvloop}
    )
    print(
        f"{args.jobs:,} puts (best of {args.repeat}): put() {put * 1e6:.2f} us | "
        f"envelope alone {spec * 1e6:.2f} us (put/envelope x{put / spec:.1f}) | "
        f"asyncio.Queue.put {queued * 1e6:.2f} us (put/queue x{put / queued:.1f})"
    )
    if many:
        print(
            f"put_many() in groups of {args.many}: {many * 1e6:.2f} us a job "
            f"(put/put_many x{put / many:.2f})"
        )


if __name__ == "__main__":
    main()
