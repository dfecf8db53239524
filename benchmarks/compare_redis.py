"""spreadq against Redis Streams consumer groups: the same shape, one run, side by side.

The Redis side: this script starts ``redis-server`` on a free loopback port (a temporary
directory, no persistence), one producer (this process, redis-py's asyncio client with
hiredis) and ``--consumers`` consumer processes (redis-py; as many as spreadq's
``--workers`` unless given). The producer sends ``--payload``-byte jobs with ``XADD``,
pipelined by ``--pipeline``; each consumer reads with ``XREADGROUP COUNT --count``,
runs a no-op per job noting the wall-clock time it started, then sends ``XACK`` for the
batch and one ``XADD`` to a reply stream carrying each job's number and start time, in
one pipeline. The producer reads the replies (``XREAD BLOCK``). So both latencies mean
what they mean for spreadq: **one way** is send to the consumer starting the job,
**round trip** is send to the producer learning it was done. A flood, then half the
flood's rate paced (open loop), after a warm-up; then, so that latencies also compare at
one load, a run at spreadq's half-load rate. Paced, the Redis producer sends the jobs
due and sleeps until the next is due: on uvloop a sleep under a millisecond ends at the
next turn of the loop, so each pipeline holds the one or two jobs due then. spreadq's
puts a millisecond's jobs at a time, unless ``--smooth`` asks it to put each job as it
comes due as well (``spreadq bench --smooth``; its producer then packs by its
``batch_max_rate``).

The spreadq side is ``spreadq bench --json`` with ``--workers`` workers and the same
jobs and payload, on the embedded daemon (or ``--spread ADDR``, e.g. a real Spread
daemon). Each side's best shape on a machine may differ (a spreadq worker runs its async
handlers concurrently and replicates the queue's table, a redis-py consumer runs one job
at a time), hence ``--consumers``.

Both print side by side with spreadq / Redis ratios; ``--chart out.png`` draws the
half-load latency CDFs and the jobs/s (matplotlib). CPU seconds come from ``/proc``,
at flood and at each paced load, for the producer, the workers and the server:
redis-server's always, a Spread daemon's when it is the embedded one or
``--spread-pid`` names its process;
"requests per job" is Spread messages sent per job for spreadq and commands the Redis
server processed per job (``INFO stats``) for Redis. ``--rounds N`` measures both N
times, turn about, and prints each round's ratios and their median instead of the full
table (the chart shows the round with the median flood ratio): a small machine's speed
drifts by a fifth within minutes, so between the two sides of one round too.

``--burn N:SHARE`` runs ``N`` more processes beside both sides for the whole run, each
busy for ``SHARE`` of a core in bursts (``SHARE`` x 20 ms every 20 ms, each at its own
phase): the load a queue's other processes put on the cores. Under ``fill_first`` three
of four workers stand by and each pays for every message: ``--workers 1 --burn 3:0.11``
gives one worker that much company, which took its one-way p99 about half-way to four
workers' (docs/deployment.md#latency-under-a-steady-load), and shows what the same burn
costs Redis.

Needs ``redis-server`` on PATH (``apt-get install redis-server``) and
``pip install 'spreadq[bench]'`` (redis, hiredis, matplotlib); without them it says so
and exits 0.

    .venv/bin/python benchmarks/compare_redis.py                      # 4 workers, 20k jobs
    .venv/bin/python benchmarks/compare_redis.py --spread 4803@127.0.0.1 --chart cmp.png
    .venv/bin/python benchmarks/compare_redis.py --spread 4803 --spread-pid $(pgrep -x spread)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.table import Table

from spreadq.bench import (
    BenchReport,
    Cpu,
    Latency,
    QueueFigures,
    cpu_snapshot,
    cpu_spent,
    latency,
    memory,
    sched_snapshot,
    sched_spent,
)
from spreadq.eventloop import use_uvloop
from spreadq.worker.runtime import tune_collector

if TYPE_CHECKING:
    import redis.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from redis_consumer import GROUP, JOBS, REPLIES, REPLY, SEQ, Streams

__all__ = ["RedisFigures", "RedisReport", "main"]

INSTALL: Final = (
    "install them with: apt-get install redis-server (Debian/Ubuntu) and "
    "pip install 'spreadq[bench]' (redis, hiredis, matplotlib)"
)
START_WITHIN: Final = 60.0
RUN_WITHIN: Final = 600.0
"""Seconds one run may take before the comparison gives up (a consumer died?)."""
CONSUMER: Final = str(Path(__file__).resolve().parent / "redis_consumer.py")


class RedisFigures(BaseModel):
    """One Redis Streams run (flood or half load)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jobs: int
    seconds: float
    jobs_per_s: float
    one_way: Latency
    round_trip: Latency
    cpu: Cpu | None
    """producer (this process), each consumer, and redis-server as the daemon."""
    waited: Cpu | None = None
    """The same processes' seconds ready to run and waiting for a CPU."""
    mean_slice: Cpu | None = None
    """The seconds each of them ran each time it was switched in, on average."""
    commands_per_job: float
    """Commands redis-server processed during the run, per job."""


class RedisReport(BaseModel):
    """What the Redis side measured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server: str
    consumers: int
    payload_bytes: int
    pipeline: int
    count: int
    flood: RedisFigures
    half_load: RedisFigures
    at_rate: RedisFigures | None = None
    """A run at another rate (``measure_redis``'s ``also_at``): spreadq's half load."""
    consumer_peak_rss_mb: tuple[float, ...] | None


# --- the Redis side -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _drain(stream: anyio.abc.ByteReceiveStream) -> None:
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
        async for _ in stream:
            pass


@asynccontextmanager
async def redis_server(binary: str) -> AsyncIterator[tuple[int, int]]:
    """Run ``redis-server`` on a free loopback port; yield ``(port, pid)``.

    Raises:
        TimeoutError: it did not say it was ready within a minute.
    """
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="spreadq-redis-") as tmp:
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", tmp, "--protected-mode", "no"]
        process = await anyio.open_process(command, stdin=subprocess.DEVNULL, stderr=None)
        try:
            assert process.stdout is not None
            lines = BufferedByteReceiveStream(process.stdout)
            with anyio.fail_after(START_WITHIN):
                while b"Ready to accept connections" not in await lines.receive_until(b"\n", 65536):
                    pass
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_drain, lines)
                yield port, process.pid
                tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.terminate()
                await process.wait()
                await process.aclose()


class _Replies:
    """Where the producer has read the reply stream up to."""

    def __init__(self) -> None:
        self.last: bytes = b"0-0"


async def redis_run(
    send: redis.asyncio.Redis,
    receive: redis.asyncio.Redis,
    replies: _Replies,
    first: int,
    count: int,
    payload: int,
    pipeline: int,
    rate: float | None = None,
) -> tuple[float, list[float], list[float]]:
    """Send jobs ``first`` .. ``first + count - 1``; return (seconds, one-way, round trip).

    Raises:
        redis.RedisError: a command failed.
    """
    data = os.urandom(payload)
    put_wall = [0.0] * count
    put_at = [0.0] * count
    started_wall = [math.nan] * count
    done_at = [math.nan] * count
    clock, wall = time.monotonic, time.time
    remaining = count

    async def read_replies() -> None:
        nonlocal remaining
        while remaining:
            found = cast(
                "Streams | None",
                await receive.xread({REPLIES: replies.last}, count=1000, block=1000),
            )
            now = clock()
            for _stream, entries in found or ():
                for entry_id, fields in entries:
                    replies.last = entry_id
                    for seq, began in REPLY.iter_unpack(fields[b"r"]):
                        i = seq - first
                        started_wall[i] = began
                        done_at[i] = now
                        remaining -= 1

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read_replies)
        started = clock()
        i = 0
        while i < count:
            due = count
            if rate is not None:
                due = min(count, int((clock() - started) * rate) + 1)
                if due <= i:
                    # clock() moved on since `due`: the wait may have passed already
                    await anyio.sleep(max(0.0, started + i / rate - clock()))
                    continue
            pipe = send.pipeline(transaction=False)
            for k in range(i, min(due, i + pipeline)):
                put_wall[k] = wall()
                put_at[k] = clock()
                pipe.xadd(JOBS, {b"s": SEQ.pack(first + k), b"d": data})
            await pipe.execute()
            i = min(due, i + pipeline)
    seconds = max(done_at) - started
    one_way = [b - a for a, b in zip(put_wall, started_wall, strict=True)]
    round_trip = [b - a for a, b in zip(put_at, done_at, strict=True)]
    return seconds, one_way, round_trip


BURN_PERIOD: Final = 0.02
"""Seconds between the starts of two bursts of a ``--burn`` process."""

_BURNER: Final = """
import random, sys, time
busy, period = float(sys.argv[1]) * float(sys.argv[2]), float(sys.argv[2])
time.sleep(random.random() * period)
clock = time.perf_counter
start = clock()
while True:
    while clock() - start < busy:
        pass
    start += period
    time.sleep(max(0.0, start - clock()))
"""


def parse_burn(text: str) -> tuple[int, float]:
    """``N:SHARE`` (processes, share of a core each): ``3:0.11``.

    Raises:
        ValueError: not two numbers, N below 1 or SHARE outside (0, 1].
    """
    count, colon, share = text.partition(":")
    if not colon:
        raise ValueError(f"--burn {text!r}: give N:SHARE, e.g. 3:0.11")
    n, fraction = int(count), float(share)
    if n < 1 or not 0.0 < fraction <= 1.0:
        raise ValueError(f"--burn {text!r}: N at least 1, SHARE in (0, 1]")
    return n, fraction


@contextlib.contextmanager
def burning(count: int, share: float) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` processes that each keep ``share`` of a core busy, in bursts, until the
    block ends (then they are killed and reaped)."""
    line = [sys.executable, "-c", _BURNER, str(share), str(BURN_PERIOD)]
    started: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(count):
            started.append(subprocess.Popen(line, stdin=subprocess.DEVNULL))
        yield started
    finally:
        for process in started:
            process.kill()
        for process in started:
            process.wait()


async def measure_redis(
    binary: str,
    *,
    consumers: int,
    jobs: int,
    payload: int,
    pipeline: int,
    count: int,
    also_at: float | None = None,
    beside_at: Callable[[], Coroutine[Any, Any, object]] | None = None,
) -> RedisReport:
    """The Redis Streams side: a warm-up, a flood, then half the flood's rate, and when
    ``also_at`` is given one more run (as many jobs as the half load) at that rate;
    ``beside_at`` is started beside that run, in a task of its own (a recorder's window,
    as ``sched_delays.py`` opens one), and awaited with it.

    Consumers are ``redis_consumer.py`` processes.

    Raises:
        TimeoutError: redis-server or a consumer did not start within a minute.
        redis.RedisError: a command failed.
    """
    import redis.asyncio

    async with redis_server(binary) as (port, server_pid):
        send = redis.asyncio.Redis(port=port)
        receive = redis.asyncio.Redis(port=port)
        try:
            await send.xgroup_create(JOBS, GROUP, id="$", mkstream=True)
            commands = [
                [sys.executable, CONSUMER, str(port), f"c{n}", str(count)] for n in range(consumers)
            ]
            async with _consumers(commands) as pids:
                replies = _Replies()
                first = 0

                async def run(
                    n: int,
                    rate: float | None = None,
                    beside: Callable[[], Coroutine[Any, Any, object]] | None = None,
                ) -> RedisFigures:
                    nonlocal first
                    before = (await send.info("stats"))["total_commands_processed"]
                    cpu0 = cpu_snapshot(pids, server_pid)
                    sched0 = sched_snapshot(pids, server_pid)
                    work = redis_run(send, receive, replies, first, n, payload, pipeline, rate)
                    with anyio.fail_after(RUN_WITHIN):
                        if beside is None:  # a failure stays itself, not in a group
                            seconds, one_way, round_trip = await work
                        else:
                            async with anyio.create_task_group() as tg:
                                tg.start_soon(beside)
                                seconds, one_way, round_trip = await work
                    cpu1 = cpu_snapshot(pids, server_pid)
                    sched1 = sched_snapshot(pids, server_pid)
                    after = (await send.info("stats"))["total_commands_processed"]
                    first += n
                    waited, mean_slice = sched_spent(sched0, sched1)
                    return RedisFigures(
                        jobs=n,
                        seconds=seconds,
                        jobs_per_s=n / seconds,
                        one_way=latency(one_way),
                        round_trip=latency(round_trip),
                        cpu=cpu_spent(cpu0, cpu1),
                        waited=waited,
                        mean_slice=mean_slice,
                        commands_per_job=(after - before - 1) / n,  # less one INFO
                    )

                await run(min(jobs, 2_000))  # warm-up
                flood = await run(jobs)
                half = await run(max(1, jobs // 2), flood.jobs_per_s / 2)
                at_rate = None
                if also_at is not None:
                    at_rate = await run(max(1, jobs // 2), also_at, beside_at)
                peaks = [memory(pid) for pid in pids]
            version = (await send.info("server"))["redis_version"]
        finally:
            await send.aclose()
            await receive.aclose()
    return RedisReport(
        server=f"redis {version}",
        consumers=consumers,
        payload_bytes=payload,
        pipeline=pipeline,
        count=count,
        flood=flood,
        half_load=half,
        at_rate=at_rate,
        consumer_peak_rss_mb=None
        if any(p is None for p in peaks)
        else tuple(p.peak_mb for p in peaks if p is not None),
    )


@asynccontextmanager
async def _consumers(commands: Sequence[list[str]]) -> AsyncIterator[list[int]]:
    started: list[anyio.abc.Process] = []
    try:
        for command in commands:
            started.append(await anyio.open_process(command, stdin=subprocess.DEVNULL, stderr=None))
        with anyio.fail_after(START_WITHIN):
            for process in started:
                assert process.stdout is not None
                line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 64)
                if line != b"ready":
                    raise ChildProcessError(f"consumer {process.pid} said {line!r}")
        yield [process.pid for process in started]
    finally:
        with anyio.CancelScope(shield=True):
            for process in started:
                if process.returncode is None:
                    process.kill()  # a consumer holds no state worth a drain
                await process.wait()
                await process.aclose()


# --- the spreadq side ---------------------------------------------------------------------


def measure_spreadq(args: argparse.Namespace) -> BenchReport:
    """``spreadq bench --json`` with the same shape, in a process of its own.

    Raises:
        ChildProcessError: the benchmark failed (its stderr is passed through).
    """
    command = [sys.executable, "-m", "spreadq", "bench", "--json", "--loop", args.loop]
    command += ["--workers", str(args.workers), "--jobs", str(args.jobs)]
    command += ["--raw", str(args.raw), "--payload", str(args.payload), "--rule", args.rule]
    if args.spread is not None:
        command += ["--spread", args.spread]
        if args.spread_pid is not None:
            command += ["--daemon-pid", str(args.spread_pid)]
    if args.rate is not None:
        command += ["--rate", str(args.rate)]
    if args.smooth:
        command.append("--smooth")
    completed = subprocess.run(command, stdout=subprocess.PIPE, check=False, text=True)
    if completed.returncode != 0:
        raise ChildProcessError(f"spreadq bench exited with {completed.returncode}")
    return BenchReport.model_validate_json(completed.stdout)


# --- output -------------------------------------------------------------------------------


def _us(cpu: Cpu | None, jobs: int, part: str) -> float | None:
    if cpu is None:
        return None
    seconds = {
        "producer": cpu.producer_s,
        "workers": sum(cpu.workers_s),
        "daemon": cpu.daemon_s,
        "total": cpu.total_s,
    }[part]
    return None if seconds is None else seconds / jobs * 1e6


def paced_loads(
    ours: BenchReport, theirs: RedisReport
) -> list[tuple[str, QueueFigures, RedisFigures]]:
    """The paced runs compared, labelled: both at half their own flood's rate ("half"),
    and Redis at spreadq's paced rate, the same load ("same rate", or "at N/s" when
    spreadq ran at ``--rate``)."""
    loads: list[tuple[str, QueueFigures, RedisFigures]] = []
    if ours.paced_rate is None:
        loads.append(("half", ours.half_load, theirs.half_load))
    if theirs.at_rate is not None:
        label = "same rate" if ours.paced_rate is None else f"at {ours.paced_rate:,.0f}/s"
        loads.append((label, ours.half_load, theirs.at_rate))
    return loads


_JOBS_ROW = {"half": "half load jobs/s", "same rate": "same rate jobs/s (spreadq's half load)"}


def rows(ours: BenchReport, theirs: RedisReport) -> list[tuple[str, float | None, float | None]]:
    """The side-by-side figures: (what, spreadq, Redis)."""
    out: list[tuple[str, float | None, float | None]] = [
        ("flood jobs/s", ours.flood.jobs_per_s, theirs.flood.jobs_per_s),
    ]
    loads = paced_loads(ours, theirs)
    for label, a, b in loads:
        out.append((_JOBS_ROW.get(label, f"{label} jobs/s"), a.jobs_per_s, b.jobs_per_s))
    loads.append(("flood", ours.flood, theirs.flood))
    for load, a, b in loads:
        for kind in ("one_way", "round_trip"):
            x, y = getattr(a, kind), getattr(b, kind)
            for q in ("p50", "p99", "p999"):
                name = f"{load} {kind.replace('_', ' ')} {q} ms"
                out.append((name, getattr(x, f"{q}_ms"), getattr(y, f"{q}_ms")))
    for label, a, b in [("flood", ours.flood, theirs.flood), *paced_loads(ours, theirs)]:
        for part in ("producer", "workers", "daemon", "total"):
            out.append(
                (
                    f"{label} CPU us/job: {part}",
                    _us(a.cpu, a.jobs, part),
                    _us(b.cpu, b.jobs, part),
                )
            )
    for label, a, b in paced_loads(ours, theirs):
        for part, who in (("producer", "producer"), ("workers", "each worker")):
            out.append(
                (
                    f"{label} ms/s waiting for a CPU: {who}",
                    _waited_ms(a.waited, a.seconds, part),
                    _waited_ms(b.waited, b.seconds, part),
                )
            )
        for part, who in (("producer", "producer"), ("workers", "each worker")):
            out.append(
                (
                    f"{label} ms run at a time: {who}",
                    _slice_ms(a.mean_slice, part),
                    _slice_ms(b.mean_slice, part),
                )
            )
    out.append(
        (
            "flood requests/job (Spread messages | Redis commands)",
            ours.flood.wire.sent_per_job,
            theirs.flood.commands_per_job,
        )
    )
    ours_rss, theirs_rss = ours.worker_peak_rss_mb, theirs.consumer_peak_rss_mb
    out.append(
        (
            "worker peak RSS MiB (largest)",
            None if ours_rss is None else max(ours_rss),
            None if theirs_rss is None else max(theirs_rss),
        )
    )
    return out


def _part(figures: Cpu, part: str) -> float:
    """The producer's figure, or each worker's on average."""
    if part == "producer":
        return figures.producer_s
    return sum(figures.workers_s) / max(1, len(figures.workers_s))


def _waited_ms(waited: Cpu | None, seconds: float, part: str) -> float | None:
    """Milliseconds a second ``part`` (the producer, or each worker on average) was
    ready to run and waited for a CPU."""
    if waited is None or seconds <= 0:
        return None
    return _part(waited, part) / seconds * 1e3


def _slice_ms(mean_slice: Cpu | None, part: str) -> float | None:
    """Milliseconds ``part`` (the producer, or each worker on average) ran each time it
    was switched in."""
    return None if mean_slice is None else _part(mean_slice, part) * 1e3


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def render(ours: BenchReport, theirs: RedisReport, console: Console) -> None:
    """Print both reports side by side, with spreadq / Redis ratios."""
    raw = "-" if ours.raw_msgs_per_s is None else f"{ours.raw_msgs_per_s:,.0f}"
    workers, consumers = _count(ours.workers, "worker"), _count(theirs.consumers, "consumer")
    table = Table(
        title=f"1 producer, {ours.payload_bytes} B no-op jobs: spreadq with {workers} on "
        f"{ours.daemon} (rule {ours.rule}, raw flood {raw} msg/s) against {theirs.server} "
        f"with {consumers} "
        f"(XADD x{theirs.pipeline}, XREADGROUP COUNT {theirs.count})"
    )
    table.add_column("figure")
    table.add_column("spreadq", justify="right")
    table.add_column("Redis Streams", justify="right")
    table.add_column("spreadq / Redis", justify="right")
    for name, a, b in rows(ours, theirs):
        ratio = "-" if a is None or b is None or b == 0 else f"x{a / b:.2f}"
        table.add_row(name, _cell(a), _cell(b), ratio)
    console.print(table)


def ratios(ours: BenchReport, theirs: RedisReport) -> dict[str, float]:
    """The spreadq / Redis ratios the performance targets name, for one round: the
    flood's jobs/s, and the p99 latencies at each side's half load (or both at
    ``--rate``) and with Redis at spreadq's paced rate."""
    out = {"flood jobs/s": ours.flood.jobs_per_s / theirs.flood.jobs_per_s}
    for label, mine, figures in paced_loads(ours, theirs):
        for kind in ("one_way", "round_trip"):
            a = getattr(mine, kind).p99_ms
            b = getattr(figures, kind).p99_ms
            out[f"{label} {kind.replace('_', ' ')} p99"] = a / b if b else math.inf
    return out


def render_rounds(rounds: Sequence[tuple[BenchReport, RedisReport]], console: Console) -> None:
    """Print each round's spreadq / Redis ratios and their median."""
    ours, theirs = rounds[0]
    table = Table(
        title=f"spreadq ({_count(ours.workers, 'worker')}) / "
        f"Redis ({_count(theirs.consumers, 'consumer')}) in "
        f"{len(rounds)} rounds (each: spreadq, then Redis), and the median"
    )
    table.add_column("ratio")
    for n in range(1, len(rounds) + 1):
        table.add_column(f"round {n}", justify="right")
    table.add_column("median", justify="right")
    each = [ratios(ours, theirs) for ours, theirs in rounds]
    for name in each[0]:
        values = [r[name] for r in each]
        table.add_row(name, *(f"{v:.2f}" for v in values), f"{statistics.median(values):.2f}")
    console.print(table)


def chart(ours: BenchReport, theirs: RedisReport, path: Path) -> None:
    """Draw the half-load latency CDFs and the jobs/s bars to ``path`` (PNG).

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (cdf, bars) = plt.subplots(1, 2, figsize=(12, 4.5))
    share = [i / 100 for i in range(101)]
    paced = theirs.at_rate if ours.paced_rate is not None else None
    load = "half load" if paced is None else f"{ours.paced_rate:,.0f} jobs/s"
    theirs_paced = theirs.half_load if paced is None else paced
    for name, figures, colour in (
        ("spreadq", ours.half_load, "tab:blue"),
        ("Redis", theirs_paced, "tab:red"),
    ):
        cdf.plot(figures.one_way.cdf_ms, share, color=colour, label=f"{name} one way")
        cdf.plot(
            figures.round_trip.cdf_ms,
            share,
            color=colour,
            linestyle="--",
            label=f"{name} round trip",
        )
    cdf.set_xscale("log")
    cdf.set_xlabel(f"latency at {load}, ms (log)")
    cdf.set_ylabel("share of jobs")
    cdf.set_title(f"latency CDF at {load}")
    cdf.legend()
    names = ["spreadq flood", "spreadq half", "Redis flood", "Redis half"]
    values = [
        ours.flood.jobs_per_s,
        ours.half_load.jobs_per_s,
        theirs.flood.jobs_per_s,
        theirs.half_load.jobs_per_s,
    ]
    colours = ["tab:blue", "tab:blue", "tab:red", "tab:red"]
    if ours.raw_msgs_per_s is not None:
        names.insert(0, "raw Spread flood msg/s")
        values.insert(0, ours.raw_msgs_per_s)
        colours.insert(0, "tab:gray")
    bars.bar(names, values, color=colours)
    bars.set_ylabel("jobs/s")
    bars.set_title(
        f"{_count(ours.workers, 'worker')} / {_count(theirs.consumers, 'consumer')}, "
        f"{ours.payload_bytes} B no-op jobs"
    )
    bars.tick_params(axis="x", labelrotation=20)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# --- main ---------------------------------------------------------------------------------


def _missing() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server is not on PATH"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis Python package is not installed"
    return None


def _measure_rounds(
    args: argparse.Namespace, binary: str, err: Console, workers: str, consumers: str
) -> list[tuple[BenchReport, RedisReport]]:
    """Measure spreadq, then Redis, ``args.rounds`` times."""
    rounds: list[tuple[BenchReport, RedisReport]] = []
    for n in range(1, args.rounds + 1):
        of = f" (round {n} of {args.rounds})" if args.rounds > 1 else ""
        err.print(f"[dim]spreadq bench: {workers}, {args.jobs:,} jobs{of}[/dim]")
        ours = measure_spreadq(args)
        err.print(f"[dim]Redis Streams: {consumers}, {args.jobs:,} jobs{of}[/dim]")
        theirs = anyio.run(
            partial(
                measure_redis,
                binary,
                consumers=args.consumers,
                jobs=args.jobs,
                payload=args.payload,
                pipeline=args.pipeline,
                count=args.count,
                also_at=ours.half_load.jobs_per_s,
            ),
            backend_options={"use_uvloop": use_uvloop(args.loop)},  # the loop spreadq ran on
        )
        rounds.append((ours, theirs))
    return rounds


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4, help="spreadq's worker processes")
    parser.add_argument(
        "--consumers",
        type=int,
        help="Redis consumer processes (default: as many as --workers); each side's own "
        "best shape may differ: spreadq's workers run async handlers concurrently, "
        "a redis-py consumer one job at a time",
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs in the flood run")
    parser.add_argument("--raw", type=int, default=20_000, help="spreadq's raw flood (0: skip)")
    parser.add_argument("--payload", type=int, default=100, help="bytes per job")
    parser.add_argument("--pipeline", type=int, default=500, help="XADDs per pipeline")
    parser.add_argument("--count", type=int, default=500, help="XREADGROUP COUNT")
    parser.add_argument("--spread", help="measure spreadq on this daemon (default: embedded)")
    parser.add_argument(
        "--spread-pid",
        type=int,
        help="with --spread: that daemon's process id, so its CPU is counted as redis-server's is",
    )
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    parser.add_argument("--rule", default="round_robin", help="spreadq's ownership rule")
    parser.add_argument(
        "--smooth",
        action="store_true",
        help="spreadq's paced run puts each job as it comes due, as Redis's producer sends",
    )
    parser.add_argument("--json", action="store_true", help="print both reports as JSON")
    parser.add_argument("--chart", type=Path, help="draw a PNG chart here (matplotlib)")
    parser.add_argument(
        "--rate", type=float, help="compare both at this many jobs/s, not at half load"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure both this many times, turn about, and print the median ratios "
        "(this machine's speed drifts between the two sides of one round)",
    )
    parser.add_argument(
        "--burn",
        metavar="N:SHARE",
        help="run N more processes beside both sides, each busy for SHARE of a core in "
        "bursts (the load of a queue's other processes): e.g. 3:0.11",
    )
    args = parser.parse_args(argv)
    burn = (0, 0.0)
    if args.burn is not None:
        try:
            burn = parse_burn(args.burn)
        except ValueError as error:
            parser.error(str(error))
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.consumers is None:
        args.consumers = args.workers
    elif args.consumers < 1:
        parser.error("--consumers must be at least 1")
    if args.spread_pid is not None and args.spread is None:
        parser.error("--spread-pid names the daemon of --spread: give both")
    missing = _missing()
    if missing is not None:
        print(f"compare_redis: skipped, {missing}; {INSTALL}")
        return 0
    binary = shutil.which("redis-server")
    assert binary is not None
    err = Console(stderr=True)
    tune_collector()  # this process is the Redis side's producer: tuned as spreadq bench's
    workers, consumers = _count(args.workers, "worker"), _count(args.consumers, "consumer")
    with burning(*burn):
        if burn[0]:
            err.print(f"[dim]{_count(burn[0], 'burner')}, each {burn[1]:.0%} of a core[/dim]")
        rounds = _measure_rounds(args, binary, err, workers, consumers)
    # the round whose flood ratio is the median one stands for the run in the chart
    by_flood = sorted(rounds, key=lambda pair: ratios(*pair)["flood jobs/s"])
    ours, theirs = by_flood[(len(by_flood) - 1) // 2]
    if args.json:
        reports: list[dict[str, Any]] = [
            {"spreadq": o.model_dump(mode="json"), "redis": t.model_dump(mode="json")}
            for o, t in rounds
        ]
        out: dict[str, Any] = reports[0] if args.rounds == 1 else {"rounds": reports}
        if burn[0]:
            out["burn"] = {"processes": burn[0], "share": burn[1], "period_s": BURN_PERIOD}
        print(json.dumps(out, indent=2))
    else:
        console = Console()
        if args.rounds == 1:
            render(ours, theirs, console)
        else:
            render_rounds(rounds, console)
        if burn[0]:
            console.print(
                f"with {_count(burn[0], 'burner')} beside both sides, each busy for "
                f"{burn[1]:.0%} of a core in bursts"
            )
    if args.chart is not None:
        try:
            chart(ours, theirs, args.chart)
        except ImportError:
            err.print(f"no chart: matplotlib is not installed; {INSTALL}")
            return 1
        err.print(f"[dim]chart written to {args.chart}[/dim]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
