"""What spreadq tells observers: one frozen, slotted dataclass per kind of event.

Every event names its ``queue``. Job events carry the job's ``ref`` and handler
``kind``; membership events name the ``member`` they concern. Times are seconds:
``duration`` is measured by the worker's monotonic clock around a handler attempt,
``latency`` from the membership change that took a job's owner away to the moment
another member took the job over.

Events are built only when some observer takes their type (see
:class:`~spreadq.observe.bus.EventBus`: ``if JobStarted in bus.routes: bus.publish(...)``),
so they carry plain values and never validate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from spreadq.queue.jobs import JobRef

__all__ = [
    "Event",
    "JobAssigned",
    "JobFailed",
    "JobRetried",
    "JobStarted",
    "JobSucceeded",
    "JobTakenOver",
    "SessionLost",
    "SessionRegained",
    "ViewInstalled",
    "WindowBlocked",
    "WindowOpened",
    "event_types",
]


@dataclass(frozen=True, slots=True)
class JobAssigned:
    """This worker (``member``) became the owner of a job, in a view (a job it takes
    over from a departed member is :class:`JobTakenOver` instead). Published by the owner
    only: every replica assigns every job, and one event per job per replica would put
    the bus on the path of jobs the worker never runs.

    ``released``: a busy member gave the job back and the order dealt it to this worker
    (docs/design/replicated-table.md#release); the giver published this event for it
    first, so a count of the jobs assigned across workers leaves these out."""

    name: ClassVar[str] = "job_assigned"
    queue: str
    ref: JobRef
    kind: str
    member: str
    released: bool = False


@dataclass(frozen=True, slots=True)
class JobStarted:
    """A handler attempt began on this worker (``attempt`` is 1-based)."""

    name: ClassVar[str] = "job_started"
    queue: str
    ref: JobRef
    kind: str
    attempt: int


@dataclass(frozen=True, slots=True)
class JobSucceeded:
    """A handler attempt returned; the job is done."""

    name: ClassVar[str] = "job_succeeded"
    queue: str
    ref: JobRef
    kind: str
    attempt: int
    duration: float


@dataclass(frozen=True, slots=True)
class JobFailed:
    """A job failed for good (its last attempt raised, or it could not be run)."""

    name: ClassVar[str] = "job_failed"
    queue: str
    ref: JobRef
    kind: str
    attempt: int
    duration: float
    error_type: str


@dataclass(frozen=True, slots=True)
class JobRetried:
    """An attempt failed and the job will run again after ``delay`` seconds."""

    name: ClassVar[str] = "job_retried"
    queue: str
    ref: JobRef
    kind: str
    attempt: int
    duration: float
    delay: float
    error_type: str


@dataclass(frozen=True, slots=True)
class JobTakenOver:
    """This worker (``member``) took over a job whose owner ``previous`` left,
    ``latency`` seconds after the membership change that said so (published by the new
    owner only)."""

    name: ClassVar[str] = "job_taken_over"
    queue: str
    ref: JobRef
    kind: str
    member: str
    previous: str
    latency: float


@dataclass(frozen=True, slots=True)
class ViewInstalled:
    """A new WORK view: ``members`` in Spread's order, ``view_id`` its local ordinal."""

    name: ClassVar[str] = "view_installed"
    queue: str
    member: str
    view_id: int
    members: tuple[str, ...]
    cause: str


@dataclass(frozen=True, slots=True)
class WindowBlocked:
    """A producer's ``put()`` started waiting for flow control (``reason`` says which
    bound: ``window``, ``in_flight`` or ``backlog``; or ``behind`` when there is room
    for it but an earlier put still waits, as puts are admitted in order)."""

    name: ClassVar[str] = "window_blocked"
    queue: str
    member: str
    reason: str


@dataclass(frozen=True, slots=True)
class WindowOpened:
    """A blocked producer may send again after ``blocked`` seconds."""

    name: ClassVar[str] = "window_opened"
    queue: str
    member: str
    blocked: float


@dataclass(frozen=True, slots=True)
class SessionLost:
    """A worker's or producer's daemon session ended; ``reason`` is the close reason."""

    name: ClassVar[str] = "session_lost"
    queue: str
    member: str
    role: str
    reason: str


@dataclass(frozen=True, slots=True)
class SessionRegained:
    """A new daemon session is up after ``down`` seconds without one."""

    name: ClassVar[str] = "session_regained"
    queue: str
    member: str
    role: str
    down: float


Event = (
    JobAssigned
    | JobStarted
    | JobSucceeded
    | JobFailed
    | JobRetried
    | JobTakenOver
    | ViewInstalled
    | WindowBlocked
    | WindowOpened
    | SessionLost
    | SessionRegained
)
"""Any event an observer may receive."""


def event_types() -> tuple[type[Event], ...]:
    """Every event class, in the order of :data:`Event`."""
    return (
        JobAssigned,
        JobStarted,
        JobSucceeded,
        JobFailed,
        JobRetried,
        JobTakenOver,
        ViewInstalled,
        WindowBlocked,
        WindowOpened,
        SessionLost,
        SessionRegained,
    )
