"""STATS: one consumer's periodic report, sent to the FEEDBACK group only."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from spreadq.errors import EnvelopeError
from spreadq.queue.envelope.preamble import (
    _U8,
    _U16,
    _U16_MAX,
    _U32_MAX,
    _U64_MAX,
    Kind,
    _check_id,
    _check_range,
    _preamble,
)
from spreadq.queue.envelope.reader import _Reader
from spreadq.queue.jobs import encode_text

__all__ = [
    "Stats",
    "StatsState",
]

_STATS = struct.Struct("<16sBIIQQIIQIiiiQI")
_STATS_PRODUCER = struct.Struct("<16sIQ")


class StatsState(enum.IntEnum):
    """What a consumer reporting :class:`Stats` is doing."""

    RUNNING = 0
    DRAINING = 1


@dataclass(frozen=True, slots=True)
class Stats:
    """STATS: one consumer's periodic report, sent to FEEDBACK only.

    Attributes:
        incarnation: the sender's session incarnation (as in its ACKs).
        member: the sender's Spread member name; a reader takes a report only from the
            member it names.
        state: running or draining.
        owned: outstanding jobs the sender owns (its backlog).
        running: handlers running now.
        done: jobs that succeeded on the sender since it started.
        failed: jobs that failed for good on the sender since it started.
        oldest_ms: how long its longest-running job has run, in milliseconds.
        failovers: jobs it took over from departed members.
        takeover_ms_sum: the sum, over those, of the time from the membership change to
            the takeover, in milliseconds; ``takeover_ms_max`` the longest.
        group_id: the WORK view's Spread group id; ``ordinal`` its local ordinal.
        interval_ms: how often the sender reports (a reader calls it gone after a few
            intervals without a report).
        producers: per producer: ``(producer_id, outstanding jobs, last mseq read)``.
    """

    incarnation: bytes
    member: str
    state: StatsState = StatsState.RUNNING
    owned: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    oldest_ms: int = 0
    failovers: int = 0
    takeover_ms_sum: int = 0
    takeover_ms_max: int = 0
    group_id: tuple[int, int, int] = (0, 0, 0)
    ordinal: int = 0
    interval_ms: int = 0
    producers: tuple[tuple[bytes, int, int], ...] = ()


def _encode_stats(stats: Stats) -> bytes:
    _check_id(stats.incarnation, "incarnation")
    name = encode_text(stats.member, "member name", 0xFF)
    _check_range(len(stats.producers), "producers per STATS", _U16_MAX)
    for value, what, limit in (
        (stats.owned, "owned", _U32_MAX),
        (stats.running, "running", _U32_MAX),
        (stats.done, "done", _U64_MAX),
        (stats.failed, "failed", _U64_MAX),
        (stats.oldest_ms, "oldest_ms", _U32_MAX),
        (stats.failovers, "failovers", _U32_MAX),
        (stats.takeover_ms_sum, "takeover_ms_sum", _U64_MAX),
        (stats.takeover_ms_max, "takeover_ms_max", _U32_MAX),
        (stats.ordinal, "view ordinal", _U64_MAX),
        (stats.interval_ms, "interval_ms", _U32_MAX),
    ):
        _check_range(value, what, limit)
    parts = [
        _preamble(Kind.STATS, 0),
        _STATS.pack(
            stats.incarnation,
            StatsState(stats.state),
            stats.owned,
            stats.running,
            stats.done,
            stats.failed,
            stats.oldest_ms,
            stats.failovers,
            stats.takeover_ms_sum,
            stats.takeover_ms_max,
            *stats.group_id,
            stats.ordinal,
            stats.interval_ms,
        ),
        _U8.pack(len(name)),
        name,
        _U16.pack(len(stats.producers)),
    ]
    for producer_id, outstanding, read in stats.producers:
        _check_id(producer_id, "producer_id")
        _check_range(outstanding, "outstanding", _U32_MAX)
        _check_range(read, "mseq", _U64_MAX)
        parts.append(_STATS_PRODUCER.pack(producer_id, outstanding, read))
    return b"".join(parts)


def _decode_stats(reader: _Reader, slots: int) -> Stats:
    (incarnation, state, *counts, proc_id, time, index, ordinal, interval_ms) = reader.unpack(
        _STATS
    )
    try:
        known_state = StatsState(state)
    except ValueError:
        raise EnvelopeError(f"unknown STATS state {state}") from None
    (size,) = reader.unpack(_U8)
    member = reader.text(size, "member name")
    (count,) = reader.unpack(_U16)
    producers = tuple(reader.unpack(_STATS_PRODUCER) for _ in range(count))
    reader.done()
    owned, running, done, failed, oldest_ms, failovers, takeover_sum, takeover_max = counts
    return Stats(
        incarnation,
        member,
        known_state,
        owned,
        running,
        done,
        failed,
        oldest_ms,
        failovers,
        takeover_sum,
        takeover_max,
        (proc_id, time, index),
        ordinal,
        interval_ms,
        producers,
    )
