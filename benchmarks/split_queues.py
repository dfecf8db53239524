"""One queue of many workers against the same workers split into queues of their own.

Every worker of a queue is a replica of its table and reads every message, so the
question a deployment on a small machine asks is how much of a worker's cost is that
replication and how much is being one more process. This script measures both shapes in
one run, with one producer process paced at ``--rate`` (open loop, as ``spreadq bench``
paces its second run) and a no-op handler that returns its start time:

* **one queue**: ``--queues`` x ``--workers`` worker processes on a single queue;
* **split**: ``--queues`` queues of ``--workers`` workers each; the producer puts
  ``--run`` consecutive jobs on one queue, then the next ``--run`` on the next.

For each it prints jobs/s, the one-way latency (put to handler start) at p50, p99 and
p999, and the CPU microseconds a job of the workers together and of the producer (from
``/proc``, Linux only), with the split shape's ratio to the single queue.

    .venv/bin/python benchmarks/split_queues.py --spread 4803@127.0.0.1
    .venv/bin/python benchmarks/split_queues.py --jobs 400 --rate 400 --loop asyncio  # a smoke
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Final, TypedDict, cast

import anyio

from spreadq.bench.procs import processes
from spreadq.bench.report import Latency, latency
from spreadq.bench.run import cpu_snapshot, cpu_spent, embedded_daemon
from spreadq.eventloop import Loop, use_uvloop
from spreadq.producer import Producer
from spreadq.worker.app import App
from spreadq.worker.runtime import tune_collector

__all__ = ["Shape", "main", "measure"]

STAMP: Final = struct.Struct("<d")
"""What the handler returns: the wall-clock time it started."""
NOOP: Final = "noop"
WARM_UP: Final = 200
"""Jobs each queue runs before the measured run."""
READY_WITHIN: Final = 60.0
"""Seconds the workers have to join their queues."""
SCRIPT: Final = os.path.abspath(__file__)
"""This script, which the worker processes run too (``--role-worker``)."""


def _worker(address: str, queue: str, loop: str) -> None:
    app = App(queue, address, plugins=False)

    @app.handler(NOOP)
    async def noop(data: bytes) -> bytes:
        return STAMP.pack(time.time())

    anyio.run(app.run, backend_options={"use_uvloop": use_uvloop(cast(Loop, loop))})


class Shape(TypedDict):
    """One shape's figures."""

    queues: int
    workers: int
    """Worker processes on each queue."""
    jobs_per_s: float
    one_way: dict[str, object]
    """A :class:`~spreadq.bench.report.Latency`, dumped."""
    workers_us_per_job: float | None
    """CPU of all the workers together (None without ``/proc``)."""
    producer_us_per_job: float | None


async def measure(
    address: str, queues: int, workers: int, rate: float, jobs: int, run: int, loop: Loop
) -> Shape:
    """Start ``queues`` x ``workers`` worker processes, put ``jobs`` jobs at ``rate``
    jobs/s, ``run`` at a time on each queue in turn, and return the figures.

    Raises:
        TimeoutError: the workers did not join within :data:`READY_WITHIN` seconds.
    """
    names = [f"split{os.getpid()}-{queues}x{workers}-{n}" for n in range(queues)]
    commands = [
        [sys.executable, SCRIPT, "--role-worker", address, name, loop]
        for name in names
        for _ in range(workers)
    ]
    data = os.urandom(100)
    async with processes(commands) as started, AsyncExitStack() as stack:
        producers = [
            await stack.enter_async_context(Producer(queue=name, spread=address, plugins=False))
            for name in names
        ]
        with anyio.fail_after(READY_WITHIN):
            for producer in producers:
                await producer.wait_for_consumers(workers)
                warm = [await producer.put(NOOP, data) for _ in range(WARM_UP)]
                for receipt in warm:
                    await receipt.wait()
        pids = [process.pid for process in started]
        before = cpu_snapshot(pids, None)
        put_wall = [0.0] * jobs
        receipts = []
        clock = time.monotonic
        begun = clock()
        for i in range(jobs):
            ahead = begun + i / rate - clock()
            if ahead > 0.001:
                await anyio.sleep(ahead)
            put_wall[i] = time.time()
            receipts.append(await producers[(i // run) % queues].put(NOOP, data))
        for receipt in receipts:
            await receipt.wait()
        seconds = clock() - begun
        after = cpu_snapshot(pids, None)
    one_way = [
        STAMP.unpack(receipt.result_nowait())[0] - sent
        for receipt, sent in zip(receipts, put_wall, strict=True)
    ]
    cpu = cpu_spent(before, after)
    return Shape(
        queues=queues,
        workers=workers,
        jobs_per_s=jobs / seconds,
        one_way=latency(one_way).model_dump(),
        workers_us_per_job=None if cpu is None else sum(cpu.workers_s) / jobs * 1e6,
        producer_us_per_job=None if cpu is None else cpu.producer_s / jobs * 1e6,
    )


def _line(shape: Shape, base: Shape | None) -> str:
    lat = Latency.model_validate(shape["one_way"])
    text = (
        f"{shape['queues']} queue(s) x {shape['workers']} worker(s): "
        f"{shape['jobs_per_s']:,.0f} jobs/s, one-way p50 {lat.p50_ms:.2f} "
        f"p99 {lat.p99_ms:.2f} p999 {lat.p999_ms:.2f} ms"
    )
    for value, label in (
        (shape["workers_us_per_job"], "workers"),
        (shape["producer_us_per_job"], "producer"),
    ):
        if value is not None:
            text += f", {label} {value:.1f} us/job"
    if base is not None:
        base_lat = Latency.model_validate(base["one_way"])
        text += f" (p99 x{lat.p99_ms / base_lat.p99_ms:.2f} of one queue"
        ours, theirs = shape["workers_us_per_job"], base["workers_us_per_job"]
        if ours is not None and theirs is not None:
            text += f", workers' CPU x{ours / theirs:.2f}"
        text += ")"
    return text


async def _both(args: argparse.Namespace) -> list[Shape]:
    async with AsyncExitStack() as stack:
        address = args.spread
        if address is None:
            address = (await stack.enter_async_context(embedded_daemon(args.loop))).address
        shapes: list[Shape] = []
        for queues, workers in ((1, args.queues * args.workers), (args.queues, args.workers)):
            shapes.append(
                await measure(address, queues, workers, args.rate, args.jobs, args.run, args.loop)
            )
        return shapes


def main(argv: Sequence[str] | None = None) -> int:
    """Measure both shapes; return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--role-worker"]:
        _worker(*argv[1:4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spread", help="a running daemon (default: the embedded one)")
    parser.add_argument("--queues", type=int, default=4, help="queues in the split shape")
    parser.add_argument("--workers", type=int, default=1, help="workers per queue when split")
    parser.add_argument("--rate", type=float, default=12_000.0, help="jobs/s the producer puts")
    parser.add_argument("--jobs", type=int, default=30_000, help="jobs in each measured run")
    parser.add_argument("--run", type=int, default=33, help="consecutive jobs on one queue")
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    for name in ("queues", "workers", "jobs", "run"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.rate <= 0:
        parser.error("--rate must be positive")
    tune_collector()  # this process is the producer: tuned as spreadq bench's
    single, split = anyio.run(_both, args, backend_options={"use_uvloop": use_uvloop(args.loop)})
    if args.json:
        print(json.dumps({"one_queue": single, "split": split}, indent=2))
    else:
        print(_line(single, None))
        print(_line(split, single))
    return 0


if __name__ == "__main__":
    sys.exit(main())
