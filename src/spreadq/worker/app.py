"""App: a queue's handlers, rules, codecs, middleware and plugins, registered then frozen.

Register early, validate fully, freeze at start. Everything an app will run is declared
before it runs: ``App(...)`` loads and validates its plugins, ``@app.handler`` builds
each :class:`~spreadq.handlers.HandlerSpec` (annotations resolved, adapters built,
codecs checked, duplicate kinds refused), ``app.middleware(...)`` and
``@app.on_failure`` check their callables. :meth:`App.freeze`, called when the app
starts, builds one middleware chain per handler and refuses any later registration.

A queue's group names and their rules are the queue protocol's:
:func:`spreadq.queue.protocol.queue_groups`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from types import MappingProxyType
from typing import Any, TypeVar, Unpack

import anyio
import anyio.abc

from spreadq.codecs import Codec, CodecRegistry, default_codecs
from spreadq.errors import ConfigurationError, InvalidName
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
from spreadq.plugins import LoadedPlugin, Plugin, check_plugin_set, check_rule, load_plugins
from spreadq.queue.periodic import CatchUp, Schedule
from spreadq.queue.protocol import DEFAULT_DRAIN_TIMEOUT, queue_groups
from spreadq.queue.rules import Rule, builtin_rules, keeps_key_order
from spreadq.settings import Settings
from spreadq.wire.events import check_private_name
from spreadq.worker.runtime import WorkerRuntime, tune_collector
from spreadq.worker.spec import PreparedHandler, WorkerSpec

__all__ = ["App"]

log = get_logger(__name__)

M = TypeVar("M", bound=Middleware)
H = TypeVar("H", bound=FailureHook)


class App:
    """A queue's worker application: what it runs and how, declared before it starts.

    Args:
        queue: the queue name (1..28 bytes of ``$``..``~``, no ``~``, not ``#...``).
        spread: the daemon address (``"4803"``, ``"4803@host"``, a socket path); None
            lets the runtime choose its default.
        rule: the ownership rule, by name (``round_robin``, ``key_affinity``,
            ``least_loaded``, or one a plugin adds) or as a rule object.
        settings: tunables; ``Settings()`` when None.
        handlers: handler specs or :class:`~spreadq.handlers.Handler` objects to
            register now, as ``@app.handler`` would.
        middleware: middleware for every handler, outermost first (after the plugins').
        codecs: extra codecs, beside the built-in ``json`` and ``raw`` and the plugins'.
        plugins: ``True`` loads every installed plugin not blocked by
            ``SPREADQ_DISABLE_PLUGINS``; ``False`` none; a sequence loads the installed
            plugins it names and takes :class:`~spreadq.plugins.Plugin` objects as they
            are.
        name: the private name for this worker's daemon connections (up to 10 bytes);
            None lets the daemon choose.

    Raises:
        ConfigurationError: an invalid queue name, private name, rule, handler,
            middleware or codec, or two claims on one handler kind or codec name.
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
    ) -> None:
        self._queue, self._feedback = queue_groups(queue)
        if name is not None:
            try:
                check_private_name(name)
            except InvalidName as error:
                raise ConfigurationError(f"invalid worker name {name!r}: {error.reason}") from None
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

        self._plugins = _load(plugins)
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
        """Register the decorated async function as the handler of ``kind``.

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
        every: timedelta | float,
        *,
        name: str | None = None,
        catch_up: CatchUp = "latest",
        **options: Unpack[HandlerOptionArgs],
    ) -> Callable[[Callable[..., Any]], Handler[Any, Any]]:
        """Run the decorated async function every ``every`` (a ``timedelta`` or seconds)
        on exactly one member of the queue, with no scheduler process.

        The function is registered as the handler of kind ``name`` (default: its
        ``__name__``) and takes a :class:`~spreadq.worker.periodic.PeriodicTick`.
        Ticks are numbered from the Unix epoch (tick ``t`` is due at ``t * every``);
        the member the ordered stream names announces each one as an ordinary job
        (owner by the rule, failed over like any job) and a second announcement of
        the same tick never runs. After the announcer goes, the next one announces
        what came due meanwhile: ``catch_up="latest"`` only the latest tick, ``"all"``
        every missed one. Guarantees, clocks and partitions: docs/design/periodic.md.

        Raises:
            ConfigurationError: the app is frozen, ``every`` is not positive, an
                unknown ``catch_up``, or as :meth:`handler`.
        """
        seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)

        def register(fn: Callable[..., Any]) -> Handler[Any, Any]:
            kind = name if name is not None else getattr(fn, "__name__", "")
            schedule = Schedule(kind, seconds, catch_up)
            handler: Handler[Any, Any] = self.handler(kind, **options)(fn)
            self._schedules.append(schedule)
            return handler

        self._check_open("register a periodic job")
        Schedule(name or "periodic", seconds, catch_up)  # refuse bad arguments at once
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
                    chain=build_chain(stack, spec.endpoint),
                    payload_codec=self._codecs[spec.payload_codec],
                    result_codec=self._codecs[spec.result_codec],
                    codecs=self._codecs,
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
        session has joined the WORK group.

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
        """
        spec = self.spec()
        if self._worker is not None:
            raise ConfigurationError(f"the app for {self._queue!r} is already running")
        worker = WorkerRuntime(
            spec,
            self._spread if spread is None else spread,
            self._settings if settings is None else settings,
            drain_timeout,
        )
        self._worker = worker
        failure: Exception | None = None
        try:
            async with anyio.create_task_group() as tasks:
                if handle_signals and threading.current_thread() is threading.main_thread():
                    await tasks.start(worker.watch_signals)
                    tune_collector()  # we are the program: a worker process
                try:
                    await worker.serve(task_status)
                except Exception as error:  # raised below, outside the task group
                    failure = error
                tasks.cancel_scope.cancel()
        finally:
            self._worker = None
        if failure is not None:
            raise failure

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


def _load(plugins: bool | Sequence[str | Plugin]) -> tuple[LoadedPlugin, ...]:
    if plugins is True:
        return load_plugins()
    if plugins is False:
        return ()
    names = [item for item in plugins if isinstance(item, str)]
    given = [
        LoadedPlugin(item, entry_point="(given)") for item in plugins if isinstance(item, Plugin)
    ]
    loaded = sorted(
        (*(load_plugins(names=names) if names else ()), *given), key=lambda item: item.name
    )
    check_plugin_set(
        loaded,
        reserved_codecs=default_codecs().keys(),
        reserved_rules=builtin_rules().keys(),
    )
    return tuple(loaded)
