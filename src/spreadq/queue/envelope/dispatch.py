"""The two entry points over every kind: :func:`encode` any envelope value, and
:func:`decode` any message delivered on a queue group (RAW when it is not an envelope)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spreadq.errors import EnvelopeError
from spreadq.queue.envelope.ack import (
    Ack,
    Notice,
    _decode_ack,
    _decode_notice,
    _encode_ack,
    _encode_notice,
)
from spreadq.queue.envelope.batch import (
    JobBatch,
    JobFragment,
    _decode_batch,
    _decode_fragment,
    _encode_batch_value,
    _encode_fragment_value,
)
from spreadq.queue.envelope.control import (
    Cancel,
    Drain,
    Hello,
    Release,
    ResultAnswer,
    ResultQuery,
    _decode_cancel,
    _decode_drain,
    _decode_hello,
    _decode_release,
    _decode_result,
    _decode_view,
    _encode_answer,
    _encode_cancel,
    _encode_drain,
    _encode_hello,
    _encode_query,
    _encode_release,
    _encode_view,
)
from spreadq.queue.envelope.ledger import Ledger, _decode_ledger, _encode_ledger
from spreadq.queue.envelope.preamble import (
    _PREAMBLE,
    MAGIC,
    VERSION,
    Kind,
)
from spreadq.queue.envelope.reader import _Reader
from spreadq.queue.envelope.stats import Stats, _decode_stats, _encode_stats
from spreadq.queue.view import View

__all__ = [
    "Decoded",
    "Envelope",
    "Raw",
    "decode",
    "encode",
]


@dataclass(frozen=True, slots=True)
class Raw:
    """A WORK message that is not a spreadq envelope: one RAW job."""

    data: bytes | memoryview = field(repr=False)


Decoded = (
    JobBatch
    | JobFragment
    | Ack
    | View
    | Drain
    | Hello
    | Stats
    | Cancel
    | ResultQuery
    | ResultAnswer
    | Ledger
    | Notice
    | Release
    | Raw
)
"""What :func:`decode` returns."""


Envelope = (
    (JobBatch | JobFragment | Ack | View | Drain | Hello | Stats | Cancel | ResultQuery)
    | ResultAnswer
    | Ledger
    | Notice
    | Release
)


_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    JobBatch: _encode_batch_value,
    JobFragment: _encode_fragment_value,
    Ack: _encode_ack,
    View: _encode_view,
    Drain: _encode_drain,
    Hello: _encode_hello,
    Stats: _encode_stats,
    Cancel: _encode_cancel,
    ResultQuery: _encode_query,
    ResultAnswer: _encode_answer,
    Ledger: _encode_ledger,
    Notice: _encode_notice,
    Release: _encode_release,
}


def encode(envelope: Envelope) -> bytes:
    """Encode any envelope value (the Dispatcher's one call for ACK, NOTICE, VIEW, DRAIN,
    HELLO, LEDGER, RELEASE).

    Raises:
        LocalProtocolError: a field the envelope cannot carry.
        MessageTooLarge: a JOB BATCH over :data:`MAX_ENVELOPE_SIZE`.
    """
    return _ENCODERS[type(envelope)](envelope)


_DECODERS: dict[Kind, Callable[[_Reader, int], Decoded]] = {
    Kind.BATCH: _decode_batch,
    Kind.FRAGMENT: _decode_fragment,
    Kind.ACK: _decode_ack,
    Kind.VIEW: _decode_view,
    Kind.DRAIN: _decode_drain,
    Kind.HELLO: _decode_hello,
    Kind.STATS: _decode_stats,
    Kind.CANCEL: _decode_cancel,
    Kind.RESULT: _decode_result,
    Kind.LEDGER: _decode_ledger,
    Kind.NOTICE: _decode_notice,
    Kind.RELEASE: _decode_release,
}
_SLOTTED = {Kind.BATCH, Kind.FRAGMENT}


def decode(data: bytes | memoryview) -> Decoded:
    """Decode one message delivered on a queue group.

    Data that does not start with :data:`MAGIC` is returned as :class:`Raw`. Job
    payloads and header blocks in the result are slices of ``data`` (no copy).

    Raises:
        EnvelopeError: the data starts with the magic but is an unknown version or kind,
            or its body is malformed. :func:`declared_slots` then says how many job slots
            it takes.
    """
    mv = memoryview(data)
    if bytes(mv[:2]) != MAGIC:
        return Raw(data)
    if len(mv) < _PREAMBLE.size:
        raise EnvelopeError(f"a {len(mv)}-byte message is too short for a spreadq envelope")
    _, version, kind, slots = _PREAMBLE.unpack_from(mv)
    if version != VERSION:
        if version == 2:
            raise EnvelopeError("a sealed envelope (version 2): it takes the queue's secret")
        raise EnvelopeError(f"envelope version {version} is not supported (this is {VERSION})")
    decoder = _DECODERS.get(kind)  # Kind is an IntEnum: its members hash as their ints
    if decoder is None:
        raise EnvelopeError(f"unknown envelope kind {kind}")
    if slots and kind not in _SLOTTED:
        raise EnvelopeError(f"a {Kind(kind).name} envelope cannot take {slots} job slots")
    return decoder(_Reader(mv, _PREAMBLE.size), slots)
