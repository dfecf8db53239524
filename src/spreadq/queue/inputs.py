"""What the Dispatcher feeds the table: WORK group events and local happenings.

Membership inputs (:class:`~spreadq.queue.view.ViewInstalled`,
:class:`~spreadq.queue.view.Transitional`, :class:`~spreadq.queue.view.LeftGroup`)
live in :mod:`~spreadq.queue.view`; this module adds data messages and local inputs and
names the union :data:`Input`. The inputs fed once per message or per job
(:class:`MessageDelivered`, :class:`JobStarted`, :class:`JobFinished`) are named tuples,
cheaper to build than the frozen dataclasses the others are; all are immutable. A worker
reports the jobs that started, and those that ended, in one turn of its loop together,
as :class:`JobsStarted` and :class:`JobsFinished`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from spreadq.queue.jobs import JobRef, Outcome
from spreadq.queue.view import LeftGroup, Transitional, ViewInstalled

__all__ = [
    "Busy",
    "GiveBack",
    "Idle",
    "Input",
    "JobFinished",
    "JobStarted",
    "JobsFinished",
    "JobsStarted",
    "MessageDelivered",
    "Producers",
    "StartDraining",
    "Tick",
    "TurnEnded",
]


class MessageDelivered(NamedTuple):
    """A data message delivered on the WORK group (any envelope, or RAW data)."""

    sender: str
    mess_type: int
    data: bytes | memoryview


class JobStarted(NamedTuple):
    """Our handler for ``ref`` started."""

    ref: JobRef


class JobsStarted(NamedTuple):
    """Our handlers for several jobs started: each as its :class:`JobStarted`."""

    refs: Sequence[JobRef]


class JobFinished(NamedTuple):
    """Our handler for ``ref`` finished with ``outcome`` (after all its attempts)."""

    ref: JobRef
    outcome: Outcome


class JobsFinished(NamedTuple):
    """Our handlers for several jobs finished: each as its :class:`JobFinished`, in
    order, with the ACK cadence asked once at the end (one ACK for them when one is
    due, not one each time a count is reached on the way)."""

    finished: Sequence[JobFinished]


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed; an ACK may be due (see ``OutstandingTable.next_deadline``)."""


@dataclass(frozen=True, slots=True)
class TurnEnded:
    """The worker's loop has handled everything that was waiting: the outcome NOTICEs
    due now go (:class:`~spreadq.queue.notices.NoticeQueue`), so the outcomes of the
    jobs that end in one turn share one NOTICE per producer."""


@dataclass(frozen=True, slots=True)
class Idle:
    """Whether this member has nothing ready to run now (its owner says so when it
    changes): while idle, a finished job's outcome is ACKed at once, within the
    cadence's rate bound, instead of waiting for company."""

    idle: bool


@dataclass(frozen=True, slots=True)
class Busy:
    """Whether this member's own jobs have waited too long for a free slot (its owner
    says so when it changes, by its ``busy_after`` setting): while busy, it announces a
    capacity of 0 in HELLO, and rules that fill members in order (``fill_first``) give
    new jobs to others; once none waits, it announces its capacity again."""

    busy: bool


@dataclass(frozen=True, slots=True)
class GiveBack:
    """We took these jobs of ours, not started, out of our queue: announce a RELEASE of
    them (:class:`~spreadq.queue.envelope.Release`). Until it is delivered they stay
    ours in the table; where it lands, they are dealt anew (possibly back to us)."""

    refs: tuple[JobRef, ...]


@dataclass(frozen=True, slots=True)
class Producers:
    """How many producers share the queue's window now (the FEEDBACK members that are
    neither consumers nor observers, as a producer counts them): a consumer then
    reports its read position before any one producer's share of the window is read."""

    count: int


@dataclass(frozen=True, slots=True)
class StartDraining:
    """Stop taking new work: announce DRAIN now and after every view change."""


Input = (
    ViewInstalled
    | Transitional
    | LeftGroup
    | MessageDelivered
    | JobStarted
    | JobsStarted
    | JobFinished
    | JobsFinished
    | Tick
    | TurnEnded
    | Idle
    | Busy
    | GiveBack
    | Producers
    | StartDraining
)
"""Everything ``OutstandingTable.apply`` accepts."""
