"""The Prometheus observer: metrics from events, scraped over HTTP and parsed; its own
registry; the endpoint's lifecycle; the plugin as loaded from its entry point."""

from __future__ import annotations

import urllib.request

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from spreadq_prometheus import PrometheusObserver, observer, plugin

from spreadq.observe import (
    Counters,
    EventBus,
    JobAssigned,
    JobFailed,
    JobRetried,
    JobStarted,
    JobSucceeded,
    JobTakenOver,
    ObserveScope,
    SessionLost,
    ViewInstalled,
    WindowBlocked,
    WindowOpened,
)
from spreadq.plugins import load_plugins, plugin_observers
from spreadq.queue.jobs import JobRef

Q = "thumbs"


def ref(seq: int) -> JobRef:
    return JobRef(b"p" * 16, seq)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def feed(bus: EventBus) -> None:
    bus.publish(ViewInstalled(Q, "#w1#h", 2, ("#w1#h", "#w2#h", "#w3#h"), "join"))
    for seq in (1, 2, 3):
        bus.publish(JobAssigned(Q, ref(seq), "resize", "#w1#h"))
    bus.publish(JobStarted(Q, ref(1), "resize", 1))
    bus.publish(JobSucceeded(Q, ref(1), "resize", 1, 0.02))
    bus.publish(JobStarted(Q, ref(2), "resize", 1))
    bus.publish(JobRetried(Q, ref(2), "resize", 1, 0.3, 0.2, "ValueError"))
    bus.publish(JobStarted(Q, ref(2), "resize", 2))
    bus.publish(JobFailed(Q, ref(2), "resize", 2, 0.4, "ValueError"))
    bus.publish(JobTakenOver(Q, ref(4), "resize", "#w1#h", "#w2#h", 0.015))
    bus.publish(JobStarted(Q, ref(3), "resize", 1))
    bus.publish(WindowBlocked(Q, "#p#h", "window"))
    bus.publish(WindowOpened(Q, "#p#h", 1.25))


def test_metrics_are_scraped_over_http_with_their_conventional_names() -> None:
    metrics = PrometheusObserver()
    bus = EventBus([metrics])
    counters = Counters()
    counters.job_started(ref(3), 0.0)  # the worker's direct calls
    backlog = [2]
    scope = ObserveScope(
        "worker",
        Q,
        metrics_port=0,
        metrics_host="127.0.0.1",
        counters=counters,
        backlog=lambda: backlog[0],
    )
    bus.open(scope)
    try:
        port = metrics.port  # (a local: the attribute is None again once the bus closes)
        assert port is not None
        assert port > 0
        feed(bus)
        samples = scrape(port)
        backlog[0] = 5
        assert scrape(port)[("spreadq_outstanding_jobs", (("queue", Q),))] == 5
    finally:
        bus.close()
    assert metrics.port is None
    q = (("queue", Q),)
    jobs = "spreadq_jobs_total"
    assert samples[(jobs, (("kind", "resize"), ("outcome", "succeeded"), ("queue", Q)))] == 1
    assert samples[(jobs, (("kind", "resize"), ("outcome", "failed"), ("queue", Q)))] == 1
    assert samples[(jobs, (("kind", "resize"), ("outcome", "retried"), ("queue", Q)))] == 1
    kind_q = (("kind", "resize"), ("queue", Q))
    assert samples[("spreadq_job_duration_seconds_count", kind_q)] == 3
    assert samples[("spreadq_job_duration_seconds_sum", kind_q)] == pytest.approx(0.72)
    bucket = (("kind", "resize"), ("le", "0.025"), ("queue", Q))
    assert samples[("spreadq_job_duration_seconds_bucket", bucket)] == 1
    # read from the scope when scraped
    assert samples[("spreadq_outstanding_jobs", q)] == 2
    assert samples[("spreadq_running_jobs", q)] == 1
    assert samples[("spreadq_view_members", q)] == 3
    assert samples[("spreadq_failovers_total", q)] == 1
    assert samples[("spreadq_takeover_seconds_count", q)] == 1
    assert samples[("spreadq_producer_window_blocked_seconds_total", q)] == 1.25


def test_no_per_job_event_on_the_way_in_and_lost_sessions_counted() -> None:
    metrics = PrometheusObserver()
    bus = EventBus([metrics])
    assert JobAssigned not in bus.routes
    assert JobStarted not in bus.routes  # a worker builds neither for this observer
    assert JobSucceeded in bus.routes
    feed(bus)
    bus.publish(SessionLost(Q, "#w1#h", "worker", "DAEMON_GONE"))
    lost = {"queue": Q, "role": "worker"}
    assert metrics.registry.get_sample_value("spreadq_sessions_lost_total", lost) == 1


def test_one_endpoint_per_process_until_the_last_scope_closes() -> None:
    metrics = PrometheusObserver()
    metrics.open(ObserveScope("worker", Q, metrics_port=0, metrics_host="127.0.0.1"))
    port = metrics.port
    metrics.open(ObserveScope("producer", "other", metrics_port=0, metrics_host="127.0.0.1"))
    assert metrics.port == port
    metrics.close()
    assert metrics.port == port  # the producer's scope is still open
    assert port is not None
    assert ("spreadq_view_members", (("queue", Q),)) not in scrape(port)  # nothing yet
    metrics.close()
    assert metrics.port is None


def test_a_producer_on_the_same_queue_leaves_the_workers_running_gauge() -> None:
    """A process that runs a worker and a producer of one queue opens the observer
    twice; the running gauge stays the worker's (a producer runs no handler)."""
    metrics = PrometheusObserver()
    worker, producer = Counters(), Counters()
    worker.job_started(ref(1), 0.0)
    metrics.open(ObserveScope("worker", Q, counters=worker, backlog=lambda: 1))
    metrics.open(ObserveScope("producer", Q, counters=producer))
    try:
        running = metrics.registry.get_sample_value("spreadq_running_jobs", {"queue": Q})
        outstanding = metrics.registry.get_sample_value("spreadq_outstanding_jobs", {"queue": Q})
    finally:
        metrics.close()
        metrics.close()
    assert (running, outstanding) == (1, 1)


def test_no_port_no_endpoint_and_the_global_registry_is_left_alone() -> None:
    metrics = PrometheusObserver()
    bus = EventBus([metrics])
    bus.open(ObserveScope("producer", Q))
    assert metrics.port is None
    feed(bus)
    bus.close()
    names = {family.name for family in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("spreadq_") for name in names)


def test_a_port_in_use_drops_the_observer_and_spares_the_publisher() -> None:
    first = PrometheusObserver()
    first.open(ObserveScope("worker", Q, metrics_port=0, metrics_host="127.0.0.1"))
    try:
        second = PrometheusObserver()
        bus = EventBus([second])
        bus.open(ObserveScope("worker", Q, metrics_port=first.port, metrics_host="127.0.0.1"))
        assert bus.observers == ()
        assert bus.failed == (second,)
        feed(bus)  # nobody listens; nothing raised
    finally:
        first.close()


def test_the_entry_point_contributes_the_observer() -> None:
    (loaded,) = load_plugins(names=["prometheus"])
    assert loaded.plugin is plugin
    assert loaded.distribution == "spreadq-prometheus"
    assert plugin_observers([loaded]) == (observer,)
    assert plugin.summary()["observers"] == ["PrometheusObserver"]
