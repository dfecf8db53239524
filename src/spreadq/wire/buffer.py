"""ReceiveBuffer: the bytes a session has received and not yet decoded.

Theory of operation
-------------------
A ``bytearray`` plus a read offset. Decoders look at the unread bytes in place (``data``
and ``start`` for ``struct.unpack_from``), decide whether a whole unit has arrived, and
only then ``consume`` it, so a unit split across any number of reads is decoded exactly
once. The consumed prefix is dropped when new bytes arrive, never while a decoder holds
an offset into the array.

The guard against a peer that announces a huge message lives with the decoders: they
check every length field (``data_len``, ``num_groups``, name lengths) against their cap
*before* they wait for the body, so a hostile length can neither allocate memory nor
make the session buffer without bound. ``max_size`` here is the backstop for bytes that
pile up without completing anything (for instance a client that keeps writing while the
daemon has not yet answered its hello).
"""

from __future__ import annotations

from spreadq.errors import RemoteProtocolError

__all__ = ["ReceiveBuffer"]


class ReceiveBuffer:
    """Unread received bytes with a read offset.

    Args:
        max_size: the most unread bytes that may pile up; more is a
            :class:`RemoteProtocolError`.
    """

    __slots__ = ("_data", "_start", "max_size")

    def __init__(self, max_size: int) -> None:
        self._data = bytearray()
        self._start = 0
        self.max_size = max_size

    def __len__(self) -> int:
        """The number of unread bytes."""
        return len(self._data) - self._start

    def __bool__(self) -> bool:
        return len(self._data) > self._start

    @property
    def data(self) -> bytearray:
        """The underlying array; the unread bytes begin at :attr:`start`.

        Read it in place (``unpack_from``); do not keep a memoryview of it across
        :meth:`feed`.
        """
        return self._data

    @property
    def start(self) -> int:
        """Offset of the first unread byte in :attr:`data`."""
        return self._start

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes, dropping the consumed prefix first.

        Raises:
            RemoteProtocolError: more than ``max_size`` bytes would be unread.
        """
        if self._start:
            if self._start == len(self._data):
                self._data.clear()
            else:
                del self._data[: self._start]
            self._start = 0
        if len(self._data) + len(data) > self.max_size:
            raise RemoteProtocolError(
                f"{len(self._data) + len(data)} unread bytes pass the limit of {self.max_size}"
            )
        self._data += data

    def peek(self, size: int) -> bytes | None:
        """The next ``size`` unread bytes without consuming them, or ``None`` if fewer."""
        end = self._start + size
        if end > len(self._data):
            return None
        return bytes(self._data[self._start : end])

    def consume(self, size: int) -> bytes:
        """Take the next ``size`` unread bytes.

        Raises:
            RemoteProtocolError: fewer than ``size`` bytes are unread (a decoder bug
                surfaced as the peer's fault would be wrong, so decoders check first).
        """
        end = self._start + size
        if end > len(self._data):
            raise RemoteProtocolError(f"needed {size} bytes, have {len(self)}")
        if self._start == 0 and end == len(self._data):
            chunk = bytes(self._data)
        else:
            with memoryview(self._data) as view:
                chunk = view[self._start : end].tobytes()
        self._start = end
        return chunk

    def skip(self, size: int) -> None:
        """Mark ``size`` more bytes as read (the caller decoded them in place)."""
        self._start = min(self._start + size, len(self._data))

    def take_all(self) -> bytes:
        """Take every unread byte."""
        return self.consume(len(self))
