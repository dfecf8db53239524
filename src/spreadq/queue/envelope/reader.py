"""The bounds-checked cursor every decoder reads a message with."""

from __future__ import annotations

import struct
from typing import Any

from spreadq.errors import EnvelopeError
from spreadq.queue.envelope.preamble import MAX_CODEC_NAME

__all__ = []


class _Reader:
    """A cursor over one message; every read is bounds-checked."""

    __slots__ = ("at", "mv")

    def __init__(self, mv: memoryview, at: int) -> None:
        self.mv = mv
        self.at = at

    def unpack(self, layout: struct.Struct) -> tuple[Any, ...]:
        end = self.at + layout.size
        if end > len(self.mv):
            raise EnvelopeError(f"truncated at byte {self.at}: {layout.size} more bytes needed")
        values = layout.unpack_from(self.mv, self.at)
        self.at = end
        return values

    def take(self, size: int) -> memoryview:
        end = self.at + size
        if end > len(self.mv):
            raise EnvelopeError(f"truncated at byte {self.at}: {size} more bytes needed")
        chunk = self.mv[self.at : end]
        self.at = end
        return chunk

    def text(self, size: int, what: str) -> str:
        chunk = self.take(size)
        try:
            return str(chunk, "utf-8")
        except UnicodeDecodeError as exc:
            raise EnvelopeError(f"{what} is not UTF-8") from exc

    def done(self) -> None:
        if self.at != len(self.mv):
            raise EnvelopeError(f"{len(self.mv) - self.at} trailing bytes after the envelope")


_CODEC_NAMES: dict[bytes, str] = {}
"""Codec names read and checked so far: a queue uses a few, in every message."""
_CODEC_NAMES_KEPT = 256


def _codec_name(raw: bytes) -> str:
    """The codec name ``raw`` spells, refused unless it is 1 to 32 ASCII characters
    (checked once per name: batches and ACK outcomes name the same few codecs)."""
    name = _CODEC_NAMES.get(raw)
    if name is None:
        if not 1 <= len(raw) <= MAX_CODEC_NAME or not raw.isascii():
            raise EnvelopeError("bad codec name")
        name = raw.decode("ascii")
        if len(_CODEC_NAMES) >= _CODEC_NAMES_KEPT:
            _CODEC_NAMES.clear()
        _CODEC_NAMES[raw] = name
    return name


def _read_codec(reader: _Reader, size: int) -> str:
    return _codec_name(bytes(reader.take(size)))
