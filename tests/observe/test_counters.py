"""Counters: totals per (kind, outcome), running jobs and the oldest one's age,
failovers and takeover latency, views, lost sessions and blocked time."""

from __future__ import annotations

from spreadq.observe import (
    Counters,
    EventBus,
    JobAssigned,
    JobFailed,
    JobRetried,
    JobStarted,
    JobSucceeded,
    JobTakenOver,
    SessionLost,
    ViewInstalled,
    WindowBlocked,
    WindowOpened,
)
from spreadq.queue.jobs import JobRef


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ref(seq: int) -> JobRef:
    return JobRef(b"p" * 16, seq)


def test_outcomes_are_counted_per_kind_with_their_durations() -> None:
    clock = Clock()
    counters = Counters(clock)
    counters(JobAssigned("q", ref(1), "a", "#w#h"))
    counters(JobStarted("q", ref(1), "a", 1))
    counters(JobSucceeded("q", ref(1), "a", 1, 0.25))
    counters(JobStarted("q", ref(2), "a", 1))
    counters(JobRetried("q", ref(2), "a", 1, 0.5, 0.2, "ValueError"))
    counters(JobStarted("q", ref(2), "a", 2))
    counters(JobFailed("q", ref(2), "a", 2, 1.0, "ValueError"))
    counters(JobStarted("q", ref(3), "b", 1))
    counters(JobSucceeded("q", ref(3), "b", 1, 2.0))
    assert counters.started == 4
    assert counters.done == 2
    assert counters.failed == 1
    assert counters.total("succeeded", "a") == 1
    assert counters.total("retried") == 1
    assert counters.outcomes[("a", "succeeded")].seconds == 0.25
    assert counters.outcomes[("a", "failed")].seconds == 1.0
    assert counters.outcomes[("b", "succeeded")].count == 1
    assert counters.running == 0
    assert counters.oldest_running(clock.now) == 0.0


def test_the_oldest_running_job_is_timed_from_its_start() -> None:
    clock = Clock()
    counters = Counters(clock)
    counters(JobStarted("q", ref(1), "a", 1))
    clock.now = 103.0
    counters(JobStarted("q", ref(2), "a", 1))
    assert counters.running == 2
    assert counters.oldest_running(104.5) == 4.5
    counters(JobSucceeded("q", ref(1), "a", 1, 3.5))
    assert counters.oldest_running(104.5) == 1.5
    counters(SessionLost("q", "#w#h", "worker", "DAEMON_GONE"))
    assert counters.running == 0
    assert counters.sessions_lost == 1


def test_subscribed_counters_take_only_the_rare_events() -> None:
    counters = Counters(Clock())
    bus = EventBus([counters])
    assert set(bus.routes) == {JobTakenOver, ViewInstalled, SessionLost, WindowOpened}
    bus.publish(JobStarted("q", ref(1), "a", 1))  # not routed: the worker calls directly
    bus.publish(JobTakenOver("q", ref(1), "a", "#w2#h", "#w1#h", 0.5))
    assert (counters.started, counters.failovers) == (0, 1)


def test_failovers_views_and_blocked_time() -> None:
    counters = Counters(Clock())
    counters(JobTakenOver("q", ref(1), "a", "#w2#h", "#w1#h", 0.04))
    counters(JobTakenOver("q", ref(2), "a", "#w2#h", "#w1#h", 0.01))
    counters(ViewInstalled("q", "#w2#h", 3, ("#w2#h", "#w3#h"), "leave"))
    counters(WindowBlocked("q", "#p#h", "window"))
    counters(WindowOpened("q", "#p#h", 0.75))
    assert counters.failovers == 2
    assert abs(counters.takeover_seconds - 0.05) < 1e-12
    assert counters.takeover_max == 0.04
    assert (counters.view_id, counters.members) == (3, ("#w2#h", "#w3#h"))
    assert counters.blocked_seconds == 0.75


def test_the_direct_per_job_calls_count_as_the_events_would() -> None:
    direct, observed = Counters(Clock()), Counters(Clock())
    direct.job_started(ref(1), 100.0)
    direct.job_ended(ref(1), "a", "succeeded", 0.5)
    direct.job_started(ref(2), 100.0)
    observed(JobStarted("q", ref(1), "a", 1))
    observed(JobSucceeded("q", ref(1), "a", 1, 0.5))
    observed(JobStarted("q", ref(2), "a", 1))
    assert direct.outcomes == observed.outcomes
    assert (direct.started, direct.running) == (observed.started, observed.running) == (2, 1)
    assert direct.oldest_running(101.0) == observed.oldest_running(101.0) == 1.0


def test_a_cancelled_attempt_stops_running_and_counts_nowhere() -> None:
    counters = Counters(Clock())
    counters.job_started(ref(1), 100.0)
    counters.job_cancelled(ref(1))
    counters.job_cancelled(ref(2))  # never started: nothing happens
    assert (counters.running, counters.started, counters.outcomes) == (0, 1, {})
    assert counters.oldest_running(200.0) == 0.0


def test_handler_time_totals_every_ended_attempt() -> None:
    counters = Counters(Clock())
    assert counters.handler_time() == (0, 0.0)
    counters.job_ended(ref(1), "a", "succeeded", 0.5)
    counters.job_ended(ref(2), "b", "retried", 0.25)
    counters.job_ended(ref(2), "b", "failed", 0.125)
    counters.job_cancelled(ref(3))  # no outcome: not counted
    assert counters.handler_time() == (3, 0.875)
