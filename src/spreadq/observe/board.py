"""Board: what ``spreadq top`` shows, built from FEEDBACK traffic alone (sans-IO).

Theory of operation
-------------------
An observer joins a queue's FEEDBACK group and feeds the :class:`Board` three things,
each with what Spread itself says about it:

* FEEDBACK memberships (:meth:`Board.on_feedback`): who is present;
* VIEW envelopes (:meth:`Board.on_view`): the consumers in Spread's order, taken only
  from a present member that is the first one the VIEW lists (as producers judge it);
* STATS envelopes (:meth:`Board.on_stats`): each consumer's report, taken only when
  the Spread sender is the member the report names.

:meth:`Board.snapshot` turns that into rows, in the VIEW's order: a consumer is
``running`` or ``draining`` as it reports, ``waiting`` while it is listed but has not
reported yet, and ``gone`` once it left the view or FEEDBACK or missed three report
intervals (a gone consumer stays on the board for :data:`GONE_FOR` seconds). Rates come
from a consumer's last two reports. Per producer, ``outstanding`` is its jobs in the
consumers' tables (every replica holds the same set; the newest report wins) and
``lag`` how many of its messages the slowest consumer is behind the fastest, the quantity
a producer's window bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from spreadq.queue.envelope import Stats, StatsState
from spreadq.queue.view import View

__all__ = ["GONE_FOR", "Board", "TopConsumer", "TopProducer", "TopSnapshot"]

GONE_FOR = 60.0
"""Seconds a consumer that is gone stays on the board."""
_MISSED = 3  # report intervals without a report before a consumer counts as gone


class TopConsumer(BaseModel):
    """One consumer's row."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    member: str
    state: str
    owned: int = 0
    running: int = 0
    done: int = 0
    done_per_s: float | None = None
    failed: int = 0
    oldest_s: float = 0.0
    failovers: int = 0
    takeover_ms_avg: float | None = None
    takeover_ms_max: int = 0
    view_id: int = 0


class TopProducer(BaseModel):
    """One producer's row: its id (hex), jobs outstanding, and the consumers' read lag."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    producer: str
    outstanding: int
    lag: int
    window: int | None = None


class TopSnapshot(BaseModel):
    """The whole board at one moment (``spreadq top --json`` prints one)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    queue: str
    view_id: int | None
    group_id: tuple[int, int, int] | None
    consumers: tuple[TopConsumer, ...]
    producers: tuple[TopProducer, ...]


@dataclass(slots=True)
class _Reported:
    stats: Stats
    at: float
    rate: float | None = None


class Board:
    """The state of one queue as seen from FEEDBACK (see the module docstring).

    Args:
        queue: the queue's name (for the snapshot).
        window: the producers' window, when known (``Settings.window``), shown beside
            each producer's lag.
    """

    __slots__ = ("_feedback", "_gone", "_reports", "_view", "queue", "window")

    def __init__(self, queue: str, *, window: int | None = None) -> None:
        self.queue = queue
        self.window = window
        self._feedback: frozenset[str] = frozenset()
        self._view: View | None = None
        self._reports: dict[str, _Reported] = {}
        self._gone: dict[str, float] = {}  # member -> when it was seen gone

    @property
    def view(self) -> View | None:
        """The last VIEW taken."""
        return self._view

    def on_feedback(self, members: Sequence[str]) -> None:
        """A FEEDBACK membership was installed."""
        self._feedback = frozenset(members)

    def on_view(self, view: View, sender: str) -> bool:
        """Take a VIEW from ``sender``; False (ignored) unless ``sender`` is a present
        FEEDBACK member and the first member the VIEW lists, or the VIEW is older than
        the one taken (same group lifetime, lower index)."""
        if sender not in self._feedback or not view.members or view.members[0] != sender:
            return False
        last = self._view
        same_lifetime = last is not None and last.group_id[:2] == view.group_id[:2]
        if same_lifetime and last is not None and view.group_id[2] < last.group_id[2]:
            return False
        self._view = view
        return True

    def on_stats(self, stats: Stats, sender: str, now: float) -> bool:
        """Take a STATS report received at ``now``; False (ignored) unless ``sender``
        is the member it names."""
        if stats.member != sender:
            return False
        previous = self._reports.get(sender)
        rate = None
        if previous is not None and now > previous.at and stats.done >= previous.stats.done:
            rate = (stats.done - previous.stats.done) / (now - previous.at)
        self._reports[sender] = _Reported(stats, now, rate)
        self._gone.pop(sender, None)
        return True

    def complete(self) -> bool:
        """True once a VIEW is known and every consumer it lists has reported."""
        view = self._view
        return view is not None and all(member in self._reports for member in view.members)

    def snapshot(self, now: float) -> TopSnapshot:
        """The board at ``now``: consumers in the VIEW's order, then the gone ones."""
        view = self._view
        listed = view.members if view is not None else ()
        rows = [self._row(member, now, listed) for member in listed]
        for member in sorted(set(self._reports) - set(listed)):
            row = self._row(member, now, listed)
            if row is not None:
                rows.append(row)
        consumers = tuple(row for row in rows if row is not None)
        return TopSnapshot(
            queue=self.queue,
            view_id=None if view is None else view.ordinal,
            group_id=None if view is None else view.group_id,
            consumers=consumers,
            producers=self._producers(listed, now),
        )

    def _is_gone(self, member: str, now: float, listed: Sequence[str]) -> bool:
        if member not in listed or member not in self._feedback:
            return True
        report = self._reports.get(member)
        if report is None:
            return False
        interval = report.stats.interval_ms / 1000
        return interval > 0 and now - report.at > _MISSED * interval

    def _row(self, member: str, now: float, listed: Sequence[str]) -> TopConsumer | None:
        report = self._reports.get(member)
        if self._is_gone(member, now, listed):
            since = self._gone.setdefault(member, now)
            if now - since > GONE_FOR:
                self._reports.pop(member, None)
                return None
            state = "gone"
        elif report is None:
            return TopConsumer(member=member, state="waiting")
        else:
            self._gone.pop(member, None)
            state = "draining" if report.stats.state is StatsState.DRAINING else "running"
        if report is None:
            return TopConsumer(member=member, state=state)
        stats = report.stats
        age = stats.oldest_ms / 1000
        if stats.running and state != "gone":  # it has kept running since the report
            age += max(0.0, now - report.at)
        return TopConsumer(
            member=member,
            state=state,
            owned=stats.owned,
            running=stats.running,
            done=stats.done,
            done_per_s=None if state == "gone" else report.rate,
            failed=stats.failed,
            oldest_s=round(age, 3),
            failovers=stats.failovers,
            takeover_ms_avg=(
                round(stats.takeover_ms_sum / stats.failovers, 1) if stats.failovers else None
            ),
            takeover_ms_max=stats.takeover_ms_max,
            view_id=stats.ordinal,
        )

    def _producers(self, listed: Sequence[str], now: float) -> tuple[TopProducer, ...]:
        present = [
            self._reports[member]
            for member in listed
            if member in self._reports and not self._is_gone(member, now, listed)
        ]
        if not present:
            return ()
        newest = max(present, key=lambda report: report.at)
        outstanding = {producer_id: count for producer_id, count, _ in newest.stats.producers}
        reads: dict[bytes, list[int]] = {}
        for report in present:
            for producer_id, _, read in report.stats.producers:
                reads.setdefault(producer_id, []).append(read)
        return tuple(
            TopProducer(
                producer=producer_id.hex()[:8],
                outstanding=count,
                lag=max(reads[producer_id]) - min(reads[producer_id]),
                window=self.window,
            )
            for producer_id, count in sorted(
                ((pid, outstanding.get(pid, 0)) for pid in reads), key=lambda item: -item[1]
            )
        )
