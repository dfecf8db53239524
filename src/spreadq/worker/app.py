"""App: a queue's handlers, rules, codecs, middleware and plugins, registered then frozen.

Register early, validate fully, freeze at start. Everything an app will run is declared
before it runs: ``App(...)`` loads and validates its plugins, ``@app.handler`` builds
each :class:`~spreadq.handlers.HandlerSpec` (annotations resolved, adapters built,
codecs checked, duplicate kinds refused), ``app.middleware(...)`` and
``@app.on_failure`` check their callables. :meth:`App.freeze`, called when the app
starts, builds one middleware chain per handler and refuses any later registration.

A queue's group names and their rules are the queue protocol's:
:func:`spreadq.queue.protocol.queue_groups`.

Lifespan. ``App(lifespan=fn)`` takes Starlette's shape: ``fn(app)`` returns an async
context manager. :meth:`App.run` enters it before the worker connects (so before it
joins the queue) and hands what it yields to every handler as ``ctx.state``; it leaves
it after the worker has drained and left, whether it stopped on :meth:`App.stop`, on a
signal, or on an error. A startup that raises stops ``run()`` with
:class:`~spreadq.errors.LifespanError` (the cause chained) and the worker never joins;
a shutdown that raises is logged (``lifespan_shutdown_failed``) and raised as
``LifespanError`` after the drain, unless the worker is already failing with another
error, which is then what ``run()`` raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from types import MappingProxyType
from typing import Any, TypeAlias, TypeVar, Unpack

import anyio
import anyio.abc

from spreadq.codecs import Codec, CodecRegistry, default_codecs
from spreadq.errors import ConfigurationError, InvalidName, LifespanError
from spreadq.handlers import (
    AnyHandlerSpec,
    Handler,
    HandlerDecorator,
    HandlerOptionArgs,
    make_decorator,
)
from spreadq.logs import get_logger
from spreadq.middleware import (
    FailureHook,
    Middleware,
    build_chain,
    check_failure_hook,
    check_middleware,
)
from spreadq.observe import Counters, EventBus, ObserversArg, check_observer
from spreadq.plugins import (
    LoadedPlugin,
    Plugin,
    check_rule,
    plugin_observers,
    select_plugins,
)
from spreadq.queue.periodic import CatchUp, Schedule
from spreadq.queue.protocol import (
    DEFAULT_DRAIN_TIMEOUT,
    OBSERVER_PREFIX,
    dead_letter_queue,
    queue_groups,
)
from spreadq.queue.rules import Rule, builtin_rules, keeps_key_order
from spreadq.settings import Settings
from spreadq.threads import SyncThreads
from spreadq.wire.events import check_private_name
from spreadq.worker.runtime import WorkerRuntime, tune_collector
from spreadq.worker.spec import PreparedHandler, WorkerSpec

__all__ = ["App", "Lifespan"]

log = get_logger(__name__)

Lifespan: TypeAlias = "Callable[[App], AbstractAsyncContextManager[Any]]"
"""``lifespan(app)`` returns an async context manager; what it yields is ``ctx.state``."""

M = TypeVar("M", bound=Middleware)
H = TypeVar("H", bound=FailureHook)


class App:
    """A queue's worker application: what it runs and how, declared before it starts.

    Args:
        queue: the queue name (1..28 bytes of ``$``..``~``, no ``~``, not ``#...``).
        spread: the daemon address (``"4803"``, ``"4803@host"``, a socket path); None
            lets the runtime choose its default.
        rule: the ownership rule, by name (``round_robin``, ``key_affinity``,
            ``least_loaded``, ``sticky``, or one a plugin adds) or as a rule object.
        settings: tunables; ``Settings()`` when None.
        handlers: handler specs or :class:`~spreadq.handlers.Handler` objects to
            register now, as ``@app.handler`` would.
        middleware: middleware for every handler, outermost first (after the plugins').
        codecs: extra codecs, beside the built-in ``json`` and ``raw`` and the plugins'.
        plugins: ``True`` loads every installed plugin not blocked by
            ``SPREADQ_DISABLE_PLUGINS``; ``False`` none; a sequence loads the installed
            plugins it names and takes :class:`~spreadq.plugins.Plugin` objects as they
            are.
        name: the private name for this worker's daemon connections (up to 10 bytes,
            not starting with ``~``, which marks watchers such as ``spreadq top``);
            None lets the daemon choose.
        lifespan: ``lifespan(app)`` returns an async context manager (e.g. an
            ``@asynccontextmanager`` function) entered before the worker joins its
            queue and left after it drained; what it yields reaches handlers as
            ``ctx.state``.
        dead_letter: ``True`` puts every job that fails for good (retries spent, a
            payload that does not decode, given up after ``max_failovers``) on the
            queue ``<queue>.dead``, with its error in headers; a string names that
            queue instead; ``False`` (the default) puts them nowhere. See
            :mod:`spreadq.worker.deadletter`.
        observers: event observers (:class:`~spreadq.observe.Observer`) for this
            worker's :attr:`events`, after the plugins'.

    Raises:
        ConfigurationError: an invalid queue name, private name, rule, handler,
            middleware, codec or observer, or two claims on one handler kind or codec
            name.
        PluginError: a plugin that cannot be loaded or fails validation.
    """

    def __init__(
        self,
        queue: str,
        spread: str | None = None,
        *,
        rule: str | Rule = "round_robin",
        settings: Settings | None = None,
        handlers: Sequence[AnyHandlerSpec | Handler[Any, Any]] = (),
        middleware: Sequence[Middleware] = (),
        codecs: Sequence[Codec] = (),
        plugins: bool | Sequence[str | Plugin] = True,
        name: str | None = None,
        lifespan: Lifespan | None = None,
        dead_letter: bool | str = False,
        observers: ObserversArg = None,
    ) -> None:
        self._queue, self._feedback = queue_groups(queue)
        if dead_letter is False:
            self._dead_letter: str | None = None
        elif dead_letter is True:
            self._dead_letter = dead_letter_queue(self._queue)
        elif isinstance(dead_letter, str):
            self._dead_letter = dead_letter_queue(self._queue, dead_letter)
        else:
            raise ConfigurationError(
                f"dead_letter is True, False or a queue name, not {dead_letter!r}"
            )
        if lifespan is not None and not callable(lifespan):
            raise ConfigurationError(
                f"lifespan must be a callable taking the app and returning an async context "
                f"manager, got {lifespan!r}"
            )
        self._lifespan = lifespan
        if name is not None:
            try:
                check_private_name(name)
            except InvalidName as error:
                raise ConfigurationError(f"invalid worker name {name!r}: {error.reason}") from None
            if name.startswith(OBSERVER_PREFIX):
                raise ConfigurationError(
                    f"invalid worker name {name!r}: names starting with {OBSERVER_PREFIX!r} "
                    "are for watchers (spreadq top), which never take jobs"
                )
        self._spread = spread
        self._name = name
        self._settings = Settings() if settings is None else settings
        self._frozen = False
        self._handlers: dict[str, AnyHandlerSpec] = {}
        self._middleware: list[Middleware] = []
        self._failure_hooks: list[FailureHook] = []
        self._schedules: list[Schedule] = []
        self._prepared: Mapping[str, PreparedHandler] = MappingProxyType({})
        self._worker: WorkerRuntime | None = None  # set while run() runs
        self._threads = SyncThreads(self._settings.sync_threads)  # sync handlers run here

        self._plugins = select_plugins(plugins)
        given = tuple(check_observer(observer) for observer in observers or ())
        self._counters = Counters()
        self._events = EventBus((self._counters, *plugin_observers(self._plugins), *given))
        rules: dict[str, Rule] = builtin_rules()
        for loaded in self._plugins:
            rules.update((plugin_rule.name, plugin_rule) for plugin_rule in loaded.plugin.rules)
        if isinstance(rule, str):
            if rule not in rules:
                known = ", ".join(sorted(rules))
                raise ConfigurationError(f"unknown rule {rule!r} (known: {known})")
            self._rule = rules[rule]
        else:
            self._rule = check_rule(rule)
            if rules.get(self._rule.name, self._rule) is not self._rule:
                raise ConfigurationError(
                    f"rule {self._rule!r} is named {self._rule.name!r}, like a built-in or "
                    "plugin rule; give it another name"
                )
            rules[self._rule.name] = self._rule
        self._rules: Mapping[str, Rule] = MappingProxyType(rules)

        self._codecs = default_codecs().with_codecs(
            *(codec for loaded in self._plugins for codec in loaded.plugin.codecs), *codecs
        )
        for loaded in self._plugins:
            self._middleware.extend(loaded.plugin.middleware)
        for layer in middleware:
            self.middleware(layer)
        for loaded in self._plugins:
            for spec in loaded.plugin.handlers:
                self.add_handler(spec)
        for item in handlers:
            self.add_handler(item)

    # -- identity ---------------------------------------------------------------------

    @property
    def queue(self) -> str:
        """The queue name."""
        return self._queue

    @property
    def work_group(self) -> str:
        """The WORK group's name: the queue name itself."""
        return self._queue

    @property
    def feedback_group(self) -> str:
        """The FEEDBACK group's name: ``<queue>~fb``."""
        return self._feedback

    @property
    def spread(self) -> str | None:
        """The daemon address, as given."""
        return self._spread

    @property
    def name(self) -> str | None:
        """The private name for this worker's connections, as given."""
        return self._name

    @property
    def settings(self) -> Settings:
        """The app's settings."""
        return self._settings

    @property
    def dead_letter(self) -> str | None:
        """The dead-letter queue, or None when failed jobs are put nowhere."""
        return self._dead_letter

    @property
    def lifespan(self) -> Lifespan | None:
        """The lifespan factory, as given."""
        return self._lifespan

    def events(self) -> EventBus:
        """The worker's event bus: the always-on :attr:`counters`, the plugins'
        observers, then those given; ``events.subscribe(observer)`` adds one."""
        return self._events

    @property
    def counters(self) -> Counters:
        """The worker's always-on totals (jobs by outcome, running jobs, failovers),
        kept across the sessions of every run."""
        return self._counters

    # -- what it runs -------------------------------------------------------------------

    @property
    def rule(self) -> Rule:
        """The selected ownership rule."""
        return self._rule

    @property
    def rules(self) -> Mapping[str, Rule]:
        """Every rule available to this app by name: built-in, plugins', and a given one."""
        return self._rules

    @property
    def codecs(self) -> CodecRegistry:
        """The app's codecs: built-in, plugins' and its own."""
        return self._codecs

    @property
    def plugins(self) -> tuple[LoadedPlugin, ...]:
        """The plugins this app loaded, with their provenance."""
        return self._plugins

    @property
    def handlers(self) -> Mapping[str, AnyHandlerSpec]:
        """The registered handlers by kind (a read-only view)."""
        return MappingProxyType(self._handlers)

    @property
    def middleware_stack(self) -> tuple[Middleware, ...]:
        """Every middleware, outermost first: the plugins', then the app's."""
        return tuple(self._middleware)

    @property
    def failure_hooks(self) -> tuple[FailureHook, ...]:
        """The ``on_failure`` hooks, in registration order."""
        return tuple(self._failure_hooks)

    @property
    def frozen(self) -> bool:
        """Whether :meth:`freeze` has run; registration is closed from then on."""
        return self._frozen

    @property
    def prepared(self) -> Mapping[str, PreparedHandler]:
        """Each handler's :class:`PreparedHandler` by kind; empty until :meth:`freeze`."""
        return self._prepared

    # -- registration --------------------------------------------------------------------

    def handler(
        self,
        kind: str | None = None,
        /,
        *,
        raw: int | None = None,
        **options: Unpack[HandlerOptionArgs],
    ) -> HandlerDecorator:
        """Register the decorated function as the handler of ``kind``.

        An ``async def`` runs on the event loop; a plain ``def`` runs in a worker thread
        (at most ``settings.sync_threads`` at once; see :mod:`spreadq.threads`).

        ``@app.handler("resize")`` or, for RAW jobs from plain Spread programs,
        ``@app.handler(raw=0x1234)``; options as :class:`~spreadq.handlers.HandlerOptions`.
        The decorated name becomes a :class:`~spreadq.handlers.Handler`, still callable
        as the function.

        Raises:
            ConfigurationError: (when applied) as :meth:`HandlerSpec.build
                <spreadq.handlers.HandlerSpec.build>`, or :meth:`add_handler`.
        """
        self._check_open(f"register a handler for {kind if kind is not None else raw!r}")
        return make_decorator(kind, raw, options, self.add_handler)

    def add_handler(self, handler: AnyHandlerSpec | Handler[Any, Any]) -> None:
        """Register a handler spec (or a :class:`Handler`'s spec).

        Raises:
            ConfigurationError: the app is frozen; the kind is already registered (both
                functions are named); a codec the handler names is unknown.
        """
        spec = handler.spec if isinstance(handler, Handler) else handler
        self._check_open(f"register a handler for {spec.kind!r}")
        existing = self._handlers.get(spec.kind)
        if existing is not None:
            raise ConfigurationError(
                f"handler kind {spec.kind!r} is registered twice: {existing.where} and {spec.where}"
            )
        for codec in {spec.payload_codec, spec.result_codec}:
            if codec not in self._codecs:
                known = ", ".join(sorted(self._codecs))
                raise ConfigurationError(
                    f"handler {spec.where}: unknown codec {codec!r} (known: {known})"
                )
        self._handlers[spec.kind] = spec

    def periodic(
        self,
        every: timedelta | float | None = None,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        name: str | None = None,
        catch_up: CatchUp = "latest",
        **options: Unpack[HandlerOptionArgs],
    ) -> Callable[[Callable[..., Any]], Handler[Any, Any]]:
        """Run the decorated function every ``every`` (a ``timedelta`` or seconds), or
        at the times of the cron expression ``cron``, on exactly one member of the
        queue, with no scheduler process.

        The function is registered as the handler of kind ``name`` (default: its
        ``__name__``) and takes a :class:`~spreadq.worker.periodic.PeriodicTick`.
        With ``every``, ticks are numbered from the Unix epoch (tick ``t`` is due at
        ``t * every``, so ``timedelta(hours=1)`` runs on the hour). With ``cron``
        (``"*/5 * * * *"``; a sixth field is seconds), each tick is due at a time the
        expression matches in ``timezone`` (an IANA name, UTC by default), and is
        numbered by its due time in Unix seconds. The first member of the view
        announces each tick as an ordinary job (owner by the rule, failed over like
        any job), and a tick ledger every worker keeps (settled by LEDGER messages
        after joins and merges) accepts each tick once: any other announcement of it
        never runs. After the announcer goes, the next one announces what came due
        meanwhile: ``catch_up="latest"`` only the latest tick, ``"all"`` every missed
        one. Guarantees, clocks and partitions: docs/design/periodic.md.

        Raises:
            ConfigurationError: the app is frozen; neither or both of ``every`` and
                ``cron``; ``every`` is not positive; ``cron`` is not an expression or
                never fires; an unknown ``timezone`` or ``catch_up``; or as
                :meth:`handler`.
        """
        seconds = every.total_seconds() if isinstance(every, timedelta) else every
        if seconds is not None:
            seconds = float(seconds)

        def register(fn: Callable[..., Any]) -> Handler[Any, Any]:
            kind = name if name is not None else getattr(fn, "__name__", "")
            schedule = Schedule(kind, seconds, catch_up, cron=cron, timezone=timezone)
            handler: Handler[Any, Any] = self.handler(kind, **options)(fn)
            self._schedules.append(schedule)
            return handler

        self._check_open("register a periodic job")
        # refuse bad arguments at once, before the decorator is applied
        Schedule(name or "periodic", seconds, catch_up, cron=cron, timezone=timezone)
        return register

    @property
    def schedules(self) -> Sequence[Schedule]:
        """The periodic jobs registered with :meth:`periodic`."""
        return tuple(self._schedules)

    def middleware(self, layer: M) -> M:
        """Add ``layer`` innermost of the middleware so far; returns it (usable as a decorator).

        Raises:
            ConfigurationError: the app is frozen, or ``layer`` is not an async
                ``(ctx, payload, call_next)`` callable.
        """
        self._check_open("add middleware")
        self._middleware.append(check_middleware(layer))
        return layer

    def on_failure(self, hook: H) -> H:
        """Register ``async def hook(ctx, error)``, called when a job fails for the last time.

        Raises:
            ConfigurationError: the app is frozen, or ``hook`` is not an async
                ``(ctx, error)`` callable.
        """
        self._check_open("add an on_failure hook")
        self._failure_hooks.append(check_failure_hook(hook))
        return hook

    def freeze(self) -> None:
        """Build every handler's chain once and close registration. Idempotent.

        Raises:
            ConfigurationError: no handler is registered.
        """
        if self._frozen:
            return
        if not self._handlers:
            raise ConfigurationError(
                f"app for queue {self._queue!r} has no handlers; register one with @app.handler"
            )
        stack = tuple(self._middleware)
        self._prepared = MappingProxyType(
            {
                kind: PreparedHandler(
                    spec=spec,
                    chain=build_chain(stack, spec.bind(self._threads)),
                    payload_codec=self._codecs[spec.payload_codec],
                    result_codec=self._codecs[spec.result_codec],
                    codecs=self._codecs,
                    direct=None if stack or spec.blocking or spec.takes_context else spec.fn,
                )
                for kind, spec in self._handlers.items()
            }
        )
        self._frozen = True

    def spec(self) -> WorkerSpec:
        """Freeze the app (:meth:`freeze`) and return what a worker of it runs.

        Raises:
            ConfigurationError: no handler is registered.
        """
        self.freeze()
        return WorkerSpec(
            queue=self._queue,
            work_group=self.work_group,
            feedback_group=self._feedback,
            name=self._name,
            handlers=self._prepared,
            rule=self._rule,
            ordered_keys=keeps_key_order(self._rule),
            failure_hooks=tuple(self._failure_hooks),
            dead_letter=self._dead_letter,
            schedules=tuple(self._schedules),
        )

    def _check_open(self, action: str) -> None:
        if self._frozen:
            raise ConfigurationError(f"cannot {action}: the app for {self._queue!r} has started")

    # -- running (the worker runtime) ------------------------------------------------------

    async def run(
        self,
        *,
        spread: str | None = None,
        settings: Settings | None = None,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
        handle_signals: bool = True,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run a worker: join the queue and run handlers until :meth:`stop` (or SIGTERM).

        Each session with the daemon is a new member of the WORK group, served by a
        :class:`~spreadq.worker.dispatcher.Dispatcher`. When the daemon is lost, running
        handlers are cancelled (``settings.cancel_on_disconnect``) and the worker
        reconnects with exponential backoff (``settings.reconnect_backoff_*``); the
        other workers have taken over its jobs meanwhile. :meth:`stop`, SIGTERM or
        SIGINT drain: the worker takes no new work, finishes the jobs it owns, sends
        their outcomes, leaves the group and returns. A second signal stops at once.
        ``task_status`` (for ``await tg.start(app.run)``) is started once the first
        session has joined the WORK group. The app's ``lifespan`` is entered before
        the first connect and left after the drain (see the module's docs).

        It configures no logging: the worker's lines (``worker_joined`` at info, failed
        connects at warning) go to the stdlib loggers ``spreadq.*``, shown once the
        program configures ``logging`` (``logging.basicConfig(level=logging.INFO)``, or
        :func:`spreadq.logs.configure_logging` as ``spreadq worker`` does).

        Args:
            spread: the daemon address for this run, instead of the app's.
            settings: settings for this run, instead of the app's (e.g. from the CLI).
            drain_timeout: seconds a drain may take before running jobs are cancelled.
            handle_signals: drain on SIGTERM/SIGINT (only in the main thread). A run
                that does, and so is the program, also tunes the garbage collector
                for a worker (:func:`~spreadq.worker.runtime.tune_collector`).

        Raises:
            ConfigurationError: the app has no handlers, or is already running.
            ConnectRejected: the daemon refused the session for a reason retrying cannot
                mend (a bad version or authentication).
            InvalidName: the app's private name is refused by the client library.
            ConnectionLost: the daemon stayed away for more than
                ``settings.reconnect_max_attempts`` reconnection attempts in a row.
            ForcedStop: a second SIGTERM/SIGINT during the drain stopped it at once
                (running handlers were cancelled).
            LifespanError: the lifespan's startup failed (the worker never joined), or
                its shutdown failed after the drain.
        """
        spec = self.spec()
        if self._worker is not None:
            raise ConfigurationError(f"the app for {self._queue!r} is already running")
        worker = WorkerRuntime(
            spec,
            self._spread if spread is None else spread,
            self._settings if settings is None else settings,
            drain_timeout,
            events=self._events,
            counters=self._counters,
        )
        self._worker = worker
        self._threads.open(worker.settings.sync_threads)
        failure: Exception | None = None
        try:
            async with anyio.create_task_group() as tasks:
                if handle_signals and threading.current_thread() is threading.main_thread():
                    await tasks.start(worker.watch_signals)
                    tune_collector()  # we are the program: a worker process
                try:
                    await self._serve(worker, task_status)
                except Exception as error:  # raised below, outside the task group
                    failure = error
                tasks.cancel_scope.cancel()
        finally:
            self._worker = None
        if failure is not None:
            raise failure

    async def _serve(self, worker: WorkerRuntime, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Serve inside the lifespan: startup, the worker until it ends, shutdown."""
        lifespan = self._lifespan
        if lifespan is None:
            await worker.serve(task_status)
            return
        try:
            manager = lifespan(self)
        except Exception as error:
            raise LifespanError(self._queue, "startup", _describe(error)) from error
        try:
            enter, leave = type(manager).__aenter__, type(manager).__aexit__
        except AttributeError as error:
            raise LifespanError(
                self._queue,
                "startup",
                f"lifespan(app) must return an async context manager, not {manager!r}",
            ) from error
        try:
            state = await enter(manager)
        except Exception as error:
            raise LifespanError(self._queue, "startup", _describe(error)) from error
        try:
            await worker.serve(task_status, state=state)
        except BaseException:
            await self._shutdown(leave, manager, failing=True)
            raise
        await self._shutdown(leave, manager, failing=False)

    async def _shutdown(self, leave: Callable[..., Any], manager: object, *, failing: bool) -> None:
        try:
            await leave(manager, None, None, None)
        except Exception as error:
            log.exception("lifespan_shutdown_failed", queue=self._queue)
            if not failing:  # else the worker's own failure is what run() raises
                raise LifespanError(self._queue, "shutdown", _describe(error)) from error

    def stop(self) -> None:
        """Ask a running app to drain and stop; :meth:`run` returns when it is done.

        Does nothing when the app is not running. Safe to call more than once.
        """
        if self._worker is not None:
            self._worker.stop()

    def __repr__(self) -> str:
        state = "frozen" if self._frozen else "open"
        return (
            f"<App queue={self._queue!r} rule={self._rule.name!r} "
            f"handlers={sorted(self._handlers)!r} {state}>"
        )


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
