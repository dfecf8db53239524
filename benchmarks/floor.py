"""The floor: minimal Python clients of spreadq's shape, on the same daemon, beside spreadq.

``spreadq bench`` measures the queue: one producer putting jobs, workers that keep the
replicated table, run handlers and report outcomes. How much of its time is spreadq's
own, and how much any Python program pays on this machine for the same traffic? This
script runs the same shape with nothing of the queue but its wire format:

* ``--workers`` reader processes join a group through :func:`spreadq.connect`; each
  reads every message, decodes the JOB BATCH envelope as a worker does, and "starts"
  the jobs the rule gives it (``round_robin``: job ``k`` to reader ``k mod n``;
  ``fill_first``: every job to the first reader, the others only read), noting for
  each the time since the producer stamped it. With ``--notices`` a reader also sends
  the producer one private message per message it started jobs of (at most one per
  2 ms, as a worker's outcome notices go).
* the producer (this process) sends the same JOB BATCH messages, paced as ``spreadq
  bench`` paces its puts: the jobs due within the next millisecond in one message, each
  stamped with the wall clock as it is packed.

No table, no receipts, no ACKs, no flow control: about the least a Python design with
one process per worker does with this traffic on this daemon and machine, and a
yardstick measured in the same run.

``--table`` puts the queue's replicated table back in the readers, and nothing around
it: each reader applies every message of the group to a real
:class:`~spreadq.queue.OutstandingTable` (through the worker's ``GroupTranslator``),
"starts" the jobs the table gives it and tells the table they started and succeeded,
multicasts the ACKs the table asks for to the group (the other readers' tables read
them) and sends the NOTICEs it asks for (with ``--notices``, the jobs ask for them) to
the producer; a ``Tick`` every 10 ms lets held ACKs and NOTICEs go. The producer stays
the floor's. Between the floor and ``spreadq bench`` this measures what the table costs
a worker apart from the runtime around it (the dispatcher, scheduler, runner pool and
job runner). ``--against-spreadq`` then runs ``spreadq bench``
with the same shape and rate and prints both paced runs side by side with the ratio:
what the queue costs above the floor, in one-way latency (send or put to the job's
start) and in CPU per process.

    .venv/bin/python benchmarks/floor.py --spread 4803@127.0.0.1 --spread-pid $(pgrep -x spread) \\
        --rate 13000 --notices --against-spreadq
    .venv/bin/python benchmarks/floor.py --spread 4803@127.0.0.1 --rate 13000 --notices --table
    .venv/bin/python benchmarks/floor.py --jobs 2000 --workers 2      # a smoke, embedded daemon
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Final

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.buffered import BufferedByteReceiveStream
from pydantic import BaseModel, ConfigDict
from rich.console import Console
from rich.table import Table

import spreadq
from spreadq.bench import BenchReport
from spreadq.bench.procs import cpu_seconds, processes
from spreadq.bench.report import Latency, latency
from spreadq.bench.run import embedded_daemon
from spreadq.eventloop import Loop, use_uvloop
from spreadq.queue import (
    MESS_TYPE,
    Idle,
    JobFinished,
    JobsFinished,
    JobSpec,
    JobsStarted,
    Outcome,
    RunJob,
    SendAck,
    SendNotice,
    Tick,
    TurnEnded,
    decode,
    encode,
    encode_batch,
)
from spreadq.queue.effects import Effect
from spreadq.queue.envelope.batch import JobBatch
from spreadq.queue.rules import builtin_rules
from spreadq.session.translate import GroupTranslator, Refused
from spreadq.settings import Settings
from spreadq.wire.constants import ServiceType
from spreadq.wire.events import DataMessage, RegularMembership
from spreadq.worker.dispatcher import worker_table

__all__ = ["FloorFigures", "main"]

GROUP: Final = "floor"
END_TYPE: Final = MESS_TYPE + 1
"""The message type of the producer's last message: the readers stop at it."""
STAMP: Final = struct.Struct("<d")
NOTICE_GAP: Final = 0.002
"""Seconds between two notices of one reader at least (``Settings.notice_interval``)."""
EARLY: Final = 0.001
"""How far ahead of its time a job is packed (as ``spreadq bench`` puts them)."""
TICK: Final = 0.01
"""Seconds between two ``Tick`` inputs of a ``--table`` reader."""


class ReaderFigures(BaseModel):
    """What one reader saw, from its first JOB message to the end."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    started: tuple[float, ...]
    """Seconds from each stamp to the start of a job of this reader's."""
    messages: int
    cpu_s: float
    seconds: float


class FloorFigures(BaseModel):
    """One paced run of the floor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jobs: int
    rate: float
    rule: str
    table: bool = False
    """The readers kept the replicated table (``--table``)."""
    notices: int
    """Private messages the producer read (0 without ``--notices``)."""
    messages_per_s: float
    one_way: Latency
    producer_cpu_ms_per_s: float
    worker_jobs: tuple[int, ...] = ()
    """The jobs each reader started."""
    worker_cpu_ms_per_s: tuple[float, ...]
    daemon_cpu_ms_per_s: float | None


# --- the reader --------------------------------------------------------------------------


def owned(index: int, workers: int, rule: str, first: int, count: int) -> range:
    """The positions, in a message of ``count`` jobs whose first is job ``first`` of
    the run, of the jobs reader ``index`` of ``workers`` starts under ``rule``."""
    if rule == "fill_first":
        return range(count) if index == 0 else range(0)
    return range((index - first) % workers, count, workers)


def _report(started: list[float], messages: int, first: tuple[float, float]) -> None:
    """Print a reader's :class:`ReaderFigures` as one JSON line (``first``: its CPU and
    monotonic seconds at its first JOB message)."""
    figures = ReaderFigures(
        started=tuple(started),
        messages=messages,
        cpu_s=time.process_time() - first[0],
        seconds=time.monotonic() - first[1],
    )
    print(figures.model_dump_json(), flush=True)


async def read_with_table(address: str, index: int, rule: str) -> None:
    """One ``--table`` reader: join, keep the replicated table of every message, say
    ``ready`` once in a view, start the jobs the table gives it until the END message,
    then print its :class:`ReaderFigures` as one JSON line."""
    started: list[float] = []
    messages = 0
    first: tuple[float, float] | None = None
    clock, wall = time.monotonic, time.time
    async with spreadq.connect(address, name=f"floor{index}") as conn:
        me, rules = conn.private_group, builtin_rules()
        table = worker_table(me, rules[rule], Settings(), incarnation=os.urandom(16))
        translate = GroupTranslator(GROUP, None, accept_unsealed_raw=True).translate
        out: list[tuple[str, bytes]] = []  # what the table asks to send, in order

        def carry(effects: list[Effect]) -> list[RunJob]:
            runs: list[RunJob] = []
            for effect in effects:
                if type(effect) is RunJob:
                    runs.append(effect)
                elif type(effect) is SendAck:
                    out.append((GROUP, encode(effect.envelope)))
                elif type(effect) is SendNotice:
                    out.append((effect.to, encode(effect.envelope)))
            return runs  # VIEWs, HELLOs and the rest: no FEEDBACK group, no one to tell

        async def send() -> None:
            sending = out[:]
            out.clear()
            for group, data in sending:
                await conn.multicast(group, data, ServiceType.AGREED, MESS_TYPE)

        async def tick() -> None:
            while True:
                await anyio.sleep(TICK)
                carry(table.apply(Tick(), clock()))
                await send()

        await conn.join(GROUP)
        ready = False
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(tick)
            while True:
                events = await conn.receive_batch()
                now = clock()
                runs: list[RunJob] = []
                ended = False
                for event in events:
                    if type(event) is DataMessage and event.mess_type == END_TYPE:
                        ended = True  # after the jobs that came before it
                        break
                    translated = translate(event)
                    if translated is not None and not isinstance(translated, Refused):
                        runs += carry(table.apply(translated, now))
                    if type(event) is DataMessage:
                        if first is None:
                            first = (time.process_time(), clock())
                        messages += 1
                if not ready and table.view is not None:
                    ready = True
                    carry(table.apply(Idle(True), now))  # its handlers never keep it busy
                    print("ready", flush=True)
                while runs:  # what a worker's handlers would do, at no cost
                    table.apply(JobsStarted([run.job.ref for run in runs]), now)
                    for run in runs:
                        started.append(wall() - STAMP.unpack_from(run.job.payload)[0])
                    finished = [JobFinished(run.job.ref, Outcome.success()) for run in runs]
                    runs = carry(table.apply(JobsFinished(finished), clock()))
                if ended:
                    assert first is not None
                    _report(started, messages, first)
                    tasks.cancel_scope.cancel()
                    return
                if table.notices_pending:
                    carry(table.apply(TurnEnded(), clock()))
                await send()


async def read(address: str, index: int, workers: int, rule: str, notify: str | None) -> None:
    """One reader: join, say ``ready``, start its jobs until the END message, then
    print its :class:`ReaderFigures` as one JSON line."""
    started: list[float] = []
    messages = seen = 0
    last_notice = -1.0
    first: tuple[float, float] | None = None
    clock, wall = time.monotonic, time.time
    async with spreadq.connect(address, name=f"floor{index}") as conn:
        await conn.join(GROUP)
        while True:  # in the group once our own join's membership comes
            event = await conn.receive()
            if type(event) is RegularMembership and conn.private_group in event.members:
                break
        print("ready", flush=True)
        while True:
            events = await conn.receive_batch()
            for event in events:
                if type(event) is not DataMessage:
                    continue
                if event.mess_type == END_TYPE:
                    assert first is not None
                    _report(started, messages, first)
                    return
                if first is None:
                    first = (time.process_time(), clock())
                batch = decode(event.data)
                assert isinstance(batch, JobBatch)
                jobs = batch.jobs
                count = len(jobs)
                mine = owned(index, workers, rule, seen, count)
                for position in mine:
                    started.append(wall() - STAMP.unpack_from(jobs[position].payload)[0])
                seen += count
                messages += 1
                if notify is not None and mine and clock() - last_notice >= NOTICE_GAP:
                    last_notice = clock()
                    await conn.multicast(notify, b"n" * 64, ServiceType.AGREED, MESS_TYPE)


# --- the producer ------------------------------------------------------------------------


async def floor_run(
    address: str,
    workers: int,
    jobs: int,
    rate: float,
    payload: int,
    rule: str,
    *,
    notices: bool,
    loop: Loop,
    daemon_pid: int | None,
    table: bool = False,
) -> FloorFigures:
    """Start the readers, send ``jobs`` jobs paced at ``rate``, gather what they saw.

    Raises:
        ChildProcessError: a reader did not start or report.
    """
    padding = os.urandom(max(0, payload - STAMP.size))
    producer_id = os.urandom(16)
    async with spreadq.connect(address, name="floorp", membership=False) as conn:
        notify = ["--notify", conn.private_group] if notices and not table else []
        reader = [sys.executable, __file__, "--role", "reader", "--address", address]
        reader += ["--loop", loop, "--workers", str(workers), "--rule", rule, *notify]
        reader += ["--table"] if table else []
        commands = [[*reader, "--index", str(index)] for index in range(workers)]
        async with processes(commands, stdout=True) as readers:
            lines = [BufferedByteReceiveStream(p.stdout) for p in readers if p.stdout]
            with anyio.fail_after(30):
                for line in lines:
                    if await line.receive_until(b"\n", 64) != b"ready":
                        raise ChildProcessError("a reader did not start")
            read_back = 0

            async def drain() -> None:
                nonlocal read_back
                while True:
                    read_back += len(await conn.receive_batch())

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(drain)
                daemon_before = cpu_seconds(daemon_pid) if daemon_pid else None
                cpu_before, started = time.process_time(), time.monotonic()
                sent = await send_paced(
                    conn, producer_id, jobs, rate, padding, notify=table and notices
                )
                cpu_after, ended = time.process_time(), time.monotonic()
                daemon_after = cpu_seconds(daemon_pid) if daemon_pid else None
                await conn.multicast(GROUP, b"end", ServiceType.AGREED, END_TYPE)
                figures = []
                with anyio.fail_after(60):
                    for line in lines:
                        raw = await line.receive_until(b"\n", 1 << 26)
                        figures.append(ReaderFigures.model_validate_json(raw))
                tasks.cancel_scope.cancel()
    seconds = ended - started
    one_way = [s for reader in figures for s in reader.started]
    if len(one_way) != jobs:
        raise ChildProcessError(f"the readers started {len(one_way)} jobs of {jobs}")
    daemon = None
    if daemon_before is not None and daemon_after is not None:
        daemon = 1e3 * (daemon_after - daemon_before) / seconds
    return FloorFigures(
        jobs=jobs,
        rate=rate,
        rule=rule,
        table=table,
        notices=read_back,
        messages_per_s=sent / seconds,
        one_way=latency(one_way),
        producer_cpu_ms_per_s=1e3 * (cpu_after - cpu_before) / seconds,
        worker_jobs=tuple(len(reader.started) for reader in figures),
        worker_cpu_ms_per_s=tuple(1e3 * r.cpu_s / r.seconds for r in figures),
        daemon_cpu_ms_per_s=daemon,
    )


async def send_paced(
    conn: spreadq.Connection,
    producer_id: bytes,
    jobs: int,
    rate: float,
    padding: bytes,
    *,
    notify: bool = False,
) -> int:
    """Send ``jobs`` stamped jobs at ``rate`` jobs/s, the jobs due within a millisecond
    in one JOB BATCH (whose jobs ask for NOTICEs with ``notify``); return how many
    messages went."""
    clock, wall = time.monotonic, time.time
    batch: list[JobSpec] = []
    mseq = 0

    async def send() -> None:
        nonlocal batch, mseq
        data = encode_batch(producer_id, mseq, "raw", batch, notify=notify)
        await conn.multicast(GROUP, data, ServiceType.AGREED, MESS_TYPE)
        batch, mseq = [], mseq + 1

    started = clock()
    for seq in range(jobs):
        ahead = started + seq / rate - clock()
        if ahead > EARLY:
            if batch:
                await send()
            await anyio.sleep(ahead)
        batch.append(JobSpec(seq, "noop", STAMP.pack(wall()) + padding))
    if batch:
        await send()
    return mseq


# --- against spreadq ---------------------------------------------------------------------


def spreadq_run(args: argparse.Namespace, address: str, daemon_pid: int | None) -> BenchReport:
    """``spreadq bench --json`` with the same shape; its paced run is at ``args.rate``.

    Raises:
        ChildProcessError: the benchmark failed.
    """
    command = [sys.executable, "-m", "spreadq", "bench", "--json", "--loop", args.loop]
    command += ["--spread", address, "--workers", str(args.workers), "--rule", args.rule]
    command += ["--jobs", str(2 * args.jobs), "--raw", "0", "--rate", str(args.rate)]
    command += ["--payload", str(args.payload)]
    if daemon_pid is not None:
        command += ["--daemon-pid", str(daemon_pid)]
    completed = subprocess.run(command, stdout=subprocess.PIPE, check=False, text=True)
    if completed.returncode != 0:
        raise ChildProcessError(f"spreadq bench exited with {completed.returncode}")
    return BenchReport.model_validate_json(completed.stdout)


def render(floor: FloorFigures, ours: BenchReport | None, console: Console) -> None:
    """The floor's paced run, and spreadq's beside it with the ratio when measured."""
    title = f"{floor.jobs:,} jobs at {floor.rate:,.0f}/s, {floor.rule}"
    table = Table(title=title)
    table.add_column("paced run")
    table.add_column("floor + table" if floor.table else "floor", justify="right")
    names = (
        "one-way p50 ms",
        "one-way p99 ms",
        "messages/s from the producer",
        "producer CPU ms/s",
        "each worker's CPU ms/s (mean)",
        "daemon CPU ms/s",
    )
    lows = (
        floor.one_way.p50_ms,
        floor.one_way.p99_ms,
        floor.messages_per_s,
        floor.producer_cpu_ms_per_s,
        _mean(floor.worker_cpu_ms_per_s),
        floor.daemon_cpu_ms_per_s,
    )
    if ours is None:
        for name, low in zip(names, lows, strict=True):
            table.add_row(name, _cell(low))
        console.print(table)
        return
    paced = ours.half_load
    seconds, cpu = paced.seconds, paced.cpu
    highs = (
        paced.one_way.p50_ms,
        paced.one_way.p99_ms,
        paced.wire.producer_messages / seconds,
        None if cpu is None else 1e3 * cpu.producer_s / seconds,
        None if cpu is None else 1e3 * _mean(cpu.workers_s) / seconds,
        None if cpu is None or cpu.daemon_s is None else 1e3 * cpu.daemon_s / seconds,
    )
    table.add_column("spreadq", justify="right")
    table.add_column("spreadq / floor", justify="right")
    for name, low, high in zip(names, lows, highs, strict=True):
        ratio = None if low is None or high is None or low == 0 else high / low
        table.add_row(name, _cell(low), _cell(high), _cell(ratio))
    console.print(table)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


# --- command line ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spread", help="a running daemon (default: the embedded one)")
    parser.add_argument("--spread-pid", type=int, help="its process, for its CPU")
    parser.add_argument("--jobs", type=int, default=50_000, help="jobs in the paced run")
    parser.add_argument("--rate", type=float, default=13_000.0, help="jobs/s")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--payload", type=int, default=100, help="bytes a job")
    parser.add_argument("--rule", choices=("round_robin", "fill_first"), default="round_robin")
    parser.add_argument("--notices", action="store_true", help="readers notify the producer")
    parser.add_argument(
        "--table", action="store_true", help="readers keep the replicated table (no runtime)"
    )
    parser.add_argument("--against-spreadq", action="store_true", help="run spreadq bench too")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--role", choices=("reader",), help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--notify", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.workers < 1 or args.rate <= 0 or args.payload < STAMP.size:
        parser.error(f"--jobs, --workers and --rate above 0, --payload at least {STAMP.size}")
    options = {"use_uvloop": use_uvloop(args.loop)}
    if args.role == "reader":
        if args.table:
            anyio.run(read_with_table, args.address, args.index, args.rule, backend_options=options)
            return 0
        reader = (args.address, args.index, args.workers, args.rule, args.notify)
        anyio.run(read, *reader, backend_options=options)
        return 0
    floor, ours = anyio.run(_measure, args, backend_options=options)
    if args.json:
        both = {"floor": floor.model_dump(), "spreadq": ours and ours.model_dump()}
        print(json.dumps(both))
    else:
        render(floor, ours, Console())
    return 0


async def _measure(args: argparse.Namespace) -> tuple[FloorFigures, BenchReport | None]:
    """The floor's run, then spreadq's when asked, on the daemon given or an embedded one."""
    if args.spread is not None:
        return await _both(args, args.spread, args.spread_pid)
    async with embedded_daemon(args.loop) as daemon:
        return await _both(args, daemon.address, daemon.pid)


async def _both(
    args: argparse.Namespace, address: str, daemon_pid: int | None
) -> tuple[FloorFigures, BenchReport | None]:
    shape = (address, args.workers, args.jobs, args.rate, args.payload, args.rule)
    floor = await floor_run(
        *shape, notices=args.notices, loop=args.loop, daemon_pid=daemon_pid, table=args.table
    )
    ours = None
    if args.against_spreadq:
        ours = await anyio.to_thread.run_sync(spreadq_run, args, address, daemon_pid)
    return floor, ours


if __name__ == "__main__":
    sys.exit(main())
