"""Translation: the daemon's events on a queue group, as the queue core's inputs.

Theory of operation. A session reads :class:`~spreadq.wire.events.DaemonMessage`
events; the queue core (:class:`~spreadq.queue.OutstandingTable`, the producer's
bookkeeping) takes its own inputs. :class:`GroupTranslator` makes one into the other
for one group, and nothing else: it reads no clock, logs nothing and keeps no state
beyond its configuration.

====================================  ==================================================
daemon event (on the group)           queue input
====================================  ==================================================
``DataMessage`` addressed to it       :class:`~spreadq.queue.MessageDelivered` (its
                                      data unsealed), or :class:`Refused`
``RegularMembership``                 :class:`~spreadq.queue.ViewInstalled`
``TransitionalMembership``            :class:`~spreadq.queue.Transitional`
``SelfLeave``                         :class:`~spreadq.queue.LeftGroup`
anything else, or another group       None
====================================  ==================================================

Sealing. With a queue secret (a :class:`~spreadq.queue.seal.Seal`), every spreadq
envelope on the group must carry a seal that verifies for its sender; RAW data (from a
plain Spread program) cannot be sealed and passes only with ``accept_unsealed_raw``.
A message that fails is :class:`Refused` with the reason, before any slot is counted,
the same at every member that shares the secret. :func:`unseal` is that check alone,
and :func:`read_envelope` adds the envelope decode (for groups whose messages are
read whole, like FEEDBACK).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from spreadq.errors import EnvelopeError
from spreadq.queue import (
    ChangeCause,
    LeftGroup,
    MessageDelivered,
    Transitional,
    ViewInstalled,
)
from spreadq.queue.envelope import Decoded, decode
from spreadq.queue.seal import Seal, is_spreadq
from spreadq.wire.constants import Cause
from spreadq.wire.events import (
    DaemonMessage,
    DataMessage,
    RegularMembership,
    SelfLeave,
    TransitionalMembership,
)

__all__ = [
    "GroupTranslator",
    "Refused",
    "Translated",
    "change_cause",
    "read_envelope",
    "transitional",
    "unseal",
    "view_installed",
]

_CAUSES: Final = {
    Cause.JOIN: ChangeCause.JOIN,
    Cause.LEAVE: ChangeCause.LEAVE,
    Cause.DISCONNECT: ChangeCause.DISCONNECT,
    Cause.NETWORK: ChangeCause.NETWORK,
}

RAW_REFUSED: Final = "RAW message refused: the queue has a secret (accept_unsealed_raw is off)"
"""The reason a RAW message is refused on a queue with a secret."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A data message on the group that was dropped for its seal: ``reason`` says why."""

    sender: str
    reason: str


Translated = MessageDelivered | ViewInstalled | Transitional | LeftGroup | Refused
"""What :meth:`GroupTranslator.translate` may return (besides None)."""


def change_cause(cause: Cause) -> ChangeCause:
    """The queue's name for a Spread membership cause.

    Raises:
        KeyError: a cause that is not a single one of JOIN, LEAVE, DISCONNECT, NETWORK
            (the wire layer never delivers one).
    """
    return _CAUSES[cause]


def view_installed(event: RegularMembership) -> ViewInstalled:
    """The queue input for a regular membership of a group."""
    gid = event.group_id
    return ViewInstalled(
        members=event.members,
        group_id=(gid.proc_id, gid.time, gid.index),
        cause=_CAUSES[event.cause],
        changed_member=event.changed_member,
        vs_set=event.local_vs_members or None,
    )


def transitional(event: TransitionalMembership) -> Transitional:
    """The queue input for a transitional membership of a group."""
    gid = event.group_id
    return Transitional((gid.proc_id, gid.time, gid.index))


def unseal(
    event: DataMessage, seal: Seal | None, *, accept_unsealed_raw: bool = False
) -> bytes | memoryview:
    """The message inside ``event``: its data as it is without a seal; with one, the
    version-1 envelope inside a seal that verifies for its sender, or the RAW data as
    it is if ``accept_unsealed_raw``.

    Raises:
        EnvelopeError: with a seal, a RAW message (unless accepted), an unsealed
            envelope, or a seal that does not verify; the message says which.
    """
    data = event.data
    if seal is None:
        return data
    if not is_spreadq(data):
        if accept_unsealed_raw:
            return data
        raise EnvelopeError(RAW_REFUSED)
    return seal.unseal(data, event.sender)


def read_envelope(event: DataMessage, seal: Seal | None) -> Decoded:
    """Unseal (:func:`unseal`, RAW refused with a seal) and decode one message.

    Raises:
        EnvelopeError: the seal does not verify, or the envelope is malformed.
    """
    return decode(unseal(event, seal))


class GroupTranslator:
    """Translates the daemon's events on one group into queue inputs.

    Args:
        group: the group whose events are translated (the WORK group for a worker).
        seal: the queue's seal, or None when it has no secret.
        accept_unsealed_raw: with a seal, let RAW messages through.
    """

    __slots__ = ("_accept_raw", "_group", "_seal")

    def __init__(
        self, group: str, seal: Seal | None = None, *, accept_unsealed_raw: bool = False
    ) -> None:
        self._group = group
        self._seal = seal
        self._accept_raw = accept_unsealed_raw

    @property
    def group(self) -> str:
        """The group translated."""
        return self._group

    @property
    def seal(self) -> Seal | None:
        """The queue's seal (None: no secret)."""
        return self._seal

    def translate(self, event: DaemonMessage) -> Translated | None:
        """The queue input for ``event``, :class:`Refused` for a data message whose seal
        fails, or None for an event that is not about the group."""
        group = self._group
        if isinstance(event, DataMessage):
            if group not in event.groups:
                return None
            if self._seal is None:
                return MessageDelivered(event.sender, event.mess_type, event.data)
            try:
                data = unseal(event, self._seal, accept_unsealed_raw=self._accept_raw)
            except EnvelopeError as error:
                return Refused(event.sender, str(error))
            return MessageDelivered(event.sender, event.mess_type, data)
        if isinstance(event, RegularMembership):
            return view_installed(event) if event.group == group else None
        if isinstance(event, TransitionalMembership):
            return transitional(event) if event.group == group else None
        if isinstance(event, SelfLeave):
            return LeftGroup() if event.group == group else None
        return None
