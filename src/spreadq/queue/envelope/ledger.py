"""LEDGER: the latest periodic tick a group of members accepted, per schedule.

Multicast to the WORK group (never FEEDBACK) after a view in which not everyone came
with everyone else (a join, a merge, our first view): one LEDGER per group of members
that came together, from the first of them in the view's order. When the LEDGERs
delivered in a view speak for every member of it, each member merges them (the max
per schedule) and its tick ledger *settles* (:class:`~spreadq.queue.periodic.TickLedger`,
docs/design/periodic.md).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from spreadq.errors import EnvelopeError, LocalProtocolError
from spreadq.queue.envelope.preamble import (
    _U8,
    _U16,
    _U16_MAX,
    _U64_MAX,
    MAX_ENVELOPE_SIZE,
    Kind,
    _check_range,
    _preamble,
)
from spreadq.queue.envelope.reader import _Reader
from spreadq.queue.jobs import encode_text
from spreadq.queue.view import GroupIdTuple

__all__ = ["Ledger"]

_GID = struct.Struct("<iii")
_TICK = struct.Struct("<Q")
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True, slots=True)
class Ledger:
    """LEDGER: ``members`` of view ``group_id`` accepted up to ``latest`` (per schedule).

    ``members`` are the names the sender speaks for (the members that came with it into
    the view, itself included); ``latest`` holds ``(schedule, tick)`` pairs, one per
    schedule that ever had a tick accepted, in any order.
    """

    group_id: GroupIdTuple
    members: tuple[str, ...]
    latest: tuple[tuple[str, int], ...] = ()


def _encode_ledger(ledger: Ledger) -> bytes:
    if len(ledger.group_id) != 3:
        raise LocalProtocolError(f"a group id is 3 integers, not {ledger.group_id!r}")
    for part in ledger.group_id:
        if not _I32_MIN <= part <= _I32_MAX:
            raise LocalProtocolError(f"group id part {part} is outside a signed 32-bit integer")
    _check_range(len(ledger.members), "members", _U16_MAX)
    _check_range(len(ledger.latest), "schedules", _U16_MAX)
    parts = [_preamble(Kind.LEDGER, 0), _GID.pack(*ledger.group_id), _U16.pack(len(ledger.members))]
    for member in ledger.members:
        name = encode_text(member, "member name", 0xFF)
        parts += (_U8.pack(len(name)), name)
    parts.append(_U16.pack(len(ledger.latest)))
    seen: set[str] = set()
    for schedule, tick in ledger.latest:
        if schedule in seen:
            raise LocalProtocolError(f"schedule {schedule!r} appears twice in a LEDGER")
        seen.add(schedule)
        name = encode_text(schedule, "schedule name", 0xFF)
        _check_range(tick, f"tick of {schedule!r}", _U64_MAX)
        parts += (_U8.pack(len(name)), name, _TICK.pack(tick))
    data = b"".join(parts)
    if len(data) > MAX_ENVELOPE_SIZE:
        raise LocalProtocolError(
            f"a LEDGER of {len(data)} bytes is over the {MAX_ENVELOPE_SIZE}-byte envelope limit"
        )
    return data


def _decode_ledger(reader: _Reader, slots: int) -> Ledger:
    group_id = reader.unpack(_GID)
    (count,) = reader.unpack(_U16)
    members = []
    for _ in range(count):
        (size,) = reader.unpack(_U8)
        members.append(reader.text(size, "member name"))
    (count,) = reader.unpack(_U16)
    latest: dict[str, int] = {}
    for _ in range(count):
        (size,) = reader.unpack(_U8)
        schedule = reader.text(size, "schedule name")
        (tick,) = reader.unpack(_TICK)
        if schedule in latest:
            raise EnvelopeError(f"schedule {schedule!r} appears twice in a LEDGER")
        latest[schedule] = tick
    reader.done()
    return Ledger((group_id[0], group_id[1], group_id[2]), tuple(members), tuple(latest.items()))
