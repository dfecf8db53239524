"""FramedSession: the half of a Spread session that does not depend on its role.

Theory of operation
-------------------
:class:`~spreadq.wire.session.ClientSession` and
:class:`~spreadq.wire.server_session.ServerSession` read the same framing: once the
handshake is over, every message is a 48-byte header (either byte order, the top bit of
its first byte tells which), 32-byte group name fields, then data. This module reads it
once for both, as h11 keeps one connection object with a table per role:

* ``receive_data()`` and ``next_event()`` are written here; ``next_event()`` dispatches
  on ``state`` through the role's tables: ``_OPEN`` (read messages), ``_CLOSED``
  (decode nothing) and ``_READERS`` (the handshake states), and asks the role what EOF
  means (``_end_of_stream``).
* ``_read_message()`` waits for a whole header, decodes it in the sender's byte order,
  lets the role check it (``_check_header``, which refuses a size over the cap *before*
  the body is awaited), waits for the rest, decodes the names through a bounded cache
  (the role decides how strictly, ``_decode_name``), takes the data, and lets the role
  build its event (``_event``).

A message is consumed from the :class:`~spreadq.wire.buffer.ReceiveBuffer` only once all
its bytes are here, so chunking never changes the result. A
:class:`~spreadq.errors.RemoteProtocolError` from any step leaves the session ``CLOSED``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, Generic, TypeVar

from spreadq.errors import LocalProtocolError, RemoteProtocolError
from spreadq.wire.buffer import ReceiveBuffer
from spreadq.wire.constants import (
    ENDIAN_MARKER,
    GROUP_NAME_SIZE,
    HEADER_SIZE,
    MAX_GROUPS_PER_MESSAGE,
    ServiceType,
)
from spreadq.wire.events import CLOSED, NEED_DATA, Closed, NeedData
from spreadq.wire.layouts import HEADER_BE, HEADER_LE, OLD_TYPE_SIZE, group_struct

__all__ = ["CACHE_LIMIT", "SERVICES", "FramedSession"]

EventT = TypeVar("EventT")
StateT = TypeVar("StateT")

CACHE_LIMIT: Final = 4096
"""Entries a session keeps in each of its decode caches before it starts them afresh."""

SERVICES: Final = tuple(ServiceType(bits) for bits in range(0x80))
"""``type & 0x7F`` -> ServiceType, built once (IntFlag construction is slow)."""

_MARKER_MASK: Final = 0xFFFFFFFF & ~ENDIAN_MARKER
_PRECOMPILED: Final = MAX_GROUPS_PER_MESSAGE + 1
_GROUP_STRUCTS: Final = tuple(group_struct(count) for count in range(_PRECOMPILED))


class FramedSession(Generic[EventT, StateT]):
    """Receiving and framing, shared by the client's and the daemon's session.

    A subclass sets the role's tables (``_OPEN``, ``_CLOSED``, ``_READERS``,
    ``_PREFIXED``) and implements ``_end_of_stream``, ``_check_header``, ``_decode_name``
    and ``_event``.

    Args:
        state: the role's first state.
        max_message_size: the largest incoming message accepted, header included.
    """

    __slots__ = ("_buffer", "_eof", "_hints", "_names", "max_message_size", "state")

    _OPEN: ClassVar[Any]
    """The state in which messages are read (the hot path)."""
    _CLOSED: ClassVar[Any]
    """The state that decodes nothing."""
    _READERS: ClassVar[Mapping[Any, Callable[[Any], Any]]]
    """State -> the reader that decodes in it (``_OPEN`` and ``_CLOSED`` need none)."""
    _PREFIXED: ClassVar[object] = None
    """The one message kind whose header is followed by the 4-byte old type (a daemon's
    REJECT); ``None`` when the role reads no such message."""

    def __init__(self, state: StateT, max_message_size: int) -> None:
        self.state = state
        self.max_message_size = max_message_size
        self._buffer = ReceiveBuffer(max_message_size)
        self._eof = False
        self._names: dict[bytes, str] = {}
        self._hints: dict[bytes, tuple[int, bool]] = {}

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received from the peer; ``b""`` means the peer closed (EOF).

        Raises:
            LocalProtocolError: bytes fed after EOF.
        """
        if not data:
            self._eof = True
        elif self._eof:
            raise LocalProtocolError("receive_data() after EOF")
        else:
            self._buffer.feed(data)

    def next_event(self) -> EventT | NeedData | Closed:
        """The next event decoded from the received bytes.

        Returns ``NEED_DATA`` while a whole unit has not arrived (or the role waits for
        its own answer to a handshake step), and ``CLOSED`` once the session is over.

        Raises:
            RemoteProtocolError: the peer sent bytes the protocol does not allow, or
                closed in the middle of a unit; the session is then ``CLOSED``.
        """
        state = self.state
        event: EventT | NeedData
        try:
            if state is self._OPEN:  # the hot path: no enum hashing
                event = self._read_message()
            elif state is self._CLOSED:
                return CLOSED
            else:
                event = self._READERS[state](self)
        except RemoteProtocolError:
            self.state = self._CLOSED
            raise
        if event is NEED_DATA and self._eof:
            return self._end_of_stream()
        return event

    # --- the role's part -------------------------------------------------------------

    def _end_of_stream(self) -> EventT | Closed:
        """What EOF with no whole unit left means; moves the state machine."""
        raise NotImplementedError

    def _check_header(
        self, type_: int, sender: bytes, count: int, hint: bytes, data_len: int
    ) -> object:
        """Check a header (``type_`` without the marker); return the message's kind.

        Raises:
            RemoteProtocolError: the header breaks a rule of the role, or the message
                is over ``max_message_size``.
        """
        raise NotImplementedError

    @staticmethod
    def _decode_name(field: bytes) -> str:
        """A name from a 32-byte field, as strictly as the role reads them."""
        raise NotImplementedError

    def _event(
        self,
        kind: object,
        type_: int,
        sender: bytes,
        groups: tuple[str, ...],
        hint: bytes,
        payload: bytes,
        little: int,
        data: bytes | bytearray,
        start: int,
        data_at: int,
    ) -> EventT:
        """The event of one whole message: ``data[start:]`` holds it, its data begins
        at ``data_at``, and ``little`` is non-zero when its header is little-endian.

        Raises:
            RemoteProtocolError: the message breaks a rule of the role.
        """
        raise NotImplementedError

    # --- framing ---------------------------------------------------------------------

    def _read_message(self) -> EventT | NeedData:
        buffer = self._buffer
        data, start = buffer.unread()
        if len(data) - start < HEADER_SIZE:
            return NEED_DATA
        little = data[start] & 0x80
        type_, sender, count, hint, data_len = (HEADER_LE if little else HEADER_BE).unpack_from(
            data, start
        )
        type_ &= _MARKER_MASK
        kind = self._check_header(type_, sender, count, hint, data_len)
        groups_at = start + HEADER_SIZE
        if kind is self._PREFIXED:
            groups_at += OLD_TYPE_SIZE
        data_at = groups_at + GROUP_NAME_SIZE * count
        end = data_at + data_len
        if end > len(data):  # the role checked the size against the cap
            return NEED_DATA
        names = self._names
        fields = (
            _GROUP_STRUCTS[count] if count < _PRECOMPILED else group_struct(count)
        ).unpack_from(data, groups_at)
        if count == 1:  # the common case, without a comprehension's frame
            field = fields[0]
            groups: tuple[str, ...] = (names[field] if field in names else self._name(field),)
        else:
            try:  # every name cached: no Python frame per name
                groups = tuple(map(names.__getitem__, fields))
            except KeyError:
                groups = tuple([names[f] if f in names else self._name(f) for f in fields])
        if type(data) is bytes:
            payload = data[data_at:end]
        else:
            with memoryview(data) as view:
                payload = view[data_at:end].tobytes()
        buffer.consume_to(end)
        return self._event(kind, type_, sender, groups, hint, payload, little, data, start, data_at)

    def _name(self, field: bytes) -> str:
        names = self._names
        if len(names) >= CACHE_LIMIT:
            names.clear()
        name = names[field] = self._decode_name(field)
        return name

    def _hint(self, hint: bytes) -> tuple[int, bool]:
        """``mess_type`` from a hint in either byte order, and whether it was little."""
        hints = self._hints
        if len(hints) >= CACHE_LIMIT:
            hints.clear()
        little = bool(hint[0] & 0x80)
        value = (int.from_bytes(hint, "little" if little else "big") >> 8) & 0xFFFF
        result = hints[hint] = (value - 0x10000 if value & 0x8000 else value), little
        return result
