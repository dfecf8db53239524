"""What the producer facade feeds its :class:`~spreadq.producer.core.ProducerCore`.

Local happenings (a put, a message cleared and written, a CANCEL about to go, a session
opened or lost, the producer closing), what the FEEDBACK group said (ACK and VIEW
envelopes with the sender Spread reports, FEEDBACK memberships) and the NOTICEs sent to
our private group. Every input is an immutable value; the core's
:meth:`~spreadq.producer.core.ProducerCore.apply` takes one at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from spreadq.producer.jobs import Batch, Job
from spreadq.queue.envelope import Ack, JobSpec, Notice
from spreadq.queue.jobs import JobRef
from spreadq.queue.view import View

__all__ = [
    "AckReceived",
    "CancelDelivered",
    "CancelSending",
    "Cleared",
    "Closed",
    "FeedbackMembership",
    "GiveUp",
    "Input",
    "NoticeReceived",
    "Put",
    "Resending",
    "SessionLost",
    "SessionOpened",
    "Sent",
    "ViewReceived",
    "Withdraw",
]


class Put(NamedTuple):
    """``put()`` admitted a job: ``spec`` (numbered ``core.next_seq``), encoded with
    ``codec``; ``tag`` is what the facade attaches to it (its receipt and route)."""

    spec: JobSpec
    codec: str
    tag: object


@dataclass(frozen=True, slots=True)
class Cleared:
    """The next message of ``batch`` may go (``clear_to_send`` said so) and is about to
    be written: it takes the next mseq. ``final`` is False for a fragment that is not
    the job's last (it carries no job yet); ``waited`` says the message had to wait
    for clearance."""

    batch: Batch[Any]
    final: bool = True
    waited: bool = False


@dataclass(frozen=True, slots=True)
class Sent:
    """The batch in hand is done: ``jobs`` (those still unsettled) went on the wire in
    ``messages`` messages (0 and ``()`` when everything was settled meanwhile)."""

    jobs: tuple[Job[Any], ...]
    messages: int


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The job in hand cannot be sent at all (``error`` says why): fail it."""

    job: Job[Any]
    error: BaseException


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """A daemon session opened; ``me`` is our private group name in it."""

    me: str


@dataclass(frozen=True, slots=True)
class SessionLost:
    """The session ended (or a reconnection attempt failed): every witness is lost."""


@dataclass(frozen=True, slots=True)
class Resending:
    """The sender of a new session starts: it no longer waits for the consumers of the
    last session lost (:attr:`~spreadq.producer.core.ProducerCore.expected_back`)."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The producer closed (or gave up reconnecting): fail every unsettled job with
    ``error`` and forget them all."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK envelope on the FEEDBACK group, from ``sender`` as Spread reports it."""

    sender: str
    ack: Ack


@dataclass(frozen=True, slots=True)
class NoticeReceived:
    """A NOTICE envelope on our private group, from ``sender`` as Spread reports it."""

    sender: str
    notice: Notice


@dataclass(frozen=True, slots=True)
class ViewReceived:
    """A VIEW envelope on the FEEDBACK group, from ``sender`` as Spread reports it."""

    sender: str
    view: View


@dataclass(frozen=True, slots=True)
class Withdraw:
    """``receipt.cancel()`` for job ``seq``, which was never sent: settle it cancelled
    here (the core checks it is still unsent and not in hand)."""

    seq: int


@dataclass(frozen=True, slots=True)
class CancelSending:
    """A CANCEL for job ``seq`` is about to be multicast: from now on only the order of
    that CANCEL among the ACKs decides the job, never a NOTICE."""

    seq: int


@dataclass(frozen=True, slots=True)
class CancelDelivered:
    """A CANCEL for ``ref`` was delivered on FEEDBACK from ``sender``, at its place in
    the order among the ACKs."""

    sender: str
    ref: JobRef


@dataclass(frozen=True, slots=True)
class FeedbackMembership:
    """A regular membership of the FEEDBACK group: its members now."""

    members: Sequence[str]


Input = (
    Put
    | Cleared
    | Sent
    | GiveUp
    | SessionOpened
    | SessionLost
    | Resending
    | Closed
    | AckReceived
    | NoticeReceived
    | ViewReceived
    | FeedbackMembership
    | Withdraw
    | CancelSending
    | CancelDelivered
)
