"""The event bus: a tuple of observers, called in turn for every published event.

Theory of operation
-------------------
An :class:`Observer` is any synchronous callable taking one event. The bus keeps its
observers in a plain tuple and :meth:`EventBus.publish` calls each with the event, on
the publisher's task, before returning. An observer must be quick (count, set a gauge,
append to a buffer); one that needs I/O hands the event to its own task or thread.

An observer may name the event types it takes (an ``event_types`` attribute, a set of
event classes); the bus routes each type only to the observers that take it.

Publishing costs nothing worth measuring when nobody takes an event: a publisher
writes ``if JobStarted in bus.routes: bus.publish(JobStarted(...))`` (a dict lookup in
C) and builds no event at all; building one costs about a microsecond, more than
publishing it (``benchmarks/bench_observe.py`` measures each part). The always-on
:class:`~spreadq.observe.Counters` is therefore fed directly on the per-job path, and
observers that only need totals read it (:attr:`ObserveScope.counters`) instead of
taking per-job events.

An observer that raises is logged once (``observer_failed``, with the observer and the
event's name) and unsubscribed; the publisher never sees the error. Subscribing and
unsubscribing replace the tuple, so an observer may unsubscribe itself, or another,
from inside a call: the event being published still reaches the observers of the
tuple it started with, except the one that failed.

Lifecycle: an observer may also have ``open(scope)`` and ``close()`` methods
(:class:`ManagedObserver`), for what it owns outside the publisher, such as a metrics
HTTP endpoint. The worker or producer calls :meth:`EventBus.open` when it starts and
:meth:`EventBus.close` when it stops; an observer whose ``open`` raises is logged and
unsubscribed like one whose call raises.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, cast, runtime_checkable

from spreadq.errors import ConfigurationError
from spreadq.logs import get_logger
from spreadq.middleware import describe_callable
from spreadq.observe.counters import Counters
from spreadq.observe.events import Event, event_types

__all__ = [
    "EventBus",
    "check_observer",
    "wanted_types",
    "ManagedObserver",
    "ObserveScope",
    "Observer",
    "ObserversArg",
]

log = get_logger(__name__)


@runtime_checkable
class Observer(Protocol):
    """A synchronous callable that receives every published event."""

    def __call__(self, event: Event, /) -> None:
        """Take one event; return quickly, and raise only for a bug (it unsubscribes)."""
        ...


@dataclass(frozen=True, slots=True)
class ObserveScope:
    """What a worker or producer tells its observers when it opens them.

    Attributes:
        role: ``"worker"`` or ``"producer"``.
        queue: the queue's name.
        metrics_port: the TCP port a metrics endpoint should serve on, if any
            (``Settings.metrics_port``, ``--metrics-port``, ``SPREADQ_METRICS_PORT``).
        metrics_host: the address that endpoint binds.
        counters: the worker's or producer's always-on :class:`Counters`, for an
            observer that reads totals when asked (a metrics scrape) instead of taking
            an event per job.
        backlog: a function returning the jobs this worker owns and has not finished
            (None for a producer).
    """

    role: Literal["worker", "producer"]
    queue: str
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    counters: Counters | None = None
    backlog: Callable[[], int] | None = None


@runtime_checkable
class ManagedObserver(Observer, Protocol):
    """An observer that owns something outside the publisher (a server, a thread)."""

    def open(self, scope: ObserveScope, /) -> None:
        """Start what the observer owns.

        Raises:
            Exception: anything; the bus logs it and unsubscribes the observer.
        """
        ...

    def close(self) -> None:
        """Stop it; called once, after the last event."""
        ...


def check_observer(candidate: object) -> Observer:
    """Return ``candidate`` as an :class:`Observer` after checking its shape.

    An observer is a synchronous callable; its ``open`` and ``close``, if it has them,
    are synchronous callables too, and its ``event_types``, if it has one, is a set of
    event classes.

    Raises:
        ConfigurationError: it is not callable, or it (or its ``open``/``close``) is a
            coroutine function, or its ``event_types`` names something else; the
            message names it.
    """
    if not callable(candidate):
        raise ConfigurationError(
            f"observer {candidate!r} is not callable: an observer is called with each event"
        )
    call = candidate if inspect.isroutine(candidate) else type(candidate).__call__
    if inspect.iscoroutinefunction(candidate) or inspect.iscoroutinefunction(call):
        raise ConfigurationError(
            f"observer {describe_callable(candidate)} must be synchronous (publish never "
            "awaits); hand events to a task of your own instead"
        )
    wanted = getattr(candidate, "event_types", None)
    if wanted is not None:
        known = set(event_types())
        try:
            unknown = [kind for kind in wanted if kind not in known]
        except TypeError:
            unknown = [wanted]
        if unknown:
            raise ConfigurationError(
                f"observer {describe_callable(candidate)}: event_types must be a set of "
                f"spreadq.observe event classes; not {unknown!r}"
            )
    for name in ("open", "close"):
        method = getattr(candidate, name, None)
        if method is not None and (not callable(method) or inspect.iscoroutinefunction(method)):
            raise ConfigurationError(
                f"observer {describe_callable(candidate)}: its {name}() must be a "
                "synchronous method"
            )
    return cast(Observer, candidate)


def wanted_types(observer: Observer) -> frozenset[type]:
    """The event types ``observer`` takes: its ``event_types`` attribute, or all."""
    wanted = getattr(observer, "event_types", None)
    return frozenset(event_types()) if wanted is None else frozenset(wanted)


ObserversArg = Iterable[Observer] | None
"""The type of the ``observers=`` argument of ``App`` and ``Producer``: observers given
explicitly, added to those the loaded plugins contribute."""


class EventBus:
    """Observers of one worker or producer, and the ``publish`` that calls them.

    :attr:`observers` is the tuple of observers subscribed now, in the order they are
    called (read it; change it with :meth:`subscribe` and :meth:`unsubscribe`).
    :attr:`routes` maps each event type to the observers that take it, and holds only
    types someone takes: test it before building an event,
    ``if JobStarted in bus.routes: bus.publish(JobStarted(...))``. An observer takes
    every event type unless it has an ``event_types`` attribute naming the ones it wants
    (:func:`wanted_types`). ``bool(bus)`` says whether anyone is subscribed.
    """

    __slots__ = ("_failed", "_opened", "observers", "routes")

    def __init__(self, observers: Iterable[Observer] = ()) -> None:
        self.observers: tuple[Observer, ...] = ()
        self.routes: dict[type, tuple[Observer, ...]] = {}
        self._failed: list[Observer] = []
        self._opened = False
        self._install(tuple(observers))

    def __bool__(self) -> bool:
        return bool(self.observers)

    def __len__(self) -> int:
        return len(self.observers)

    @property
    def failed(self) -> tuple[Observer, ...]:
        """The observers unsubscribed because they raised, in the order they failed."""
        return tuple(self._failed)

    def publish(self, event: Event) -> None:
        """Call every observer that takes ``event``'s type, in subscription order.

        An observer that raises is logged once and unsubscribed; nothing propagates.
        """
        for observer in self.routes.get(type(event), ()):
            try:
                observer(event)
            except Exception as error:  # an observer's bug must not break the publisher
                self._drop(observer, error, event.name)

    def _install(self, observers: tuple[Observer, ...]) -> None:
        """Replace the observers and rebuild the routes (never changed in place, so a
        publish under way keeps the tuple it started with)."""
        routes: dict[type, tuple[Observer, ...]] = {}
        for kind in event_types():
            takers = tuple(o for o in observers if kind in wanted_types(o))
            if takers:
                routes[kind] = takers
        self.observers = observers
        self.routes = routes

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Add ``observer`` (called after the others); return a function that removes it.

        Raises:
            TypeError: ``observer`` is not callable.
        """
        if not callable(observer):
            raise TypeError(f"an observer is a callable taking one event, got {observer!r}")
        self._install((*self.observers, observer))
        return lambda: self.unsubscribe(observer)

    def unsubscribe(self, observer: Observer) -> None:
        """Remove ``observer``; nothing happens if it is not subscribed."""
        self._install(tuple(o for o in self.observers if o is not observer))

    def open(self, scope: ObserveScope) -> None:
        """Open every :class:`ManagedObserver` (once; later calls do nothing)."""
        if self._opened:
            return
        self._opened = True
        for observer in self.observers:
            opener = getattr(observer, "open", None)
            if not callable(opener):
                continue
            try:
                opener(scope)
            except Exception as error:  # a plugin's server that cannot start
                self._drop(observer, error, "open")

    def close(self) -> None:
        """Close every opened :class:`ManagedObserver`; errors are logged, not raised."""
        if not self._opened:
            return
        self._opened = False
        for observer in self.observers:
            closer = getattr(observer, "close", None)
            if not callable(closer):
                continue
            try:
                closer()
            except Exception as error:
                log.warning(
                    "observer_close_failed",
                    observer=describe_callable(observer),
                    error=f"{type(error).__name__}: {error}",
                )

    def _drop(self, observer: Observer, error: Exception, during: str) -> None:
        self.unsubscribe(observer)
        self._failed.append(observer)
        log.error(
            "observer_failed",
            observer=describe_callable(observer),
            during=during,
            error=f"{type(error).__name__}: {error}",
            exc_info=error,
        )
