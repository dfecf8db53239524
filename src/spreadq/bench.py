"""The queue benchmark behind ``spreadq bench`` and ``benchmarks/bench_queue.py``.

Theory of operation
-------------------
One producer (this process) and ``workers`` worker processes share a daemon: the
embedded one, run in a process of its own (``spreadq bench --role daemon``), or any
daemon given by address (a real Spread daemon). Three figures come out of one run:

* **raw flood**: one sender multicasts ``payload``-byte messages through
  :func:`spreadq.connect` to a group read by ``workers`` receiver processes, which
  report their progress every 200 messages; the sender keeps at most 600 messages
  ahead of the slowest (the daemon drops a client 1000 behind). Messages per second
  delivered to every receiver: what the daemon and the client library can move.
* **queue, flood**: :meth:`~spreadq.Producer.put` of ``payload``-byte jobs as fast as
  flow control lets it, to ``workers`` processes running :meth:`~spreadq.App.run`
  with a no-op handler. Jobs per second from the first put to the last receipt, and
  each job's latency from ``put()`` to its receipt resolving, under saturation.
* **queue, half load**: the same at half the flood's rate, paced (open loop); its
  p50/p99 are the latencies to compare with other queues "at half load".

The *ratio* is the queue's jobs/s over the raw flood's messages/s, measured on the
same daemon in the same run. Jobs are packed several to a message, so it can pass 1.

Child processes are ``python -m spreadq bench --role ...`` (hidden options of the same
command), so a benchmark needs nothing but an installed spreadq.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Literal

import anyio
import anyio.abc
from pydantic import BaseModel, ConfigDict

from spreadq.app import App
from spreadq.client import Connection, connect
from spreadq.daemon import Daemon, run_forever
from spreadq.errors import ConfigurationError
from spreadq.eventloop import Loop, use_uvloop
from spreadq.producer import Producer, Receipt
from spreadq.settings import Settings
from spreadq.wire.events import DataMessage, RegularMembership

__all__ = [
    "ACK_EVERY",
    "QUEUE",
    "WINDOW",
    "BenchReport",
    "QueueFigures",
    "Role",
    "embedded_daemon",
    "queue_run",
    "raw_flood",
    "run_bench",
    "run_role",
]

QUEUE: Final = "spreadq-bench"
"""The queue the benchmark's producer and workers use."""
RAW_GROUP: Final = "spreadq-rawflood"
RAW_CONTROL: Final = "spreadq-rawflood-ctl"
ACK_EVERY: Final = 200
"""Raw receivers report their progress every this many messages..."""
WINDOW: Final = 600
"""...and the raw sender keeps at most this many messages ahead of the slowest."""
START_WITHIN: Final = 60.0
"""Seconds the child processes have to start and report for duty."""

Role = Literal["daemon", "worker", "raw-receiver"]
"""The child processes: the embedded daemon, a worker, a raw flood receiver."""


class QueueFigures(BaseModel):
    """One queue run: its rate and its latencies from ``put()`` to the receipt."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jobs: int
    jobs_per_s: float
    p50_ms: float
    p99_ms: float


class BenchReport(BaseModel):
    """What one benchmark run measured on one daemon (``spreadq bench --json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    daemon: str
    address: str
    workers: int
    payload_bytes: int
    uvloop: bool
    raw_messages: int
    raw_msgs_per_s: float
    flood: QueueFigures
    half_load: QueueFigures
    ratio: float
    """``flood.jobs_per_s / raw_msgs_per_s``."""
    resent: int
    """Jobs the producer sent again (after a consumer left, for instance)."""


# --- child processes ------------------------------------------------------------------


def _command(role: Role, loop: Loop, log_level: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "spreadq",
        "--log-level",
        log_level,
        "bench",
        "--role",
        role,
        "--loop",
        loop,
        *args,
    ]


@asynccontextmanager
async def _processes(commands: Sequence[list[str]]) -> AsyncIterator[list[anyio.abc.Process]]:
    """Start ``commands``; on the way out SIGTERM them (workers drain), then kill."""
    started: list[anyio.abc.Process] = []
    try:
        for command in commands:
            process = await anyio.open_process(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=None
            )
            started.append(process)
        yield started
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(started)


async def _stop(processes: Sequence[anyio.abc.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.terminate()
    with anyio.move_on_after(10):
        for process in processes:
            await process.wait()
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()


@asynccontextmanager
async def embedded_daemon(loop: Loop = "auto", log_level: str = "warning") -> AsyncIterator[str]:
    """Run the embedded daemon in a process of its own; yield its address.

    Raises:
        ConfigurationError: the daemon process did not start.
    """
    command = _command("daemon", loop, log_level)
    process = await anyio.open_process(command, stdin=subprocess.DEVNULL, stderr=None)
    try:
        assert process.stdout is not None
        line = b""
        with anyio.move_on_after(START_WITHIN):
            async for chunk in process.stdout:
                line += chunk
                if b"\n" in line:
                    break
        address = line.split(b"\n", 1)[0].decode().strip()
        if not address:
            raise ConfigurationError("the embedded daemon process did not start")
        yield address
    finally:
        with anyio.CancelScope(shield=True):
            await _stop([process])


def run_role(
    role: Role, address: str | None, *, count: int, ack_interval: float, loop: Loop
) -> None:
    """Run one child process of the benchmark (``spreadq bench --role ...``).

    Raises:
        ConfigurationError: a role other than ``daemon`` without an address.
    """
    options = {"use_uvloop": use_uvloop(loop)}
    if role == "daemon":
        anyio.run(_serve_daemon, backend_options=options)
        return
    if address is None:
        raise ConfigurationError(f"the {role} role needs --address")
    if role == "worker":
        app = App(QUEUE, address, plugins=False, settings=Settings(ack_interval=ack_interval))

        @app.handler("noop")
        async def noop(data: bytes) -> None:
            return None

        with contextlib.suppress(KeyboardInterrupt):
            anyio.run(app.run, backend_options=options)
        return
    anyio.run(_raw_receiver, address, count, backend_options=options)


async def _serve_daemon() -> None:
    def ready(daemon: Daemon) -> None:
        print(daemon.address, flush=True)  # the parent reads this line

    with contextlib.suppress(anyio.get_cancelled_exc_class()):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_stop_on_signal, tasks.cancel_scope)
            await run_forever(port=0, ready=ready)


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def _raw_receiver(address: str, count: int) -> None:
    """Read ``count`` messages of the raw flood; report progress every 200."""
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


# --- the measurements -----------------------------------------------------------------


async def raw_flood(
    address: str,
    count: int,
    *,
    receivers: int,
    payload: int,
    loop: Loop = "auto",
    log_level: str = "warning",
) -> float:
    """Messages per second of one sender to ``receivers`` processes, windowed.

    Raises:
        TimeoutError: the receivers did not report for duty in time.
        ConnectError: the daemon cannot be reached.
        ConnectionLost: the daemon went away.
    """
    data = b"x" * payload
    receiver = _command("raw-receiver", loop, log_level, "--address", address)
    receiver += ["--count", str(count)]
    async with connect(address) as tx:
        await tx.join(RAW_CONTROL)
        async with _processes([receiver] * receivers):
            progress: dict[str, int] = {}
            with anyio.fail_after(START_WITHIN):
                while len(progress) < receivers:
                    event = await tx.receive()
                    if isinstance(event, DataMessage) and event.data == b"ready":
                        progress[event.sender] = 0
            started = time.perf_counter()
            for i in range(count):
                while i - min(progress.values()) >= WINDOW:
                    await _read_progress(tx, progress)
                await tx.multicast(RAW_GROUP, data)
            while min(progress.values()) < count:
                await _read_progress(tx, progress)
            return count / (time.perf_counter() - started)


async def _read_progress(conn: Connection, progress: dict[str, int]) -> None:
    for event in await conn.receive_batch():
        if type(event) is DataMessage and event.data.startswith(b"ack"):
            seen = int.from_bytes(event.data[3:], "big")
            progress[event.sender] = max(progress.get(event.sender, 0), seen)


async def queue_run(
    producer: Producer, count: int, payload: int, rate: float | None = None
) -> QueueFigures:
    """Put ``count`` jobs (paced at ``rate`` jobs/s when given) and wait for every receipt.

    Raises:
        ConnectionLost: the producer gave up on its daemon.
    """
    data = os.urandom(payload)
    put_at: list[float] = []
    receipts: list[Receipt[Any]] = []
    clock = time.monotonic
    started = clock()
    for i in range(count):
        if rate is not None:
            ahead = started + i / rate - clock()
            if ahead > 0.001:
                await anyio.sleep(ahead)
        put_at.append(clock())
        receipts.append(await producer.put("noop", data))
    for receipt in receipts:
        await receipt.wait()
    seconds = max(r.resolved_at or 0.0 for r in receipts) - started
    latencies = sorted(
        (r.resolved_at or 0.0) - sent for sent, r in zip(put_at, receipts, strict=True)
    )
    if len(latencies) < 2:
        latencies = latencies * 2
    cut = statistics.quantiles(latencies, n=100, method="inclusive")
    return QueueFigures(
        jobs=count, jobs_per_s=count / seconds, p50_ms=cut[49] * 1e3, p99_ms=cut[98] * 1e3
    )


async def run_bench(
    address: str,
    *,
    daemon: str,
    workers: int = 4,
    jobs: int = 20_000,
    raw: int = 20_000,
    payload: int = 100,
    ack_interval: float | None = None,
    loop: Loop = "auto",
    log_level: str = "warning",
    progress: Callable[[str], object] | None = None,
) -> BenchReport:
    """Measure the raw flood, then the queue (flood and half load) on ``address``.

    Args:
        address: the daemon to measure on.
        daemon: its name in the report (``embedded``, ``real 5.0.1`` ...).
        workers: worker processes (and raw receivers).
        jobs: jobs in the flood run (the half-load run puts half as many, after a
            warm-up of up to 2,000).
        raw: messages in the raw flood.
        payload: bytes per job and per raw message.
        ack_interval: the workers' ``Settings.ack_interval``; the default's when None.
        loop: the event loop of the child processes (this process runs on its own).
        log_level: for the child processes.
        progress: called with a short note as each phase starts.

    Raises:
        TimeoutError: the child processes did not report for duty in time.
        ConnectError: the daemon cannot be reached.
    """
    note = progress if progress is not None else (lambda _: None)
    interval = Settings().ack_interval if ack_interval is None else ack_interval
    note(f"raw flood: {raw:,} messages to {workers} receivers")
    raw_rate = await raw_flood(
        address, raw, receivers=workers, payload=payload, loop=loop, log_level=log_level
    )
    worker = _command("worker", loop, log_level, "--address", address)
    worker += ["--ack-interval", str(interval)]
    async with Producer(QUEUE, address) as producer, _processes([worker] * workers):
        note(f"queue: waiting for {workers} workers")
        with anyio.fail_after(START_WITHIN):
            await producer.wait_for_consumers(workers)
        await queue_run(producer, min(jobs, 2_000), payload)  # warm-up
        note(f"queue flood: {jobs:,} jobs")
        flood = await queue_run(producer, jobs, payload)
        note(f"queue at half load: {jobs // 2:,} jobs at {flood.jobs_per_s / 2:,.0f} jobs/s")
        half = await queue_run(producer, max(1, jobs // 2), payload, flood.jobs_per_s / 2)
        resent = producer.statistics().resent
    return BenchReport(
        daemon=daemon,
        address=address,
        workers=workers,
        payload_bytes=payload,
        uvloop=use_uvloop(loop),
        raw_messages=raw,
        raw_msgs_per_s=raw_rate,
        flood=flood,
        half_load=half,
        ratio=flood.jobs_per_s / raw_rate,
        resent=resent,
    )
