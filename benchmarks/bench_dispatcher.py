"""Dispatcher benchmark: one worker replica's whole per-job cost, in one process, no socket.

A :class:`~spreadq.worker.dispatcher.Dispatcher` runs a no-op handler on a fake
connection that delivers a prepared WORK stream: a view of four members (us first),
JOB BATCH messages of ``--batch`` 100-byte jobs, and after every ``--ack-every`` jobs
an ACK from each of the three other members completing the jobs they own. Our own ACKs
are delivered back to us, as Spread does. So a quarter of the jobs run here and three
quarters are only counted and completed: what each of four workers does in
``bench_queue.py``, without the daemon, the producer or the other workers on the CPU.
``--members 1`` makes every job ours: the cost of a job this worker runs. The stream
waits while 10,000 jobs are outstanding, as a producer's ``max_in_flight`` would hold
it, and the collector is tuned as in a worker (:func:`~spreadq.worker.runtime.tune_collector`).

``--pace SECONDS`` delivers one read every ``SECONDS`` (and our own messages as they
come) instead of one a turn of the loop, as a paced producer's messages reach a worker
that waits for them: what a worker's loop does between messages (timers, its idle
state, an outcome notice a turn) costs per message there, and a flood hides it.
``--stamp`` makes the handler return its start time (8 bytes, a distinct result a job,
as ``spreadq bench``'s handler does) instead of None, and the other members' ACKs carry
such results too. ``--rule sticky`` runs the replica under ``sticky`` (the others' ACKs
then name the jobs of whole messages); ``--rule fill_first`` runs it as a follower
under ``fill_first``: it is listed last, the first member owns every job (it keeps up,
its ACKs complete them) and the replica only counts them.

Reports jobs/s through the replica (every job of the stream, owned or not), the time
per job and the CPU time per job. Run it under a profiler to see where a worker's CPU
goes::

    .venv/bin/python benchmarks/bench_dispatcher.py
    .venv/bin/python benchmarks/bench_dispatcher.py --batch 28 --per-read 1 --pace 0.0019 --uvloop
    .venv/bin/py-spy record -o prof.svg -- .venv/bin/python benchmarks/bench_dispatcher.py
"""

from __future__ import annotations

import argparse
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence

import anyio
import anyio.lowlevel

from spreadq.actors.timers import timer_delay
from spreadq.errors import ConnectionLost
from spreadq.queue import MESS_TYPE, Ack, JobSpec, Outcome, encode, encode_batch
from spreadq.queue.jobs import JobRef
from spreadq.queue.rules import FillFirst, RoundRobin, SlotState, Sticky
from spreadq.settings import Settings
from spreadq.wire.constants import Cause, ServiceType
from spreadq.wire.events import DaemonMessage, DataMessage, GroupId, RegularMembership
from spreadq.worker.app import App
from spreadq.worker.dispatcher import Dispatcher
from spreadq.worker.runtime import tune_collector

__all__ = ["main"]

QUEUE = "bench"
WORK, FEEDBACK = QUEUE, QUEUE + "~fb"
ALL_MEMBERS = ("#me#h", "#w1#h", "#w2#h", "#w3#h", "#w4#h", "#w5#h", "#w6#h", "#w7#h")
ME = ALL_MEMBERS[0]  # the replica measured
MEMBERS = ALL_MEMBERS[:4]  # --members and --rule change it before the stream is built
PAYLOAD = 100
NOTIFY = False  # --notify: the jobs ask for outcome NOTICEs (a producer that keeps up)
PACE = 0.0  # --pace: seconds between two reads (0: one a turn of the loop)
STAMP = struct.Struct("<d")  # --stamp: the handler returns its start time, as the bench's does
STAMPED = False
RULE = "round_robin"  # --rule: round_robin, sticky or fill_first (the others' ACKs follow it)
IN_FLIGHT = 10_000  # outstanding jobs at most, as a producer's max_in_flight keeps them
OK = Outcome.success(b"null", codec="json")  # what a no-op handler's ACK carries


def outcome(ref: JobRef) -> Outcome:
    """What another member's no-op handler reported for ``ref``."""
    if STAMPED:  # a distinct 8-byte result a job, as with --stamp here
        return Outcome.success(STAMP.pack(ref.seq / 1e6), codec="raw")
    return OK


def stream(jobs: int, batch: int, ack_every: int, per_read: int) -> list[list[DaemonMessage]]:
    """The WORK messages after the view, grouped as socket reads would deliver them."""
    producer = os.urandom(16)
    payload = os.urandom(PAYLOAD)
    messages: list[DaemonMessage] = []
    pending: dict[str, list[JobRef]] = {member: [] for member in MEMBERS if member != ME}
    seq = mseq = since_ack = 0

    def deliver(sender: str, data: bytes) -> None:
        messages.append(DataMessage(sender, (WORK,), ServiceType.AGREED, MESS_TYPE, data))

    while seq < jobs:
        count = min(batch, jobs - seq)
        specs = [JobSpec(seq + i, "noop", payload) for i in range(count)]
        deliver("#producer#h", encode_batch(producer, mseq, "raw", specs, notify=NOTIFY))
        if RULE == "sticky":
            owners = Sticky().message_owners(MEMBERS, mseq, count)
        elif RULE == "fill_first":  # the first member keeps up: it owns every job
            owners = FillFirst().load_owners(MEMBERS, SlotState(), count)
        else:
            owners = RoundRobin().owners(MEMBERS, seq, count)  # one producer: seq is the slot
        for spec, owner in zip(specs, owners, strict=True):
            if owner != ME:
                pending[owner].append(JobRef(producer, spec.seq))
        seq += count
        mseq += 1
        since_ack += count
        if since_ack >= ack_every or seq >= jobs:
            since_ack = 0
            for member, refs in pending.items():
                if refs:
                    outcomes = tuple((ref, outcome(ref)) for ref in refs)
                    deliver(member, encode(Ack(os.urandom(16), outcomes, ((producer, mseq),))))
                    refs.clear()
    return [messages[at : at + per_read] for at in range(0, len(messages), per_read)]


class FakeConnection:
    """Delivers the prepared reads, and our own multicasts to WORK back to us."""

    private_group = ME

    def __init__(self, reads: list[list[DaemonMessage]]) -> None:
        self._reads = deque(reads)
        self._looped: list[DaemonMessage] = []
        self._joined: list[DaemonMessage] = []
        self.acks = 0
        self.finished = anyio.Event()
        self.done: Callable[[], bool] = lambda: False
        self.room: Callable[[], bool] = lambda: True  # flow control: may more jobs come?
        self._sink: Callable[[Sequence[DaemonMessage]], object] | None = None
        self._came_back = anyio.Event()  # set when one of our messages is looped back

    async def join(self, group: str) -> None:
        self._joined.append(RegularMembership(group, GroupId(1, 1, 1), MEMBERS, Cause.JOIN))

    async def leave(self, group: str) -> None:
        pass

    async def multicast(
        self,
        groups: str | Sequence[str],
        data: bytes,
        service: ServiceType = ServiceType.AGREED,
        mess_type: int = 0,
        self_discard: bool = False,
    ) -> None:
        names = (groups,) if isinstance(groups, str) else tuple(groups)
        if WORK in names:
            self.acks += 1
            self._looped.append(DataMessage(ME, names, service, mess_type, data))
            self._came_back.set()

    def deliver_to(
        self,
        sink: Callable[[Sequence[DaemonMessage]], object],
        end: Callable[[ConnectionLost], object],
    ) -> None:
        self._sink = sink

    def pace_reads(self, pace: Callable[[], float]) -> None:
        pass  # the stream is delivered as the benchmark paces it

    async def serve(self) -> None:
        """Play the daemon: hand the dispatcher one read per turn of the loop (one every
        ``PACE`` seconds when paced), and our own messages back as they come."""
        due = time.monotonic()
        while True:
            await anyio.lowlevel.checkpoint()
            sink = self._sink
            if sink is None:
                continue
            if self._joined:
                out, self._joined = self._joined, []
                sink(out)
            elif PACE and self._reads and self.room() and due > time.monotonic():
                if self._looped:  # the next read is not due yet: only ours come back
                    out, self._looped = self._looped, []
                    sink(out)
                    continue
                self._came_back = anyio.Event()
                with anyio.move_on_after(pace_wait(due - time.monotonic())):
                    await self._came_back.wait()
            elif self._looped or (self._reads and self.room()):
                if PACE and self._reads and self.room():
                    due += PACE
                out = self._reads.popleft() if self._reads and self.room() else []
                out, self._looped = self._looped + out, []
                sink(out)
            elif self._reads:
                continue  # the table holds IN_FLIGHT jobs: let it finish some first
            else:
                if self.done():
                    self.finished.set()
                await anyio.sleep(0.001)  # nothing left to deliver: poll for our own ACKs


def pace_wait(wait: float) -> float:
    """The wait until the next read is due, rounded up to a whole millisecond on uvloop.

    uvloop's timers and clock count whole milliseconds, and anyio re-arms a cancel
    scope's deadline timer until the loop's clock reaches it: a wait of a fraction of a
    millisecond turned the loop (and cost CPU) until it ended, which measured the bench's
    pacing, not the worker. Rounded up, a read is at most a millisecond late, and the
    next is due that much sooner (the pace is kept on average); see
    :mod:`spreadq.actors.timers`."""
    return timer_delay(wait)


async def run(jobs: int, batch: int, ack_every: int, per_read: int) -> tuple[float, float]:
    app = App(QUEUE, rule=RULE, plugins=False)

    if STAMPED:

        @app.handler("noop")
        async def stamp(data: bytes) -> bytes:
            return STAMP.pack(time.time())

    else:

        @app.handler("noop")
        async def noop(data: bytes) -> None:
            return None

    app.freeze()
    conn = FakeConnection(stream(jobs, batch, ack_every, per_read))
    dispatcher = Dispatcher(
        conn,
        app.spec(),
        settings=Settings(),
    )
    table = dispatcher.table
    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.serve)
        await tg.start(dispatcher.run)
        conn.done = lambda: table.stats.completed >= jobs
        conn.room = lambda: table.outstanding_count < IN_FLIGHT
        started, cpu = time.perf_counter(), time.process_time()
        await conn.finished.wait()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        tg.cancel_scope.cancel()
    return seconds, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=64, help="jobs per JOB BATCH message")
    parser.add_argument("--ack-every", type=int, default=200, help="jobs between ACK rounds")
    parser.add_argument("--per-read", type=int, default=8, help="messages per socket read")
    parser.add_argument(
        "--members", type=int, default=4, choices=range(1, 9), help="members (1: every job ours)"
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument(
        "--notify", action="store_true", help="the jobs ask for NOTICEs of their outcomes"
    )
    parser.add_argument(
        "--pace", type=float, default=0.0, help="seconds between two reads (0: no wait)"
    )
    parser.add_argument(
        "--stamp", action="store_true", help="the handler returns its start time, not None"
    )
    parser.add_argument(
        "--rule", choices=["round_robin", "sticky", "fill_first"], default="round_robin"
    )
    args = parser.parse_args()
    global MEMBERS, NOTIFY, PACE, STAMPED, RULE
    MEMBERS = ALL_MEMBERS[: args.members]
    if args.rule == "fill_first":  # listed last: a follower of the first member
        MEMBERS = (*MEMBERS[1:], ME)
    NOTIFY, PACE, STAMPED, RULE = args.notify, args.pace, args.stamp, args.rule
    tune_collector()  # as App.run() does in a worker
    seconds, cpu = anyio.run(
        run,
        args.jobs,
        args.batch,
        args.ack_every,
        args.per_read,
        backend_options={"use_uvloop": args.uvloop},
    )
    print(
        f"{args.jobs:,} jobs through one replica of {args.members} ({args.batch} per message"
        f"{f', one every {args.pace * 1e3:g} ms' if args.pace else ''}"
        f"{f', {args.rule}' if args.rule != 'round_robin' else ''}):"
        f" {args.jobs / seconds:,.0f} jobs/s, {seconds / args.jobs * 1e6:.2f} us/job"
        f" ({cpu / args.jobs * 1e6:.2f} us/job of CPU)"
    )


if __name__ == "__main__":
    main()
