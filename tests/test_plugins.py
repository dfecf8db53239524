"""Plugin declarations and the entry-point loader, with fake entry points and distributions."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from importlib.metadata import EntryPoint, PathDistribution
from pathlib import Path
from typing import TypeVar

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError
from structlog.testing import capture_logs

from spreadq.context import Context
from spreadq.errors import ConfigurationError, PluginError
from spreadq.handlers import HandlerSpec
from spreadq.middleware import CallNext
from spreadq.observe import Event
from spreadq.plugins import (
    DISABLE_ENV,
    ENTRY_POINT_GROUP,
    LoadedPlugin,
    Plugin,
    check_rule,
    disabled_from_env,
    load_plugins,
    plugin_observers,
)
from spreadq.queue.jobs import Job
from spreadq.queue.rules import RuleState

T = TypeVar("T")


class Echo:
    """A toy codec."""

    def __init__(self, name: str = "echo") -> None:
        self.name = name

    def encode(self, value: T, adapter: TypeAdapter[T]) -> bytes:
        return adapter.dump_json(value)

    def decode(self, data: bytes, adapter: TypeAdapter[T]) -> T:
        return adapter.validate_json(data)


class Last:
    """A toy rule: the last member owns everything."""

    def __init__(self, name: str = "last") -> None:
        self.name = name

    def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
        return members[-1]


class NoOwner:
    name = "no_owner"


async def passthrough(ctx: Context, payload: object, call_next: CallNext) -> object:
    return await call_next(ctx, payload)


def sync_layer(ctx: Context, payload: object, call_next: CallNext) -> object:
    return None


class Ping(BaseModel):
    n: int


async def ping(job: Ping) -> int:
    return job.n


def seen(event: Event) -> None:
    """An observer that keeps nothing."""


async def async_observer(event: Event) -> None:
    """Not an observer: publish never awaits."""


class AsyncOpen:
    def __call__(self, event: Event) -> None:
        pass

    async def open(self, scope: object) -> None:
        pass


ALPHA = Plugin(
    name="alpha",
    description="codec and rule",
    codecs=(Echo(),),
    rules=(Last(),),
    middleware=(passthrough,),
    handlers=(HandlerSpec.build(ping, "ping"),),
    observers=(seen,),
)
BETA = Plugin(name="beta")
SAME_CODEC = Plugin(name="gamma", codecs=(Echo(),))
JSON_AGAIN = Plugin(name="gamma", codecs=(Echo("json"),))
RR_AGAIN = Plugin(name="gamma", rules=(Last("round_robin"),))
PING_AGAIN = Plugin(name="gamma", handlers=(HandlerSpec.build(ping, "ping"),))
NOT_A_PLUGIN = "just a string"


def ep(name: str, attribute: str) -> EntryPoint:
    return EntryPoint(name, f"{__name__}:{attribute}", ENTRY_POINT_GROUP)


def load(eps: Iterable[EntryPoint], **kwargs: object) -> tuple[LoadedPlugin, ...]:
    return load_plugins(entry_points=eps, disabled=kwargs.pop("disabled", ()), **kwargs)  # type: ignore[arg-type]


def test_loads_declarations_sorted_with_provenance() -> None:
    loaded = load([ep("beta", "BETA"), ep("alpha", "ALPHA")])
    assert [item.name for item in loaded] == ["alpha", "beta"]
    assert loaded[0].plugin is ALPHA
    assert loaded[0].entry_point == f"{__name__}:ALPHA"
    assert (loaded[0].distribution, loaded[0].version) == (None, None)


def test_no_entry_points_no_plugins() -> None:
    assert load([]) == ()


def test_summary_names_each_contribution() -> None:
    assert ALPHA.summary() == {
        "rules": ["last"],
        "codecs": ["echo"],
        "middleware": ["passthrough"],
        "handlers": ["ping"],
        "observers": ["seen"],
        "put_hooks": [],
    }


def test_plugin_observers_come_in_plugin_order() -> None:
    def other(event: Event) -> None:
        pass

    loaded = [LoadedPlugin(ALPHA, "a:b"), LoadedPlugin(Plugin(name="z", observers=(other,)), "z:z")]
    assert plugin_observers(loaded) == (seen, other)


def test_plugin_is_frozen() -> None:
    with pytest.raises(ValidationError):
        setattr(ALPHA, "name", "other")  # noqa: B010


@pytest.fixture
def distribution(tmp_path: Path) -> PathDistribution:
    """A real (on-disk) distribution declaring the entry point alpha."""
    info = tmp_path / "spreadq_alpha-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spreadq-alpha\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nalpha = {__name__}:ALPHA\n")
    return PathDistribution(info)


def test_records_distribution_and_version(distribution: PathDistribution) -> None:
    (loaded,) = load(distribution.entry_points.select(group=ENTRY_POINT_GROUP))
    assert (loaded.name, loaded.distribution, loaded.version) == ("alpha", "spreadq-alpha", "1.2.3")


def test_logs_what_was_loaded(distribution: PathDistribution) -> None:
    with capture_logs() as logs:
        load(distribution.entry_points.select(group=ENTRY_POINT_GROUP))
    (entry,) = (e for e in logs if e["event"] == "plugin_loaded")
    assert entry["plugin"] == "alpha"
    assert entry["distribution"] == "spreadq-alpha"
    assert entry["version"] == "1.2.3"
    assert entry["codecs"] == ["echo"]


def test_load_errors_name_the_distribution(tmp_path: Path) -> None:
    info = tmp_path / "spreadq_broken-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: spreadq-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nbroken = no_such_module_for_spreadq_tests:plugin\n"
    )
    eps = PathDistribution(info).entry_points.select(group=ENTRY_POINT_GROUP)
    with pytest.raises(PluginError) as info_error:
        load(eps)
    error = info_error.value
    assert (error.plugin, error.distribution) == ("broken", "spreadq-broken")
    assert "plugin 'broken' from 'spreadq-broken'" in str(error)
    assert "cannot load 'no_such_module_for_spreadq_tests:plugin': ModuleNotFoundError" in str(
        error
    )


def test_blocklist_skips_without_importing() -> None:
    broken = EntryPoint("broken", "no_such_module_for_spreadq_tests:plugin", ENTRY_POINT_GROUP)
    with capture_logs() as logs:
        loaded = load([ep("alpha", "ALPHA"), broken], disabled=["broken"])
    assert [item.name for item in loaded] == ["alpha"]
    assert {"event": "plugin_disabled", "plugin": "broken", "variable": DISABLE_ENV} | {
        "log_level": "info"
    } in logs


def test_blocklist_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DISABLE_ENV, " beta , ,alpha")
    assert disabled_from_env() == {"alpha", "beta"}
    assert load_plugins(entry_points=[ep("alpha", "ALPHA"), ep("beta", "BETA")]) == ()
    assert disabled_from_env({DISABLE_ENV: ""}) == frozenset()
    assert disabled_from_env({}) == frozenset()


def test_names_selects_plugins() -> None:
    eps = [ep("alpha", "ALPHA"), ep("beta", "BETA")]
    assert [item.name for item in load(eps, names=["beta"])] == ["beta"]
    with pytest.raises(
        PluginError, match=r"'delta': not installed \(installed plugins: alpha, beta\)"
    ):
        load(eps, names=["delta"])
    with pytest.raises(PluginError, match="requested, but disabled by SPREADQ_DISABLE_PLUGINS"):
        load(eps, names=["beta"], disabled=["beta"])


@pytest.mark.parametrize(
    ("eps", "expected"),
    [
        ([ep("text", "NOT_A_PLUGIN")], r"plugin 'text': .*'just a string', not a spreadq"),
        ([ep("other", "ALPHA")], r"plugin 'other': .* declares a plugin named 'alpha'"),
        ([ep("alpha", "ALPHA"), ep("alpha", "BETA")], r"plugin 'alpha': declared twice"),
        ([ep("missing", "NO_SUCH_ATTRIBUTE")], r"plugin 'missing': cannot load .*AttributeError"),
        (
            [ep("alpha", "ALPHA"), ep("gamma", "SAME_CODEC")],
            r"plugin 'gamma': codec 'echo' is already provided by plugin 'alpha'",
        ),
        (
            [ep("gamma", "JSON_AGAIN")],
            r"plugin 'gamma': codec 'json' is already provided by spreadq itself",
        ),
        (
            [ep("gamma", "RR_AGAIN")],
            r"plugin 'gamma': rule 'round_robin' is already provided by spreadq itself",
        ),
        (
            [ep("alpha", "ALPHA"), ep("gamma", "PING_AGAIN")],
            r"plugin 'gamma': handler kind 'ping' is already provided by plugin 'alpha'",
        ),
    ],
)
def test_loader_errors(eps: list[EntryPoint], expected: str) -> None:
    with pytest.raises(PluginError, match=expected):
        load(eps)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"name": "has space"}, "name"),
        ({"name": "x", "codecs": (object(),)}, "codecs.0"),
        ({"name": "x", "codecs": (Echo("bad name"),)}, "needs a name"),
        ({"name": "x", "middleware": (sync_layer,)}, r"sync_layer .* must be an async function"),
        ({"name": "x", "rules": (NoOwner(),)}, r"rule 'no_owner' .* has no owner\(\) method"),
        ({"name": "x", "handlers": (ping,)}, "handlers.0"),
        ({"name": "x", "observers": (object(),)}, "observer <object .*> is not callable"),
        ({"name": "x", "observers": (async_observer,)}, "async_observer .* must be synchronous"),
        ({"name": "x", "observers": (AsyncOpen(),)}, r"its open\(\) must be a synchronous"),
        ({"name": "x", "hooks": ()}, "hooks"),
    ],
)
def test_declarations_are_validated_when_built(fields: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        Plugin.model_validate(fields)


def test_a_declaration_that_fails_at_import_is_a_plugin_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "spreadq_test_bad_declaration"
    (tmp_path / f"{module}.py").write_text(
        "from spreadq.plugins import Plugin\n"
        "def encode(value, adapter): return b''\n"
        "plugin = Plugin(name='bad', middleware=(encode,))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    bad = EntryPoint("bad", f"{module}:plugin", ENTRY_POINT_GROUP)
    with pytest.raises(PluginError, match=r"plugin 'bad': cannot load .*ValidationError"):
        load([bad])
    monkeypatch.delitem(sys.modules, module, raising=False)


def test_check_rule() -> None:
    rule = Last()
    assert check_rule(rule) is rule

    class AsyncOwner:
        name = "async_owner"

        async def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
            return members[0]

    with pytest.raises(ConfigurationError, match="must be pure, not async"):
        check_rule(AsyncOwner())
    with pytest.raises(ConfigurationError, match="needs a name"):
        check_rule(object())

    class NotSlots(Last):
        name = "not_slots"
        owners = ("a", 1)  # an attribute of that name, not the SlotRule method

    with pytest.raises(ConfigurationError, match="owners must be a synchronous method"):
        check_rule(NotSlots())

    class AsyncJobless(Last):
        name = "async_jobless"

        async def owner_without_job(self, members: tuple[str, ...], state: RuleState) -> str:
            return members[0]

    with pytest.raises(ConfigurationError, match="owner_without_job must be a synchronous"):
        check_rule(AsyncJobless())

    class AsyncByMessage(Last):
        name = "async_by_message"

        async def message_owners(
            self, members: tuple[str, ...], message: int, count: int
        ) -> list[str]:
            return [members[0]] * count

    with pytest.raises(ConfigurationError, match="message_owners must be a synchronous"):
        check_rule(AsyncByMessage())
