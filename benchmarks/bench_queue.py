"""Queue benchmark: 1 producer and 4 worker processes, against a raw flood on the same daemon.

What is measured, on each daemon (the embedded one, run in its own process, and a real
Spread daemon when ``SPREADQ_SPREAD_DAEMON`` names its binary):

* **raw flood**: one sender multicasts 100-byte messages through ``spreadq.connect`` to
  a group read by 4 receiver processes, which report their progress every 200 messages;
  the sender keeps at most 600 messages ahead of the slowest (the daemon's limit is
  1000). Messages per second delivered to every receiver.
* **queue, flood**: ``Producer.put()`` of 100-byte payloads as fast as flow control lets
  it, to 4 worker processes running ``App.run()`` with a no-op handler. Jobs per second
  from the first put to the last receipt, and each job's latency from ``put()`` to its
  receipt resolving (``Receipt.resolved_at``), under saturation.
* **queue, half load**: the same at half the flood rate, paced (open loop); p50/p99
  latency there is the figure to compare with other queues "at half load".

The overhead is reported as the ratio of the queue's jobs/s to the raw flood's
messages/s (jobs are packed several to a message, so it can pass 1).

    .venv/bin/python benchmarks/bench_queue.py              # about 30-60 s on 2 cores
    .venv/bin/python benchmarks/bench_queue.py --jobs 20000 --only embedded
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from spreadq.app import App
from spreadq.client import Connection, connect
from spreadq.logs import configure_logging
from spreadq.producer import Producer, Receipt
from spreadq.settings import Settings
from spreadq.wire.events import DataMessage, RegularMembership

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "interop"))

WORKERS = 4
PAYLOAD = 100
RAW_GROUP = "rawflood"
RAW_CONTROL = "rawflood-ctl"
ACK_EVERY = 200
WINDOW = 600
QUEUE = "bench"


# -- processes ------------------------------------------------------------------------------


def worker_main(address: str, ack_interval: float) -> None:
    """A worker process: the no-op handler, run until terminated."""
    app = App(QUEUE, address, plugins=False, settings=Settings(ack_interval=ack_interval))

    @app.handler("noop")
    async def noop(data: bytes) -> None:
        return None

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(app.run)


async def raw_receiver(address: str, count: int) -> None:
    """A raw flood receiver: read ``count`` messages, report progress every 200."""
    async with connect(address) as rx:
        await rx.join(RAW_GROUP)
        while not isinstance(await rx.receive(), RegularMembership):
            pass
        await rx.multicast(RAW_CONTROL, b"ready")
        seen = reported = 0
        while seen < count:
            for event in await rx.receive_batch():
                if type(event) is DataMessage:
                    seen += 1
            if seen - reported >= ACK_EVERY or seen >= count:
                reported = seen
                await rx.multicast(RAW_CONTROL, b"ack" + seen.to_bytes(8, "big"))
        await rx.flush()


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def processes(commands: list[list[str]]) -> Iterator[list[subprocess.Popen[bytes]]]:
    started = [spawn(*command) for command in commands]
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.terminate()
        for process in started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


# -- daemons ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def embedded_daemon() -> Iterator[str]:
    """The embedded daemon in a process of its own (``spreadq daemon``)."""
    port = free_port()
    command = [sys.executable, "-m", "spreadq", "daemon", "--port", str(port)]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:  # wait for the listener (startup only; no measurement depends on it)
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the embedded daemon did not start")
            time.sleep(0.05)
        yield f"{port}@127.0.0.1"
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def real_daemon() -> Iterator[str | None]:
    import real_daemon as launcher  # tests/interop/real_daemon.py

    binary = launcher.daemon_binary()
    if binary is None:
        yield None
        return
    with (
        tempfile.TemporaryDirectory() as tmp,
        launcher.start_real_daemon(binary, Path(tmp)) as daemon,
    ):
        yield str(daemon.tcp_address)


# -- the raw flood ----------------------------------------------------------------------------


async def raw_flood(address: str, count: int, log_level: str) -> float:
    """messages/s of one sender to 4 receiver processes, windowed by their reports."""
    payload = b"x" * PAYLOAD
    async with connect(address) as tx:
        await tx.join(RAW_CONTROL)
        receiver = ["--role", "raw-receiver", "--address", address, "--jobs", str(count)]
        commands = [[*receiver, "--log-level", log_level]]
        with processes(commands * WORKERS):
            progress: dict[str, int] = {}
            while len(progress) < WORKERS:
                event = await tx.receive()
                if isinstance(event, DataMessage) and event.data == b"ready":
                    progress[event.sender] = 0
            started = time.perf_counter()
            for i in range(count):
                while i - min(progress.values()) >= WINDOW:
                    await read_progress(tx, progress)
                await tx.multicast(RAW_GROUP, payload)
            while min(progress.values()) < count:
                await read_progress(tx, progress)
            return count / (time.perf_counter() - started)


async def read_progress(conn: Connection, progress: dict[str, int]) -> None:
    for event in await conn.receive_batch():
        if type(event) is DataMessage and event.data.startswith(b"ack"):
            seen = int.from_bytes(event.data[3:], "big")
            progress[event.sender] = max(progress.get(event.sender, 0), seen)


# -- the queue ------------------------------------------------------------------------------


@dataclass
class Run:
    rate: float
    p50_ms: float
    p99_ms: float
    resent: int


def summarise(put_at: list[float], receipts: list[Receipt[Any]], seconds: float) -> Run:
    latencies = sorted(
        (receipt.resolved_at or 0.0) - sent for sent, receipt in zip(put_at, receipts, strict=True)
    )
    cut = statistics.quantiles(latencies, n=100, method="inclusive")
    return Run(len(receipts) / seconds, cut[49] * 1e3, cut[98] * 1e3, 0)


async def queue_run(producer: Producer, count: int, rate: float | None) -> Run:
    """Put ``count`` jobs (paced at ``rate`` jobs/s when given) and wait for all receipts."""
    payload = os.urandom(PAYLOAD)
    put_at: list[float] = []
    receipts: list[Receipt[Any]] = []
    clock = time.monotonic
    started = clock()
    for i in range(count):
        if rate is not None:
            due = started + i / rate
            ahead = due - clock()
            if ahead > 0.001:
                await anyio.sleep(ahead)
        put_at.append(clock())
        receipts.append(await producer.put("noop", payload))
    for receipt in receipts:
        await receipt.wait()
    seconds = max(r.resolved_at or 0.0 for r in receipts) - started
    return summarise(put_at, receipts, seconds)


async def queue_bench(
    address: str, count: int, log_level: str, ack_interval: float
) -> tuple[Run, Run]:
    settings = Settings()
    async with Producer(QUEUE, address, settings=settings) as producer:
        worker = ["--role", "worker", "--address", address, "--log-level", log_level]
        worker += ["--ack-interval", str(ack_interval)]
        with processes([worker] * WORKERS):
            with anyio.fail_after(60):
                await producer.wait_for_consumers(WORKERS)
            await queue_run(producer, min(count, 5_000), None)  # warm-up
            flood = await queue_run(producer, count, None)
            half = await queue_run(producer, count // 2, flood.rate / 2)
            flood.resent = half.resent = producer.statistics().resent
    return flood, half


# -- main -------------------------------------------------------------------------------------


async def bench(address: str, name: str, args: argparse.Namespace) -> None:
    raw_rate = await raw_flood(address, args.raw, args.log_level)
    flood, half = await queue_bench(address, args.jobs, args.log_level, args.ack_interval)
    print(
        f"{name:>10}  raw {raw_rate:>8,.0f} msg/s | queue {flood.rate:>8,.0f} jobs/s"
        f" (x{flood.rate / raw_rate:.2f}), flood p50 {flood.p50_ms:.1f} ms p99"
        f" {flood.p99_ms:.1f} ms | at {half.rate:,.0f} jobs/s p50 {half.p50_ms:.2f} ms"
        f" p99 {half.p99_ms:.2f} ms | re-sent {flood.resent}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40_000, help="jobs in the flood run")
    parser.add_argument("--raw", type=int, default=40_000, help="messages in the raw flood")
    parser.add_argument("--only", choices=["embedded", "real"])
    parser.add_argument(
        "--role",
        choices=["bench", "worker", "raw-receiver"],
        default="bench",
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--log-level", default="warning", help="for every process")
    parser.add_argument(
        "--ack-interval",
        type=float,
        default=Settings().ack_interval,
        help="the workers' ACK interval (seconds): latency against ACK traffic",
    )
    args = parser.parse_args()
    configure_logging(args.log_level)
    if args.role == "worker":
        worker_main(args.address, args.ack_interval)
        return
    if args.role == "raw-receiver":
        anyio.run(raw_receiver, args.address, args.jobs)
        return
    print(
        f"1 producer, {WORKERS} worker processes, {PAYLOAD} B payloads, no-op handler,"
        f" ACK interval {args.ack_interval * 1e3:g} ms"
    )
    if args.only != "real":
        with embedded_daemon() as address:
            anyio.run(bench, address, "embedded", args)
    if args.only != "embedded":
        with real_daemon() as address:
            if address is None:
                print("      real  skipped: SPREADQ_SPREAD_DAEMON is not set")
            else:
                anyio.run(bench, address, "real 5.0.1", args)


if __name__ == "__main__":
    main()
