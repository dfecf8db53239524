"""App registration: names, handlers, rules, codecs, middleware, plugins, freezing."""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, TypeVar

import pytest
from pydantic import BaseModel, Field, TypeAdapter

from spreadq.codecs import JsonCodec
from spreadq.context import Context
from spreadq.errors import ConfigurationError, PayloadError, PluginError
from spreadq.handlers import Handler, HandlerSpec, handler
from spreadq.middleware import CallNext
from spreadq.plugins import Plugin
from spreadq.queue.jobs import Job
from spreadq.queue.protocol import MAX_QUEUE_NAME, queue_groups
from spreadq.queue.rules import RuleState
from spreadq.settings import Settings
from spreadq.worker.app import App

T = TypeVar("T")


class Resize(BaseModel):
    path: str
    width: int = 100


class Thumb(BaseModel):
    path: str


def make_app(**kwargs: object) -> App:
    return App("images", plugins=kwargs.pop("plugins", False), **kwargs)  # type: ignore[arg-type]


def ctx_for(kind: str, job: object = "v1:0") -> Context:
    return Context(job=job, kind=kind, queue="images", member="#w1#h")


# -- names ---------------------------------------------------------------------------


@pytest.mark.parametrize("queue", ["q", "images", "$", "a-b.c_d:e", "x" * MAX_QUEUE_NAME])
def test_valid_queue_names(queue: str) -> None:
    app = make_app() if queue == "images" else App(queue, plugins=False)
    assert (app.queue, app.work_group, app.feedback_group) == (queue, queue, f"{queue}~fb")
    assert queue_groups(queue) == (queue, f"{queue}~fb")
    assert len(app.feedback_group) <= 31


@pytest.mark.parametrize(
    ("queue", "expected"),
    [
        ("", "1 to 28 bytes"),
        ("x" * 29, "1 to 28 bytes"),
        ("a~b", "'~' is reserved"),
        ("q~fb", "'~' is reserved"),
        ("#q", "private group"),
        ("two words", r"'\$' \(0x24\) to '~'"),
        ("a!b", r"'\$' \(0x24\) to '~'"),
        ("größe", "ASCII"),
        (7, "a queue name is a str"),
    ],
)
def test_invalid_queue_names(queue: str, expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        App(queue, plugins=False)
    with pytest.raises(ConfigurationError, match=expected):
        queue_groups(queue)


def test_worker_name_is_a_valid_private_name() -> None:
    assert make_app(name="w1").name == "w1"
    with pytest.raises(ConfigurationError, match="invalid worker name 'much-too-long'"):
        make_app(name="much-too-long")
    with pytest.raises(ConfigurationError, match="invalid worker name 'a#b'"):
        make_app(name="a#b")


def test_identity_and_defaults() -> None:
    app = make_app(spread="4803@localhost")
    assert app.spread == "4803@localhost"
    assert app.name is None
    assert app.settings == Settings()
    assert app.rule.name == "round_robin"
    assert set(app.rules) == {"round_robin", "key_affinity", "least_loaded", "sticky", "fill_first"}
    assert sorted(app.codecs) == ["json", "raw"]
    assert app.plugins == ()
    assert app.frozen is False
    settings = Settings(concurrency=2)
    assert make_app(settings=settings).settings is settings


# -- handlers ------------------------------------------------------------------------


def test_handler_decorator_registers_and_returns_a_handler() -> None:
    app = make_app()

    @app.handler("resize", max_attempts=5)
    async def resize(job: Resize, ctx: Context) -> Thumb:
        return Thumb(path=job.path)

    assert isinstance(resize, Handler)
    assert app.handlers["resize"] is resize.spec
    assert app.handlers["resize"].options.max_attempts == 5
    with pytest.raises(TypeError):
        app.handlers["other"] = resize.spec  # type: ignore[index]


async def thumb_a(job: Resize) -> None:
    return None


async def thumb_b(job: Resize) -> None:
    return None


def test_duplicate_kinds_name_both_functions() -> None:
    app = make_app()
    app.handler("thumb")(thumb_a)
    with pytest.raises(ConfigurationError) as info:
        app.handler("thumb")(thumb_b)
    message = str(info.value)
    assert "handler kind 'thumb' is registered twice" in message
    assert re.search(r"thumb_a \(.*test_app_registration\.py:\d+\) and thumb_b \(", message)


def test_registration_errors_surface_from_the_decorator() -> None:
    app = make_app()
    with pytest.raises(ConfigurationError, match=r"handler thumb_a \(.*\): invalid options"):
        app.handler("k", retries=2)(thumb_a)  # type: ignore[call-arg]
    assert not app.handlers


def test_handlers_given_to_the_constructor() -> None:
    spec = HandlerSpec.build(thumb_a, "a")

    @handler("b")
    async def b(job: Resize) -> None:
        return None

    app = make_app(handlers=[spec, b])
    assert app.handlers["a"] is spec
    assert app.handlers["b"] is b.spec
    with pytest.raises(ConfigurationError, match="registered twice"):
        make_app(handlers=[spec, HandlerSpec.build(thumb_b, "a")])


def test_unknown_codec_is_refused_at_registration() -> None:
    app = make_app()
    with pytest.raises(
        ConfigurationError,
        match=r"handler thumb_a \(.*\): unknown codec 'cbor' \(known: json, raw\)",
    ):
        app.handler("k", codec="cbor")(thumb_a)


class Upper:
    """A toy codec."""

    name = "upper"

    def encode(self, value: T, adapter: TypeAdapter[T]) -> bytes:
        return adapter.dump_json(value).upper()

    def decode(self, data: bytes, adapter: TypeAdapter[T]) -> T:
        return adapter.validate_json(data.lower())


def test_app_codecs_extend_the_builtins() -> None:
    app = make_app(codecs=[Upper()])
    assert sorted(app.codecs) == ["json", "raw", "upper"]
    app.handler("k", codec="upper")(thumb_a)
    assert app.handlers["k"].payload_codec == "upper"
    with pytest.raises(ConfigurationError, match="two codecs are named 'json'"):
        make_app(codecs=[Upper(), type("J", (Upper,), {"name": "json"})()])


def test_raw_handlers_register_under_their_canonical_kind() -> None:
    app = make_app()

    @app.handler(raw=0x1234)
    async def from_c(data: bytes) -> None:
        return None

    assert "raw:4660" in app.handlers
    with pytest.raises(ConfigurationError, match="registered twice"):
        app.handler("raw:4660")(from_c)


# -- rules ---------------------------------------------------------------------------


class Last:
    def __init__(self, name: str = "last") -> None:
        self.name = name

    def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
        return members[-1]


def test_rule_selection() -> None:
    assert make_app(rule="key_affinity").rule.name == "key_affinity"
    assert make_app(rule="sticky").rule.name == "sticky"
    app = make_app(rule="least_loaded")
    assert app.rule is app.rules["least_loaded"]
    with pytest.raises(
        ConfigurationError,
        match=(
            r"unknown rule 'fastest' "
            r"\(known: fill_first, key_affinity, least_loaded, round_robin, sticky\)"
        ),
    ):
        make_app(rule="fastest")


def test_rule_objects_and_plugin_rules() -> None:
    last = Last()
    app = make_app(rule=last)
    assert app.rule is last
    assert app.rules["last"] is last
    with pytest.raises(ConfigurationError, match="like a built-in or plugin rule"):
        make_app(rule=Last("round_robin"))
    with pytest.raises(ConfigurationError, match="needs a name"):
        make_app(rule=object())
    plugin_rule = Last("plugin_last")
    app = make_app(rule="plugin_last", plugins=[Plugin(name="p", rules=(plugin_rule,))])
    assert app.rule is plugin_rule


# -- middleware, hooks and freezing --------------------------------------------------


def tracer(name: str, events: list[str]) -> object:
    async def layer(ctx: Context, payload: object, call_next: CallNext) -> object:
        events.append(name)
        return await call_next(ctx, payload)

    layer.__qualname__ = name
    return layer


async def test_prepared_chain_runs_plugin_then_app_middleware() -> None:
    events: list[str] = []
    plugin = Plugin(name="traced", middleware=(tracer("plugin", events),))  # type: ignore[arg-type]
    app = make_app(plugins=[plugin], middleware=[tracer("given", events)])

    @app.middleware
    async def added(ctx: Context, payload: object, call_next: CallNext) -> object:
        events.append("added")
        return await call_next(ctx, payload)

    @app.handler("resize")
    async def resize(job: Resize, ctx: Context) -> Thumb:
        events.append(f"handler:{ctx.kind}")
        return Thumb(path=job.path.upper())

    assert len(app.middleware_stack) == 3
    assert app.prepared == {}
    app.freeze()
    prepared = app.prepared["resize"]
    result = await prepared.run(ctx_for("resize"), memoryview(b'{"path": "a.png"}'))
    assert result == b'{"path":"A.PNG"}'
    assert events == ["plugin", "given", "added", "handler:resize"]


async def test_prepared_handler_decodes_with_the_envelope_codec() -> None:
    app = make_app(codecs=[Upper()])

    @app.handler("resize")
    async def resize(job: Resize) -> int:
        return job.width

    app.freeze()
    prepared = app.prepared["resize"]
    assert (
        await prepared.run(ctx_for("resize"), b'{"PATH": "X", "WIDTH": 3}', codec="upper") == b"3"
    )
    with pytest.raises(PayloadError, match=r"resize: unknown codec 'cbor' \(job v1:0\)"):
        prepared.decode_payload(b"", codec="cbor", job="v1:0")


async def test_a_raw_bytes_payload_is_handed_over_as_delivered_and_constraints_still_hold() -> None:
    app = make_app()

    @app.handler("blob")
    async def blob(data: bytes) -> None:
        return None

    @app.handler("short")
    async def short(data: Annotated[bytes, Field(max_length=3)]) -> None:
        return None

    @app.handler("count")
    async def count(n: Annotated[int, Field(ge=0)]) -> None:
        return None

    app.freeze()
    assert app.prepared["count"].decode_payload(b"3") == 3
    with pytest.raises(PayloadError, match="count: json:"):  # the constraint holds too
        app.prepared["count"].decode_payload(b"-1", job="j2")
    assert app.prepared["short"].spec.payload_codec == "raw"  # chosen by the bare type
    delivered = memoryview(b"..payload..")[2:9]
    assert app.prepared["blob"].decode_payload(delivered) == b"payload"
    assert app.prepared["blob"].decode_payload(b"abc", codec="raw") == b"abc"
    with pytest.raises(PayloadError, match="unknown codec 'cbor'"):
        app.prepared["blob"].decode_payload(b"abc", codec="cbor")
    assert app.prepared["short"].decode_payload(b"abc") == b"abc"
    with pytest.raises(PayloadError, match="short: raw:"):
        app.prepared["short"].decode_payload(b"abcd", job="j1")


async def test_prepared_handler_payload_errors_name_the_job() -> None:
    app = make_app()
    app.handler("resize")(thumb_a)
    app.freeze()
    prepared = app.prepared["resize"]
    with pytest.raises(
        PayloadError, match=r"resize: json: payload is not a valid Resize.*\(job j9\)"
    ) as info:
        await prepared.run(ctx_for("resize", job="j9"), b'{"width": 1}')
    assert info.value.job == "j9"
    with pytest.raises(PayloadError, match="json: payload is not a valid Resize"):
        prepared.decode_payload(b"{}")


async def test_prepared_handler_result_errors() -> None:
    app = make_app()

    @app.handler("bad")
    async def bad(job: Resize) -> int:
        return "not an int"  # type: ignore[return-value]

    app.freeze()
    with pytest.raises(
        PayloadError, match=r"(?s)bad: result: json: cannot encode str.*\(job v1:0\)"
    ):
        await app.prepared["bad"].run(ctx_for("bad"), b'{"path": "p"}')


async def test_raw_handler_gets_the_bytes() -> None:
    app = make_app()

    @app.handler(raw=1)
    async def from_c(data: bytes) -> bytes:
        return data[::-1]

    app.freeze()
    assert await app.prepared["raw:1"].run(ctx_for("raw:1"), b"abc", codec="raw") == b"cba"


async def hook(ctx: Context, error: BaseException) -> None:
    return None


def test_on_failure_hooks() -> None:
    app = make_app()
    assert app.on_failure(hook) is hook
    assert app.failure_hooks == (hook,)
    with pytest.raises(ConfigurationError, match=r"on_failure hook thumb_a .* must accept"):
        app.on_failure(thumb_a)  # type: ignore[type-var]


def test_middleware_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="must accept \\(ctx, payload, call_next\\)"):
        make_app().middleware(hook)  # type: ignore[type-var]


def test_freeze_closes_registration() -> None:
    app = make_app()
    app.handler("a")(thumb_a)
    app.freeze()
    app.freeze()  # idempotent
    assert app.frozen
    assert set(app.prepared) == {"a"}
    closed = "the app for 'images' has started"
    with pytest.raises(ConfigurationError, match=f"cannot register a handler for 'b': {closed}"):
        app.handler("b")
    with pytest.raises(ConfigurationError, match=f"cannot register a handler for 'b': {closed}"):
        app.add_handler(HandlerSpec.build(thumb_b, "b"))
    with pytest.raises(ConfigurationError, match=f"cannot add middleware: {closed}"):
        app.middleware(tracer("late", []))  # type: ignore[type-var]
    with pytest.raises(ConfigurationError, match=f"cannot add an on_failure hook: {closed}"):
        app.on_failure(hook)
    assert "frozen" in repr(app)


def test_spec_freezes_the_app_and_carries_what_a_worker_runs() -> None:
    app = App("images", plugins=False, rule="key_affinity", name="w1")
    app.handler("a")(thumb_a)
    app.on_failure(hook)
    spec = app.spec()
    assert app.frozen
    assert (spec.queue, spec.work_group, spec.feedback_group, spec.name) == (
        "images",
        "images",
        "images~fb",
        "w1",
    )
    assert spec.handlers == app.prepared
    assert spec.rule is app.rule
    assert spec.ordered_keys  # key_affinity declares it
    assert spec.failure_hooks == (hook,)
    assert not make_app(handlers=[HandlerSpec.build(thumb_a, "a")]).spec().ordered_keys
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.queue = "other"  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match="no handlers"):
        make_app().spec()


def test_freeze_without_handlers_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no handlers"):
        make_app().freeze()


async def test_stop_is_a_no_op_until_run_and_run_needs_a_handler() -> None:
    app = make_app()
    app.stop()  # not running: nothing to stop
    with pytest.raises(ConfigurationError, match="no handlers"):
        await app.run(handle_signals=False)


# -- plugins -------------------------------------------------------------------------


async def ping(job: Resize) -> int:
    return job.width


def test_plugin_contributions_are_registered() -> None:
    plugin = Plugin(name="extras", codecs=(Upper(),), handlers=(HandlerSpec.build(ping, "ping"),))
    app = make_app(plugins=[plugin])
    assert [loaded.name for loaded in app.plugins] == ["extras"]
    assert app.plugins[0].entry_point == "(given)"
    assert "upper" in app.codecs
    assert "ping" in app.handlers
    with pytest.raises(ConfigurationError, match="registered twice"):
        app.handler("ping")(thumb_a)
    with pytest.raises(ConfigurationError, match="two codecs are named 'upper'"):
        make_app(plugins=[plugin], codecs=[Upper()])


def test_plugin_sets_are_checked() -> None:
    first = Plugin(name="one", codecs=(Upper(),))
    second = Plugin(name="two", codecs=(Upper(),))
    with pytest.raises(PluginError, match="codec 'upper' is already provided by plugin 'one'"):
        make_app(plugins=[second, first])
    with pytest.raises(PluginError, match=r"plugin 'one': plugin 'one' is already provided"):
        make_app(plugins=[first, first])


def test_named_plugins_must_be_installed() -> None:
    with pytest.raises(PluginError, match="plugin 'surely-not-installed': not installed"):
        make_app(plugins=["surely-not-installed"])


class CountingJson:
    """The json codec, counting its encodes (a codec of one's own is never cached)."""

    name = "json"

    def __init__(self) -> None:
        self.encodes = 0
        self._json = JsonCodec()

    def encode(self, value: T, adapter: TypeAdapter[T]) -> bytes:
        self.encodes += 1
        return self._json.encode(value, adapter)

    def decode(self, data: bytes, adapter: TypeAdapter[T]) -> T:
        return self._json.decode(data, adapter)


def test_a_none_result_is_encoded_once_by_the_json_codec_and_every_time_by_others() -> None:
    app = App("images", plugins=False)

    @app.handler("nothing")
    async def nothing(data: int) -> None:
        return None

    @app.handler("number")
    async def number(data: int) -> int | None:
        return data

    prepared = app.spec().handlers
    first = prepared["nothing"].encode_result(None)
    assert first == b"null"
    assert prepared["nothing"].encode_result(None) is first  # kept, not encoded again
    assert prepared["number"].encode_result(7) == b"7"
    assert prepared["number"].encode_result(None) == b"null"
    counting = CountingJson()
    own = dataclasses.replace(prepared["nothing"], result_codec=counting)
    assert own.encode_result(None) == own.encode_result(None) == b"null"
    assert counting.encodes == 2
