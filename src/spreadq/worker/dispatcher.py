"""Dispatcher: feeds the replicated queue table and runs the handlers of the jobs we own.

Theory of operation
-------------------
One Dispatcher serves one session of a worker (a reconnected worker is a new member
with no history, so it gets a new Dispatcher and a fresh
:class:`~spreadq.queue.OutstandingTable`). Everything it does goes through one inbox,
read by one loop that alone touches the table::

    connection --(its reader: one item per socket read)----> inbox
    runner pool --(ended jobs, as one item; help; rescan)--> inbox
    handle.drain() ----------------------------------------> inbox
    stats ticker --(every settings.stats_interval)---------> inbox  (STATS to FEEDBACK)
                          |
             loop: translate WORK events -> table.apply(input, now) -> effects
                   carry out each effect (table below); start what the scheduler lets

Where each part lives: translation (wire events to table inputs, unsealing) is
:class:`~spreadq.session.translate.GroupTranslator`; which owned job starts when
(slots, per-key order, failover first, ``not_before`` delays) is
:class:`~spreadq.worker.scheduler.Scheduler`; the runner tasks and their time limits
are :class:`~spreadq.worker.pool.RunnerPool`; the FEEDBACK re-announce rule is
:func:`~spreadq.worker.feedback.view_to_reannounce`. This module is the loop that
joins them: it carries out the table's effects, and owns drain and loss.

The reader never waits for handlers: the inbox is unbounded, jobs wait in memory as
the bytes they came in, and only the jobs we own are decoded (by their handler task).

====================  ================================================================
effect                what the Dispatcher does
====================  ================================================================
RunJob                offer it to the :class:`~spreadq.worker.scheduler.Scheduler`
                      (slots, per-key order, failover first, ``not_before`` delays);
                      a runner task takes each job the scheduler starts
GiveUpJob             the same, but the runner fails it (``WorkerLost``, hooks) instead
                      of running it
CancelJob             cancel the job in the pool, or drop it in the scheduler
SendAck               multicast the ACK to WORK + FEEDBACK in one AGREED message
SendNotice            send the NOTICE to the producer's private group
AnnounceDrain/Hello   the same, with the DRAIN / HELLO envelope
AnnounceView          multicast the VIEW envelope to FEEDBACK
AnnounceLedger        multicast the LEDGER envelope to WORK (periodic ticks' ledger)
AnnounceRelease       multicast the RELEASE envelope to WORK (jobs we gave back)
ViewChanged           log it (and rebind the logger's ``view``)
JobsCompleted         nothing: every replica sees every completion, and the table has
                      done the work (skipped without a call: one per job)
JobOrphaned/Rejected  log a warning (one per unreadable message, whatever its slots)
CancelTaken           log ``job_cancelled`` (a CancelJob follows at the job's owner)
CancelRefused         log ``cancel_refused`` at warning: a CANCEL from a non-sender
AnswerResult          send the RESULT answer to the asker's private group
====================  ================================================================

The loop also watches the FEEDBACK group's memberships: when a member that is not a
consumer joins it, or after a NETWORK change of it, the rule may pick us to announce
the WORK view again to FEEDBACK.

The runners keep each job's end in the pool; the first one since the loop last looked
posts one item to the inbox, and the loop feeds the outcomes of all of them to the
table in one :class:`~spreadq.queue.JobsFinished`; the table decides when the ACK goes
out (the loop waits for the inbox at most until
:meth:`~spreadq.queue.OutstandingTable.next_deadline`, the scheduler's next delayed job
or the pool's next scan, then feeds a
:class:`~spreadq.queue.Tick`, moves due jobs to the ready queue and scans). It waits
without a cancel scope: one event-loop timer, kept while the deadline does not move
earlier, posts ``_WAKE`` to the inbox; a cancel scope with a deadline on every turn cost
about a tenth of a worker's CPU when messages came one per read.

Outcome notices (``settings.outcome_notices``): the outcomes of a producer's jobs that
ask for one (``Job.notify``: the consumers keep up with that producer) go to that
producer's private group in one NOTICE, so its receipts resolve without waiting for the
next ACK. The table decides which and when (:class:`~spreadq.queue.notices.NoticeQueue`):
the loop feeds it :class:`~spreadq.queue.TurnEnded` after a turn that left some waiting,
and it answers with :class:`~spreadq.queue.SendNotice` at once, unless NOTICEs went out
more often than once per ``settings.notice_interval`` lately, with one to spare (then at
the :class:`~spreadq.queue.Tick` that ends the interval, with those that ended
meanwhile); never for an outcome an ACK has reported already. No other consumer reads a
NOTICE; the ACK still settles the jobs at every replica.

Draining (:meth:`DispatcherHandle.drain`): the table announces DRAIN, after which it
assigns us no new work; the jobs we already own still run. Once our own DRAIN is
delivered, nothing we own is unfinished and every outcome has gone out in an ACK, we
leave the WORK group and stop at our self-leave. Past ``drain_timeout`` the running
handlers are cancelled and we leave anyway (the others take over those jobs).

Sealing (``settings.secret``, :mod:`spreadq.queue.seal`): every envelope we multicast
is sealed, and a WORK message whose seal does not verify (or a RAW one, unless
``settings.accept_unsealed_raw``) is dropped before the table sees it, the same at
every worker that shares the secret; the first one from each sender is logged.

Recovered outcomes: outcomes a lost session of this worker reached without seeing
them confirmed (:meth:`Dispatcher.unconfirmed_outcomes`, kept by the runtime with the
outcome history) are announced in an ACK right after joining, and again when others
join for a while, so a producer's re-sent copies are answered instead of run again.

Observing: the runners feed the worker's always-on
:class:`~spreadq.observe.Counters` and publish job events to its
:class:`~spreadq.observe.EventBus`; the loop publishes ``JobAssigned``, ``JobTakenOver``
(timed from the membership change that made it) and ``ViewInstalled``, each built only
when an observer takes its type. Every ``settings.stats_interval`` seconds, once in a
view, it multicasts a STATS report (:mod:`spreadq.worker.stats`) to FEEDBACK
only, with the read positions its own ACKs last reported.

Losing the daemon ends the session with :class:`~spreadq.errors.ConnectionLost`:
queued jobs are dropped, running handlers are cancelled (``settings.cancel_on_disconnect``)
or, if not, awaited (at most ``drain_timeout``), and :meth:`Dispatcher.run` raises it.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, NamedTuple, Protocol

import anyio
import anyio.abc

from spreadq.actors.channel import Channel
from spreadq.actors.timers import counts_whole_ms, whole_ms
from spreadq.errors import (
    ConnectionLost,
    EnvelopeError,
)
from spreadq.logs import get_logger
from spreadq.observe import (
    Counters,
    EventBus,
    JobAssigned,
    JobTakenOver,
)
from spreadq.observe import ViewInstalled as ViewPublished
from spreadq.queue import (
    MESS_TYPE,
    Ack,
    AnnounceDrain,
    AnnounceHello,
    AnnounceLedger,
    AnnounceRelease,
    AnnounceView,
    Busy,
    CancelJob,
    ChangeCause,
    GiveBack,
    GiveUpJob,
    Idle,
    Input,
    Job,
    JobFinished,
    JobOrphaned,
    JobRef,
    JobRejected,
    JobsCompleted,
    JobsFinished,
    JobsStarted,
    LeftGroup,
    Outcome,
    OutstandingTable,
    Producers,
    RunJob,
    SendAck,
    SendNotice,
    StartDraining,
    Tick,
    TurnEnded,
    ViewChanged,
    ViewInstalled,
    encode,
)
from spreadq.queue.effects import AnswerResult, CancelRefused, CancelTaken
from spreadq.queue.jobs import OutcomeHistory
from spreadq.queue.protocol import (
    DEFAULT_DRAIN_TIMEOUT,
    NOT_BEFORE_HEADER,
    count_producers,
    read_priority,
)
from spreadq.queue.rules import HeadroomRule, Rule
from spreadq.queue.seal import Seal
from spreadq.session.translate import GroupTranslator, Refused
from spreadq.settings import Settings
from spreadq.wire.constants import ServiceType
from spreadq.wire.events import (
    DaemonMessage,
    RegularMembership,
    RejectedMessage,
)
from spreadq.worker.deadletter import DeadLetters
from spreadq.worker.feedback import view_to_reannounce
from spreadq.worker.periodic import TickAnnouncer
from spreadq.worker.pool import ENDED, Ended, EndedReady, Help, QueuedJob, Rescan, RunnerPool
from spreadq.worker.recovery import Recovery
from spreadq.worker.runner import (
    JobRunner,
)
from spreadq.worker.scheduler import Scheduler
from spreadq.worker.spec import WorkerSpec
from spreadq.worker.standby import Standby
from spreadq.worker.stats import WorkerStats

__all__ = [
    "Dispatcher",
    "DispatcherConnection",
    "DispatcherHandle",
    "worker_table",
    "worth_giving_back",
]

log = get_logger(__name__)


class DispatcherConnection(Protocol):
    """What the Dispatcher needs of a connection (``spreadq.client.Connection`` fits)."""

    @property
    def private_group(self) -> str:
        """Our member name."""
        ...

    async def join(self, group: str) -> None:
        """Join a group."""
        ...

    async def leave(self, group: str) -> None:
        """Leave a group."""
        ...

    async def multicast(
        self,
        groups: str | Sequence[str],
        data: bytes,
        service: ServiceType = ServiceType.AGREED,
        mess_type: int = 0,
        self_discard: bool = False,
    ) -> None:
        """Send one message to one group or several."""
        ...

    def deliver_to(
        self,
        sink: Callable[[Sequence[DaemonMessage]], object],
        end: Callable[[ConnectionLost], object],
    ) -> None:
        """Hand every read's events to ``sink``, in the daemon's order, and the
        connection's end to ``end``; neither may block."""
        ...

    def pace_reads(self, pace: Callable[[], float]) -> None:
        """Ask ``pace`` before each read that would wait; leave the socket unread for
        what it returns (seconds) first."""
        ...


def worker_table(
    me: str,
    rule: Rule,
    settings: Settings,
    *,
    incarnation: bytes,
    history: OutcomeHistory | None = None,
) -> OutstandingTable:
    """The replicated table a worker session keeps, as ``me``, under ``rule``, with its
    ``settings`` (the ACK cadence and its bounds, the NOTICEs, the window, the failover
    limit, the memories' sizes) and ``incarnation``; ``history`` carries the outcomes a
    previous session of the worker remembers."""
    return OutstandingTable(
        me,
        rule=rule,
        incarnation=incarnation,
        capacity=settings.concurrency,
        history_size=settings.completed_history,
        ack_every=settings.ack_every,
        ack_every_seconds=settings.ack_interval,
        ack_position_seconds=settings.ack_position_interval,
        ack_idle_gap=None if settings.ack_max_rate is None else 1.0 / settings.ack_max_rate,
        notices=settings.outcome_notices,
        notice_interval=settings.notice_interval,
        window=settings.window,
        max_failovers=settings.max_failovers,
        history=history,
        dedupe_size=settings.dedupe_keys,
    )


def _when_and_priority(job: Job) -> tuple[float, int]:
    """The wall-clock time a job may start (``not_before`` header; 0 when none or bad)
    and its priority (``priority`` header; 0 when none or bad), from one decoding."""
    try:
        headers = job.headers()
    except EnvelopeError:
        return 0.0, 0  # the handler task reports a bad header block
    try:
        when = float(headers.get(NOT_BEFORE_HEADER, 0.0))
    except ValueError:
        when = 0.0  # a bad time runs now
    return when, read_priority(headers)


# --- the inbox ------------------------------------------------------------------------


class _Delivered(NamedTuple):
    """What one socket read decoded."""

    events: Sequence[DaemonMessage]


@dataclass(frozen=True, slots=True)
class _Lost:
    """The connection ended."""

    error: ConnectionLost


@dataclass(frozen=True, slots=True)
class _Drain:
    """Stop taking work, finish what we own, leave."""


@dataclass(frozen=True, slots=True)
class _StatsDue:
    """Time for the next STATS report (posted every ``settings.stats_interval``)."""


@dataclass(frozen=True, slots=True)
class _Wake:
    """The loop's alarm rang: the earliest deadline it was set for has come."""


_WAKE: Final = _Wake()
_TURN_ENDED: Final = TurnEnded()

_new_finished: Callable[[tuple[JobRef, Outcome]], JobFinished] = partial(tuple.__new__, JobFinished)
"""``JobFinished(ref, outcome)`` without the named tuple's Python ``__new__``: one a job."""

_Item = _Delivered | _Lost | EndedReady | _Drain | Help | Rescan | _StatsDue | _Wake


def worth_giving_back(
    queued: int, limit: int, busy_after: float, ended: int, seconds: float
) -> bool:
    """Whether a worker that just became busy, with ``queued`` jobs waiting for its
    ``limit`` slots, should give some back: when no handler attempt ended while they
    waited (``ended``, taking ``seconds`` all told), or when at that mean time the
    handlers need at least ``busy_after`` more for the jobs waiting. Otherwise the jobs
    are short and wait for the worker's loop, not its slots (a flood keeps every member
    so), and moving them would only cost."""
    return not ended or queued * seconds / ended >= limit * busy_after


def _post(inbox: Channel[_Item], item: _Item) -> None:
    """Put ``item`` in a Dispatcher's inbox (unbounded), unless it has stopped: then
    nobody would read it."""
    if not inbox.closed:
        inbox.send_nowait(item)


class DispatcherHandle:
    """How others talk to a running Dispatcher."""

    __slots__ = ("_inbox",)

    def __init__(self, inbox: Channel[_Item]) -> None:
        self._inbox = inbox

    def drain(self) -> None:
        """Ask the Dispatcher to drain and stop; returns at once. Idempotent."""
        _post(self._inbox, _Drain())  # a stopped dispatcher needs no drain


# --- the actor ------------------------------------------------------------------------


class Dispatcher:
    """Runs one worker session: the replicated table, the handlers, drain and loss.

    Args:
        conn: an open connection (we join the groups ourselves).
        spec: what the worker serves: queue, groups, handlers, rule, key order, hooks.
        settings: concurrency, retries, ACK cadence, history size, disconnect policy.
        drain_timeout: how long a drain (or, without ``cancel_on_disconnect``, the wait
            for handlers after a lost connection) may take.
        clock: monotonic seconds for the table's ACK cadence.
        rng: randomness for retry jitter.
        incarnation: 16 bytes naming this session in ACKs; random when None.
        history: the outcome history, kept by the worker across its sessions (a new
            one when None).
        recovered: outcomes a previous session of this worker reached and never saw
            confirmed (see :meth:`unconfirmed_outcomes`): announced in an ACK right
            after joining, so that re-sent copies of those jobs are answered, not run.
        events: the worker's event bus (a new one, with ``counters``, when None).
        counters: the worker's always-on counters (new ones when None), fed by the
            runners and read by the STATS report sent to FEEDBACK every
            ``settings.stats_interval`` seconds.
    """

    def __init__(
        self,
        conn: DispatcherConnection,
        spec: WorkerSpec,
        *,
        settings: Settings,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        incarnation: bytes | None = None,
        history: OutcomeHistory | None = None,
        recovered: Sequence[tuple[JobRef, Outcome]] = (),
        events: EventBus | None = None,
        counters: Counters | None = None,
    ) -> None:
        self._conn = conn
        self._queue = queue = spec.queue
        self._work = spec.work_group
        self._both = (spec.work_group, spec.feedback_group)
        self._feedback = spec.feedback_group
        self._settings = settings
        self._ordered_keys = spec.ordered_keys
        self._drain_timeout = drain_timeout
        self._clock = clock
        self._me = conn.private_group
        self._counters = counters = Counters(clock) if counters is None else counters
        self._events = events = EventBus((counters,)) if events is None else events
        self._view_at = clock()  # when the last WORK view was installed (takeover latency)
        self._view_left = ""  # the member whose departure made it ("" for NETWORK)
        job_runner = JobRunner(
            handlers=spec.handlers,
            settings=settings,
            failure_hooks=spec.failure_hooks,
            state=spec.state,
            queue=queue,
            member=self._me,
            rng=rng if rng is not None else random.Random(),
            clock=clock,
            events=events,
            counters=counters,
        )
        self._table = worker_table(
            self._me,
            spec.rule,
            settings,
            incarnation=incarnation if incarnation is not None else secrets.token_bytes(16),
            history=history,
        )
        table = self._table
        # periodic jobs: the ticks we announce (every table keeps and settles the ledger)
        schedules = spec.schedules
        self._ticks = TickAnnouncer(self._me, schedules, table.ticks) if schedules else None
        self._stats = WorkerStats(self._me, table, counters, interval=settings.stats_interval)
        secret = settings.secret
        self._seal = None if secret is None else Seal(secret.get_secret_value().encode())
        self._translator = GroupTranslator(
            spec.work_group, self._seal, accept_unsealed_raw=settings.accept_unsealed_raw
        )
        self._refused: set[str] = set()  # senders whose unsealed messages were logged
        self._recovery = Recovery(
            recovered,
            announce_for=2 * settings.reconnect_backoff_max,
            keep_at_least=2 * (settings.ack_every + settings.concurrency),
        )
        inbox: Channel[_Item] = Channel()
        self._inbox = inbox
        self._handle = DispatcherHandle(inbox)
        self._alarm: asyncio.TimerHandle | None = None  # posts _WAKE (see _serve)
        self._alarm_at = 0.0  # when it rings (loop time)
        self._loop: asyncio.AbstractEventLoop | None = None  # the alarm's, looked up once
        self._whole_ms = False  # its timers count whole milliseconds (uvloop)
        self._log = log.bind(queue=queue, member=self._me)
        # RunJob, the most frequent effect after JobsCompleted, is carried out in _apply
        self._effects: dict[type, Callable[[Any], Awaitable[None]]] = {
            GiveUpJob: self._on_give_up,
            CancelJob: self._on_cancel,
            SendAck: self._on_send_ack,
            SendNotice: self._on_send_notice,
            AnnounceDrain: self._on_announce_both,
            AnnounceHello: self._on_announce_both,
            AnnounceView: self._on_announce_view,
            AnnounceLedger: self._on_announce_work,
            AnnounceRelease: self._on_announce_work,
            ViewChanged: self._on_view_changed,
            JobOrphaned: self._on_orphaned,
            JobRejected: self._on_rejected,
            CancelTaken: self._on_cancel_taken,
            CancelRefused: self._on_cancel_refused,
            AnswerResult: self._on_answer_result,
        }
        # handler scheduling: which job starts when, and the runner tasks that run them
        self._schedule = Scheduler[QueuedJob](settings.concurrency, ordered_keys=spec.ordered_keys)
        dead_letters = (
            None
            if spec.dead_letter is None
            else DeadLetters(
                conn,
                queue=queue,
                dead_letter_queue=spec.dead_letter,
                seal=self._seal,
                log=self._log,
            )
        )
        self._pool = RunnerPool(
            job_runner,
            settings,
            report=inbox.send_nowait,
            clock=clock,
            log=self._log,
            dead_letters=dead_letters,
            refill=self._refill,
            refill_limit=settings.ack_every,
        )
        # lifecycle
        self._joined: anyio.abc.TaskStatus[DispatcherHandle] | None = None
        self._draining = False
        self._drain_deadline = math.inf
        self._leaving = False
        self._left = False
        self._idle = False  # what the table was last told (Idle)
        self._busy_after = settings.busy_after
        self._waiting_since = math.inf  # since when our jobs wait for a slot, unbroken
        self._handled_since = (0, 0.0)  # handler attempts ended, and their seconds, then
        self._busy = False  # what the table was last told (Busy)
        interval = settings.standby_interval  # only a rule that can say lets us stand by
        can_wait = interval > 0 and isinstance(spec.rule, HeadroomRule)
        self._standby = Standby(interval, clock) if can_wait else None

    @property
    def handle(self) -> DispatcherHandle:
        """The handle; usable before :meth:`run` starts."""
        return self._handle

    @property
    def table(self) -> OutstandingTable:
        """The replicated table (read it; only the Dispatcher feeds it)."""
        return self._table

    async def run(
        self,
        *,
        task_status: anyio.abc.TaskStatus[DispatcherHandle] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Join the groups and serve until drained; ``task_status`` is started (with the
        handle) once the first WORK view that lists us is installed.

        Raises:
            ConnectionLost: the connection ended before the drain finished.
        """
        self._joined = task_status
        lost: ConnectionLost | None = None
        try:
            async with anyio.create_task_group() as tasks:
                self._pool.attach(tasks)
                self._conn.deliver_to(self._delivered, self._lost)
                if self._standby is not None:
                    self._conn.pace_reads(self._standby_wait)
                tasks.start_soon(self._stats.tick, self._post_stats_due)
                try:
                    await self._conn.join(self._work)
                    # Between the joins: Spread keeps a sender's order, so every replica
                    # (a WORK member by now) and every producer reads our recovered
                    # outcomes before our FEEDBACK join, and a producer counts us back,
                    # and re-sends what is still unsettled, only from that join on.
                    await self._announce_recovered()
                    await self._conn.join(self._feedback)
                    lost = await self._serve()
                except ConnectionLost as error:
                    lost = error
                if lost is not None:
                    await self._wind_down(lost)
                tasks.cancel_scope.cancel()
        finally:
            self._inbox.close()
            self._pool.close()
        if self._joined is not None:  # drained before the first view: never joined
            joined, self._joined = self._joined, None
            joined.started(self._handle)
        if lost is not None:
            self._log.warning("worker_connection_lost", reason=lost.reason.name)
            raise lost
        self._log.info("worker_drained")

    # -- the loop ------------------------------------------------------------------------

    def _delivered(self, events: Sequence[DaemonMessage]) -> None:
        """The connection read ``events`` (called in its reader)."""
        _post(self._inbox, _Delivered(events))

    def _standby_wait(self) -> float:
        """Seconds the connection may leave the socket unread before its next read
        (asked in its reader; :mod:`spreadq.worker.standby`)."""
        assert self._standby is not None
        table = self._table  # with no view yet, no job comes before ours: read at once
        busy = table.backlog > 0 or table.transitional or self._draining or self._leaving
        return self._standby.wait(table.jobs_before_mine(), table.jobs_delivered, busy=busy)

    def _lost(self, error: ConnectionLost) -> None:
        """The connection ended (called in its reader, once)."""
        _post(self._inbox, _Lost(error))

    def _post_stats_due(self) -> None:
        """Post :class:`_StatsDue` (every ``settings.stats_interval`` seconds, from
        :meth:`WorkerStats.tick`'s task)."""
        self._inbox.send_nowait(_StatsDue())

    async def _report_stats(self) -> None:
        """Send our STATS report to FEEDBACK only (on WORK every replica would read it),
        once we are in a view and until we leave."""
        if self._table.view is None or self._leaving:
            return
        await self._multicast((self._feedback,), self._stats.report(self._clock()))

    async def _serve(self) -> ConnectionLost | None:
        """Process the inbox until we have left the group; return a lost connection."""
        receive = self._inbox
        try:
            while not self._left:
                wait = self._wait_time()
                if wait is not None:
                    if wait <= 0:
                        await self._timer()
                        continue
                    self._set_alarm(wait)
                if len(receive):  # busy: let the reader and the runners add to this turn
                    await asyncio.sleep(0)  # anyio's checkpoint, without its backend lookup
                item: _Item | None = await receive.receive()
                while item is not None:
                    if isinstance(item, _Lost):
                        return item.error
                    if item is not _WAKE:  # an alarm only makes the loop look at the time
                        await self._on_item(item)
                    item = receive.take()
                self._pump()
                if self._ticks is not None:
                    await self._announce_ticks()
                if (not self._schedule.queued) is not self._idle:
                    await self._note_idle()
                if self._busy_after is not None:
                    await self._note_busy()
                if self._table.notices_pending:
                    await self._apply(_TURN_ENDED)
                if self._draining:
                    await self._check_drained()
        finally:
            if self._alarm is not None:
                self._alarm.cancel()
        return None

    def _set_alarm(self, wait: float) -> None:
        """Post :data:`_WAKE` to the inbox in ``wait`` seconds, unless an alarm already
        rings by then (it may ring early: the loop then looks at the time again). One
        timer handle for many turns, instead of a cancel scope with a deadline each turn.

        On a loop other than asyncio's own (uvloop) the wait is rounded up to a whole
        millisecond (:mod:`spreadq.actors.timers`): asked for less, the alarm would ring
        at once, and again, until the loop's millisecond clock reached the deadline."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
            self._whole_ms = counts_whole_ms(loop)
        if self._whole_ms:
            wait = whole_ms(wait)
        when = loop.time() + wait
        alarm = self._alarm
        if alarm is not None:
            if self._alarm_at <= when:
                return
            alarm.cancel()
        self._alarm, self._alarm_at = loop.call_at(when, self._ring), when

    def _ring(self) -> None:
        self._alarm = None
        _post(self._inbox, _WAKE)

    async def _note_idle(self) -> None:
        """Tell the table when we go idle (nothing ready to run) or busy again: idle,
        finished jobs are ACKed at once instead of waiting for company."""
        idle = not self._schedule.queued
        if idle is not self._idle:
            self._idle = idle
            await self._apply(Idle(idle))

    async def _note_busy(self) -> None:
        """Tell the table when our jobs have waited for a slot ``busy_after`` seconds
        without a break (it announces capacity 0), and when none waits any more."""
        assert self._busy_after is not None
        queued = self._schedule.queued
        if not queued:
            self._waiting_since = math.inf
            if self._busy:
                self._busy = False
                self._log.info("worker_ready")
                await self._apply(Busy(False))
        elif self._waiting_since == math.inf:
            self._waiting_since = self._clock()
            self._handled_since = self._counters.handler_time()
        elif not self._busy:
            waited = self._clock() - self._waiting_since
            if waited >= self._busy_after:
                self._busy = True
                self._log.info("worker_busy", waiting=queued, seconds=round(waited, 3))
                await self._apply(Busy(True))
                await self._give_back(queued)

    async def _give_back(self, queued: int) -> None:
        """Just busy: give back the jobs of ours that our slots will not reach in their
        next round (plain ones: no key, priority or start time; never one dealt to us by
        a RELEASE), when our rule fills members in order and another member may take
        them (:attr:`~spreadq.queue.table.OutstandingTable.can_give_back`) and
        :func:`worth_giving_back` says so. Taken out of the scheduler
        first, the jobs given back are ours in the table until the RELEASE lands, and
        come back to us then if nobody can take them
        (docs/design/replicated-table.md#release)."""
        assert self._busy_after is not None
        if not self._table.can_give_back:
            return
        limit = self._schedule.limit
        ended, seconds = self._counters.handler_time()
        before, took = self._handled_since
        if not worth_giving_back(queued, limit, self._busy_after, ended - before, seconds - took):
            return
        given = self._schedule.give_back(keep=limit)
        if given:
            self._log.info("jobs_given_back", jobs=len(given))
            await self._apply(GiveBack(tuple(job.ref for job in given)))

    def _wait_time(self) -> float | None:
        ack = self._table.next_deadline()
        deadline = min(math.inf if ack is None else ack, self._drain_deadline)
        deadline = min(deadline, self._pool.next_scan)
        if not self._busy and self._busy_after is not None:  # when we would be busy
            deadline = min(deadline, self._waiting_since + self._busy_after)
        delayed = self._schedule.next_due()
        if delayed is not None and delayed < deadline:
            deadline = delayed
        if self._ticks is not None:
            tick = self._ticks.wait()
            if tick is not None:
                deadline = min(deadline, self._clock() + tick)
        if deadline == math.inf:
            return None
        return deadline - self._clock()

    async def _timer(self) -> None:
        self._pool.scan(self._clock())
        await self._apply(Tick())
        if self._schedule.next_due() is not None:
            self._schedule.due(self._clock())  # delayed jobs whose time has come
            self._pump()
            await self._note_idle()
        if self._busy_after is not None:
            await self._note_busy()
        if self._ticks is not None:
            await self._announce_ticks()
        await self._check_drained()

    async def _announce_ticks(self) -> None:
        """Multicast the periodic ticks due that we are to announce (to WORK only)."""
        assert self._ticks is not None
        if self._leaving or self._table.view is None or self._table.transitional:
            return
        for schedule, tick, data in self._ticks.announcements():
            self._log.info("tick_announced", schedule=schedule.name, tick=tick)
            await self._multicast((self._work,), data)

    async def _on_item(self, item: _Item) -> None:
        if isinstance(item, _Delivered):
            translate = self._translator.translate
            for event in item.events:
                translated = translate(event)
                if translated is None:
                    if type(event) is RegularMembership and event.group == self._feedback:
                        await self._on_feedback_view(event)
                    elif isinstance(event, RejectedMessage):
                        self._log.warning(
                            "message_rejected", groups=event.groups, old_type=event.old_type
                        )
                elif isinstance(translated, Refused):
                    self._on_refused(translated)
                else:
                    if type(translated) is LeftGroup:
                        self._left = True
                    await self._apply(translated)
        elif item is ENDED:
            await self._on_ended()
        elif isinstance(item, Help):
            self._pool.help()
        elif isinstance(item, _StatsDue):
            await self._report_stats()
        # Rescan: nothing to do; the loop's next wait takes the earlier scan into account
        elif isinstance(item, _Drain) and not self._draining:
            self._draining = True
            self._drain_deadline = self._clock() + self._drain_timeout
            self._log.info("worker_draining", backlog=self._table.backlog)
            if self._table.view is None:
                await self._leave()
            else:
                await self._apply(StartDraining())

    async def _apply(self, event: Input) -> None:
        effects = self._table.apply(event, self._clock())
        if isinstance(event, ViewInstalled):
            if event.cause is not ChangeCause.JOIN:  # a departure: jobs may be taken over
                self._view_at = self._clock()
                self._view_left = (
                    "" if event.cause is ChangeCause.NETWORK else (event.changed_member or "")
                )
            if self._joined is not None:
                joined, self._joined = self._joined, None
                joined.started(self._handle)
        carry_out = self._effects
        runs: list[RunJob] = []  # queued at once, no coroutine, in one call a row
        for effect in effects:
            if type(effect) is RunJob:
                runs.append(effect)
            elif type(effect) is not JobsCompleted:  # the most frequent, and nothing to do
                if runs:
                    self._on_runs(runs)
                    runs = []
                await carry_out[type(effect)](effect)
        if runs:
            self._on_runs(runs)

    async def _announce_recovered(self) -> None:
        """Announce the outcomes an earlier session reached and never saw confirmed
        (see :class:`~spreadq.worker.recovery.Recovery`): between our WORK and FEEDBACK
        joins, and again at each join for a while."""
        chunks = self._recovery.announcement(self._clock())
        if not chunks:
            return
        self._log.info("outcomes_recovered", outcomes=len(self._recovery.recovered))
        incarnation = self._table.incarnation
        for chunk in chunks:
            await self._multicast(self._both, encode(Ack(incarnation, chunk)))

    def unconfirmed_outcomes(self) -> list[tuple[JobRef, Outcome]]:
        """The outcomes our handlers reached whose ACK we never saw delivered (sent or
        not), in the order they were reached, after the recovered ones this session
        still announces: what a lost session would otherwise lose."""
        return self._recovery.unconfirmed(self._clock(), self._table.is_outstanding)

    # -- effects -------------------------------------------------------------------------

    def _on_runs(self, runs: Sequence[RunJob]) -> None:
        """Queue the jobs the table gave us to run, in order (the jobs of a batch we own
        come in one call)."""
        view = self._table.view
        assert view is not None  # a job is only assigned within a view
        schedule, of = self._schedule, QueuedJob.of
        announce = JobAssigned in self._events.routes
        for effect in runs:
            job = effect.job
            queued = of(effect, view)
            if announce and not effect.failover:
                self._events.publish(
                    JobAssigned(self._queue, job.ref, job.kind, self._me, released=effect.released)
                )
            first = effect.failover or effect.released  # taken over or dealt to us: it waited
            if job.header_block:  # a job without headers has priority 0 and no start time
                when, priority = _when_and_priority(job)
                wait = when - time.time()
                if wait > 0:  # it waits outside the slots, in the loop's clock
                    schedule.defer(queued, self._clock() + wait, priority=priority)
                else:
                    schedule.offer(queued, failover=first, priority=priority)
            else:
                schedule.offer(queued, failover=first)

    async def _on_give_up(self, effect: GiveUpJob) -> None:
        view = self._table.view
        assert view is not None
        self._schedule.offer(QueuedJob.of(effect, view), failover=True)  # a runner fails it

    async def _on_cancel(self, effect: CancelJob) -> None:
        if not self._pool.cancel(effect.ref):
            self._schedule.cancel(effect.ref)  # dropped when its turn comes

    async def _on_cancel_taken(self, effect: CancelTaken) -> None:
        self._log.info("job_cancelled", job=str(effect.ref), by=effect.by)

    async def _on_cancel_refused(self, effect: CancelRefused) -> None:
        self._log.warning(
            "cancel_refused", job=str(effect.ref), sender=effect.sender, reason=effect.reason
        )

    async def _on_answer_result(self, effect: AnswerResult) -> None:
        await self._multicast((effect.to,), encode(effect.answer))

    async def _on_send_ack(self, effect: SendAck) -> None:
        read_at = self._stats.read_at
        for producer_id, mseq in effect.envelope.positions:  # the read lag STATS report
            read_at[producer_id] = mseq
        await self._multicast(self._both, encode(effect.envelope))

    async def _on_announce_both(self, effect: AnnounceDrain | AnnounceHello) -> None:
        await self._multicast(self._both, encode(effect.envelope))

    async def _on_announce_view(self, effect: AnnounceView) -> None:
        await self._multicast((self._feedback,), encode(effect.envelope))

    async def _on_announce_work(self, effect: AnnounceLedger | AnnounceRelease) -> None:
        await self._multicast((self._work,), encode(effect.envelope))

    async def _on_feedback_view(self, event: RegularMembership) -> None:
        """Tell the table how many producers share the window (the FEEDBACK members
        that are neither WORK members nor observers, as a producer counts them), and
        re-announce our WORK view to a FEEDBACK newcomer that is not a consumer, when
        the rule (:func:`~spreadq.worker.feedback.view_to_reannounce`) picks us."""
        work = self._table.view
        consumers = (self._me, *(() if work is None else work.members))
        await self._apply(Producers(count_producers(event.members, consumers)))
        view = view_to_reannounce(
            self._table.view,
            self._me,
            transitional=self._table.transitional,
            cause=event.cause,
            changed_member=event.changed_member,
        )
        if view is not None:
            await self._multicast((self._feedback,), encode(view))

    async def _multicast(self, groups: tuple[str, ...], data: bytes) -> None:
        if self._seal is not None:
            data = self._seal.seal(data, self._me)
        await self._conn.multicast(groups, data, ServiceType.AGREED, MESS_TYPE)

    def _on_refused(self, refused: Refused) -> None:
        """A WORK message refused for its seal (dropped at every worker alike, before
        the table counts a slot): the first from each sender is logged with the reason,
        so a worker with another secret than its peers says so once, and runs nothing."""
        if refused.sender not in self._refused and len(self._refused) < 1024:
            self._refused.add(refused.sender)
            self._log.warning("message_refused", sender=refused.sender, reason=refused.reason)

    async def _on_view_changed(self, effect: ViewChanged) -> None:
        view = effect.view
        if (
            effect.cause is ChangeCause.JOIN
            and view.ordinal > 1
            and self._recovery.again_at_join(self._clock())
        ):
            await self._announce_recovered()  # the newcomer has not seen it
        self._log = log.bind(queue=self._queue, member=self._me, view=view.ordinal)
        self._pool.log = self._log
        if ViewPublished in self._events.routes:
            self._events.publish(
                ViewPublished(self._queue, self._me, view.ordinal, view.members, effect.cause.value)
            )
        self._log.info(
            "view_installed",
            cause=effect.cause.value,
            members=view.members,
            group_id=view.group_id,
            reassigned=len(effect.reassigned),
            taken_over=len(effect.taken_over),
            orphaned=len(effect.orphaned),
            given_up=len(effect.given_up),
        )

    async def _on_orphaned(self, effect: JobOrphaned) -> None:
        self._log.warning("job_orphaned", job=str(effect.ref))

    async def _on_rejected(self, effect: JobRejected) -> None:
        self._log.warning(
            "job_rejected",
            job=str(effect.ref),
            slots=effect.count,
            sender=effect.sender,
            reason=effect.reason,
        )

    # -- handler scheduling --------------------------------------------------------------

    def _pump(self) -> None:
        """Start the jobs the scheduler lets start now (free slots, free keys), and tell
        the table they started (one input for them all)."""
        started = self._schedule.take_all()
        if not started:
            return
        now = self._clock()
        if JobTakenOver in self._events.routes:
            for queued in started:
                run = queued.run
                if type(run) is RunJob and run.failover:
                    self._events.publish(
                        JobTakenOver(
                            self._queue,
                            queued.ref,
                            run.job.kind,
                            self._me,
                            self._view_left,
                            max(0.0, now - self._view_at),
                        )
                    )
        self._pool.start_all(started, now)
        self._table.apply(JobsStarted([queued.ref for queued in started]), now)

    def _refill(self) -> None:
        """A runner ran out of jobs while ends it kept hold slots (called in the runner,
        see :mod:`spreadq.worker.pool`): free those slots and start what may start now.
        Their outcomes wait for :meth:`_on_ended`."""
        self._schedule.ended_all(self._pool.release_ended())
        self._pump()

    def _take_ended(self) -> list[Ended]:
        """The jobs that ended since we last looked, forgotten in the pool, their slots
        freed in the scheduler (those a refill has not freed already)."""
        self._schedule.ended_all(self._pool.release_ended())
        ended = self._pool.take_ended()
        self._pool.ended_all([ref for ref, _ in ended])
        return ended

    async def _on_ended(self) -> None:
        """The jobs that ended since we last looked: forget them in the pool and the
        scheduler, keep their outcomes for recovery, and give the table their outcomes
        in one input (it reports them, in ACKs and in the NOTICEs their producers asked
        for)."""
        ended = self._take_ended()
        finished = [_new_finished((ref, outcome)) for ref, outcome in ended if outcome is not None]
        if finished:
            # kept until an ACK for them is seen (those of jobs no longer outstanding
            # go at the recovery's next sweep)
            self._recovery.keep_all(finished, self._table.outstanding_refs.__contains__)
            await self._apply(JobsFinished(finished))

    async def _on_send_notice(self, effect: SendNotice) -> None:
        """Send a producer the outcomes of its jobs that asked for a NOTICE, to its
        private group. The ACK still settles them; the NOTICE only lets the producer
        resolve their receipts now."""
        await self._multicast((effect.to,), encode(effect.envelope))

    def _drop_all(self) -> None:
        """Cancel every running handler and forget every queued job."""
        self._pool.cancel_all()
        self._schedule.drop_all()

    # -- drain and loss --------------------------------------------------------------------

    async def _check_drained(self) -> None:
        if not self._draining or self._leaving:
            return
        if self._clock() >= self._drain_deadline:
            self._log.warning(
                "drain_timeout", running=len(self._pool), queued=self._schedule.queued
            )
            self._drop_all()
            await self._leave()
            return
        table = self._table
        if (
            self._me in table.draining
            and table.backlog == 0
            and not self._pool
            and not self._schedule.queued
            and not table.unreported
        ):
            await self._leave()

    async def _leave(self) -> None:
        if self._leaving:
            return
        self._leaving = True
        self._drain_deadline = math.inf
        if self._table.view is None:
            self._left = True
            return
        self._log.info("worker_leaving")
        await self._conn.leave(self._work)

    async def _wind_down(self, lost: ConnectionLost) -> None:
        """After a lost connection: drop queued jobs, cancel or await running ones."""
        self._schedule.drop_all()
        if self._settings.cancel_on_disconnect:
            self._pool.cancel_all()
        with anyio.move_on_after(self._drain_timeout):
            while self._pool:
                if await self._inbox.receive() is not ENDED:
                    continue
                ended = self._take_ended()
                outstanding = self._table.outstanding_refs.__contains__
                kept = [(r, o) for r, o in ended if o is not None and outstanding(r)]
                self._recovery.keep_all(kept, outstanding)
        self._pool.cancel_all()
