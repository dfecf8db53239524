"""Prometheus metrics for spreadq: an event observer and a ``/metrics`` endpoint.

Installed, the plugin adds :data:`observer` to every worker's and producer's event bus
(``spreadq.observe``). It takes no event on a job's way in (assigned, started): the
gauges read the worker's counters and backlog when scraped (from the
:class:`~spreadq.observe.ObserveScope` it is opened with), and per job it only counts
the attempt's end and observes its duration. It keeps its metrics in a registry of its own, never
``prometheus_client``'s global one, and serves them on ``Settings.metrics_port``
(``SPREADQ_METRICS_PORT``, ``spreadq worker --metrics-port``) once the worker or
producer opens its observers; with no port set it serves nothing.

Metrics (``queue`` label everywhere):

========================================================  ==========  ===========================
name                                                      type        from
========================================================  ==========  ===========================
``spreadq_jobs_total{queue,kind,outcome}``                counter     succeeded, failed, retried
``spreadq_job_duration_seconds{queue,kind}``              histogram   each ended attempt
``spreadq_outstanding_jobs{queue}``                       gauge       the worker's backlog (scrape)
``spreadq_running_jobs{queue}``                           gauge       attempts running (scrape)
``spreadq_view_members{queue}``                           gauge       the last WORK view's size
``spreadq_failovers_total{queue}``                        counter     jobs this worker took over
``spreadq_takeover_seconds{queue}``                       histogram   membership change to takeover
``spreadq_producer_window_blocked_seconds_total{queue}``  counter     time ``put()`` waited
``spreadq_sessions_lost_total{queue,role}``               counter     daemon sessions ended
========================================================  ==========  ===========================
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from spreadq.logs import get_logger
from spreadq.observe import (
    Event,
    JobFailed,
    JobRetried,
    JobSucceeded,
    JobTakenOver,
    ObserveScope,
    SessionLost,
    ViewInstalled,
    WindowOpened,
)
from spreadq.plugins import Plugin

__all__ = ["DURATION_BUCKETS", "PrometheusObserver", "observer", "plugin"]

log = get_logger("spreadq_prometheus")

DURATION_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
"""Histogram buckets (seconds) for job durations and takeover latency."""


class PrometheusObserver:
    """An observer that keeps spreadq's Prometheus metrics in its own registry.

    Args:
        registry: where the metrics live; a new :class:`CollectorRegistry` if None.
        buckets: the histogram buckets, in seconds.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        buckets: tuple[float, ...] = DURATION_BUCKETS,
    ) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        r = self.registry
        self.jobs = Counter(
            "spreadq_jobs",
            "Jobs ended, by outcome (retried counts attempts).",
            ["queue", "kind", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "spreadq_job_duration_seconds",
            "How long each handler attempt ran.",
            ["queue", "kind"],
            buckets=buckets,
            registry=r,
        )
        self.outstanding = Gauge(
            "spreadq_outstanding_jobs",
            "Jobs this worker owns and has not finished.",
            ["queue"],
            registry=r,
        )
        self.running = Gauge(
            "spreadq_running_jobs", "Handler attempts running now.", ["queue"], registry=r
        )
        self.view_members = Gauge(
            "spreadq_view_members", "Consumers in the last WORK view.", ["queue"], registry=r
        )
        self.failovers = Counter(
            "spreadq_failovers",
            "Jobs this worker took over from a departed member.",
            ["queue"],
            registry=r,
        )
        self.takeover = Histogram(
            "spreadq_takeover_seconds",
            "Time from the membership change that lost a job's owner to its takeover.",
            ["queue"],
            buckets=buckets,
            registry=r,
        )
        self.blocked = Counter(
            "spreadq_producer_window_blocked_seconds",
            "Time a producer's put() waited for flow control.",
            ["queue"],
            registry=r,
        )
        self.sessions_lost = Counter(
            "spreadq_sessions_lost",
            "Daemon sessions that ended.",
            ["queue", "role"],
            registry=r,
        )
        self._opened = 0
        self._queues: dict[str, _QueueChildren] = {}
        self._kinds: dict[tuple[str, str], _KindChildren] = {}
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._dispatch: dict[type, Callable[[Any], None]] = {
            JobSucceeded: self._on_succeeded,
            JobFailed: self._on_failed,
            JobRetried: self._on_retried,
            JobTakenOver: self._on_taken_over,
            ViewInstalled: self._on_view,
            WindowOpened: self._on_window_opened,
            SessionLost: self._on_session_lost,
        }

    @property
    def event_types(self) -> frozenset[type]:
        """The events it takes: ended attempts, takeovers, views, flow control and lost
        sessions; never a job's assignment or start (read from the scope instead)."""
        return frozenset(self._dispatch)

    def __call__(self, event: Event, /) -> None:
        handler = self._dispatch.get(type(event))
        if handler is not None:
            handler(event)

    # -- the endpoint --------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The port ``/metrics`` is served on, once open with a port; else None."""
        return None if self._server is None else self._server.server_port

    def open(self, scope: ObserveScope, /) -> None:
        """Read the scope's gauges at scrape time, and serve ``/metrics`` on
        ``scope.metrics_port`` (nothing when it is None, or when already serving: one
        process, one endpoint, whatever workers and producers it runs).

        Raises:
            OSError: the port cannot be bound (the bus logs it and drops the observer).
        """
        self._opened += 1
        queue = self._per_queue(scope.queue)
        counters, backlog = scope.counters, scope.backlog
        if counters is not None and scope.role == "worker":  # a producer runs no handler
            queue.running.set_function(lambda: counters.running)
        if backlog is not None:
            queue.outstanding.set_function(backlog)
        if scope.metrics_port is None or self._server is not None:
            return
        self._server, self._thread = start_http_server(
            scope.metrics_port, addr=scope.metrics_host, registry=self.registry
        )
        log.info(
            "metrics_serving",
            queue=scope.queue,
            role=scope.role,
            host=scope.metrics_host,
            port=self._server.server_port,
        )

    def close(self) -> None:
        """Stop serving once every scope opened is closed (the metrics stay)."""
        self._opened = max(0, self._opened - 1)
        if self._opened:
            return
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    # -- events --------------------------------------------------------------------------
    # Label lookups (``metric.labels(...)``) cost more than the update itself, so each
    # queue's and each (queue, kind)'s children are looked up once and kept.

    def _per_queue(self, queue: str) -> _QueueChildren:
        children = self._queues.get(queue)
        if children is None:
            children = self._queues[queue] = _QueueChildren(
                self.outstanding.labels(queue), self.running.labels(queue)
            )
        return children

    def _per_kind(self, queue: str, kind: str) -> _KindChildren:
        children = self._kinds.get((queue, kind))
        if children is None:
            children = self._kinds[(queue, kind)] = _KindChildren(
                self.jobs.labels(queue, kind, "succeeded"),
                self.jobs.labels(queue, kind, "failed"),
                self.jobs.labels(queue, kind, "retried"),
                self.duration.labels(queue, kind),
            )
        return children

    def _on_succeeded(self, event: JobSucceeded) -> None:
        children = self._per_kind(event.queue, event.kind)
        children.succeeded.inc()
        children.duration.observe(event.duration)

    def _on_failed(self, event: JobFailed) -> None:
        children = self._per_kind(event.queue, event.kind)
        children.failed.inc()
        children.duration.observe(event.duration)

    def _on_retried(self, event: JobRetried) -> None:
        children = self._per_kind(event.queue, event.kind)
        children.retried.inc()
        children.duration.observe(event.duration)

    def _on_taken_over(self, event: JobTakenOver) -> None:
        self.failovers.labels(event.queue).inc()
        self.takeover.labels(event.queue).observe(event.latency)

    def _on_view(self, event: ViewInstalled) -> None:
        self.view_members.labels(event.queue).set(len(event.members))

    def _on_window_opened(self, event: WindowOpened) -> None:
        self.blocked.labels(event.queue).inc(event.blocked)

    def _on_session_lost(self, event: SessionLost) -> None:
        self.sessions_lost.labels(event.queue, event.role).inc()


@dataclass(frozen=True, slots=True)
class _QueueChildren:
    outstanding: Gauge
    running: Gauge


@dataclass(frozen=True, slots=True)
class _KindChildren:
    succeeded: Counter
    failed: Counter
    retried: Counter
    duration: Histogram


observer: Final = PrometheusObserver()
"""The observer the plugin contributes (one registry per process)."""

plugin: Final = Plugin(
    name="prometheus",
    description="Prometheus metrics on Settings.metrics_port (/metrics)",
    observers=(observer,),
)
"""The declaration behind the ``spreadq.plugins`` entry point ``prometheus``."""
