"""ReceiveBuffer: the bytes a session has received and not yet decoded.

Theory of operation
-------------------
A ``bytearray`` plus a read offset. Decoders look at the unread bytes in place
(:meth:`ReceiveBuffer.unread` gives the array and the offset for ``struct.unpack_from``),
decide whether a whole unit has arrived, and only then consume it (:meth:`consume`, or
:meth:`consume_to` after decoding in place), so a unit split across any number of reads
is decoded exactly once. The consumed prefix is dropped when new bytes arrive, never
while a decoder holds an offset into the array.

The guard against a peer that announces a huge message is :meth:`ReceiveBuffer.ensure`:
decoders call it with a unit's full size as soon as its length fields are known
(``data_len``, ``num_groups``), *before* they wait for the body, so a hostile length
can neither allocate memory nor make the session wait for bytes it would refuse. What
the buffer holds beyond one unit is only what the caller fed and has not yet drained
with ``next_event()``.
"""

from __future__ import annotations

from spreadq.errors import RemoteProtocolError

__all__ = ["ReceiveBuffer"]


class ReceiveBuffer:
    """Unread received bytes with a read offset.

    Args:
        max_size: the largest unit (message or handshake step) a decoder may wait for;
            :meth:`ensure` refuses anything larger before a byte of it is buffered.
    """

    __slots__ = ("_data", "_start", "max_size")

    def __init__(self, max_size: int) -> None:
        # ``bytes`` while the array holds exactly one received chunk (slicing it copies
        # once), ``bytearray`` once a partial unit had to be kept and extended.
        self._data: bytes | bytearray = b""
        self._start = 0
        self.max_size = max_size

    def __len__(self) -> int:
        """The number of unread bytes."""
        return len(self._data) - self._start

    def __bool__(self) -> bool:
        return len(self._data) > self._start

    def unread(self) -> tuple[bytes | bytearray, int]:
        """The underlying array and the offset of its first unread byte (the fast path).

        Read the array in place (``unpack_from``) and pass offsets into it to
        :meth:`slice` and :meth:`consume_to`; it is valid until the next :meth:`feed`, so
        do not keep it (or a memoryview of it) across one.
        """
        return self._data, self._start

    def consume_to(self, end: int) -> None:
        """Mark the bytes before offset ``end`` of the array :meth:`unread` gave as read.

        Raises:
            RemoteProtocolError: ``end`` is before the first unread byte or past the last
                one (decoders check first, so this is a safety net).
        """
        if not self._start <= end <= len(self._data):
            raise RemoteProtocolError(
                f"cannot consume to offset {end}: the unread bytes are at "
                f"{self._start}..{len(self._data)}"
            )
        self._start = end

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes, dropping the consumed prefix first."""
        if not data:
            return
        if self._start >= len(self._data):
            self._data = data if type(data) is bytes else bytes(data)
        elif type(self._data) is bytes:
            with memoryview(self._data) as view:
                rest = bytearray(view[self._start :])
            rest += data
            self._data = rest
        else:
            assert isinstance(self._data, bytearray)
            if self._start:
                del self._data[: self._start]
            self._data += data
        self._start = 0

    def ensure(self, size: int, what: str) -> bool:
        """Whether ``size`` unread bytes are here, after checking ``size`` against the cap.

        Call it with the full size of a unit as soon as its length fields are known,
        before waiting for the rest.

        Raises:
            RemoteProtocolError: ``size`` is over ``max_size``.
        """
        if size > self.max_size:
            raise RemoteProtocolError(
                f"{what} of {size} bytes is over the limit of {self.max_size}"
            )
        return len(self._data) - self._start >= size

    def peek(self, size: int) -> bytes | None:
        """The next ``size`` unread bytes without consuming them, or ``None`` if fewer."""
        end = self._start + size
        if end > len(self._data):
            return None
        return bytes(self._data[self._start : end])

    def slice(self, begin: int, end: int) -> bytes:
        """Bytes ``begin:end`` of the array :meth:`unread` gave, copied once."""
        data = self._data
        if type(data) is bytes:
            return data[begin:end]
        with memoryview(data) as view:
            return view[begin:end].tobytes()

    def consume(self, size: int) -> bytes:
        """Take the next ``size`` unread bytes.

        Raises:
            RemoteProtocolError: fewer than ``size`` bytes are unread (decoders check
                first, so this is a safety net).
        """
        end = self._start + size
        if end > len(self._data):
            raise RemoteProtocolError(f"needed {size} bytes, have {len(self)}")
        chunk = self.slice(self._start, end)
        self._start = end
        return chunk

    def skip(self, size: int) -> None:
        """Mark ``size`` more bytes as read (the caller decoded them in place)."""
        self._start = min(self._start + size, len(self._data))

    def take_all(self) -> bytes:
        """Take every unread byte."""
        return self.consume(len(self))
