"""What a :class:`~spreadq.producer.core.ProducerCore` asks its facade to do.

The core settles, requeues and counts by itself; these effects are what only the I/O
shell can carry out: resolve a receipt, log a dropped envelope or a new consumer
list, wake the sender.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from spreadq.producer.jobs import Job
from spreadq.queue.jobs import OutcomeRecord

__all__ = ["ConsumersSet", "Dropped", "Effect", "Ready", "Requeued", "Resolve", "Settle"]


class Settle(NamedTuple):
    """Resolve ``job``'s receipt with ``outcome``, or fail it with the exception. An ACK's
    success comes as the ACK carried it (an :data:`~spreadq.queue.jobs.OutcomeRecord`,
    read with :func:`~spreadq.queue.jobs.outcome_of`). A job whose receipt a NOTICE
    resolved settles with none: its receipt would not read the ACK's outcome."""

    job: Job[Any]
    outcome: OutcomeRecord | BaseException


class Resolve(NamedTuple):
    """Resolve ``job``'s receipt early with ``outcome``, from a NOTICE: the job stays
    pending (in flight for flow control) until an ACK settles it. A decoded NOTICE's
    success comes as its record (see :data:`~spreadq.queue.jobs.OutcomeRecord`), which
    only the receipt reads."""

    job: Job[Any]
    outcome: OutcomeRecord


@dataclass(frozen=True, slots=True)
class Dropped:
    """``count`` envelopes of ``kind`` (``"ack"``, ``"view"``, ``"notice"``) from ``sender``
    were dropped for ``reason``: they settled nothing."""

    sender: str
    kind: str
    reason: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class Requeued:
    """``jobs`` went back to the queue, to be sent again (the sender has work)."""

    jobs: tuple[Job[Any], ...]


@dataclass(frozen=True, slots=True)
class ConsumersSet:
    """The consumer list changed: ``consumers`` now, ``gone`` left."""

    consumers: tuple[str, ...]
    gone: frozenset[str]


@dataclass(frozen=True, slots=True)
class Ready:
    """The queue holds a first job or a full batch: the sender should look."""


Effect = Settle | Resolve | Dropped | Requeued | ConsumersSet | Ready
