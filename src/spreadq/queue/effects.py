"""What the queue core asks the Dispatcher to do: immutable effect values.

:meth:`~spreadq.queue.table.OutstandingTable.apply` returns a list of these, in the
order they must be carried out. Effects that send a message carry the envelope value
ready for :func:`~spreadq.queue.envelope.encode`; each says which groups it goes to:

==================  ==================  =========================================
effect              send to             service
==================  ==================  =========================================
SendAck             WORK + FEEDBACK     AGREED, ``mess_type = MESS_TYPE``
SendNotice          the producer        AGREED (its private group)
AnnounceDrain       WORK + FEEDBACK     AGREED
AnnounceHello       WORK + FEEDBACK     AGREED
AnnounceView        FEEDBACK            AGREED
AnnounceLedger      WORK                AGREED
AnnounceRelease     WORK                AGREED
AnswerResult        the asker           AGREED (its private group)
==================  ==================  =========================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from spreadq.queue.envelope import Ack, Drain, Hello, Ledger, Notice, Release, ResultAnswer
from spreadq.queue.jobs import Job, JobRef, Outcome
from spreadq.queue.view import ChangeCause, View

__all__ = [
    "AnnounceDrain",
    "AnnounceHello",
    "AnnounceLedger",
    "AnnounceRelease",
    "AnnounceView",
    "AnswerResult",
    "CancelJob",
    "CancelRefused",
    "CancelTaken",
    "Effect",
    "GiveUpJob",
    "JobsCompleted",
    "JobOrphaned",
    "JobRejected",
    "RunJob",
    "SendAck",
    "SendNotice",
    "ViewChanged",
]


class RunJob(NamedTuple):
    """We own ``job``: run it (decode its payload with ``job.codec``) and report with
    :class:`~spreadq.queue.table.JobFinished`.

    ``sender`` is the Spread member that multicast it (useful to RAW handlers), and
    ``mess_type`` its Spread message type. ``failover`` is true when the job came to us
    because its owner left: it may have run, in part or in full, before. ``duplicate``
    is true when this copy is one a producer sent again while an earlier copy was
    outstanding: the earlier one may have run, too. ``released`` is true when a busy
    member gave the job back unstarted and it was dealt to us: it has waited, and it is
    never given back again.

    A named tuple, not a frozen dataclass like the other effects: one is built for
    every job a worker runs (see :class:`~spreadq.queue.jobs.Job`).
    """

    job: Job
    sender: str
    mess_type: int
    failover: bool = False
    duplicate: bool = False
    released: bool = False

    @property
    def ref(self) -> JobRef:
        """The job's reference."""
        return self.job.ref


@dataclass(frozen=True, slots=True)
class GiveUpJob:
    """We own ``job``, but its owners left it ``failovers`` times, more than ``limit``
    (``max_failovers``): do not run it. Fail it with
    :class:`~spreadq.errors.WorkerLost` (the ``on_failure`` hooks run here) and report
    the failure with :class:`~spreadq.queue.inputs.JobFinished`, as for a job run.

    Every replica marks the job given up at the same view (:attr:`ViewChanged.given_up`);
    only its new owner gets this effect.
    """

    job: Job
    failovers: int
    limit: int

    @property
    def ref(self) -> JobRef:
        """The job's reference."""
        return self.job.ref

    @property
    def failover(self) -> bool:
        """Always true: a job is given up only when it is taken over."""
        return True

    @property
    def duplicate(self) -> bool:
        """Always false: what counts is that it was taken over."""
        return False


@dataclass(frozen=True, slots=True)
class CancelJob:
    """A job we were told to run was completed by someone else.

    ``running`` is true when we had started it (cancel the handler); otherwise drop it
    from the queue of jobs waiting to start.
    """

    ref: JobRef
    running: bool


@dataclass(frozen=True, slots=True)
class JobsCompleted:
    """An ACK from ``by`` completed these outstanding jobs, in its order (emitted by
    every replica, ours included; one per ACK, not one per job: every replica reads
    every ACK)."""

    by: str
    completed: Sequence[tuple[JobRef, Outcome]]


@dataclass(frozen=True, slots=True)
class CancelTaken:
    """A CANCEL from ``by`` completed ``ref`` as cancelled (emitted by every replica at
    the same place in the order; a run of ours is stopped by the :class:`CancelJob`
    that follows)."""

    ref: JobRef
    by: str


@dataclass(frozen=True, slots=True)
class CancelRefused:
    """A CANCEL for outstanding ``ref`` came from ``sender``, which did not send the
    job (every replica refuses it alike; log it)."""

    ref: JobRef
    sender: str
    reason: str


@dataclass(frozen=True, slots=True)
class AnswerResult:
    """We are the member a RESULT query asked: send ``answer`` to the asker ``to``."""

    to: str
    answer: ResultAnswer


@dataclass(frozen=True, slots=True)
class JobOrphaned:
    """``ref`` lost its owner and no member that holds its payload survives.

    Nobody will run it; producers learn of it from their receipts timing out or from
    the VIEW that lists no holder.
    """

    ref: JobRef


@dataclass(frozen=True, slots=True)
class JobRejected:
    """We own slots of a message whose envelope could not be read; each is reported as
    failed. One effect per message: ``ref`` is the first slot we own and ``count`` how
    many we own (an unreadable envelope takes the slots its preamble declares, up to
    65,535, and one bad message should cost one log line, not one per slot)."""

    ref: JobRef
    sender: str
    reason: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class SendAck:
    """Multicast ``envelope`` to WORK and FEEDBACK."""

    envelope: Ack


@dataclass(frozen=True, slots=True)
class SendNotice:
    """Send ``envelope`` (outcomes of its jobs that asked for one, which no ACK has
    reported yet, as many as fit one message) to producer ``to``'s private group."""

    to: str
    envelope: Notice


@dataclass(frozen=True, slots=True)
class AnnounceView:
    """We are the first member of a new view: multicast ``envelope`` to FEEDBACK."""

    envelope: View


@dataclass(frozen=True, slots=True)
class AnnounceDrain:
    """We are draining: multicast ``envelope`` to WORK and FEEDBACK (after every view)."""

    envelope: Drain


@dataclass(frozen=True, slots=True)
class AnnounceHello:
    """Announce our capacity: multicast ``envelope`` to WORK and FEEDBACK (every view)."""

    envelope: Hello


@dataclass(frozen=True, slots=True)
class AnnounceRelease:
    """Give back jobs we have not started: multicast ``envelope`` to WORK only."""

    envelope: Release


@dataclass(frozen=True, slots=True)
class AnnounceLedger:
    """Speak for the members that came with us: multicast ``envelope`` to WORK only.

    Asked after a view in which the periodic tick ledgers must settle (a join, a merge,
    our first view), by the first member of each group that came together.
    """

    envelope: Ledger


@dataclass(frozen=True, slots=True)
class ViewChanged:
    """A new view was installed (for logs and metrics).

    ``reassigned`` are the jobs that changed owner because their owner left (in their
    original order); ``taken_over`` those of them that came to us; ``orphaned`` the
    jobs no holder survived for; ``given_up`` the reassigned jobs whose owners have now
    left them more than ``max_failovers`` times (their new owner fails them).
    """

    view: View
    cause: ChangeCause
    reassigned: tuple[JobRef, ...] = ()
    taken_over: tuple[JobRef, ...] = ()
    orphaned: tuple[JobRef, ...] = ()
    given_up: tuple[JobRef, ...] = ()


Effect = (
    RunJob
    | GiveUpJob
    | CancelJob
    | CancelTaken
    | CancelRefused
    | AnswerResult
    | JobsCompleted
    | JobOrphaned
    | JobRejected
    | SendAck
    | SendNotice
    | AnnounceView
    | AnnounceDrain
    | AnnounceHello
    | AnnounceLedger
    | AnnounceRelease
    | ViewChanged
)
"""Everything :meth:`~spreadq.queue.table.OutstandingTable.apply` can return."""
