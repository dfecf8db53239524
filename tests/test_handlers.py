"""Handler specs, the Handler wrapper, the Context and the middleware chain."""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs

from spreadq.codecs import UNTYPED
from spreadq.context import Context, StaticView
from spreadq.errors import ConfigurationError
from spreadq.handlers import Handler, HandlerSpec, check_kind, handler, raw_kind
from spreadq.middleware import (
    CallNext,
    build_chain,
    check_failure_hook,
    check_middleware,
    describe_callable,
)


class Resize(BaseModel):
    path: str
    width: int = 100


class Thumb(BaseModel):
    path: str


def make_ctx(kind: str = "resize", attempt: int = 1) -> Context:
    return Context(job="v1:0", kind=kind, queue="images", member="#w1#h", attempt=attempt)


def error_for(fn: Any, *args: Any, **kwargs: Any) -> str:
    """Build a spec that must fail; return the message, checked to name the function."""
    with pytest.raises(ConfigurationError) as info:
        HandlerSpec.build(fn, *args, **kwargs)
    message = str(info.value)
    line = fn.__code__.co_firstlineno
    assert f"handler {fn.__qualname__} (" in message
    assert re.search(rf"test_handlers\.py:{line}\)", message), message
    return message


# -- building specs -------------------------------------------------------------------


async def resize(job: Resize, ctx: Context) -> Thumb:
    """Make a thumbnail."""
    return Thumb(path=f"{job.path}@{ctx.attempt}")


async def ping(job: Resize) -> None:
    return None


def test_spec_resolves_string_annotations() -> None:
    spec = HandlerSpec.build(resize, "resize")
    assert spec.kind == "resize"
    assert spec.payload_type is Resize
    assert spec.result_type is Thumb
    assert spec.takes_context is True
    assert (spec.payload_codec, spec.result_codec) == ("json", "json")
    assert spec.raw_mess_type is None
    assert spec.payload_adapter.validate_json(b'{"path": "a"}') == Resize(path="a")
    assert spec.result_adapter.dump_json(Thumb(path="t")) == b'{"path":"t"}'
    assert spec.where.startswith("resize (")
    assert "test_handlers.py:" in spec.where


def test_spec_with_evaluated_annotations() -> None:
    async def direct(job, ctx):  # type: ignore[no-untyped-def]
        return job

    direct.__annotations__ = {"job": Resize, "ctx": Context, "return": Resize}
    spec = HandlerSpec.build(direct, "direct")
    assert (spec.payload_type, spec.result_type, spec.takes_context) == (Resize, Resize, True)


def test_spec_without_context_or_return_annotation() -> None:
    async def untyped_result(job: Resize):  # type: ignore[no-untyped-def]
        return {"any": "thing"}

    spec = HandlerSpec.build(untyped_result, "u")
    assert spec.takes_context is False
    assert spec.result_type is object
    assert spec.result_adapter is UNTYPED
    assert HandlerSpec.build(ping, "p").result_type is type(None)


@pytest.mark.parametrize("name", ["ctx", "context"])
def test_context_recognised_by_name(name: str) -> None:
    namespace: dict[str, object] = {"Resize": Resize}
    exec(f"async def fn(job: Resize, {name}): return None", namespace)
    fn = namespace["fn"]
    assert callable(fn)
    assert HandlerSpec.build(fn, "k").takes_context is True


def test_context_recognised_by_annotation_under_any_name() -> None:
    async def fn(job: Resize, c: Context) -> None:
        return None

    assert HandlerSpec.build(fn, "k").takes_context is True


def test_extra_parameters_with_defaults_are_allowed() -> None:
    async def fn(job: Resize, verbose: bool = False, *, dry: bool = False) -> None:
        return None

    spec = HandlerSpec.build(fn, "k")
    assert spec.takes_context is False


def test_wrapped_functions_resolve_the_original_annotations() -> None:
    def logged(fn: Callable[..., Awaitable[Thumb]]) -> Callable[..., Awaitable[Thumb]]:
        @functools.wraps(fn)
        async def wrapper(*args: object) -> Thumb:
            return await fn(*args)

        return wrapper

    spec = HandlerSpec.build(logged(resize), "resize")
    assert (spec.payload_type, spec.takes_context, spec.result_type) == (Resize, True, Thumb)


def test_bytes_travel_raw_and_others_use_the_codec_option() -> None:
    async def blob(data: bytes) -> Thumb:
        return Thumb(path="x")

    async def to_blob(job: Resize) -> bytes:
        return b""

    blob_spec = HandlerSpec.build(blob, "blob", codec="msgpack")
    assert (blob_spec.payload_codec, blob_spec.result_codec) == ("raw", "msgpack")
    to_blob_spec = HandlerSpec.build(to_blob, "to-blob")
    assert (to_blob_spec.payload_codec, to_blob_spec.result_codec) == ("json", "raw")


def test_raw_handlers() -> None:
    async def from_c(data: bytes, ctx: Context) -> None:
        return None

    spec = HandlerSpec.build(from_c, raw=0x1234)
    assert (spec.kind, spec.raw_mess_type, spec.payload_codec) == ("raw:4660", 0x1234, "raw")
    spec = HandlerSpec.build(from_c, "raw:-32768")
    assert (spec.kind, spec.raw_mess_type) == ("raw:-32768", -32768)
    assert raw_kind(-1) == "raw:-1"


def test_options_are_validated_and_stored() -> None:
    spec = HandlerSpec.build(ping, "p", max_attempts=5, timeout=2.5, retry_on=(OSError,))
    assert spec.options.max_attempts == 5
    assert spec.options.timeout == 2.5
    assert spec.options.retry_on == (OSError,)
    defaults = HandlerSpec.build(ping, "p").options
    assert (defaults.codec, defaults.max_attempts, defaults.timeout, defaults.retry_on) == (
        "json",
        None,
        None,
        (),
    )


def test_spec_is_frozen() -> None:
    spec = HandlerSpec.build(ping, "p")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.kind = "other"  # type: ignore[misc]


async def test_endpoint_passes_the_context_only_when_wanted() -> None:
    ctx = make_ctx(attempt=2)
    with_ctx = HandlerSpec.build(resize, "resize")
    assert await with_ctx.endpoint(ctx, Resize(path="a")) == Thumb(path="a@2")
    without = HandlerSpec.build(ping, "p")
    assert await without.endpoint(ctx, Resize(path="a")) is None


# -- registration errors name the function and its file:line --------------------------


def sync_generator(job: Resize) -> Iterator[int]:
    yield 1


async def no_annotation(job):  # type: ignore[no-untyped-def]
    return None


async def no_parameters() -> None:
    return None


async def context_first(ctx: Context, job: Resize) -> None:
    return None


async def ctx_of_wrong_type(job: Resize, ctx: int) -> None:
    return None


async def three_required(job: Resize, ctx: Context, extra: int) -> None:
    return None


async def second_is_not_context(job: Resize, other: int) -> None:
    return None


async def keyword_only(job: Resize, *, flag: bool) -> None:
    return None


async def unresolvable(job: NotDefinedAnywhere) -> None:  # type: ignore[name-defined]  # noqa: F821
    return None


class Opaque:
    """A class pydantic has no schema for."""


async def opaque_payload(job: Opaque) -> None:
    return None


async def opaque_result(job: Resize) -> Opaque:
    return Opaque()


async def text_payload(job: str) -> None:
    return None


async def agen(job: Resize) -> AsyncIterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "expected"),
    [
        (agen, ("k",), {}, "not a generator"),
        (sync_generator, ("k",), {}, "not a generator"),
        (no_annotation, ("k",), {}, "payload parameter 'job' has no type annotation"),
        (no_parameters, ("k",), {}, "takes no parameter"),
        (context_first, ("k",), {}, "the Context goes second"),
        (ctx_of_wrong_type, ("k",), {}, "'ctx' is annotated <class 'int'>, not Context"),
        (three_required, ("k",), {}, "parameter 'extra' has no default"),
        (second_is_not_context, ("k",), {}, "parameter 'other' has no default"),
        (keyword_only, ("k",), {}, "keyword-only parameter 'flag' needs a default"),
        (unresolvable, ("k",), {}, "cannot resolve its annotations .*NotDefinedAnywhere"),
        (opaque_payload, ("k",), {}, "pydantic cannot handle the payload type"),
        (opaque_result, ("k",), {}, "pydantic cannot handle the result type"),
        (ping, ("k",), {"retries": 3}, "invalid options: retries: Extra inputs"),
        (ping, ("k",), {"max_attempts": 0}, "invalid options: max_attempts"),
        (ping, ("k",), {"timeout": -1.0}, "invalid options: timeout"),
        (ping, ("k",), {"retry_on": (int,)}, "invalid options: retry_on"),
        (ping, ("k",), {"codec": "raw"}, "codec='raw' is implied by a bytes annotation"),
        (ping, ("",), {}, "must be 1 to 64 visible ASCII"),
        (ping, ("two words",), {}, "must be 1 to 64 visible ASCII"),
        (ping, ("k" * 65,), {}, "must be 1 to 64 visible ASCII"),
        (ping, ("größe",), {}, "must be 1 to 64 visible ASCII"),
        (ping, (), {}, "exactly one of a kind"),
        (ping, ("k",), {"raw": 1}, "exactly one of a kind"),
        (ping, (), {"raw": 1}, "a RAW handler .* takes bytes"),
        (text_payload, ("raw:5",), {}, "a RAW handler .* takes bytes"),
        (ping, (), {"raw": 40_000}, "signed 16-bit"),
        (ping, ("raw:x",), {}, "reserved for RAW jobs"),
        (ping, ("raw:007",), {}, "reserved for RAW jobs"),
        (ping, ("raw:40000",), {}, "reserved for RAW jobs"),
    ],
)
def test_registration_errors(
    fn: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object], expected: str
) -> None:
    assert re.search(expected, error_for(fn, *args, **kwargs))


def test_local_names_in_string_annotations_are_explained() -> None:
    class Local(BaseModel):
        x: int

    async def uses_local(job: Local) -> None:
        return None

    message = error_for(uses_local, "k")
    assert "name 'Local' is not defined" in message
    assert "importable from the function's module" in message


def test_check_kind() -> None:
    assert check_kind("images.resize/v2") == "images.resize/v2"
    assert check_kind("raw:0") == "raw:0"
    with pytest.raises(ConfigurationError):
        check_kind("raw:+1")
    with pytest.raises(ConfigurationError):
        check_kind(3)  # type: ignore[arg-type]


def test_describe_callable() -> None:
    assert describe_callable(ping).startswith("ping (")
    assert describe_callable(42) == "42"


# -- the Handler wrapper --------------------------------------------------------------


@handler("resize", max_attempts=2)
async def decorated(job: Resize, ctx: Context) -> Thumb:
    """Decorated docstring."""
    return Thumb(path=job.path + ctx.kind)


@handler("ping")
async def decorated_ping(job: Resize) -> int:
    return job.width


async def test_handler_is_callable_like_the_function() -> None:
    assert await decorated(Resize(path="p"), make_ctx(kind="K")) == Thumb(path="pK")
    assert await decorated_ping(Resize(path="p", width=7)) == 7
    with pytest.raises(TypeError):
        await decorated(Resize(path="p"))


def test_handler_keeps_the_function_identity() -> None:
    assert isinstance(decorated, Handler)
    assert decorated.kind == "resize"
    assert decorated.spec.options.max_attempts == 2
    assert decorated.__name__ == "decorated"
    assert decorated.__doc__ == "Decorated docstring."
    assert decorated.__wrapped__ is decorated.spec.fn
    assert "resize" in repr(decorated)


def test_a_handler_can_be_rebuilt_into_a_spec() -> None:
    spec = HandlerSpec.build(decorated, "again")
    assert spec.fn is decorated.spec.fn
    assert spec.kind == "again"


def test_handler_decorator_reports_errors_at_decoration() -> None:
    with pytest.raises(ConfigurationError, match="agen"):
        handler("k")(agen)


# -- Context -------------------------------------------------------------------------


def test_context_fields_and_defaults() -> None:
    ctx = make_ctx()
    assert (ctx.job, ctx.ref, ctx.kind, ctx.queue, ctx.member) == (
        "v1:0",
        "v1:0",
        "resize",
        "images",
        "#w1#h",
    )
    assert ctx.view == StaticView(("#w1#h",))
    assert (ctx.attempt, ctx.key, dict(ctx.headers)) == (1, None, {})
    assert ctx.cancelled is False
    assert "job=v1:0" in repr(ctx)


def test_context_is_read_only() -> None:
    ctx = make_ctx()
    with pytest.raises(AttributeError, match="read-only"):
        ctx.attempt = 2
    with pytest.raises(AttributeError, match="read-only"):
        del ctx.key
    with pytest.raises(ValueError, match="1-based"):
        make_ctx(attempt=0)


def test_context_log_is_bound_with_the_job() -> None:
    with capture_logs() as logs:
        ctx = Context(
            job="v7:3",
            kind="resize",
            queue="images",
            member="#w2#h",
            attempt=2,
            key="user-1",
            headers={"trace": "abc"},
            view=StaticView(("#w1#h", "#w2#h"), group_id=9),
        )
        ctx.log.info("resizing", width=3)
    assert logs == [
        {
            "queue": "images",
            "member": "#w2#h",
            "job": "v7:3",
            "kind": "resize",
            "attempt": 2,
            "width": 3,
            "event": "resizing",
            "log_level": "info",
        }
    ]
    assert ctx.view.members == ("#w1#h", "#w2#h")
    assert ctx.headers["trace"] == "abc"
    assert ctx.log is ctx.log  # bound once, on first use


async def test_context_reports_cancellation_of_its_scope() -> None:
    scope = anyio.CancelScope()
    ctx = Context(job=1, kind="k", queue="q", member="m", cancel_scope=scope)
    seen: list[bool] = []
    with scope:
        seen.append(ctx.cancelled)
        scope.cancel()
        seen.append(ctx.cancelled)
        await anyio.lowlevel.checkpoint()  # the cancellation takes effect here
        seen.append(True)  # pragma: no cover - never reached
    assert seen == [False, True]


# -- middleware ----------------------------------------------------------------------


def recorder(
    name: str, events: list[str]
) -> Callable[[Context, object, CallNext], Awaitable[object]]:
    async def layer(ctx: Context, payload: object, call_next: CallNext) -> object:
        events.append(f"{name}:before")
        result = await call_next(ctx, payload)
        events.append(f"{name}:after")
        return result

    return layer


async def test_chain_runs_first_middleware_outermost() -> None:
    events: list[str] = []

    async def endpoint(ctx: Context, payload: object) -> object:
        events.append(f"handler:{payload}")
        return "done"

    middleware = [recorder("a", events), recorder("b", events)]
    chain = build_chain(middleware, endpoint)
    middleware.clear()  # the chain was fixed when it was built
    assert await chain(make_ctx(), "p") == "done"
    assert events == ["a:before", "b:before", "handler:p", "b:after", "a:after"]


async def test_middleware_can_change_payload_result_or_short_circuit() -> None:
    spec = HandlerSpec.build(decorated_ping, "ping")

    async def bigger(ctx: Context, payload: object, call_next: CallNext) -> object:
        assert isinstance(payload, Resize)
        result = await call_next(ctx, payload.model_copy(update={"width": payload.width * 10}))
        assert isinstance(result, int)
        return result + 1

    async def cached(ctx: Context, payload: object, call_next: CallNext) -> object:
        return -1

    assert await build_chain([bigger], spec.endpoint)(make_ctx(), Resize(path="x", width=4)) == 41
    assert await build_chain([cached, bigger], spec.endpoint)(make_ctx(), Resize(path="x")) == -1
    assert await build_chain([], spec.endpoint)(make_ctx(), Resize(path="x", width=2)) == 2


async def test_middleware_sees_handler_errors() -> None:
    seen: list[BaseException] = []

    async def failing(ctx: Context, payload: object) -> object:
        raise KeyError("boom")

    async def on_error(ctx: Context, payload: object, call_next: CallNext) -> object:
        try:
            return await call_next(ctx, payload)
        except KeyError as error:
            seen.append(error)
            raise

    with pytest.raises(KeyError):
        await build_chain([on_error], failing)(make_ctx(), None)
    assert len(seen) == 1


class ClassMiddleware:
    async def __call__(self, ctx: Context, payload: object, call_next: CallNext) -> object:
        return await call_next(ctx, payload)


class SyncClassMiddleware:
    def __call__(self, ctx: Context, payload: object, call_next: CallNext) -> object:
        return None


def sync_middleware(ctx: Context, payload: object, call_next: CallNext) -> object:
    return None


async def two_args(ctx: Context, payload: object) -> object:
    return None


async def hook(ctx: Context, error: BaseException) -> None:
    return None


def test_check_middleware_accepts_async_callables() -> None:
    instance = ClassMiddleware()
    assert check_middleware(instance) is instance
    layer = recorder("x", [])
    assert check_middleware(layer) is layer


@pytest.mark.parametrize(
    ("candidate", "expected"),
    [
        (42, "is not callable"),
        (sync_middleware, r"sync_middleware \(.*test_handlers\.py:\d+\) must be an async"),
        (SyncClassMiddleware(), "must be an async function"),
        (two_args, r"two_args \(.*\) must accept \(ctx, payload, call_next\)"),
    ],
)
def test_check_middleware_refuses(candidate: object, expected: str) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        check_middleware(candidate)


def test_check_failure_hook() -> None:
    assert check_failure_hook(hook) is hook
    with pytest.raises(ConfigurationError, match=r"on_failure hook sync_middleware .* async"):
        check_failure_hook(sync_middleware)
    with pytest.raises(ConfigurationError, match=r"must accept \(ctx, error\)"):
        check_failure_hook(three_required)


@pytest.mark.parametrize(
    ("candidate", "kind"),
    [(functools.partial(ping), "partial"), (42, "int"), (Resize, "ModelMetaclass")],
)
def test_a_handler_that_is_no_function_is_refused_clearly(candidate: object, kind: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        HandlerSpec.build(candidate, "k")  # type: ignore[call-overload]
    assert (
        f"a handler must be a function (async def, or def to run it in a thread), not {kind}"
        in (str(info.value))
    )


async def test_a_sync_spec_is_blocking_and_its_endpoint_runs_in_a_thread() -> None:
    loop_thread = threading.get_ident()

    def where(job: Resize, ctx: Context) -> bool:
        return threading.get_ident() != loop_thread

    spec = HandlerSpec.build(where, "where")
    assert spec.blocking
    assert not HandlerSpec.build(ping, "p").blocking
    assert await spec.endpoint(make_ctx(), Resize(path="a")) is True
