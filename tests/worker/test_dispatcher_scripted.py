"""The Dispatcher's loop on a scripted connection: the test plays the daemon.

What the dispatcher sends (joins, leaves, multicasts) is recorded; what it reads is
what the test feeds, one batch per socket read. So a test can put the loop in states
the embedded daemon does not reach on demand (a rejected message, a NETWORK change, a
transitional view, an item read between our leave and our self-leave) and, after
``wait_all_tasks_blocked``, look at exactly what it did. Written from the dispatcher's
surviving mutants (docs/mutation.md).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import pytest
from structlog.testing import capture_logs
from test_dispatcher import FAST, FEEDBACK, QUEUE, WAIT, Item

from spreadq.context import Context
from spreadq.errors import CloseReason, ConnectionLost
from spreadq.observe import Counters, EventBus, JobRetried, JobTakenOver
from spreadq.queue import (
    MESS_TYPE,
    Ack,
    Drain,
    JobBatch,
    JobOrphaned,
    JobSpec,
    Outcome,
    View,
    decode,
    encode_batch,
)
from spreadq.queue.envelope import Stats
from spreadq.queue.jobs import JobRef
from spreadq.queue.protocol import NOT_BEFORE_HEADER, PRIORITY_HEADER
from spreadq.queue.seal import Seal
from spreadq.session.translate import Refused
from spreadq.settings import Settings
from spreadq.wire.constants import Cause, ServiceType
from spreadq.wire.events import (
    DaemonMessage,
    DataMessage,
    GroupId,
    RegularMembership,
    RejectedMessage,
    SelfLeave,
    TransitionalMembership,
)
from spreadq.worker.app import App
from spreadq.worker.dispatcher import Dispatcher
from spreadq.worker.periodic import PeriodicTick, TickAnnouncer

ME = "#a#localhost"
OTHER = "#z#localhost"
PRODUCER = "#p#localhost"


@dataclass
class Scripted:
    """A connection whose daemon is the test."""

    private_group: str = ME
    joined: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    sent: list[tuple[tuple[str, ...], bytes]] = field(default_factory=list)
    on_leave: Callable[[], None] | None = None
    echoed: set[int] = field(default_factory=set)
    seal: Seal | None = None  # the queue's, to read what we sent
    _index: int = 0

    def __post_init__(self) -> None:
        self._sink: Callable[[Sequence[DaemonMessage]], object] | None = None
        self._end: Callable[[ConnectionLost], object] | None = None
        self._early: list[list[DaemonMessage]] = []  # fed before deliver_to
        self._lost = False

    async def join(self, group: str) -> None:
        self.joined.append(group)

    async def leave(self, group: str) -> None:
        self.left.append(group)
        if self.on_leave is not None:
            self.on_leave()

    async def multicast(
        self,
        groups: str | Sequence[str],
        data: bytes,
        service: ServiceType = ServiceType.AGREED,
        mess_type: int = 0,
        self_discard: bool = False,
    ) -> None:
        self.sent.append(((groups,) if isinstance(groups, str) else tuple(groups), data))

    def deliver_to(
        self,
        sink: Callable[[Sequence[DaemonMessage]], object],
        end: Callable[[ConnectionLost], object],
    ) -> None:
        self._sink, self._end = sink, end
        for events in self._early:
            sink(events)
        self._early.clear()
        if self._lost:
            end(ConnectionLost(CloseReason.RESET))

    def pace_reads(self, pace: Callable[[], float]) -> None:
        self.pace = pace  # a script reads when it likes; a test may ask what pace says

    def feed(self, *events: DaemonMessage) -> None:
        """Deliver ``events`` in one read."""
        if self._sink is None:
            self._early.append(list(events))
        else:
            self._sink(list(events))

    def lose(self) -> None:
        """The daemon goes away: the session ends with ConnectionLost (RESET)."""
        if not self._lost:
            self._lost = True
            if self._end is not None:
                self._end(ConnectionLost(CloseReason.RESET))

    def close(self) -> None:
        self._sink = None

    def view(
        self,
        members: tuple[str, ...],
        cause: Cause = Cause.JOIN,
        changed: str = ME,
        group: str = QUEUE,
    ) -> RegularMembership:
        """A regular membership of ``group`` (a new group id each time)."""
        self._index += 1
        vs = (members,) if cause is Cause.NETWORK else ((changed,),)
        return RegularMembership(group, GroupId(1, 1, self._index), members, cause, vs, 0)

    def echo(self, kind: type) -> None:
        """Deliver back, in one read, what we multicast to WORK of envelope ``kind``
        and was not delivered back yet."""
        again = [
            n
            for n, (groups, data) in enumerate(self.sent)
            if n not in self.echoed and QUEUE in groups and isinstance(self.read(data), kind)
        ]
        self.echoed.update(again)
        self.feed(
            *[
                DataMessage(ME, self.sent[n][0], ServiceType.AGREED, MESS_TYPE, self.sent[n][1])
                for n in again
            ]
        )

    def read(self, data: bytes) -> Any:
        """Decode what we sent (unsealed first on a sealed queue)."""
        return decode(data if self.seal is None else self.seal.unseal(data, ME))

    def envelopes(self, kind: type, group: str = FEEDBACK) -> list[Any]:
        return [
            envelope
            for groups, data in self.sent
            if group in groups and isinstance(envelope := self.read(data), kind)
        ]


def jobs(
    mseq: int, seqs: Sequence[int], *, headers: Sequence[tuple[tuple[str, str], ...]] = ()
) -> DataMessage:
    """One JOB BATCH from the producer, as delivered on WORK."""
    specs = [
        JobSpec(seq, "job", Item(n=seq).model_dump_json().encode(), None, tuple(h))
        for seq, h in zip(seqs, headers or [()] * len(seqs), strict=True)
    ]
    batch = encode_batch(PRODUCER_ID, mseq, "json", specs)
    return DataMessage(PRODUCER, (QUEUE,), ServiceType.AGREED, MESS_TYPE, batch)


PRODUCER_ID = bytes(range(16))


def ref(seq: int) -> JobRef:
    return JobRef(PRODUCER_ID, seq)


@asynccontextmanager
async def serving(
    dispatcher: Dispatcher, conn: Scripted, lost: list[ConnectionLost] | None = None
) -> AsyncIterator[anyio.abc.TaskGroup]:
    """Run ``dispatcher`` and give it its first view (ours alone); the block waits for
    it to end (``lost`` collects the ConnectionLost it raises; None: it must not)."""

    async def run() -> None:
        try:
            await dispatcher.run()
        except ConnectionLost as error:
            if lost is None:
                raise
            lost.append(error)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await anyio.wait_all_tasks_blocked()
        conn.feed(conn.view((ME,)))
        await anyio.wait_all_tasks_blocked()
        yield tg


async def stop(dispatcher: Dispatcher, conn: Scripted) -> None:
    """Drain: deliver our DRAIN back, then our self-leave once we left."""
    dispatcher.handle.drain()
    await anyio.wait_all_tasks_blocked()
    conn.echo(Drain)
    await anyio.wait_all_tasks_blocked()
    assert conn.left == [QUEUE]
    conn.feed(SelfLeave(QUEUE))


Make = Callable[..., tuple[Dispatcher, Scripted]]


@pytest.fixture
def dispatcher_for() -> Iterator[Make]:
    """``dispatcher_for(app, settings, **kwargs)``: a Dispatcher on a new scripted
    connection (closed after the test)."""
    made: list[Scripted] = []

    def make(app: App, settings: Settings = FAST, **kwargs: Any) -> tuple[Dispatcher, Scripted]:
        secret = settings.secret
        conn = Scripted(seal=None if secret is None else Seal(secret.get_secret_value().encode()))
        made.append(conn)
        return Dispatcher(conn, app.spec(), settings=settings, **kwargs), conn

    yield make
    for conn in made:
        conn.close()


async def finish(dispatcher: Dispatcher) -> None:
    """End a dispatcher driven by hand: a drain before any view stops it at once."""
    dispatcher.handle.drain()
    with anyio.fail_after(WAIT):
        await dispatcher.run()


def echo_app(**kwargs: Any) -> App:
    app = App(QUEUE, plugins=False, **kwargs)

    @app.handler("job")
    async def job(item: Item) -> int:
        return item.n

    return app


# -- logs that no test on the daemon reaches ----------------------------------------------


async def test_a_message_the_daemon_rejected_is_logged_with_its_groups_and_type(
    dispatcher_for: Make,
) -> None:
    dispatcher, conn = dispatcher_for(echo_app())
    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(RejectedMessage(ME, (QUEUE, FEEDBACK), 7, MESS_TYPE, b"x"))
            await anyio.wait_all_tasks_blocked()
            await stop(dispatcher, conn)
    (rejected,) = [entry for entry in logs if entry["event"] == "message_rejected"]
    assert (rejected["groups"], rejected["old_type"], rejected["log_level"]) == (
        (QUEUE, FEEDBACK),
        7,
        "warning",
    )
    assert (rejected["queue"], rejected["member"], rejected["view"]) == (QUEUE, ME, 1)


async def test_an_orphaned_job_is_logged(dispatcher_for: Make) -> None:
    # the table orphans a job only when no holder survived, which its own replica never
    # lets happen (it holds what it could own): the effect's handler is driven directly
    dispatcher, _ = dispatcher_for(echo_app())
    with capture_logs() as logs:
        await dispatcher._effects[JobOrphaned](JobOrphaned(ref(3)))
    await finish(dispatcher)
    assert logs == [
        {
            "event": "job_orphaned",
            "job": str(ref(3)),
            "queue": QUEUE,
            "member": ME,
            "log_level": "warning",
        }
    ]


async def test_refused_senders_are_logged_once_each_and_at_most_1024(
    dispatcher_for: Make,
) -> None:
    dispatcher, _ = dispatcher_for(echo_app())
    with capture_logs() as logs:
        for n in range(1030):
            dispatcher._on_refused(Refused(f"#s{n}#localhost", "not sealed"))
        dispatcher._on_refused(Refused("#s0#localhost", "not sealed"))  # known: not again
    await finish(dispatcher)
    senders = [entry["sender"] for entry in logs if entry["event"] == "message_refused"]
    assert senders == [f"#s{n}#localhost" for n in range(1024)]


# -- the connection ------------------------------------------------------------------------


async def test_a_lost_connection_ends_an_idle_session_at_once(dispatcher_for: Make) -> None:
    # nothing to send (no view, no STATS for an hour): only the reader can tell
    quiet = FAST.replace(stats_interval=3600.0)
    dispatcher, conn = dispatcher_for(echo_app(), quiet)
    conn.lose()  # the reader's first read fails
    with anyio.fail_after(WAIT), pytest.raises(ConnectionLost) as lost:
        await dispatcher.run()
    assert lost.value.reason is CloseReason.RESET
    assert conn.joined == [QUEUE, FEEDBACK]
    assert conn.sent == []


# -- leaving ---------------------------------------------------------------------------


async def test_an_item_read_between_our_leave_and_our_self_leave_changes_nothing(
    dispatcher_for: Make,
) -> None:
    dispatcher, conn = dispatcher_for(echo_app())
    sent_at_leave: list[int] = []

    def at_leave() -> None:  # while we wait for our self-leave, the loop turns again
        sent_at_leave.append(len(conn.sent))
        dispatcher._post_stats_due()  # a STATS report falls due
        dispatcher.handle.drain()  # and a second drain comes

    conn.on_leave = at_leave
    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            dispatcher.handle.drain()
            await anyio.wait_all_tasks_blocked()
            conn.echo(Drain)
            await anyio.wait_all_tasks_blocked()
            conn.feed()  # one more read, empty
            await anyio.wait_all_tasks_blocked()
            assert conn.left == [QUEUE]  # once
            conn.feed(SelfLeave(QUEUE))
    assert sent_at_leave == [len(conn.sent)]  # nothing sent after the leave: no STATS
    assert [entry["event"] for entry in logs].count("worker_leaving") == 1


# -- views -----------------------------------------------------------------------------


@pytest.mark.parametrize("transitional", [False, True], ids=["regular", "transitional"])
async def test_a_feedback_newcomer_hears_our_view_unless_the_work_view_is_transitional(
    transitional: bool, dispatcher_for: Make
) -> None:
    dispatcher, conn = dispatcher_for(echo_app())
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            before = len(conn.envelopes(View))
            if transitional:
                conn.feed(TransitionalMembership(QUEUE, GroupId(1, 1, 1)))
            conn.feed(conn.view((ME, PRODUCER), changed=PRODUCER, group=FEEDBACK))
            await anyio.wait_all_tasks_blocked()
            after = len(conn.envelopes(View))
            if transitional:
                conn.feed(conn.view((ME,)))  # a regular view ends the transitional one
            await stop(dispatcher, conn)
    assert after - before == (0 if transitional else 1)


async def test_a_job_taken_over_after_a_network_change_names_no_member_that_left(
    dispatcher_for: Make,
) -> None:
    taken: list[JobTakenOver] = []
    events = EventBus([lambda e: taken.append(e) if isinstance(e, JobTakenOver) else None])
    dispatcher, conn = dispatcher_for(echo_app(), events=events)
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(conn.view((ME, OTHER), changed=OTHER))
            conn.feed(jobs(0, [0, 1]))
            await anyio.wait_all_tasks_blocked()
            assert dispatcher.table.owner_of(ref(1)) == OTHER
            conn.feed(TransitionalMembership(QUEUE, GroupId(1, 1, 2)))
            conn.feed(conn.view((ME,), Cause.NETWORK))  # OTHER is on the other side
            await anyio.wait_all_tasks_blocked()
            await stop(dispatcher, conn)
    assert [(e.ref, e.member, e.previous) for e in taken] == [(ref(1), ME, "")]


# -- recovered and kept outcomes ---------------------------------------------------------


def acks_naming(conn: Scripted, job: JobRef) -> int:
    """How many ACKs we sent to WORK that report ``job``."""
    return sum(any(r == job for r, _ in ack.outcomes) for ack in conn.envelopes(Ack, QUEUE))


async def test_recovered_outcomes_are_said_again_at_joins_for_twice_the_longest_backoff(
    dispatcher_for: Make,
) -> None:
    now = [100.0]
    recovered = [(ref(9), Outcome.success(b"9"))]
    settings = FAST.replace(reconnect_backoff_max=10.0)  # said again until 120
    dispatcher, conn = dispatcher_for(
        echo_app(), settings, clock=lambda: now[0], recovered=recovered
    )
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            assert acks_naming(conn, ref(9)) == 1  # between the joins
            now[0] = 101.0
            conn.feed(conn.view((ME, OTHER), changed=OTHER))
            await anyio.wait_all_tasks_blocked()
            assert acks_naming(conn, ref(9)) == 2  # for the newcomer
            now[0] = 125.0
            conn.feed(conn.view((ME, OTHER, PRODUCER), changed=PRODUCER))
            await anyio.wait_all_tasks_blocked()
            assert acks_naming(conn, ref(9)) == 2  # past 120: no more
            conn.feed(conn.view((ME,), Cause.LEAVE, changed=OTHER))
            conn.feed(conn.view((ME,), Cause.LEAVE, changed=PRODUCER))
            await stop(dispatcher, conn)


def held_app(hold: int, gate: anyio.Event, **kwargs: Any) -> App:
    """An app whose handler holds job ``hold`` until ``gate`` is set."""
    app = App(QUEUE, plugins=False, **kwargs)

    @app.handler("job")
    async def job(item: Item) -> int:
        if item.n == hold:
            await gate.wait()
        return item.n

    return app


async def test_outcomes_kept_past_the_sweep_threshold_stay_until_their_ack_is_delivered(
    dispatcher_for: Make,
) -> None:
    # the session keeps 2 * (ack_every + concurrency) = 4 outcomes before it sweeps
    settings = FAST.replace(ack_every=1, concurrency=1)
    dispatcher, conn = dispatcher_for(echo_app(), settings)
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(jobs(0, range(6)))
            await anyio.wait_all_tasks_blocked()
            assert acks_naming(conn, ref(5)) == 1  # sent, not delivered yet
            kept = [job for job, _ in dispatcher.unconfirmed_outcomes()]
            assert kept == [ref(n) for n in range(6)]
            conn.echo(Ack)
            await anyio.wait_all_tasks_blocked()
            assert dispatcher.unconfirmed_outcomes() == []
            await stop(dispatcher, conn)


async def test_an_outcome_reached_after_the_loss_is_kept_past_the_sweep_threshold(
    dispatcher_for: Make,
) -> None:
    gate = anyio.Event()
    settings = FAST.replace(ack_every=1, concurrency=1, cancel_on_disconnect=False)
    dispatcher, conn = dispatcher_for(held_app(4, gate), settings)
    lost: list[ConnectionLost] = []
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn, lost):
            conn.feed(jobs(0, range(5)))
            await anyio.wait_all_tasks_blocked()  # four kept (no sweep yet), 4 running
            conn.lose()
            await anyio.wait_all_tasks_blocked()  # the session winds down, waiting for 4
            gate.set()  # its outcome is the fifth kept: the sweep keeps them all
    assert [error.reason for error in lost] == [CloseReason.RESET]
    kept = [job for job, _ in dispatcher.unconfirmed_outcomes()]
    assert kept == [ref(n) for n in range(5)]


# -- what the scheduler is offered ---------------------------------------------------------


async def test_a_given_up_job_fails_before_our_queued_ones_in_the_view_it_was_given_up_in(
    dispatcher_for: Make,
) -> None:
    gate = anyio.Event()
    order: list[object] = []
    app = App(QUEUE, plugins=False)

    @app.handler("job")
    async def job(item: Item) -> int:
        order.append(item.n)
        if item.n == 0:
            await gate.wait()
        return item.n

    @app.on_failure
    async def failed(ctx: Context, error: BaseException) -> None:
        order.append(("lost", str(ctx.job), ctx.view.members))

    settings = FAST.replace(max_failovers=0, concurrency=1)
    dispatcher, conn = dispatcher_for(app, settings)
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(conn.view((ME, OTHER), changed=OTHER))
            conn.feed(conn.view((ME, OTHER, PRODUCER), changed=PRODUCER))
            conn.feed(jobs(0, range(6)))
            await anyio.wait_all_tasks_blocked()
            owners = [dispatcher.table.owner_of(ref(n)) for n in range(6)]
            assert owners == [ME, OTHER, PRODUCER] * 2  # 0 runs, 3 waits for the slot
            conn.feed(conn.view((ME, PRODUCER), Cause.LEAVE, changed=OTHER))  # 1, 4 given up
            await anyio.wait_all_tasks_blocked()
            assert [dispatcher.table.owner_of(ref(n)) for n in (1, 4)] == [ME, PRODUCER]
            gate.set()
            await anyio.wait_all_tasks_blocked()
            assert order == [0, ("lost", str(ref(1)), (ME, PRODUCER)), 3]
            conn.echo(Ack)
            conn.feed(conn.view((ME,), Cause.LEAVE, changed=PRODUCER))  # 2, 5 given up
            await anyio.wait_all_tasks_blocked()
            conn.echo(Ack)
            await stop(dispatcher, conn)


async def test_delayed_jobs_that_come_due_together_start_by_priority(
    dispatcher_for: Make,
) -> None:
    now = [100.0]
    gate = anyio.Event()
    order: list[int] = []
    app = App(QUEUE, plugins=False)

    @app.handler("job")
    async def job(item: Item) -> int:
        order.append(item.n)
        if item.n == 0:
            await gate.wait()
        return item.n

    soon = time.time() + 60.0
    headers = [  # 1 comes due first, 2 has the higher priority
        (),
        ((NOT_BEFORE_HEADER, str(soon)), (PRIORITY_HEADER, "0")),
        ((NOT_BEFORE_HEADER, str(soon + 1.0)), (PRIORITY_HEADER, "5")),
    ]
    settings = FAST.replace(concurrency=1, ack_every=1)
    dispatcher, conn = dispatcher_for(app, settings, clock=lambda: now[0])
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(jobs(0, range(3), headers=headers))
            await anyio.wait_all_tasks_blocked()  # 0 runs; 1 and 2 wait a minute
            now[0] = 200.0
            conn.feed()  # the loop looks at its clock: both are due, the slot is busy
            await anyio.wait_all_tasks_blocked()
            assert order == [0]
            gate.set()
            await anyio.wait_all_tasks_blocked()
            conn.echo(Ack)
            await stop(dispatcher, conn)
    assert order == [0, 2, 1]


# -- sealing -------------------------------------------------------------------------------


@pytest.mark.parametrize("accept", [False, True], ids=["refused", "accepted"])
async def test_a_raw_message_on_a_sealed_queue_passes_only_with_accept_unsealed_raw(
    accept: bool, dispatcher_for: Make
) -> None:
    settings = FAST.replace(secret="s3cret", accept_unsealed_raw=accept)
    dispatcher, conn = dispatcher_for(echo_app(), settings)
    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(DataMessage(PRODUCER, (QUEUE,), ServiceType.AGREED, 0, b"plain"))
            await anyio.wait_all_tasks_blocked()
            dispatcher.handle.drain()
            await anyio.wait_all_tasks_blocked()
            conn.feed(
                *[
                    DataMessage(ME, groups, ServiceType.AGREED, MESS_TYPE, data)
                    for groups, data in conn.sent
                    if QUEUE in groups
                ]
            )
            await anyio.wait_all_tasks_blocked()
            conn.feed(SelfLeave(QUEUE))
    refused = [entry["sender"] for entry in logs if entry["event"] == "message_refused"]
    assert refused == ([] if accept else [PRODUCER])


async def test_a_dead_letter_on_a_sealed_queue_is_sealed_for_us(dispatcher_for: Make) -> None:
    app = App(QUEUE, plugins=False, dead_letter=True)

    @app.handler("job")
    async def job(item: Item) -> int:
        raise ValueError(item.n)

    settings = FAST.replace(secret="s3cret", max_attempts=1)
    dispatcher, conn = dispatcher_for(app, settings)
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            sealed = Seal(b"s3cret").seal(jobs(0, [0]).data, PRODUCER)
            conn.feed(DataMessage(PRODUCER, (QUEUE,), ServiceType.AGREED, MESS_TYPE, sealed))
            await anyio.wait_all_tasks_blocked()
            conn.echo(Ack)
            await stop(dispatcher, conn)
    (dead,) = [data for groups, data in conn.sent if groups == (f"{QUEUE}.dead",)]
    batch = decode(Seal(b"s3cret").unseal(dead, ME))  # sealed for us, like our others
    assert isinstance(batch, JobBatch)
    assert [letter.kind for letter in batch.jobs] == ["job"]


async def test_an_idle_worker_acks_at_once_once_the_max_rate_s_gap_has_passed(
    dispatcher_for: Make,
) -> None:
    now = [100.0]
    # no ACK for the count or the interval: only the idle rule sends one
    settings = FAST.replace(ack_every=10_000, ack_interval=60.0, ack_max_rate=1.0)
    dispatcher, conn = dispatcher_for(echo_app(), settings, clock=lambda: now[0])
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(jobs(0, [0]))
            await anyio.wait_all_tasks_blocked()
            assert acks_naming(conn, ref(0)) == 1  # idle: at once
            now[0] = 101.5  # past the gap of 1 / ack_max_rate seconds
            conn.feed(jobs(1, [1]))
            await anyio.wait_all_tasks_blocked()
            assert acks_naming(conn, ref(1)) == 1
            conn.echo(Ack)
            await stop(dispatcher, conn)


# -- periodic ticks ------------------------------------------------------------------------


@pytest.fixture
def wall(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The periodic ticks' wall clock (Unix seconds), moved by the test."""
    now = [1000.5]
    defaults = {**(TickAnnouncer.__init__.__kwdefaults__ or {}), "wall": lambda: now[0]}
    monkeypatch.setattr(TickAnnouncer.__init__, "__kwdefaults__", defaults)
    return now


def beat_app() -> App:
    app = echo_app()

    @app.periodic(1.0, name="beat")
    async def beat(tick: PeriodicTick) -> None:
        pass

    return app


def announced(conn: Scripted) -> list[int]:
    """The ticks we announced (TICK batches to WORK)."""
    return [
        json.loads(bytes(job.payload))["tick"]
        for batch in conn.envelopes(JobBatch, QUEUE)
        for job in batch.jobs
    ]


async def test_no_tick_is_announced_while_the_work_view_is_transitional(
    dispatcher_for: Make, wall: list[float]
) -> None:
    dispatcher, conn = dispatcher_for(beat_app())
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            wall[0] = 1001.5
            conn.feed()
            await anyio.wait_all_tasks_blocked()
            first = announced(conn)
            assert first  # the lone member announces
            conn.feed(TransitionalMembership(QUEUE, GroupId(1, 1, 1)))
            wall[0] = 1002.5
            conn.feed()
            await anyio.wait_all_tasks_blocked()
            assert announced(conn) == first
            conn.feed(conn.view((ME,), Cause.NETWORK))
            await stop(dispatcher, conn)


async def test_no_tick_is_announced_after_our_leave(
    dispatcher_for: Make, wall: list[float]
) -> None:
    dispatcher, conn = dispatcher_for(beat_app())

    def at_leave() -> None:
        wall[0] += 5.0  # ticks fall due while we wait for our self-leave
        dispatcher.handle.drain()  # and the loop turns

    conn.on_leave = at_leave
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            wall[0] = 1001.5
            conn.feed()
            await anyio.wait_all_tasks_blocked()
            first = announced(conn)
            assert first
            dispatcher.handle.drain()
            await anyio.wait_all_tasks_blocked()
            conn.echo(Drain)
            await anyio.wait_all_tasks_blocked()
            assert conn.left == [QUEUE]
            assert announced(conn) == first
            conn.feed(SelfLeave(QUEUE))


# -- what a caller building a Dispatcher passes ------------------------------------------------


async def test_many_producers_in_feedback_make_a_worker_report_its_reads_sooner(
    dispatcher_for: Make,
) -> None:
    # only the window's split makes an ACK due: no count, interval or idle ACK would
    settings = FAST.replace(ack_every=10_000, ack_interval=60.0, ack_max_rate=None)
    dispatcher, conn = dispatcher_for(echo_app(), settings)
    producers = tuple(f"#p{n}#localhost" for n in range(10))
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            watcher = "#~top#localhost"  # an observer takes no share
            conn.feed(conn.view((ME, *producers, watcher), group=FEEDBACK))
            await anyio.wait_all_tasks_blocked()
            for mseq in range(1, 20):  # a third of 600 // 10 is 20 messages
                conn.feed(jobs(mseq, [mseq]))
            await anyio.wait_all_tasks_blocked()
            assert conn.envelopes(Ack) == []
            conn.feed(jobs(20, [20]))
            await anyio.wait_all_tasks_blocked()
            (ack,) = conn.envelopes(Ack)
            assert ack.positions == ((PRODUCER_ID, 20),)
            await stop(dispatcher, conn)


async def test_a_dispatcher_acks_with_the_incarnation_it_was_given(dispatcher_for: Make) -> None:
    incarnation = bytes([7]) * 16
    settings = FAST.replace(ack_every=1)
    dispatcher, conn = dispatcher_for(echo_app(), settings, incarnation=incarnation)
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(jobs(0, [0]))
            await anyio.wait_all_tasks_blocked()
            conn.echo(Ack)
            await stop(dispatcher, conn)
    acks = conn.envelopes(Ack, QUEUE)
    assert acks
    assert {ack.incarnation for ack in acks} == {incarnation}
    assert dispatcher.table.incarnation == incarnation


async def test_a_dispatcher_feeds_the_counters_it_was_given(dispatcher_for: Make) -> None:
    counters = Counters()
    dispatcher, conn = dispatcher_for(echo_app(), FAST.replace(ack_every=1), counters=counters)
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(jobs(0, [0, 1]))
            await anyio.wait_all_tasks_blocked()
            conn.echo(Ack)
            await stop(dispatcher, conn)
    assert counters.total("succeeded", "job") == 2


async def test_a_dispatcher_jitters_retries_with_the_rng_it_was_given(
    dispatcher_for: Make,
) -> None:
    retried: list[float] = []
    app = App(QUEUE, plugins=False)

    @app.handler("job")
    async def job(item: Item, ctx: Context) -> int:
        if ctx.attempt == 1:
            raise ValueError("once")
        return item.n

    events = EventBus([lambda e: retried.append(e.delay) if isinstance(e, JobRetried) else None])
    settings = FAST.replace(ack_every=1, retry_backoff_base=0.01, retry_jitter=0.5)
    dispatcher, conn = dispatcher_for(app, settings, rng=random.Random(7), events=events)
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(jobs(0, [0]))
            while not conn.envelopes(Ack, QUEUE):  # after the retry's delay
                await anyio.wait_all_tasks_blocked()
            conn.echo(Ack)
            await stop(dispatcher, conn)
    assert retried == [0.01 * (1.0 + random.Random(7).uniform(-0.5, 0.5))]


async def test_a_dispatcher_given_no_counters_counts_its_jobs_in_its_stats(
    dispatcher_for: Make,
) -> None:
    settings = FAST.replace(ack_every=1, stats_interval=3600.0)
    dispatcher, conn = dispatcher_for(echo_app(), settings)
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(jobs(0, [0, 1]))
            await anyio.wait_all_tasks_blocked()
            conn.echo(Ack)
            dispatcher._post_stats_due()  # what its STATS ticker posts every interval
            await anyio.wait_all_tasks_blocked()
            await stop(dispatcher, conn)
    assert len(conn.envelopes(Stats)) == 1
    assert conn.envelopes(Stats)[-1].done == 2


async def test_a_dispatcher_given_no_history_keeps_settings_completed_history_outcomes(
    dispatcher_for: Make,
) -> None:
    ran: list[int] = []
    app = App(QUEUE, plugins=False)

    @app.handler("job")
    async def job(item: Item) -> int:
        ran.append(item.n)
        return item.n

    settings = FAST.replace(ack_every=1, completed_history=1)  # at least 1, at most 2
    dispatcher, conn = dispatcher_for(app, settings)
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            for seq in range(4):
                conn.feed(jobs(seq, [seq]))
                await anyio.wait_all_tasks_blocked()
                conn.echo(Ack)
            conn.feed(jobs(4, [3]), jobs(5, [0]))  # copies sent again: 3 is remembered
            await anyio.wait_all_tasks_blocked()
            conn.echo(Ack)
            await stop(dispatcher, conn)
    assert ran == [0, 1, 2, 3, 0]


# -- the loop's alarm --------------------------------------------------------------------


async def test_the_loop_sleeps_until_its_next_deadline(dispatcher_for: Make) -> None:
    calls = [0]

    def clock() -> float:
        calls[0] += 1
        return 100.0

    later = str(time.time() + 60.0)
    settings = FAST.replace(stats_interval=3600.0)
    dispatcher, conn = dispatcher_for(echo_app(), settings, clock=clock)
    lost: list[ConnectionLost] = []
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn, lost):
            conn.feed(jobs(0, [0], headers=[((NOT_BEFORE_HEADER, later),)]))
            await anyio.wait_all_tasks_blocked()  # the job waits a minute
            before = calls[0]
            for _ in range(3):
                await anyio.wait_all_tasks_blocked()
            assert calls[0] == before  # no turn of the loop: its alarm rings in a minute
            conn.lose()  # the end (a drain would wait for the job)
    assert len(lost) == 1


async def test_delayed_jobs_start_at_their_times_whatever_order_they_came_in(
    dispatcher_for: Make,
) -> None:
    started: list[int] = []
    two = anyio.Event()
    app = App(QUEUE, plugins=False)

    @app.handler("job")
    async def job(item: Item) -> int:
        started.append(item.n)
        if len(started) == 2:
            two.set()
        return item.n

    def after(*delays: float) -> list[tuple[tuple[str, str], ...]]:
        now = time.time()
        return [((NOT_BEFORE_HEADER, str(now + delay)),) for delay in delays]

    # nothing else wakes the loop: no STATS report, each ACK sent at once
    settings = FAST.replace(ack_every=1, ack_interval=60.0, stats_interval=3600.0)
    dispatcher, conn = dispatcher_for(app, settings)
    lost: list[ConnectionLost] = []
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn, lost):
            conn.feed(jobs(0, [0], headers=after(60.0)))
            await anyio.wait_all_tasks_blocked()  # the loop's alarm: in a minute
            conn.feed(jobs(1, [1, 2], headers=after(0.1, 0.2)))  # moved earlier, rings twice
            await two.wait()
            conn.lose()  # the end (a drain would wait a minute for job 0)
    assert started == [1, 2]
    assert len(lost) == 1


async def test_a_deadline_the_clock_reads_exactly_is_met(dispatcher_for: Make) -> None:
    now = [100.0]
    # a coarse clock may read a deadline exactly: the ACK due at 101.0 goes out then
    settings = FAST.replace(ack_every=10_000, ack_interval=1.0, ack_max_rate=None)
    dispatcher, conn = dispatcher_for(echo_app(), settings, clock=lambda: now[0])
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(jobs(0, [0]))
            await anyio.wait_all_tasks_blocked()
            assert acks_naming(conn, ref(0)) == 0  # due at 101.0
            now[0] = 101.0
            conn.feed()  # the loop looks at its clock
            while not acks_naming(conn, ref(0)):
                await anyio.wait_all_tasks_blocked()
            conn.echo(Ack)
            await stop(dispatcher, conn)


def test_on_uvloop_a_deadline_under_a_millisecond_away_arms_a_timer_not_a_spin(
    dispatcher_for: Make,
) -> None:
    # uvloop rounds a delay to whole milliseconds and runs one under half a millisecond
    # at the next turn: the loop used to wake at once, find the deadline not yet come
    # and ask again, turning until the clock reached it
    pytest.importorskip("uvloop", reason="uvloop is not installed (pip install 'spreadq[uvloop]')")
    settings = FAST.replace(
        ack_every=10_000, ack_interval=0.0002, ack_max_rate=None, stats_interval=3600.0
    )
    # the clock is stopped, so the deadline stays 0.2 ms away and the alarm rings again
    # each millisecond for as long as the test runs: what must not happen is a turn of the
    # loop that no ring caused, or rings less than a millisecond apart
    dispatcher, conn = dispatcher_for(echo_app(), settings, clock=lambda: 100.0)
    turns, rings = [0], list[float]()
    wait_time, ring = dispatcher._wait_time, dispatcher._ring

    def counted_wait_time() -> float | None:  # called once each turn of the loop
        turns[0] += 1
        return wait_time()

    def timed_ring() -> None:
        rings.append(asyncio.get_running_loop().time())  # whole milliseconds on uvloop
        ring()

    dispatcher._wait_time = counted_wait_time  # type: ignore[method-assign]
    dispatcher._ring = timed_ring  # type: ignore[method-assign]
    armed: list[float] = []
    lost: list[ConnectionLost] = []

    async def main() -> None:
        with anyio.fail_after(WAIT):
            async with serving(dispatcher, conn, lost):
                conn.feed(jobs(0, [0]))  # its outcome waits for the ACK due at 100.0002
                await anyio.wait_all_tasks_blocked()
                alarm = dispatcher._alarm
                assert alarm is not None
                assert hasattr(alarm, "when")  # a timer, not a call at the next turn
                armed.append(alarm.when() - asyncio.get_running_loop().time())
                turns_before, rings_before = turns[0], len(rings)
                for _ in range(200):  # turns of the event loop: a spinning dispatcher turns too
                    await asyncio.sleep(0)
                assert turns[0] - turns_before <= len(rings) - rings_before + 1
                conn.lose()  # the end (a drain would wait for the ACK)

    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
    assert armed[0] >= 0.001 - 1e-6
    assert all(later - earlier >= 0.001 - 1e-6 for earlier, later in itertools.pairwise(rings))
    assert len(lost) == 1


async def test_a_member_that_only_follows_reports_its_position_on_the_position_interval(
    dispatcher_for: Make,
) -> None:
    now = [100.0]
    settings = FAST.replace(
        ack_every=10_000, ack_interval=0.05, ack_position_interval=1.0, ack_max_rate=None
    )
    app = echo_app(rule="fill_first")
    dispatcher, conn = dispatcher_for(app, settings, clock=lambda: now[0])
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(conn.view(("#0#localhost", ME), changed="#0#localhost"))
            conn.feed(jobs(0, [0, 1]))  # fill_first: the first member's, not ours
            await anyio.wait_all_tasks_blocked()
            now[0] = 100.5  # past ack_interval: a member with work would ACK by now
            conn.feed()  # the loop looks at its clock
            await anyio.wait_all_tasks_blocked()
            assert conn.envelopes(Ack, QUEUE) == []
            now[0] = 101.0
            conn.feed()
            while not conn.envelopes(Ack, QUEUE):
                await anyio.wait_all_tasks_blocked()
            (ack,) = conn.envelopes(Ack, QUEUE)
            assert (ack.outcomes, ack.positions, ack.backlog) == ((), ((PRODUCER_ID, 0),), 0)
            await stop(dispatcher, conn)


async def test_the_ack_interval_of_the_settings_is_the_one_the_table_keeps(
    dispatcher_for: Make,
) -> None:
    now = [100.0]
    settings = FAST.replace(ack_every=10_000, ack_interval=1.0, ack_max_rate=None)
    dispatcher, conn = dispatcher_for(echo_app(), settings, clock=lambda: now[0])
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(jobs(0, [0]))
            await anyio.wait_all_tasks_blocked()
            now[0] = 100.5  # past the table's own default (0.05 s), before the setting's
            conn.feed()  # the loop looks at its clock
            await anyio.wait_all_tasks_blocked()
            assert acks_naming(conn, ref(0)) == 0
            now[0] = 101.0
            conn.feed()
            while not acks_naming(conn, ref(0)):
                await anyio.wait_all_tasks_blocked()
            conn.echo(Ack)
            await stop(dispatcher, conn)
