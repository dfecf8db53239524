"""StatsReporter: a consumer's periodic STATS envelope, built from counters and its table.

Sans-IO: the worker asks :meth:`StatsReporter.report` with the time now, as it does the
table for ACK deadlines, and multicasts what comes back to the FEEDBACK group (only
there: a STATS on WORK would reach every replica's table). At most one report per
``interval`` seconds; :meth:`StatsReporter.next_deadline` says when the next is due, so
the worker can fold it into the wait it already has.

What goes in (see :class:`~spreadq.queue.envelope.Stats`): the member's state and
backlog from a :class:`TableSnapshot`, done/failed totals, running jobs, the oldest
running job's age and the failovers with their takeover latency from
:class:`~spreadq.observe.counters.Counters`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from spreadq.observe.counters import Counters
from spreadq.queue.envelope import Stats, StatsState, encode
from spreadq.queue.table import OutstandingTable

__all__ = ["DEFAULT_STATS_INTERVAL", "StatsReporter", "TableSnapshot"]

DEFAULT_STATS_INTERVAL = 1.0
"""Seconds between two STATS reports of one consumer."""

_MAX_PRODUCERS = 256  # per report: the producers with the most outstanding jobs
_U32 = 0xFFFF_FFFF


@dataclass(frozen=True, slots=True)
class TableSnapshot:
    """What a STATS report needs from the replicated table, read at one moment.

    Attributes:
        draining: this member announced DRAIN.
        owned: outstanding jobs this member owns.
        group_id: the WORK view's group id, ``ordinal`` its ordinal (0 before a view).
        outstanding: per producer id, its jobs outstanding in the table (every owner).
        read: per producer id, the last mseq this member read, when known.
    """

    draining: bool = False
    owned: int = 0
    group_id: tuple[int, int, int] = (0, 0, 0)
    ordinal: int = 0
    outstanding: Mapping[bytes, int] = field(default_factory=dict)
    read: Mapping[bytes, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls, table: OutstandingTable, member: str, read: Mapping[bytes, int] | None = None
    ) -> TableSnapshot:
        """Read ``table`` (the replica of ``member``)."""
        view = table.view
        return cls(
            draining=member in table.draining,
            owned=table.backlog,
            group_id=(0, 0, 0) if view is None else view.group_id,
            ordinal=0 if view is None else view.ordinal,
            outstanding=table.outstanding_per_producer(),
            read=read or {},
        )


class StatsReporter:
    """Builds one consumer's STATS envelope at most once per ``interval`` seconds.

    Args:
        member: this worker's Spread member name.
        incarnation: its session incarnation (16 bytes, as in its ACKs).
        counters: the always-on counters of its event bus.
        snapshot: called at each report for the table's facts.
        interval: seconds between reports (> 0).

    Raises:
        ValueError: (constructor) ``interval`` is not a positive finite number.
    """

    __slots__ = ("_counters", "_due", "_incarnation", "_member", "_snapshot", "interval")

    def __init__(
        self,
        *,
        member: str,
        incarnation: bytes,
        counters: Counters,
        snapshot: Callable[[], TableSnapshot],
        interval: float = DEFAULT_STATS_INTERVAL,
    ) -> None:
        if not 0 < interval < math.inf:
            raise ValueError(f"a STATS interval is a positive number of seconds, got {interval}")
        self._member = member
        self._incarnation = incarnation
        self._counters = counters
        self._snapshot = snapshot
        self.interval = interval
        self._due = -math.inf

    def next_deadline(self) -> float:
        """When the next report is due (``-inf`` before the first)."""
        return self._due

    def report(self, now: float) -> bytes | None:
        """The encoded STATS envelope if one is due at ``now``, else ``None``.

        Raises:
            LocalProtocolError: a member name over 255 bytes (never a Spread name).
        """
        if now < self._due:
            return None
        self._due = now + self.interval
        return encode(self.stats(now))

    def stats(self, now: float) -> Stats:
        """The report as a value, whether or not one is due."""
        counters = self._counters
        table = self._snapshot()
        busiest = sorted(table.outstanding.items(), key=lambda item: -item[1])[:_MAX_PRODUCERS]
        return Stats(
            self._incarnation,
            self._member,
            StatsState.DRAINING if table.draining else StatsState.RUNNING,
            owned=min(table.owned, _U32),
            running=min(counters.running, _U32),
            done=counters.done,
            failed=counters.failed,
            oldest_ms=min(_ms(counters.oldest_running(now)), _U32),
            failovers=min(counters.failovers, _U32),
            takeover_ms_sum=_ms(counters.takeover_seconds),
            takeover_ms_max=min(_ms(counters.takeover_max), _U32),
            group_id=table.group_id,
            ordinal=table.ordinal,
            interval_ms=min(_ms(self.interval), _U32),
            producers=tuple(
                (producer_id, min(count, _U32), table.read.get(producer_id, 0))
                for producer_id, count in busiest
            ),
        )


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
