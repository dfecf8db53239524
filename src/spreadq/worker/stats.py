"""A worker session's STATS report: what it counts between reports, and their cadence.

Every ``settings.stats_interval`` seconds, once in a view and until it leaves, the
dispatcher multicasts one STATS envelope to FEEDBACK only (on WORK every replica would
read it). :class:`WorkerStats` holds what that report needs beyond the table and the
counters: the read positions our own ACKs last reported per producer (the read lag
``spreadq top`` shows), kept as each ACK goes out and pruned to the producers a report
lists. Its :meth:`WorkerStats.tick` is the task that posts "a report is due" into the
dispatcher's inbox, so the loop's wait, and its cost per turn, do not change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import anyio

from spreadq.observe import Counters, StatsReporter, TableSnapshot
from spreadq.queue import OutstandingTable, encode

__all__ = ["WorkerStats"]


class WorkerStats:
    """The STATS report of one worker session (``member``'s replica ``table``).

    Raises:
        ValueError: (constructor) ``interval`` is not a positive finite number.
    """

    __slots__ = ("_reporter", "read_at")

    def __init__(
        self, member: str, table: OutstandingTable, counters: Counters, *, interval: float
    ) -> None:
        self.read_at: dict[bytes, int] = {}
        """Per producer, the last mseq our ACKs reported."""
        self._reporter = StatsReporter(
            member=member,
            incarnation=table.incarnation,
            counters=counters,
            snapshot=lambda: TableSnapshot.of(table, member, self.read_at),
            interval=interval,
        )

    @property
    def interval(self) -> float:
        """Seconds between reports."""
        return self._reporter.interval

    async def tick(self, post: Callable[[], None]) -> None:
        """Call ``post`` every :attr:`interval` seconds, until the inbox it posts to
        closes (a task of its own: an idle worker wakes for nothing else).

        Raises nothing: a closed inbox ends it.
        """
        interval = self._reporter.interval
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            while True:
                await anyio.sleep(interval)
                post()

    def report(self, now: float) -> bytes:
        """The encoded STATS envelope now; read positions of producers it does not list
        (nothing outstanding) are forgotten.

        Raises:
            LocalProtocolError: a member name over 255 bytes (never a Spread name).
        """
        stats = self._reporter.stats(now)
        if len(self.read_at) > len(stats.producers):  # forget those with nothing outstanding
            reported = {producer_id for producer_id, _, _ in stats.producers}
            self.read_at = {p: mseq for p, mseq in self.read_at.items() if p in reported}
        return encode(stats)
