"""The measurements: the raw flood, the queue runs, and one whole benchmark run.

See :mod:`spreadq.bench` for what each figure means.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import cache
from typing import Final

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from spreadq.bench.procs import (
    command,
    cpu_seconds,
    memory,
    processes,
    schedstat,
)
from spreadq.bench.report import BenchReport, Cpu, QueueFigures, Wire, delivered_per_job, latency
from spreadq.bench.roles import NOOP, QUEUE, RAW_CONTROL, RAW_GROUP, STAMP
from spreadq.client import Connection, connect
from spreadq.errors import ConfigurationError
from spreadq.eventloop import Loop, use_uvloop
from spreadq.producer import Producer, Receipt
from spreadq.settings import Settings
from spreadq.wire.events import DataMessage

__all__ = [
    "START_WITHIN",
    "WINDOW",
    "CpuSnapshot",
    "Spawned",
    "Workers",
    "cpu_snapshot",
    "cpu_spent",
    "embedded_daemon",
    "per_slice",
    "queue_run",
    "raw_flood",
    "run_bench",
    "sched_snapshot",
    "sched_spent",
    "worker_processes",
]

WINDOW: Final = 600
"""The raw sender keeps at most this many messages ahead of the slowest receiver."""
START_WITHIN: Final = 60.0
"""Seconds the child processes have to start and report for duty."""
REPORT_WITHIN: Final = 10.0
"""Seconds a worker has to answer a request for its message count."""


@dataclass(frozen=True, slots=True)
class Spawned:
    """A daemon the benchmark started: where it listens, and its process id."""

    address: str
    pid: int


@asynccontextmanager
async def embedded_daemon(
    loop: Loop = "auto", log_level: str = "warning"
) -> AsyncIterator[Spawned]:
    """Run the embedded daemon in a process of its own; yield its address and pid.

    Raises:
        ConfigurationError: the daemon process did not start.
    """
    async with processes([command("daemon", loop, log_level)], stdout=True) as (process,):
        assert process.stdout is not None
        lines = BufferedByteReceiveStream(process.stdout)
        address = b""
        # a process that exits first (EndOfStream, IncompleteRead) did not start either
        with (
            anyio.move_on_after(START_WITHIN),
            contextlib.suppress(anyio.EndOfStream, anyio.IncompleteRead),
        ):
            address = await lines.receive_until(b"\n", 1024)
        if not address.strip():
            raise ConfigurationError("the embedded daemon process did not start")
        yield Spawned(address.decode().strip(), process.pid)


class Workers:
    """Running bench worker processes (see :func:`worker_processes`)."""

    def __init__(self, started: Sequence[anyio.abc.Process]) -> None:
        self._processes = tuple(started)
        self._lines: list[BufferedByteReceiveStream] = []
        for process in started:
            assert process.stdout is not None
            self._lines.append(BufferedByteReceiveStream(process.stdout))

    @property
    def pids(self) -> tuple[int, ...]:
        """The worker processes' ids."""
        return tuple(process.pid for process in self._processes)

    def peak_rss_mb(self) -> tuple[float, ...] | None:
        """Each worker's peak resident set so far (MiB); None without ``/proc``."""
        found = [memory(pid) for pid in self.pids]
        if any(m is None for m in found):
            return None
        return tuple(m.peak_mb for m in found if m is not None)

    def rss_mb(self) -> tuple[float, ...] | None:
        """Each worker's resident set now (MiB); None without ``/proc``."""
        found = [memory(pid) for pid in self.pids]
        if any(m is None for m in found):
            return None
        return tuple(m.rss_mb for m in found if m is not None)

    async def messages(self) -> tuple[int, int]:
        """How many Spread messages the workers have multicast so far, together, and how
        many of those went to private groups only (NOTICEs).

        Raises:
            ChildProcessError: a worker exited (or wrote something else).
            TimeoutError: a worker did not answer within 10 seconds.
        """
        for process in self._processes:
            if process.returncode is None:
                process.send_signal(signal.SIGUSR1)
        total = private = 0
        with anyio.fail_after(REPORT_WITHIN):
            for process, lines in zip(self._processes, self._lines, strict=True):
                try:
                    sent, to_private = map(int, (await lines.receive_until(b"\n", 64)).split())
                except (anyio.EndOfStream, anyio.IncompleteRead, ValueError):
                    raise ChildProcessError(
                        f"bench worker {process.pid} exited or did not report its message count"
                    ) from None
                total += sent
                private += to_private
        return total, private


@asynccontextmanager
async def worker_processes(
    address: str,
    count: int,
    *,
    ack_interval: float | None = None,
    plugins: bool = False,
    loop: Loop = "auto",
    log_level: str = "warning",
    rule: str = "round_robin",
) -> AsyncIterator[Workers]:
    """Start ``count`` bench worker processes on ``address``; stop them on the way out
    (with ``plugins``, each loads the installed plugins and serves metrics; ``rule``
    names their ownership rule).

    The caller waits for them to join (``Producer.wait_for_consumers``).

    Raises:
        OSError: a process could not be started.
    """
    interval = Settings().ack_interval if ack_interval is None else ack_interval
    worker = command("worker", loop, log_level, "--address", address)
    worker += ["--ack-interval", str(interval), "--rule", rule]
    if plugins:
        worker.append("--plugins")
    async with processes([worker] * count, stdout=True) as started:
        yield Workers(started)


# --- the raw flood ------------------------------------------------------------------------


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
    receiver = command("raw-receiver", loop, log_level, "--address", address)
    receiver += ["--count", str(count)]
    async with connect(address) as tx:
        await tx.join(RAW_CONTROL)
        async with processes([receiver] * receivers):
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


# --- the queue ----------------------------------------------------------------------------


async def queue_run(
    producer: Producer,
    workers: Workers,
    count: int,
    payload: int,
    rate: float | None = None,
    *,
    smooth: bool = False,
    daemon_pid: int | None = None,
    raw_rate: float | None = None,
) -> QueueFigures:
    """Put ``count`` jobs (paced at ``rate`` jobs/s when given) and wait for every receipt.

    Paced, the jobs due are put at once and the loop then sleeps until the next is due,
    when that is over a millisecond away; ``smooth``: whenever it is ahead at all, so
    that (on uvloop, whose timers under a millisecond fire at the next turn) each job
    is put in a turn of its own as it comes due, as a server putting a job per request
    would, and as ``benchmarks/compare_redis.py`` sends Redis its jobs.

    ``workers`` must be bench workers (:func:`worker_processes`): their handler reports
    its start time, and they count their messages. CPU seconds are those of this
    process, each worker and the daemon when ``daemon_pid`` is given.

    Raises:
        ConnectionLost: the producer gave up on its daemon.
        JobFailed: a job failed (the no-op handler does not fail).
        ChildProcessError: a worker exited.
        TimeoutError: a worker did not report its message count in time.
    """
    data = os.urandom(payload)
    put_wall = [0.0] * count
    put_at = [0.0] * count
    done_at = [0.0] * count
    results: list[bytes] = [b""] * count  # each a handler's start time, packed
    # Only the receipts still pending are kept: the figures of those that resolved go
    # into lists of floats and bytes, which the cyclic collector never walks. Holding
    # every receipt to the end gave this process's collector ten thousand survivors to
    # walk in each young pass and a hundred thousand in each middle one: at 20,000
    # jobs/s, 2-5 ms every half second and 40-45 ms every five, stalls the benchmark
    # then counted in the queue's tail.
    pending: deque[tuple[int, Receipt[bytes]]] = deque()
    gc.collect()  # what the run before left to the collector is not this run's to pay
    messages_before = producer.statistics().messages
    worker_messages_before, private_before = await workers.messages()
    cpu_before = cpu_snapshot(workers.pids, daemon_pid)
    sched_before = sched_snapshot(workers.pids, daemon_pid)
    clock, wall = time.monotonic, time.time
    early = 0.0 if smooth else 0.001  # how far ahead of its time a job may be put
    started = clock()
    for i in range(count):
        if rate is not None:
            ahead = started + i / rate - clock()
            if ahead > early:
                await anyio.sleep(ahead)
        put_wall[i] = wall()
        put_at[i] = clock()
        pending.append((i, await producer.put(NOOP, data)))
        if not i % _HARVEST_EVERY:
            _harvest(pending, done_at, results)
    for _, receipt in pending:
        await receipt.wait()
    _harvest(pending, done_at, results)
    cpu_after = cpu_snapshot(workers.pids, daemon_pid)
    sched_after = sched_snapshot(workers.pids, daemon_pid)
    producer_messages = producer.statistics().messages - messages_before
    worker_messages, private = await workers.messages()
    worker_messages -= worker_messages_before
    private -= private_before
    seconds = max(done_at) - started
    round_trip = [done - sent for sent, done in zip(put_at, done_at, strict=True)]
    one_way = [STAMP.unpack(r)[0] - sent for sent, r in zip(put_wall, results, strict=True)]
    waited, mean_slice = sched_spent(sched_before, sched_after)
    sent_per_job = (producer_messages + worker_messages) / count
    return QueueFigures(
        jobs=count,
        seconds=seconds,
        jobs_per_s=count / seconds,
        one_way=latency(one_way),
        round_trip=latency(round_trip),
        cpu=cpu_spent(cpu_before, cpu_after),
        waited=waited,
        mean_slice=mean_slice,
        wire=Wire(
            producer_messages=producer_messages,
            worker_messages=worker_messages,
            worker_private_messages=private,
            sent_per_job=sent_per_job,
            delivered_per_job=delivered_per_job(
                producer_messages, worker_messages, len(workers.pids), count, private=private
            ),
        ),
        ratio_to_raw=None if raw_rate is None else count / seconds / raw_rate,
    )


_HARVEST_EVERY: Final = 256
"""Puts between two looks for resolved receipts in :func:`queue_run`."""


def _harvest(
    pending: deque[tuple[int, Receipt[bytes]]], done_at: list[float], results: list[bytes]
) -> None:
    """Record, and forget, the receipts at the head of ``pending`` that resolved: when
    each did, and its result (the no-op handler's start time).

    Raises:
        JobFailed: a job failed (the no-op handler does not fail).
    """
    while pending:
        index, receipt = pending[0]
        resolved_at = receipt.resolved_at  # set once the outcome is known
        if resolved_at is None:
            return
        pending.popleft()
        done_at[index] = resolved_at
        results[index] = receipt.result_nowait()


CpuSnapshot = tuple[float | None, tuple[float, ...] | None, float | None]
"""CPU seconds so far of this process, of each worker (None if any is unreadable) and
of the daemon (None when it is not ours or unreadable): what :func:`cpu_spent` takes."""


def cpu_snapshot(
    worker_pids: Sequence[int],
    daemon_pid: int | None,
    *,
    read: Callable[[int | None], float | None] = cpu_seconds,
) -> CpuSnapshot:
    """This process's, the workers' and the daemon's CPU seconds so far (from ``/proc``),
    or what else ``read`` reads of a process (:func:`~spreadq.bench.procs.wait_seconds`:
    the seconds each waited for a CPU)."""
    seconds = [read(pid) for pid in worker_pids]
    workers = None if None in seconds else tuple(s for s in seconds if s is not None)
    daemon = None if daemon_pid is None else read(daemon_pid)
    return read(None), workers, daemon


def cpu_spent(before: CpuSnapshot, after: CpuSnapshot) -> Cpu | None:
    """The CPU each process spent between two snapshots; None where the producer's or a
    worker's could not be read (the daemon's alone is then ``None``)."""
    producer0, workers0, daemon0 = before
    producer1, workers1, daemon1 = after
    if producer0 is None or producer1 is None or workers0 is None or workers1 is None:
        return None
    return Cpu(
        producer_s=producer1 - producer0,
        workers_s=tuple(b - a for a, b in zip(workers0, workers1, strict=True)),
        daemon_s=None if daemon0 is None or daemon1 is None else daemon1 - daemon0,
    )


SchedSnapshot = tuple[CpuSnapshot, CpuSnapshot, CpuSnapshot]
"""Each process's seconds on a CPU, seconds ready to run and waiting for one, and time
slices run so far, as the scheduler counts them: three snapshots in the shape of
:func:`cpu_snapshot`'s."""


def sched_snapshot(worker_pids: Sequence[int], daemon_pid: int | None) -> SchedSnapshot:
    """The scheduler's three counts of this process, the workers and the daemon so far,
    each process's ``/proc/<pid>/schedstat`` read once
    (:func:`~spreadq.bench.procs.schedstat`)."""
    counts = cache(schedstat)

    def figure(index: int) -> Callable[[int | None], float | None]:
        def read(pid: int | None) -> float | None:
            count = counts(pid)
            return None if count is None else float(count[index])

        return read

    on_cpu, waiting, slices = (
        cpu_snapshot(worker_pids, daemon_pid, read=figure(i)) for i in range(3)
    )
    return on_cpu, waiting, slices


def sched_spent(before: SchedSnapshot, after: SchedSnapshot) -> tuple[Cpu | None, Cpu | None]:
    """Between two :func:`sched_snapshot`: the seconds each process waited for a CPU
    (as :attr:`QueueFigures.waited`), and the seconds it ran each time it was switched in,
    on average (as :attr:`QueueFigures.mean_slice`, :func:`per_slice`)."""
    waited = cpu_spent(before[1], after[1])
    return waited, per_slice(cpu_spent(before[0], after[0]), cpu_spent(before[2], after[2]))


def per_slice(ran: Cpu | None, slices: Cpu | None) -> Cpu | None:
    """The mean seconds each process ran each time it was switched in: the seconds it
    ran over a run divided by its slices (both :func:`cpu_spent` of a
    :func:`sched_snapshot` figure); 0 for a process that never ran. None where either
    is."""
    if ran is None or slices is None:
        return None

    def mean(seconds: float, count: float) -> float:
        return seconds / count if count > 0 else 0.0

    daemon = None
    if ran.daemon_s is not None and slices.daemon_s is not None:
        daemon = mean(ran.daemon_s, slices.daemon_s)
    return Cpu(
        producer_s=mean(ran.producer_s, slices.producer_s),
        workers_s=tuple(map(mean, ran.workers_s, slices.workers_s)),
        daemon_s=daemon,
    )


async def run_bench(
    address: str,
    *,
    daemon: str,
    daemon_pid: int | None = None,
    workers: int = 4,
    jobs: int = 20_000,
    raw: int = 20_000,
    payload: int = 100,
    ack_interval: float | None = None,
    plugins: bool = False,
    loop: Loop = "auto",
    log_level: str = "warning",
    progress: Callable[[str], object] | None = None,
    rate: float | None = None,
    smooth: bool = False,
    rule: str = "round_robin",
) -> BenchReport:
    """Measure the raw flood, then the queue (flood and half load) on ``address``.

    Args:
        address: the daemon to measure on.
        daemon: its name in the report (``embedded``, ``real 5.0.1`` ...).
        daemon_pid: its process id when it is ours (its CPU time is reported).
        workers: worker processes (and raw receivers).
        jobs: jobs in the flood run (the half-load run puts half as many, after a
            warm-up of up to 2,000).
        raw: messages in the raw flood; 0 skips it (no ratios then).
        payload: bytes per job and per raw message.
        ack_interval: the workers' ``Settings.ack_interval``; the default's when None.
        plugins: the workers load the installed plugins and serve metrics on a free
            port (what observability costs); without it they load none.
        loop: the event loop of the child processes (this process runs on its own).
        log_level: for the child processes.
        progress: called with a short note as each phase starts.
        rate: the paced run's rate in jobs/s; None: half the flood's.
        smooth: the paced run puts each job in a turn of its own as it comes due
            (:func:`queue_run`); by default a millisecond's jobs at a time.
        rule: the workers' ownership rule, by name (a built-in one).

    Raises:
        TimeoutError: the child processes did not report for duty in time.
        ConnectError: the daemon cannot be reached.
        ConnectionLost: the daemon went away.
        ChildProcessError: a worker exited.
    """
    note = progress if progress is not None else (lambda _: None)
    raw_rate: float | None = None
    if raw > 0:
        note(f"raw flood: {raw:,} messages to {workers} receivers")
        raw_rate = await raw_flood(
            address, raw, receivers=workers, payload=payload, loop=loop, log_level=log_level
        )
    async with AsyncExitStack() as stack:
        producer = await stack.enter_async_context(Producer(QUEUE, address, plugins=plugins))
        pool = await stack.enter_async_context(
            worker_processes(
                address,
                workers,
                ack_interval=ack_interval,
                plugins=plugins,
                loop=loop,
                log_level=log_level,
                rule=rule,
            )
        )
        note(f"queue: waiting for {workers} workers")
        with anyio.fail_after(START_WITHIN):
            await producer.wait_for_consumers(workers)
        await queue_run(producer, pool, min(jobs, 2_000), payload)  # warm-up
        note(f"queue flood: {jobs:,} jobs")
        flood = await queue_run(
            producer, pool, jobs, payload, daemon_pid=daemon_pid, raw_rate=raw_rate
        )
        half_rate = flood.jobs_per_s / 2 if rate is None else rate
        paced = "at half load" if rate is None else "paced"
        note(f"queue {paced}: {jobs // 2:,} jobs at {half_rate:,.0f} jobs/s")
        half = await queue_run(
            producer,
            pool,
            max(1, jobs // 2),
            payload,
            half_rate,
            smooth=smooth,
            daemon_pid=daemon_pid,
            raw_rate=raw_rate,
        )
        resent = producer.statistics().resent
        peak = pool.peak_rss_mb()
    return BenchReport(
        daemon=daemon,
        address=address,
        workers=workers,
        payload_bytes=payload,
        uvloop=use_uvloop(loop),
        rule=rule,
        raw_messages=raw,
        raw_msgs_per_s=raw_rate,
        flood=flood,
        half_load=half,
        paced_rate=rate,
        smooth=smooth,
        resent=resent,
        worker_peak_rss_mb=peak,
    )
