"""Always-on counters: the totals the STATS report and metrics read.

:class:`Counters` stays on at full speed because the per-job path builds no event: a
worker calls :meth:`Counters.job_started` and :meth:`Counters.job_ended` directly (a
dict store, a dict pop and two additions; no allocation once a (kind, outcome) pair has
been seen) and builds an event only when an observer listens. Every other event is
rare (views, failovers, sessions, flow control), so those arrive the ordinary way:
``Counters`` is also an observer, and subscribed to the bus it counts the events it is
published (a job event published to it counts as the direct calls would). It keeps:

* per ``(job kind, outcome)``: how many jobs ended so (``succeeded``, ``failed``) or
  how many attempts were retried (``retried``), and the seconds those attempts took;
* jobs started and running now, with the start time of each running job (for the
  oldest running job's age);
* failovers: jobs this member took over, and the sum and maximum of their takeover
  latency;
* the last view (ordinal and members), sessions lost, and producer time blocked by
  flow control.

Durations come with the calls or events; the only clock read is ``clock`` (the worker's
monotonic clock) when a *published* :class:`JobStarted` arrives without a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from spreadq.observe.events import (
    Event,
    JobFailed,
    JobRetried,
    JobStarted,
    JobSucceeded,
    JobTakenOver,
    SessionLost,
    ViewInstalled,
    WindowOpened,
)
from spreadq.queue.jobs import JobRef

__all__ = ["Counters", "OutcomeTotals"]


@dataclass(slots=True)
class OutcomeTotals:
    """How many attempts ended one way for one job kind, and how long they took."""

    count: int = 0
    seconds: float = 0.0


class Counters:
    """Totals kept from direct calls on the per-job path and from the events it observes.

    ``clock`` is read only when a published :class:`JobStarted` arrives (the direct
    :meth:`job_started` takes the time); pass the clock the worker reports ``now`` with.
    """

    event_types: ClassVar[frozenset[type]] = frozenset(
        {JobTakenOver, ViewInstalled, SessionLost, WindowOpened}
    )
    """What it takes from a bus: the rare events. Per-job events come by the direct
    calls, so subscribing the counters never makes a publisher build one (called
    directly with a job event, it still counts it)."""

    __slots__ = (
        "_clock",
        "_dispatch",
        "_running",
        "blocked_seconds",
        "failovers",
        "members",
        "outcomes",
        "sessions_lost",
        "started",
        "takeover_max",
        "takeover_seconds",
        "view_id",
    )

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.outcomes: dict[tuple[str, str], OutcomeTotals] = {}
        """``(job kind, outcome)`` -> totals; outcome is succeeded, failed or retried."""
        self.started = 0
        self.failovers = 0
        self.takeover_seconds = 0.0
        self.takeover_max = 0.0
        self.view_id = 0
        self.members: tuple[str, ...] = ()
        self.sessions_lost = 0
        self.blocked_seconds = 0.0
        self._running: dict[JobRef, float] = {}
        self._dispatch: Mapping[type, Callable[[Any], None]] = {
            JobStarted: self._on_started,
            JobSucceeded: self._on_succeeded,
            JobFailed: self._on_failed,
            JobRetried: self._on_retried,
            JobTakenOver: self._on_taken_over,
            ViewInstalled: self._on_view,
            SessionLost: self._on_session_lost,
            WindowOpened: self._on_window_opened,
        }

    def __call__(self, event: Event, /) -> None:
        handler = self._dispatch.get(type(event))
        if handler is not None:
            handler(event)

    # -- reading -------------------------------------------------------------------------

    def total(self, outcome: str, kind: str | None = None) -> int:
        """Jobs (attempts, for ``retried``) that ended with ``outcome``, of one ``kind``
        or of all."""
        return sum(
            totals.count
            for (k, o), totals in self.outcomes.items()
            if o == outcome and (kind is None or k == kind)
        )

    def handler_time(self) -> tuple[int, float]:
        """Handler attempts that ended so far, every kind and outcome, and the seconds
        they took all told."""
        count, seconds = 0, 0.0
        for totals in self.outcomes.values():
            count += totals.count
            seconds += totals.seconds
        return count, seconds

    @property
    def done(self) -> int:
        """Jobs that succeeded, every kind."""
        return self.total("succeeded")

    @property
    def failed(self) -> int:
        """Jobs that failed for good, every kind."""
        return self.total("failed")

    @property
    def running(self) -> int:
        """Jobs started and not ended (by success, failure or retry)."""
        return len(self._running)

    def oldest_running(self, now: float) -> float:
        """Seconds the longest-running job has run at ``now``; 0 with none running."""
        if not self._running:
            return 0.0
        return max(0.0, now - min(self._running.values()))

    # -- the per-job path: direct calls --------------------------------------------------

    def job_started(self, ref: JobRef, now: float) -> None:
        """A handler attempt for ``ref`` started at ``now``."""
        self.started += 1
        self._running[ref] = now

    def job_ended(self, ref: JobRef, kind: str, outcome: str, seconds: float) -> None:
        """An attempt for ``ref`` ended with ``outcome`` (``succeeded``, ``failed`` or
        ``retried``) after ``seconds``."""
        self._running.pop(ref, None)
        totals = self.outcomes.get((kind, outcome))
        if totals is None:
            totals = self.outcomes[(kind, outcome)] = OutcomeTotals()
        totals.count += 1
        totals.seconds += seconds

    def job_cancelled(self, ref: JobRef) -> None:
        """An attempt for ``ref`` ended without an outcome (cancelled: completed
        elsewhere, or the worker is stopping); it counts nowhere but stops running."""
        self._running.pop(ref, None)

    # -- events --------------------------------------------------------------------------

    def _on_started(self, event: JobStarted) -> None:
        self.job_started(event.ref, self._clock())

    def _on_succeeded(self, event: JobSucceeded) -> None:
        self.job_ended(event.ref, event.kind, "succeeded", event.duration)

    def _on_failed(self, event: JobFailed) -> None:
        self.job_ended(event.ref, event.kind, "failed", event.duration)

    def _on_retried(self, event: JobRetried) -> None:
        self.job_ended(event.ref, event.kind, "retried", event.duration)

    def _on_taken_over(self, event: JobTakenOver) -> None:
        self.failovers += 1
        self.takeover_seconds += event.latency
        self.takeover_max = max(self.takeover_max, event.latency)

    def _on_view(self, event: ViewInstalled) -> None:
        self.view_id = event.view_id
        self.members = event.members

    def _on_session_lost(self, event: SessionLost) -> None:
        self.sessions_lost += 1
        self._running.clear()  # a lost session's handlers are cancelled or awaited

    def _on_window_opened(self, event: WindowOpened) -> None:
        self.blocked_seconds += event.blocked
