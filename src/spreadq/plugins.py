"""Plugins: declarations found through the ``spreadq.plugins`` entry-point group.

A plugin is a distribution (``spreadq-<name>``, imported as ``spreadq_<name>``) whose
entry point resolves to a :class:`Plugin`: a frozen declaration of the ownership rules,
payload codecs, middleware, handlers and event observers it contributes. Nothing runs
when a plugin is loaded except the import of its module, so ``spreadq plugins`` can list
what each one brings::

    # pyproject.toml of spreadq-msgpack
    [project.entry-points."spreadq.plugins"]
    msgpack = "spreadq_msgpack:plugin"

    # spreadq_msgpack/__init__.py
    plugin = Plugin(name="msgpack", codecs=(MsgpackCodec(),))

:func:`load_plugins` returns a value (no registry is kept): every plugin found, with
the distribution and version that provided it, validated as a whole before any app
starts. Each contribution is checked when the ``Plugin`` is built (codec and rule
shape, middleware async-ness, handler specs); the loader then checks the set: one
plugin per name, the entry point's name equal to the plugin's, and no codec name, rule
name or handler kind claimed twice (nor a built-in codec or rule name). Every failure
is a :class:`~spreadq.errors.PluginError` naming the plugin, its distribution and the
object at fault.

The environment variable ``SPREADQ_DISABLE_PLUGINS`` (comma-separated plugin names) is
a blocklist: those plugins are not even imported.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from importlib.metadata import entry_points as installed_entry_points
from typing import Annotated, Final, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, InstanceOf

from spreadq.codecs import Codec, check_codec, default_codecs
from spreadq.errors import ConfigurationError, PluginError
from spreadq.handlers import AnyHandlerSpec
from spreadq.logs import get_logger
from spreadq.middleware import Middleware, check_middleware
from spreadq.observe.bus import Observer, check_observer
from spreadq.queue.rules import Rule, builtin_rules

__all__ = [
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "LoadedPlugin",
    "Plugin",
    "PutHook",
    "check_plugin_set",
    "check_put_hook",
    "check_rule",
    "disabled_from_env",
    "load_plugins",
    "plugin_observers",
    "plugin_put_hooks",
    "select_plugins",
]

log = get_logger(__name__)

ENTRY_POINT_GROUP: Final = "spreadq.plugins"
"""The entry-point group plugins register under."""
DISABLE_ENV: Final = "SPREADQ_DISABLE_PLUGINS"
"""The environment variable holding the blocklist: comma-separated plugin names."""

PutHook = Callable[[str, str], Mapping[str, str] | None]
"""A producer-side hook: ``hook(queue, kind)`` runs synchronously in ``Producer.put``
before the job is encoded and returns headers to add to the job (or None). Headers the
caller passed win over a hook's."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def check_rule(candidate: object) -> Rule:
    """Return ``candidate`` as a :class:`~spreadq.queue.rules.Rule` after checking its shape.

    A rule has a ``name`` (1..64 visible ASCII characters) and a synchronous, pure
    ``owner(members, state, job) -> member`` method; its optional
    ``owner_without_job``, ``owners`` and ``message_owners``
    (:class:`~spreadq.queue.rules.JoblessRule`, :class:`~spreadq.queue.rules.SlotRule`,
    :class:`~spreadq.queue.rules.MessageRule`), when it has them, are synchronous methods
    too.

    Raises:
        ConfigurationError: the name or the ``owner`` method is missing or malformed, or
            an optional method is not a synchronous callable.
    """
    name = getattr(candidate, "name", None)
    if not isinstance(name, str) or not re.fullmatch(r"[!-~]{1,64}", name):
        raise ConfigurationError(
            f"rule {candidate!r} needs a name of 1 to 64 visible ASCII characters, got {name!r}"
        )
    owner = getattr(candidate, "owner", None)
    if not callable(owner):
        raise ConfigurationError(f"rule {name!r} ({candidate!r}) has no owner() method")
    if inspect.iscoroutinefunction(owner):
        raise ConfigurationError(f"rule {name!r} ({candidate!r}): owner() must be pure, not async")
    # the table calls them for every job
    for optional in ("owner_without_job", "owners", "message_owners"):
        method = getattr(candidate, optional, None)
        if method is not None and (not callable(method) or inspect.iscoroutinefunction(method)):
            raise ConfigurationError(
                f"rule {name!r} ({candidate!r}): {optional} must be a synchronous method"
            )
    if not isinstance(candidate, Rule):  # pragma: no cover - implied by the checks above
        raise ConfigurationError(f"rule {name!r} ({candidate!r}) is not a Rule")
    return candidate


def check_put_hook(candidate: object) -> PutHook:
    """Return ``candidate`` as a :data:`PutHook` after checking its shape.

    Raises:
        ConfigurationError: it is not callable, or it is a coroutine function (``put``
            runs hooks synchronously, before it first waits).
    """
    if not callable(candidate):
        raise ConfigurationError(
            f"put hook {candidate!r} is not callable: it is called as hook(queue, kind)"
        )
    call = candidate if inspect.isroutine(candidate) else type(candidate).__call__
    if inspect.iscoroutinefunction(candidate) or inspect.iscoroutinefunction(call):
        raise ConfigurationError(
            f"put hook {candidate!r} must be synchronous: it returns the headers to add"
        )
    return cast(PutHook, candidate)


class Plugin(BaseModel):
    """What a plugin contributes; an entry point in ``spreadq.plugins`` resolves to one.

    Attributes:
        name: the plugin's name, equal to its entry point's name (``msgpack``).
        description: one line saying what the plugin adds.
        rules: ownership rules (:class:`~spreadq.queue.rules.Rule`), unique by name.
        codecs: payload codecs (:class:`~spreadq.codecs.Codec`), unique by name.
        middleware: async middleware, wrapped around every handler of an app that loads
            the plugin, outside the app's own middleware.
        handlers: handler specs (``HandlerSpec.build(...)`` or ``some_handler.spec``).
        observers: event observers (:class:`~spreadq.observe.Observer`: synchronous
            callables taking each event), subscribed to the event bus of every worker
            and producer that loads the plugin, before the observers given explicitly.
        put_hooks: synchronous ``hook(queue, kind) -> Mapping[str, str] | None``
            callables (:data:`PutHook`), run by every ``Producer.put`` of a producer
            that loads the plugin, before the job is encoded; the headers they return
            are added to the job's (the caller's own headers win).

    Raises:
        pydantic.ValidationError: (constructor) a contribution of the wrong shape; the
            message names it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str = Field(pattern=f"^{_NAME.pattern}$")
    description: str = ""
    rules: tuple[Annotated[Rule, BeforeValidator(check_rule)], ...] = ()
    codecs: tuple[Annotated[Codec, BeforeValidator(check_codec)], ...] = ()
    middleware: tuple[Annotated[Middleware, BeforeValidator(check_middleware)], ...] = ()
    handlers: tuple[InstanceOf[AnyHandlerSpec], ...] = ()
    observers: tuple[Annotated[Observer, BeforeValidator(check_observer)], ...] = ()
    put_hooks: tuple[Annotated[PutHook, BeforeValidator(check_put_hook)], ...] = ()

    def summary(self) -> dict[str, list[str]]:
        """Name what the plugin contributes, by category, for listings."""
        return {
            "rules": [rule.name for rule in self.rules],
            "codecs": [codec.name for codec in self.codecs],
            "middleware": [
                getattr(layer, "__qualname__", type(layer).__qualname__)
                for layer in self.middleware
            ],
            "handlers": [spec.kind for spec in self.handlers],
            "observers": [
                getattr(observer, "__qualname__", type(observer).__qualname__)
                for observer in self.observers
            ],
            "put_hooks": [
                getattr(hook, "__qualname__", type(hook).__qualname__) for hook in self.put_hooks
            ],
        }


@dataclass(frozen=True, slots=True)
class LoadedPlugin:
    """A plugin together with where it came from (its provenance).

    Attributes:
        plugin: the declaration.
        entry_point: the entry point's value, ``module:attribute``.
        distribution: the installed distribution that declares the entry point, or
            ``None`` when it was given directly (tests, ``App(plugins=[...])``).
        version: that distribution's version, when known.
    """

    plugin: Plugin
    entry_point: str
    distribution: str | None = None
    version: str | None = None

    @property
    def name(self) -> str:
        """The plugin's name."""
        return self.plugin.name


def disabled_from_env(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """Return the plugin names listed in ``SPREADQ_DISABLE_PLUGINS`` (comma-separated)."""
    value = (os.environ if environ is None else environ).get(DISABLE_ENV, "")
    return frozenset(name.strip() for name in value.split(",") if name.strip())


def load_plugins(
    *,
    names: Iterable[str] | None = None,
    disabled: Iterable[str] | None = None,
    entry_points: Iterable[EntryPoint] | None = None,
    reserved_codecs: Iterable[str] | None = None,
    reserved_rules: Iterable[str] | None = None,
) -> tuple[LoadedPlugin, ...]:
    """Load and validate plugins from the ``spreadq.plugins`` entry points, sorted by name.

    Args:
        names: load only these plugins (each must be installed and not disabled);
            ``None`` loads every plugin that is not disabled.
        disabled: the blocklist; ``None`` reads ``SPREADQ_DISABLE_PLUGINS``.
        entry_points: the entry points to consider; ``None`` asks
            ``importlib.metadata`` for the installed ones in the group.
        reserved_codecs: codec names plugins may not take; the built-in codecs' names
            when ``None``.
        reserved_rules: rule names plugins may not take; the built-in rules' names
            when ``None``.

    Raises:
        PluginError: two entry points share a name; a requested plugin is missing or
            disabled; an entry point fails to import, or resolves to something that is
            not a :class:`Plugin`, or to a plugin of another name; two plugins (or a
            plugin and spreadq) claim the same codec name, rule name or handler kind.
    """
    blocked = disabled_from_env() if disabled is None else frozenset(disabled)
    found = sorted(
        installed_entry_points(group=ENTRY_POINT_GROUP) if entry_points is None else entry_points,
        key=lambda ep: ep.name,
    )
    by_name: dict[str, EntryPoint] = {}
    for ep in found:
        if ep.name in by_name:
            first = by_name[ep.name]
            raise PluginError(
                ep.name,
                f"declared twice: {first.value!r} ({_distribution(first)[0] or 'unknown'}) and "
                f"{ep.value!r} ({_distribution(ep)[0] or 'unknown'})",
                distribution=_distribution(ep)[0],
            )
        by_name[ep.name] = ep
    wanted = sorted(by_name) if names is None else list(dict.fromkeys(names))
    for name in wanted:
        if name not in by_name:
            installed = ", ".join(sorted(by_name)) or "none"
            raise PluginError(name, f"not installed (installed plugins: {installed})")
        if name in blocked and names is not None:
            raise PluginError(name, f"requested, but disabled by {DISABLE_ENV}")

    loaded: list[LoadedPlugin] = []
    for name in wanted:
        if name in blocked:
            log.info("plugin_disabled", plugin=name, variable=DISABLE_ENV)
            continue
        loaded.append(_load_one(by_name[name]))
    check_plugin_set(
        loaded,
        reserved_codecs=default_codecs().keys() if reserved_codecs is None else reserved_codecs,
        reserved_rules=builtin_rules().keys() if reserved_rules is None else reserved_rules,
    )
    for item in loaded:
        log.debug(
            "plugin_loaded",
            plugin=item.name,
            distribution=item.distribution,
            version=item.version,
            **item.plugin.summary(),
        )
    return tuple(loaded)


def check_plugin_set(
    plugins: Iterable[LoadedPlugin],
    *,
    reserved_codecs: Iterable[str] = (),
    reserved_rules: Iterable[str] = (),
) -> None:
    """Check that no two plugins, nor a plugin and spreadq, claim the same name.

    Raises:
        PluginError: a plugin name, codec name, rule name or handler kind taken twice;
            the message names both claimants.
    """
    owners: dict[tuple[str, str], str] = {}
    for category, reserved in (("codec", reserved_codecs), ("rule", reserved_rules)):
        for name in reserved:
            owners[(category, name)] = "spreadq"
    for item in plugins:
        claims = [("plugin", item.name)]
        claims += [("codec", codec.name) for codec in item.plugin.codecs]
        claims += [("rule", rule.name) for rule in item.plugin.rules]
        claims += [("handler kind", spec.kind) for spec in item.plugin.handlers]
        for claim in claims:
            holder = owners.get(claim)
            if holder is not None:
                category, name = claim
                by = "spreadq itself" if holder == "spreadq" else f"plugin {holder!r}"
                raise PluginError(
                    item.name,
                    f"{category} {name!r} is already provided by {by}",
                    distribution=item.distribution,
                )
            owners[claim] = item.name


def plugin_observers(plugins: Iterable[LoadedPlugin]) -> tuple[Observer, ...]:
    """The observers ``plugins`` contribute, in plugin order (for an
    :class:`~spreadq.observe.EventBus`, ahead of those given explicitly)."""
    return tuple(observer for item in plugins for observer in item.plugin.observers)


def plugin_put_hooks(plugins: Iterable[LoadedPlugin]) -> tuple[PutHook, ...]:
    """The put hooks ``plugins`` contribute, in plugin order (run by ``Producer.put``)."""
    return tuple(hook for item in plugins for hook in item.plugin.put_hooks)


def select_plugins(plugins: bool | Sequence[str | Plugin]) -> tuple[LoadedPlugin, ...]:
    """The plugins an ``App`` or ``Producer`` loads for its ``plugins=`` argument.

    ``True`` loads every installed plugin not blocked by ``SPREADQ_DISABLE_PLUGINS``;
    ``False`` none; a sequence loads the installed plugins it names and takes
    :class:`Plugin` objects as they are (their provenance ``(given)``).

    Raises:
        PluginError: as :func:`load_plugins`, or two of them claim the same name.
    """
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


def _load_one(ep: EntryPoint) -> LoadedPlugin:
    distribution, version = _distribution(ep)
    try:
        declared = ep.load()
    except Exception as error:  # an import of third-party code: anything can go wrong
        raise PluginError(
            ep.name,
            f"cannot load {ep.value!r}: {type(error).__name__}: {error}",
            distribution=distribution,
        ) from error
    if not isinstance(declared, Plugin):
        raise PluginError(
            ep.name,
            f"{ep.value!r} is {declared!r}, not a spreadq.plugins.Plugin declaration",
            distribution=distribution,
        )
    if declared.name != ep.name:
        raise PluginError(
            ep.name,
            f"{ep.value!r} declares a plugin named {declared.name!r}; "
            "the entry point and the plugin must have the same name",
            distribution=distribution,
        )
    return LoadedPlugin(declared, ep.value, distribution, version)


def _distribution(ep: EntryPoint) -> tuple[str | None, str | None]:
    dist = ep.dist
    if dist is None:
        return None, None
    return dist.name, dist.version
