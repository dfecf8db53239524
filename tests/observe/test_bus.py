"""EventBus: order, falsy when empty, a raising observer logged once and unsubscribed,
subscription changes during a publish, and the open/close lifecycle."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from spreadq.errors import ConfigurationError
from spreadq.observe import (
    Event,
    EventBus,
    JobStarted,
    ObserveScope,
    SessionLost,
    check_observer,
    event_types,
    wanted_types,
)
from spreadq.queue.jobs import JobRef

REF = JobRef(b"p" * 16, 1)
STARTED = JobStarted("q", REF, "resize", 1)
LOST = SessionLost("q", "#w#h", "worker", "DAEMON_GONE")


def test_an_empty_bus_is_false_and_publish_does_nothing() -> None:
    bus = EventBus()
    assert not bus
    assert len(bus) == 0
    bus.publish(STARTED)  # nothing to call, nothing raised


def test_observers_see_every_event_in_subscription_order() -> None:
    seen: list[tuple[str, Event]] = []
    bus = EventBus([lambda e: seen.append(("a", e))])
    bus.subscribe(lambda e: seen.append(("b", e)))
    assert bus
    bus.publish(STARTED)
    bus.publish(LOST)
    assert seen == [("a", STARTED), ("b", STARTED), ("a", LOST), ("b", LOST)]


def test_a_raising_observer_is_logged_once_and_unsubscribed() -> None:
    seen: list[Event] = []
    calls = 0

    def broken(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    bus = EventBus([broken, seen.append])
    with capture_logs() as logs:
        bus.publish(STARTED)
        bus.publish(LOST)
    assert calls == 1
    assert seen == [STARTED, LOST]  # the observer after it still got both
    assert bus.observers == (seen.append,)
    assert bus.failed == (broken,)
    failures = [entry for entry in logs if entry["event"] == "observer_failed"]
    assert len(failures) == 1
    assert failures[0]["during"] == "job_started"
    assert failures[0]["error"] == "RuntimeError: boom"
    assert "broken" in failures[0]["observer"]


def test_unsubscribe_from_inside_a_publish_keeps_this_event_for_the_others() -> None:
    seen: list[str] = []
    bus = EventBus()

    def first(event: Event) -> None:
        seen.append("first")
        remove()

    remove = bus.subscribe(first)
    bus.subscribe(lambda e: seen.append("second"))
    bus.publish(STARTED)
    bus.publish(STARTED)
    assert seen == ["first", "second", "second"]
    bus.unsubscribe(first)  # not subscribed any more: nothing happens
    assert len(bus) == 1


def test_subscribe_refuses_what_is_not_callable() -> None:
    with pytest.raises(TypeError, match="an observer is a callable"):
        EventBus().subscribe(42)  # type: ignore[arg-type]


class Managed:
    def __init__(self, fail_open: bool = False, fail_close: bool = False) -> None:
        self.scopes: list[ObserveScope] = []
        self.closed = 0
        self.events: list[Event] = []
        self.fail_open = fail_open
        self.fail_close = fail_close

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def open(self, scope: ObserveScope) -> None:
        if self.fail_open:
            raise OSError("port in use")
        self.scopes.append(scope)

    def close(self) -> None:
        self.closed += 1
        if self.fail_close:
            raise OSError("already gone")


def test_open_and_close_reach_managed_observers_once() -> None:
    managed = Managed()
    plain: list[Event] = []
    bus = EventBus([managed, plain.append])
    scope = ObserveScope("worker", "q", metrics_port=9100)
    bus.open(scope)
    bus.open(scope)
    assert managed.scopes == [scope]
    bus.close()
    bus.close()
    assert managed.closed == 1


def test_an_observer_that_cannot_open_is_dropped_and_one_that_cannot_close_is_logged() -> None:
    cannot_open, cannot_close = Managed(fail_open=True), Managed(fail_close=True)
    bus = EventBus([cannot_open, cannot_close])
    with capture_logs() as logs:
        bus.open(ObserveScope("producer", "q"))
        bus.publish(STARTED)
        bus.close()
    assert bus.observers == (cannot_close,)
    assert cannot_open.events == []
    assert cannot_close.events == [STARTED]
    assert cannot_close.closed == 1
    names = [(entry["event"], entry.get("during")) for entry in logs]
    assert names == [("observer_failed", "open"), ("observer_close_failed", None)]


def test_check_observer() -> None:
    managed = Managed()
    assert check_observer(managed) is managed
    assert check_observer(print) is print

    class AsyncCall:
        async def __call__(self, event: Event) -> None:
            pass

    with pytest.raises(ConfigurationError, match="must be synchronous"):
        check_observer(AsyncCall())

    class BadClose:
        def __call__(self, event: Event) -> None:
            pass

        close = 3

    with pytest.raises(ConfigurationError, match=r"its close\(\) must be"):
        check_observer(BadClose())


class OnlyLost:
    event_types = frozenset({SessionLost})

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)


def test_an_observer_with_event_types_gets_only_those_and_routes_show_who_takes_what() -> None:
    only_lost = OnlyLost()
    everything: list[Event] = []
    bus = EventBus([only_lost])
    assert set(bus.routes) == {SessionLost}
    assert JobStarted not in bus.routes  # nobody takes it: the publisher builds none
    bus.publish(STARTED)
    bus.publish(LOST)
    assert only_lost.events == [LOST]
    remove = bus.subscribe(everything.append)
    assert JobStarted in bus.routes
    assert bus.routes[SessionLost] == (only_lost, everything.append)
    bus.publish(STARTED)
    assert everything == [STARTED]
    remove()
    assert set(bus.routes) == {SessionLost}
    assert wanted_types(only_lost) == {SessionLost}
    assert wanted_types(everything.append) == set(event_types())


def test_check_observer_refuses_event_types_that_are_not_events() -> None:
    class Odd(OnlyLost):
        event_types = frozenset({int})  # type: ignore[arg-type]

    class NotASet(OnlyLost):
        event_types = 3  # type: ignore[assignment]

    with pytest.raises(ConfigurationError, match="event_types must be a set"):
        check_observer(Odd())
    with pytest.raises(ConfigurationError, match="event_types must be a set"):
        check_observer(NotASet())
    assert check_observer(OnlyLost()) is not None
