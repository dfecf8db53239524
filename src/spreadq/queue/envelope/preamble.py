"""The six-byte preamble every envelope starts with, the limits every kind shares, and
the field checks the encoders of every kind use."""

from __future__ import annotations

import enum
import struct
from typing import Final

from spreadq.errors import LocalProtocolError
from spreadq.queue.jobs import JobRef

__all__ = [
    "MAGIC",
    "MAX_ENVELOPE_SIZE",
    "MESS_TYPE",
    "SEAL_SIZE",
    "VERSION",
    "Kind",
    "declared_slots",
]

MAGIC: Final = b"SQ"
VERSION: Final = 1
MESS_TYPE: Final = 0x5351
"""The Spread ``mess_type`` spreadq sends its envelopes with (ASCII ``"SQ"``)."""

SEAL_SIZE: Final = 16
"""Bytes a seal adds to an envelope (its tag; :mod:`spreadq.queue.seal`)."""

MAX_ENVELOPE_SIZE: Final = 140_000 - 48 - 2 * 32 - SEAL_SIZE
"""The largest envelope spreadq builds: the Java client's 140,000-byte rule for a message
addressed to two groups (docs/design/spread-protocol.md#message-size), less room for a
seal, so one cap serves JOB, ACK and control messages, sealed or not."""

MAX_CODEC_NAME: Final = 32
MAX_ATTEMPTS: Final = 0xFFFF


class Kind(enum.IntEnum):
    """The byte at offset 3 of every envelope."""

    BATCH = 1
    FRAGMENT = 2
    ACK = 3
    VIEW = 4
    DRAIN = 5
    HELLO = 6
    STATS = 7
    CANCEL = 8
    RESULT = 9
    LEDGER = 10
    NOTICE = 11
    RELEASE = 12


_PREAMBLE = struct.Struct("<2sBBH")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")


_ID_SIZE = 16
_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFF_FFFF
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF


def _check_id(value: bytes, what: str) -> None:
    if len(value) != _ID_SIZE:
        raise LocalProtocolError(f"{what} must be {_ID_SIZE} bytes, not {len(value)}")


def _check_range(value: int, what: str, limit: int) -> None:
    if not 0 <= value <= limit:
        raise LocalProtocolError(f"{what} {value} is outside 0..{limit}")


def _preamble(kind: Kind, slots: int) -> bytes:
    return _PREAMBLE.pack(MAGIC, VERSION, kind, slots)


def _codec_bytes(codec: str) -> bytes:
    if not codec.isascii() or not 1 <= len(codec) <= MAX_CODEC_NAME:
        raise LocalProtocolError(f"codec name {codec!r} must be 1..{MAX_CODEC_NAME} ASCII chars")
    return codec.encode("ascii")


def _check_ref(ref: JobRef) -> None:
    _check_id(ref.producer_id, "producer_id")
    _check_range(ref.seq, "job seq", _U64_MAX)


def declared_slots(data: bytes | memoryview) -> int:
    """How many job slots an unreadable envelope takes: its declared count, or 1 when
    even the preamble is cut short (the rule every version must follow)."""
    if len(data) < _PREAMBLE.size:
        return 1
    slots: int = _PREAMBLE.unpack_from(data)[3]
    return slots
