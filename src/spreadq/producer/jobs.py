"""The jobs a producer holds, as :class:`~spreadq.producer.core.ProducerCore` keeps them.

A :class:`Job` is created by the core when ``put()`` admits it and lives until its
outcome is known (a member producer) or it is written (fire-and-forget). It carries an
opaque *tag*, whatever the facade attached (its receipt and route): the core never
looks inside it, so it stays free of I/O. A :class:`Batch` is what the sender takes
in hand at once: jobs of one codec for one JOB BATCH message, or a single job too big
for one message, to be split into FRAGMENT messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from spreadq.queue.envelope import JobSpec

__all__ = ["UNSENT", "Batch", "Job"]

TagT = TypeVar("TagT")

UNSENT: Final = -1
"""The epoch of a job that is queued (not on the wire)."""


@dataclass(slots=True, eq=False)
class Job(Generic[TagT]):
    """One job a producer holds (changed only by the core that made it)."""

    spec: JobSpec
    codec: str
    tag: TagT
    """What the facade attached to the job; the core never reads it."""
    at: float
    """When it was queued (the ``now`` of its ``Put``), for the batching delay."""
    counted: bool = False
    """Accounted for by flow control: cleared to be sent (then in flight until its
    outcome), or settled before it ever was."""
    epoch: int = UNSENT
    """The witness epoch it was last sent in; :data:`UNSENT` while queued."""
    settled: bool = False
    """Its outcome is known (or a fire-and-forget job was written): never send it again."""
    sent_as: str = ""
    """The private group it was last sent under ("" before it was first sent): only that
    sender may cancel it (the consumers check the same name)."""
    cancelling: bool = False
    """A CANCEL for it went out: a NOTICE no longer resolves it, only the order does."""
    noticed: bool = False
    """A NOTICE resolved its receipt (it stays pending until an ACK settles it)."""


@dataclass(frozen=True, slots=True)
class Batch(Generic[TagT]):
    """Jobs taken in hand to be sent: one JOB BATCH message, or, when ``fragmented``,
    one job split into FRAGMENT messages."""

    jobs: tuple[Job[TagT], ...]
    fragmented: bool = False
