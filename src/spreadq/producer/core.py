"""ProducerCore: what one producer knows and decides, as a sans-IO state machine.

Theory of operation
-------------------
The core is driven like the worker's table: the facade feeds it one input at a time
(:mod:`~spreadq.producer.inputs`) with the time ``now``, and carries out the effects
it returns (:mod:`~spreadq.producer.effects`). Between inputs the facade asks it three
questions: :meth:`~ProducerCore.room` (may ``put()`` admit a job now?),
:meth:`~ProducerCore.next_batch` (what to send next?) and
:meth:`~ProducerCore.clear_to_send` (may that message go now?). It reads no clock,
does no I/O and never waits; the waiting is the facade's (a put waits while ``room()``
is False and re-asks when an input may have opened room).

The jobs. A job enters at ``Put`` and is *queued*; :meth:`~ProducerCore.next_batch`
takes jobs *in hand* (a batch of one codec, at most ``batch_max_jobs``, under the
message size cap; or one job too big for a message, to be fragmented); each message
is ``Cleared`` (it takes the next mseq and its new jobs count as in flight) and the
batch is ``Sent``. A member producer keeps every job *pending* from ``Put`` until an
ACK outcome settles it; a fire-and-forget producer forgets a job once it is written.
A job settled while queued or in hand (a re-sent job whose first copy's outcome
arrives) is skipped, never sent again.

Witnesses (:mod:`spreadq.queue.witnesses`). Every job sent records the epoch of the
consumer set present then. When an epoch loses its last witness, its pending jobs go
back to the queue, ahead of new work and in their original order, to be re-sent with
the same seq under a new mseq. A lost session loses every witness: all pending jobs go
back, and the core remembers how many consumers it had known at once
(:attr:`~ProducerCore.expected_back`), so the facade can wait for them to return
before re-sending.

Cancel. ``receipt.cancel()`` asks :meth:`~ProducerCore.cancel_plan`: a job never sent
is withdrawn here (``Withdraw``: settled cancelled, never sent); a job on the wire in
this session gets a CANCEL multicast to WORK and FEEDBACK; a job in hand, or queued
again after a lost session, waits until it is sent. The CANCEL's delivery on FEEDBACK
(``CancelDelivered``) decides as the consumers' tables do at the same place in the
order: the job is settled cancelled if it is still pending, the CANCEL's sender is the
name the job was last sent under and no held ACK reports it (an ACK ordered before the
CANCEL, waiting only for its sender to be listed); otherwise it changes nothing.

Notices. While the consumers keep up with the producer (:meth:`~ProducerCore.keeping_up`:
at most ``notice_in_flight`` jobs unconfirmed), the jobs it sends ask for a NOTICE: the
consumer that runs them sends their outcomes straight to our private group, about once
per ``notice_interval`` of its own at most, where the ACK waits for the idle-ACK gap or
company. A NOTICE from a trusted consumer
resolves the receipts of our pending jobs early (``Resolve``), except a job we sent a
CANCEL for (``CancelSending``): the order of that CANCEL among the ACKs decides it. The
job stays pending, and in flight for flow control, until an ACK settles it; the ACK
changes nothing the receipt already says. A NOTICE from a consumer no VIEW lists yet is
ignored (its ACK will settle), and one from a non-member is dropped.

Trust. The core takes a VIEW only from the FEEDBACK member it lists first, and an ACK
only from a FEEDBACK member that the last VIEW taken lists. Any other ACK is held until
its sender is both (a consumer's ACK can overtake the VIEW that announces it, and a
returning worker announces its recovered outcomes just before it joins FEEDBACK): at
most :data:`MAX_HELD_ACKS` of them whole, and past that only the outcomes they report of
this producer's pending jobs (no more such ACKs than pending jobs). A held ACK is
dropped if its sender leaves FEEDBACK or the session ends. Held ACKs are settled before
the consumer list changes, so jobs they settle are never re-sent. A VIEW that does not
count, and an ACK that cannot be held, is dropped
(:class:`~spreadq.producer.effects.Dropped`) and changes nothing.

Flow control (:class:`~spreadq.queue.windows.ProducerGate`). A message may go while
some consumer is present and every consumer's window, the jobs in flight and every
consumer's backlog are in bounds. A put is admitted while the jobs held (admitted and
not yet cleared, plus in flight) stay under ``max_in_flight``; while the gate is shut
by a window or a backlog, at most ``batch_max_jobs`` admitted jobs may wait unsent, so
``put()`` blocks about when a consumer is a window behind. With no consumer present
jobs are held (up to ``max_in_flight``) and sent once one appears. A fire-and-forget
producer has no gate: it only bounds its queue by ``max_in_flight``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from heapq import merge
from typing import Any, Final

from spreadq.errors import LocalProtocolError
from spreadq.producer.effects import (
    ConsumersSet,
    Dropped,
    Effect,
    Ready,
    Requeued,
    Resolve,
    Settle,
)
from spreadq.producer.inputs import (
    AckReceived,
    CancelDelivered,
    CancelSending,
    Cleared,
    Closed,
    FeedbackMembership,
    GiveUp,
    Input,
    NoticeReceived,
    Put,
    Resending,
    Sent,
    SessionLost,
    SessionOpened,
    ViewReceived,
    Withdraw,
)
from spreadq.producer.jobs import UNSENT, Batch, Job
from spreadq.queue.envelope import MAX_ENVELOPE_SIZE, Ack, AckOutcomes, JobSpec, batch_size
from spreadq.queue.jobs import STATUS_OK, Outcome, OutcomeRecord, OutcomeRun, Status
from spreadq.queue.pace import Pace
from spreadq.queue.windows import BlockReason, ProducerGate
from spreadq.queue.witnesses import Trust, Witnesses

__all__ = ["MAX_HELD_ACKS", "NOTICE_IN_FLIGHT", "CancelPlan", "FlowState", "ProducerCore"]

NOTICE_IN_FLIGHT: Final = 1024
"""A member producer's jobs ask for NOTICEs while at most this many of its jobs are
unconfirmed (:meth:`ProducerCore.keeping_up`). At half the flood's rate a few hundred
are; under a flood, thousands."""

MAX_HELD_ACKS: Final = 256
"""ACKs a producer holds from FEEDBACK members that no VIEW lists yet, at most."""

_READY: Final = Ready()
_new_settle: Callable[[tuple[Job[Any], OutcomeRecord | BaseException]], Settle] = partial(
    tuple.__new__, Settle
)
"""``Settle(job, outcome)`` without the named tuple's Python ``__new__``: one per job."""
_new_resolve: Callable[[tuple[Job[Any], OutcomeRecord]], Resolve] = partial(tuple.__new__, Resolve)
"""``Resolve(job, outcome)`` likewise: one per job a NOTICE reports."""
_SHUT = (BlockReason.WINDOW, BlockReason.BACKLOG)


@dataclass(frozen=True, slots=True)
class FlowState:
    """A snapshot of a producer's flow control, for tests, logs and ``spreadq top``."""

    consumers: tuple[str, ...]
    admitted: int
    """Jobs admitted by ``put()`` and not yet cleared to be sent."""
    in_flight: int
    """Jobs cleared to be sent and not yet confirmed."""
    last_mseq: int
    """The last message cleared to be sent (0 before the first)."""
    share: int
    """How many messages this producer may run ahead of the slowest consumer."""
    blocked: BlockReason | None
    """Why the next message may not be sent now, or None."""
    waiting_puts: int
    """``put()`` and ``put_many()`` calls waiting: for room, or behind an earlier put
    that waits (puts are admitted in call order)."""
    waiting_send: bool
    """Whether the sender waits for clearance."""
    sends_waited: int
    """How many messages had to wait for clearance (the window, backlog, no consumer)."""
    ack_slack: int
    """ACK messages counted against the window as possibly unread (the most for any
    consumer, capped; see :mod:`spreadq.queue.windows`)."""


class CancelPlan(enum.Enum):
    """What ``receipt.cancel()`` does next (:meth:`ProducerCore.cancel_plan`)."""

    DONE = "done"
    """The job is settled (or was never held): nothing to cancel."""
    WITHDRAW = "withdraw"
    """Never sent: feed ``Withdraw`` and it is settled cancelled at once."""
    SEND = "send"
    """On the wire in this session: multicast a CANCEL, wait for its delivery."""
    WAIT = "wait"
    """In hand, or queued again after a lost session: wait until it is sent."""


_Released = list[tuple[str, Ack, int]]


def _seq(job: Job[Any]) -> int:
    return job.spec.seq


BATCH_BURST: Final = 4
"""How many messages a producer sends back to back, after a quiet spell, before
``batch_max_rate`` holds a short batch back."""


class ProducerCore:
    """The state of one producer on one queue: jobs, consumers, windows, trust.

    Args:
        producer_id: the producer's 16-byte id (ACK outcomes for others are skipped).
        member: a member producer (confirmations, flow control, re-sending) or a
            fire-and-forget one.
        window: unread messages allowed at any consumer, shared among producers.
        max_in_flight: the most jobs held: admitted and not yet sent, plus sent and
            not yet confirmed (for a fire-and-forget producer: queued).
        max_backlog: the most outstanding jobs a consumer may report before sends wait.
        batch_max_jobs: the most jobs in one batch; also the admitted jobs allowed to
            wait unsent while the window is shut.
        batch_max_delay: how long a job waits for company before a short batch goes.
        batch_max_rate: the most messages a second, :data:`BATCH_BURST` back to back,
            before a short batch waits for the next (None: no bound).
        notice_in_flight: the jobs sent ask for NOTICEs while at most this many are
            unconfirmed (admitted, or sent and not yet settled by an ACK).
    """

    __slots__ = (
        "_admitted",
        "_dispatch",
        "_expect_back",
        "_gate",
        "_held",
        "_held_count",
        "_in_hand",
        "_mseq",
        "_next_seq",
        "_pace",
        "_peak",
        "_pending",
        "_queue",
        "_sends_waited",
        "_witnesses",
        "batch_max_delay",
        "batch_max_jobs",
        "cancelled",
        "failed",
        "max_in_flight",
        "member",
        "messages",
        "notice_in_flight",
        "producer_id",
        "put",
        "resent",
        "sent",
        "sessions",
        "succeeded",
    )

    def __init__(
        self,
        producer_id: bytes,
        *,
        member: bool = True,
        window: int = 600,
        max_in_flight: int = 10_000,
        max_backlog: int = 5_000,
        batch_max_jobs: int = 256,
        batch_max_delay: float = 0.0,
        batch_max_rate: float | None = None,
        notice_in_flight: int = NOTICE_IN_FLIGHT,
    ) -> None:
        self.producer_id = producer_id
        self.member = member
        self.notice_in_flight = notice_in_flight
        self.max_in_flight = max_in_flight
        self.batch_max_jobs = max(1, batch_max_jobs)
        self.batch_max_delay = batch_max_delay
        self._pace = Pace(0.0 if not batch_max_rate else 1.0 / batch_max_rate, BATCH_BURST)
        self._gate = ProducerGate(
            producer_id, window=window, max_in_flight=max_in_flight, max_backlog=max_backlog
        )
        self._witnesses = Witnesses()
        self._queue: deque[Job[Any]] = deque()
        self._in_hand: list[Job[Any]] = []
        self._pending: dict[int, Job[Any]] = {}
        self._held: dict[str, list[Ack]] = {}  # ACKs from FEEDBACK members not listed yet
        self._held_count = 0
        self._next_seq = 0
        self._mseq = 0
        self._admitted = 0
        self._sends_waited = 0
        self._peak = 0  # the most consumers known at once in this session
        self._expect_back = 0  # ... in the last session lost
        self.put = self.messages = self.sent = self.resent = 0
        self.succeeded = self.failed = self.sessions = self.cancelled = 0
        self._dispatch: dict[type[Any], Callable[[Any, float], list[Effect]]] = {
            Put: self._on_put,
            Cleared: self._on_cleared,
            Sent: self._on_sent,
            GiveUp: self._on_give_up,
            SessionOpened: self._on_session_opened,
            SessionLost: self._on_session_lost,
            Resending: self._on_resending,
            Closed: self._on_closed,
            AckReceived: self._on_ack,
            NoticeReceived: self._on_notice,
            ViewReceived: self._on_view,
            FeedbackMembership: self._on_feedback,
            Withdraw: self._on_withdraw,
            CancelSending: self._on_cancel_sending,
            CancelDelivered: self._on_cancel_delivered,
        }

    def apply(self, event: Input, now: float) -> list[Effect]:
        """Feed one input at time ``now``; return the effects, in order.

        Raises:
            KeyError: ``event`` is not one of :data:`~spreadq.producer.inputs.Input`.
        """
        return self._dispatch[type(event)](event, now)

    # -- queries ---------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The seq the next ``Put`` must carry (0, 1, 2, ...)."""
        return self._next_seq

    @property
    def consumers(self) -> tuple[str, ...]:
        """The consumers known to be present, in the order of the last VIEW."""
        return self._witnesses.consumers

    @property
    def held(self) -> int:
        """Jobs held: pending (member), or queued (fire-and-forget)."""
        return len(self._pending) if self.member else len(self._queue)

    @property
    def unsent(self) -> int:
        """Jobs queued or in hand."""
        return len(self._queue) + len(self._in_hand)

    @property
    def expected_back(self) -> int:
        """How many consumers were known at once before the last session was lost (0
        once the sender of a new session started: :class:`Resending`)."""
        return self._expect_back

    @property
    def last_mseq(self) -> int:
        """The last mseq cleared (0 before the first)."""
        return self._mseq

    def room(self) -> bool:
        """Whether ``put()`` may admit one more job now."""
        return self.room_for(1)

    def room_for(self, count: int) -> bool:
        """Whether ``count`` more jobs may be admitted together now (``put_many()``):
        ``max_in_flight`` has room for all of them, and the window lets a put in (while
        fewer than ``batch_max_jobs`` jobs wait to be sent, it always does)."""
        if not self.member:
            return len(self._queue) + count <= self.max_in_flight
        gate = self._gate
        admitted = self._admitted
        if self.max_in_flight - gate.in_flight - admitted < count:
            return False
        if admitted < self.batch_max_jobs:
            return True
        return gate.check(gate.last_mseq + 1) not in _SHUT

    def send_delay(self, now: float, *, flushing: bool = False) -> float | None:
        """How long the sender should wait for more jobs before taking a batch: 0 when
        a batch is due now, None when nothing is queued.

        A batch is due now when it is full (``batch_max_jobs`` jobs, the size cap, or
        a job of another codec behind it) or ``flushing``; else once ``batch_max_delay``
        has passed since its first job was put and the message rate allows another
        message (``batch_max_rate``: an idle producer's first messages always go at once).
        """
        queue = self._queue
        if not queue:
            return None
        if flushing or len(queue) >= self.batch_max_jobs:
            return 0.0
        wait = self._pace.wait(now)
        if self.batch_max_delay:
            wait = max(wait, queue[0].at + self.batch_max_delay - now)
        if wait <= 0.0:
            return 0.0
        _, jobs, complete = self._head_batch()
        return 0.0 if complete or not jobs else wait

    def _head_batch(self) -> tuple[int, list[Job[Any]], bool]:
        """The next batch, read at the head of the queue without taking it: how many
        queued jobs it reaches over (settled ones among them, which it skips), its jobs,
        and whether it is complete: it holds ``batch_max_jobs``, or the job after it has
        another codec or would pass the size cap. A first job too big for one message
        is a batch alone (complete), to be fragmented. No jobs: none is unsettled."""
        jobs: list[Job[Any]] = []
        limit = self.batch_max_jobs
        reach, size, codec = 0, 0, ""
        for job in self._queue:
            if len(jobs) >= limit:
                return reach, jobs, True
            if job.settled:
                reach += 1
                continue
            if not jobs:
                codec = job.codec
                size = batch_size(codec, (job.spec,))
                jobs.append(job)
                reach += 1
                if size > MAX_ENVELOPE_SIZE:
                    return reach, jobs, True
                continue
            if job.codec != codec:
                return reach, jobs, True
            size += job.spec.encoded_size
            if size > MAX_ENVELOPE_SIZE:
                return reach, jobs, True
            jobs.append(job)
            reach += 1
        return reach, jobs, len(jobs) >= limit

    def next_batch(self, now: float | None = None) -> Batch[Any] | None:
        """Take in hand the next jobs to send (:meth:`_head_batch`); None when nothing
        (unsettled) is queued.

        A batch holds the head job and those after it with the same codec, at most
        ``batch_max_jobs``, under the message size cap; a head job too big for one
        message comes alone, to be fragmented. ``now`` books the message against
        ``batch_max_rate`` (None: it is not counted).

        Raises:
            LocalProtocolError: a batch is in hand already (it was neither ``Sent``
                nor given back by ``SessionLost``).
        """
        if self._in_hand:
            raise LocalProtocolError("a batch is in hand already: send it first")
        reach, jobs, _ = self._head_batch()
        popleft = self._queue.popleft
        for _ in range(reach):  # the batch's jobs and the settled ones among them
            popleft()
        if not jobs:
            return None
        if now is not None:
            self._pace.book(now)
        self._in_hand = jobs
        first = jobs[0]
        if len(jobs) == 1 and batch_size(first.codec, (first.spec,)) > MAX_ENVELOPE_SIZE:
            return Batch((first,), fragmented=True)
        return Batch(tuple(jobs))

    def keeping_up(self) -> bool:
        """Whether the consumers keep up with this producer: at most
        ``notice_in_flight`` jobs unconfirmed, and room for another put. Then a receipt
        waits for the consumers' ACK gap, not for the queue, and the jobs sent ask for a
        NOTICE of their outcome (which each consumer sends at most every
        ``notice_interval``). Under a flood thousands of jobs are unconfirmed and the
        jobs ask for none: there a receipt waits behind the others anyway, and the
        NOTICEs would cost this producer what the flood needs."""
        return (
            self.member
            and self._gate.in_flight + self._admitted <= self.notice_in_flight
            and self.room()
        )

    def queued(self) -> tuple[int, ...]:
        """The seqs of the unsettled jobs waiting to be sent, in the order they go."""
        return tuple(job.spec.seq for job in self._queue if not job.settled)

    def clear_to_send(self, batch: Batch[Any], final: bool = True) -> bool:
        """Whether the next message of ``batch`` may be multicast now (``final``: see
        :class:`~spreadq.producer.inputs.Cleared`)."""
        if not self.member:
            return True
        return self._gate.check(self._mseq + 1, self._new_jobs(batch, final)) is None

    def blocked(self) -> BlockReason | None:
        """Why the next message may not be sent now, or None."""
        return self._gate.check(self._mseq + 1) if self.member else None

    def slowest(self) -> tuple[str, int] | None:
        """The consumer furthest behind in our sequence, and its read position."""
        return self._gate.slowest()

    @property
    def share(self) -> int:
        """How many messages this producer may run ahead of the slowest consumer."""
        return self._gate.share

    def cancel_plan(self, seq: int) -> CancelPlan:
        """What cancelling job ``seq`` takes now (see :class:`CancelPlan`)."""
        job = self._pending.get(seq)
        if job is None or job.settled:
            return CancelPlan.DONE
        if any(held is job for held in self._in_hand):
            return CancelPlan.WAIT
        if not job.sent_as:
            return CancelPlan.WITHDRAW
        if job.epoch != UNSENT and job.sent_as == self._witnesses.me:
            return CancelPlan.SEND
        return CancelPlan.WAIT

    def flow_state(self, *, waiting_puts: int = 0, waiting_send: bool = False) -> FlowState:
        """The flow-control accounting now; the facade adds who is waiting."""
        gate = self._gate
        return FlowState(
            consumers=gate.consumers,
            admitted=self._admitted,
            in_flight=gate.in_flight,
            last_mseq=self._mseq,
            share=gate.share,
            blocked=gate.check(self._mseq + 1),
            waiting_puts=waiting_puts,
            waiting_send=waiting_send,
            sends_waited=self._sends_waited,
            ack_slack=gate.ack_slack,
        )

    # -- from put() to the wire ------------------------------------------------------

    def _on_put(self, event: Put, now: float) -> list[Effect]:
        return [_READY] if self.put_job(event.spec, event.codec, event.tag, now) else []

    def put_job(self, spec: JobSpec, codec: str, tag: object, now: float) -> bool:
        """Apply ``Put(spec, codec, tag)`` at ``now`` without the dispatch and the list
        of effects (``put()`` calls it for every job): returns True where ``apply``
        would return ``[Ready()]``, False where it would return no effect. A put never
        clears a message to be sent nor makes room for another put."""
        job: Job[Any] = Job(spec, codec, tag, now)
        seq = spec.seq
        self._next_seq = seq + 1
        self.put += 1
        if self.member:
            self._pending[seq] = job
            self._admitted += 1
        queue = self._queue
        queue.append(job)
        return len(queue) == 1 or len(queue) == self.batch_max_jobs

    @staticmethod
    def _new_jobs(batch: Batch[Any], final: bool) -> int:
        """Jobs that a message of ``batch`` counts as in flight for the first time."""
        if batch.fragmented and not final:
            return 0
        return sum(1 for job in batch.jobs if not job.counted)

    def _on_cleared(self, event: Cleared, now: float) -> list[Effect]:
        batch = event.batch
        self._mseq += 1
        if self.member:
            new = self._new_jobs(batch, event.final)
            self._gate.on_sent(new, self._mseq)
            self._admitted -= new
            self._sends_waited += event.waited
        if event.final or not batch.fragmented:
            for job in batch.jobs:
                job.counted = True
        return []

    def _on_sent(self, event: Sent, now: float) -> list[Effect]:
        self._in_hand = []
        self.messages += event.messages
        self.sent += len(event.jobs)
        if not self.member:
            for job in event.jobs:
                job.settled = True
        else:
            epoch, me = self._witnesses.epoch, self._witnesses.me
            for job in event.jobs:
                job.epoch = epoch
                job.sent_as = me
        return []

    def _on_give_up(self, event: GiveUp, now: float) -> list[Effect]:
        self._in_hand = []
        job = event.job
        if job.counted and self.member:  # in flight, and never to be confirmed
            self._gate.on_confirmed(1)
        return [self._settle(job, event.error)]

    # -- sessions --------------------------------------------------------------------

    def _on_session_opened(self, event: SessionOpened, now: float) -> list[Effect]:
        self.sessions += 1
        self._witnesses.me = event.me
        return []

    def _on_session_lost(self, event: SessionLost, now: float) -> list[Effect]:
        # the daemon may have dropped the consumers one by one before our own session:
        # expect as many as were there at once
        self._expect_back = max(self._expect_back, self._peak)
        self._peak = 0
        effects: list[Effect] = []
        self._drop_held(lambda sender: True, "the session ended", effects)
        self._witnesses.reset()
        self._set_consumers((), effects)
        back = [job for job in self._in_hand if not job.settled]
        self._in_hand = []
        if self.member:
            self._requeue(back, effects)
        else:
            self._queue.extendleft(reversed(back))
        return effects

    def _on_resending(self, event: Resending, now: float) -> list[Effect]:
        self._expect_back = 0
        return []

    def _on_closed(self, event: Closed, now: float) -> list[Effect]:
        error = event.error
        effects: list[Effect] = []
        for job in self._pending.values():
            job.settled = True
            effects.append(Settle(job, error))
        self._pending.clear()
        self._queue.clear()
        self._in_hand = []
        self._admitted = 0
        return effects

    # -- FEEDBACK --------------------------------------------------------------------

    def _on_ack(self, event: AckReceived, now: float) -> list[Effect]:
        sender, ack = event.sender, event.ack
        trust = self._witnesses.judge_ack(sender)
        effects: list[Effect] = []
        if trust is Trust.TRUSTED:
            self._report(sender, ack, self._settle_outcomes(ack, effects))
        elif trust is Trust.NOT_FIRST:
            effects.append(Dropped(sender, "ack", trust.value))
        elif self._held_count < MAX_HELD_ACKS:
            self._held.setdefault(sender, []).append(ack)
            self._held_count += 1
        else:
            # Past the cap, what the ACK says of our pending jobs is still held: dropped,
            # a CANCEL ordered after it would settle a job the consumers saw end. Each
            # such ACK reports one of them at least, so there are never more of them
            # than pending jobs, unless consumers repeat themselves.
            ours = self._own_pending(ack)
            if ours is not None and self._held_count < MAX_HELD_ACKS + len(self._pending):
                self._held.setdefault(sender, []).append(ours)
                self._held_count += 1
            effects.append(Dropped(sender, "ack", trust.value))
        return effects

    def _on_notice(self, event: NoticeReceived, now: float) -> list[Effect]:
        """Resolve early the receipts of our pending jobs a trusted consumer's NOTICE
        reports, except those a CANCEL of ours may still decide. The jobs stay pending
        until an ACK settles them (flow control counts them in flight till then)."""
        trust = self._witnesses.judge_ack(event.sender)
        if trust is not Trust.TRUSTED:
            if trust is Trust.UNLISTED:
                return []  # a consumer the VIEW has not listed yet: its ACK will settle
            return [Dropped(event.sender, "notice", trust.value)]
        me, pending = self.producer_id, self._pending
        effects: list[Effect] = []
        append = effects.append
        outcomes = event.notice.outcomes
        runs = outcomes.runs if type(outcomes) is AckOutcomes else None
        if runs is not None:  # seqs by arithmetic, each run's outcomes built at once
            for run in runs:
                if run.producer_id != me:
                    continue
                run_outcomes: list[Outcome] | None = None
                seq, stride = run.first, run.stride
                for i in range(run.count):
                    job = pending.get(seq)
                    seq += stride
                    if job is None or job.settled or job.cancelling or job.noticed:
                        continue
                    job.noticed = True
                    if run_outcomes is None:
                        run_outcomes = run.outcomes()
                    append(_new_resolve((job, run_outcomes[i])))
            return effects
        refs, records = AckOutcomes.parts(outcomes)  # records as decoded
        for (producer_id, seq), record in zip(refs, records, strict=True):
            if producer_id != me:
                continue
            job = pending.get(seq)
            if job is None or job.settled or job.cancelling or job.noticed:
                continue
            job.noticed = True
            append(_new_resolve((job, record)))
        return effects

    def _own_pending(self, ack: Ack) -> Ack | None:
        """``ack`` reduced to the outcomes of our jobs still pending (its read positions
        and backlog kept), or None when it reports none of them."""
        me, pending = self.producer_id, self._pending
        refs, records = AckOutcomes.parts(ack.outcomes)
        kept = [
            (ref, record)
            for ref, record in zip(refs, records, strict=True)
            if ref.producer_id == me and ref.seq in pending
        ]
        if not kept:
            return None
        outcomes = AckOutcomes([ref for ref, _ in kept], [record for _, record in kept])
        return Ack(ack.incarnation, outcomes, ack.positions, ack.backlog)

    def _on_view(self, event: ViewReceived, now: float) -> list[Effect]:
        witnesses = self._witnesses
        trust = witnesses.judge_view(event.view, event.sender)
        if trust is not Trust.TRUSTED:
            return [Dropped(event.sender, "view", trust.value)]
        effects: list[Effect] = []
        consumers = witnesses.on_view(event.view)
        if consumers is not None:  # else an older view of this lifetime, overtaken
            released = self._settle_held(effects)
            self._set_consumers(consumers, effects)
            self._report_released(released)
        return effects

    def _on_feedback(self, event: FeedbackMembership, now: float) -> list[Effect]:
        witnesses = self._witnesses
        # held ACKs of senders that were members and left are dropped; those of senders
        # not yet members wait for their join (bounded by MAX_HELD_ACKS)
        was_member = {sender for sender in self._held if witnesses.is_member(sender)}
        consumers = witnesses.on_feedback(event.members)
        effects: list[Effect] = []
        released: _Released = []
        if self._held:
            self._drop_held(
                lambda sender: sender in was_member and not witnesses.is_member(sender),
                "left FEEDBACK",
                effects,
            )
            released = self._settle_held(effects)
        self._set_consumers(consumers, effects)
        self._report_released(released)
        return effects

    def _on_withdraw(self, event: Withdraw, now: float) -> list[Effect]:
        if self.cancel_plan(event.seq) is not CancelPlan.WITHDRAW:
            return []
        job = self._pending.pop(event.seq)
        return [self._settle(job, Outcome.cancelled())]

    def _on_cancel_sending(self, event: CancelSending, now: float) -> list[Effect]:
        job = self._pending.get(event.seq)
        if job is not None:
            job.cancelling = True
        return []

    def _on_cancel_delivered(self, event: CancelDelivered, now: float) -> list[Effect]:
        ref = event.ref
        if ref.producer_id != self.producer_id:
            return []
        job = self._pending.get(ref.seq)
        if job is None:
            return []
        if job.sent_as != event.sender:
            return [Dropped(event.sender, "cancel", "it did not send the job")]
        held = (AckOutcomes.parts(ack.outcomes)[0] for acks in self._held.values() for ack in acks)
        if any(ref in refs for refs in held):
            return []  # an ACK ordered before the CANCEL settles it once its sender counts
        del self._pending[ref.seq]
        if job.counted:  # in flight, and never to be confirmed by an ACK now
            self._gate.on_confirmed(1)
        return [self._settle(job, Outcome.cancelled())]

    def _settle_held(self, effects: list[Effect]) -> _Released:
        """Settle at once the held ACKs of senders now trusted (before the consumer
        list changes, so jobs they settle are never re-sent); their reports to the
        gate follow (:meth:`_report_released`), once the sender counts there."""
        witnesses = self._witnesses
        released: _Released = []
        for sender in [s for s in self._held if witnesses.judge_ack(s) is Trust.TRUSTED]:
            acks = self._held.pop(sender)
            self._held_count -= len(acks)
            for ack in acks:
                released.append((sender, ack, self._settle_outcomes(ack, effects)))
        return released

    def _report_released(self, released: _Released) -> None:
        for sender, ack, confirmed in released:
            self._report(sender, ack, confirmed)

    def _drop_held(self, gone: Callable[[str], bool], reason: str, effects: list[Effect]) -> None:
        for sender in [sender for sender in self._held if gone(sender)]:
            acks = self._held.pop(sender)
            self._held_count -= len(acks)
            effects.append(Dropped(sender, "ack", reason, len(acks)))

    def _report(self, sender: str, ack: Ack, confirmed: int) -> None:
        """Tell the gate what an ACK said: read positions, backlog, jobs confirmed."""
        gate = self._gate
        gate.on_ack(sender, ack.positions, ack.backlog)
        if confirmed:
            gate.on_confirmed(confirmed)

    def _set_consumers(self, members: tuple[str, ...], effects: list[Effect]) -> None:
        if not self.member:
            return
        witnesses = self._witnesses
        gate = self._gate
        gate.on_peers(witnesses.peers(members))
        change = witnesses.change(members)
        if change is None:
            return
        self._peak = max(self._peak, len(change.consumers))
        gate.on_view(change.consumers, gate.last_mseq)
        effects.append(ConsumersSet(change.consumers, change.gone))
        lost = change.lost
        if lost:
            self._requeue([job for job in self._pending.values() if job.epoch in lost], effects)
        witnesses.forget({job.epoch for job in self._pending.values()})

    def _requeue(self, jobs: list[Job[Any]], effects: list[Effect]) -> None:
        """Queue ``jobs`` again, ahead of new work: the queue stays in put order."""
        if jobs:
            jobs.sort(key=_seq)
            for job in jobs:
                job.epoch = UNSENT
            queue = self._queue
            if queue and queue[0].spec.seq < jobs[-1].spec.seq:  # older ones still queued
                self._queue = deque(merge(queue, jobs, key=_seq))
            else:
                queue.extendleft(reversed(jobs))
            self.resent += len(jobs)
            effects.append(Requeued(tuple(jobs)))

    # -- outcomes --------------------------------------------------------------------

    def _settle_outcomes(self, ack: Ack, effects: list[Effect]) -> int:
        """Settle the pending jobs ``ack`` reports; returns how many of them were in
        flight (cleared to be sent).

        A job a NOTICE resolved settles without a :class:`Settle` (:meth:`_settle_quietly`):
        its receipt has its outcome and would not read the ACK's. Under the usual load
        every job is noticed first, and an ACK's runs of our jobs then settle a seq at a
        time, with no ref, record or effect built for any of them."""
        me = self.producer_id
        outcomes = ack.outcomes
        runs = outcomes.runs if type(outcomes) is AckOutcomes else None
        if runs is not None:  # another producer's runs are skipped whole
            return self._settle_runs([run for run in runs if run.producer_id == me], effects)
        pending = self._pending
        confirmed = 0
        settle, quietly, append = self._settle, self._settle_quietly, effects.append
        refs, records = AckOutcomes.parts(outcomes)  # kept as records: see Settle
        for (producer_id, seq), record in zip(refs, records, strict=True):
            if producer_id != me:
                continue
            job = pending.pop(seq, None)
            if job is None:
                continue
            confirmed += job.counted
            if job.noticed:
                quietly(job, record)
            else:
                append(settle(job, record))
        return confirmed

    def _settle_runs(self, runs: list[OutcomeRun], effects: list[Effect]) -> int:
        """:meth:`_settle_outcomes` for an ACK's runs of our jobs: their seqs by
        arithmetic, a job's record built only for a :class:`Settle` (a job no NOTICE
        resolved)."""
        pending = self._pending
        confirmed = 0
        settle, quietly, append = self._settle, self._settle_quietly, effects.append
        for run in runs:
            head = run.head
            records: list[OutcomeRecord] | None = None  # built for the first job that needs one
            seq, stride = run.first, run.stride
            for i in range(run.count):
                job = pending.pop(seq, None)
                seq += stride
                if job is None:
                    continue
                confirmed += job.counted
                if job.noticed:
                    quietly(job, head)  # a run's jobs share the head's status
                    continue
                if records is None:
                    records = run.records()  # all at once, in C: cheaper than one by one
                append(settle(job, records[i]))
        return confirmed

    def _settle(self, job: Job[Any], outcome: OutcomeRecord | BaseException) -> Settle:
        self._settle_quietly(job, outcome)
        return _new_settle((job, outcome))

    def _settle_quietly(self, job: Job[Any], outcome: OutcomeRecord | BaseException) -> None:
        """Settle ``job`` (popped from the pending jobs by the caller, unless it failed)
        and count ``outcome``; what :meth:`_settle` does, without the effect."""
        job.settled = True
        if not job.counted:  # never cleared: its admission ends here
            job.counted = True
            if self.member:
                self._admitted -= 1
        if isinstance(outcome, bytes):  # a success as an ACK carries it
            self.succeeded += 1
        elif isinstance(outcome, BaseException):
            self._pending.pop(job.spec.seq, None)
            self.failed += 1
        elif outcome.status is STATUS_OK:
            self.succeeded += 1
        elif outcome.status is Status.CANCELLED:
            self.cancelled += 1
        else:
            self.failed += 1
