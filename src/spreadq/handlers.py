"""Handlers: a function plus what spreadq needs to run it, resolved once.

Theory of operation. :meth:`HandlerSpec.build` inspects a function when it is
registered, not when a job arrives: it tells ``async def`` from plain ``def``, resolves its
annotations (string annotations and ``from __future__ import annotations`` included,
against the function's own module), builds one pydantic ``TypeAdapter`` for the payload
and one for the result, picks their codecs and validates the options. Every problem is a
:class:`~spreadq.errors.ConfigurationError` naming the function and its ``file:line``.
The result is a frozen :class:`HandlerSpec`; ``@app.handler`` and :func:`handler` are
sugar that build one and wrap the function in a :class:`Handler`.

The function's shape::

    async def resize(job: ResizeJob, ctx: Context) -> Thumbnail: ...
    async def ping(job: Ping) -> None: ...          # no context
    def checksum(job: bytes, ctx: Context) -> str: ...   # sync: runs in a thread

* The first parameter is the payload; its annotation is required and is the type the
  payload is decoded to (any type pydantic can validate: a model, a dataclass,
  ``dict[str, int]``, ``bytes`` ...).
* An optional second parameter receives the :class:`~spreadq.context.Context`; it is
  recognised by its annotation (``Context``) or its name (``ctx`` or ``context``).
* The return annotation is the result type (a missing one means "any value pydantic can
  serialise"); ``-> None`` is fine.

Sync handlers. A plain ``def`` handler is *blocking*: the worker runs it in a worker
thread (:class:`~spreadq.threads.SyncThreads`, ``Settings.sync_threads`` of them at
most), with the same codecs, retries, timeouts, middleware (still async, around the
thread) and :class:`~spreadq.context.Context`. A thread cannot be cancelled: when its
attempt times out or the job is cancelled, the attempt ends at once and the thread is
abandoned, runs on until it returns and keeps its slot till then (see
:mod:`spreadq.threads`).

Codecs. A value whose type is ``bytes`` travels as it is (the ``raw`` codec). Every
other payload and result uses the ``codec`` option, ``"json"`` by default.

RAW jobs. A message on a queue's WORK group that is not a spreadq envelope (sent by a
C, Java or Perl program with plain Spread) is a RAW job, routed by its Spread
``mess_type`` (a signed 16-bit number). A handler registers for one with
``@app.handler(raw=0x1234)``; its kind is then the canonical string ``"raw:4660"``
(:func:`raw_kind`), which may also be given directly as the kind, and its payload type
must be ``bytes``. Kinds starting with ``raw:`` are reserved for this.

Kinds (other than ``raw:``) are 1..64 visible ASCII characters (``!`` to ``~``).
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypedDict, TypeVar, Unpack, overload

from pydantic import BaseModel, ConfigDict, Field, PydanticUserError, TypeAdapter, ValidationError

from spreadq.codecs import UNTYPED
from spreadq.context import Context
from spreadq.errors import ConfigurationError
from spreadq.middleware import CallNext, describe_callable
from spreadq.threads import SyncThreads

__all__ = [
    "MAX_KIND",
    "RAW_PREFIX",
    "AnyHandlerSpec",
    "Handler",
    "HandlerDecorator",
    "HandlerOptionArgs",
    "HandlerOptions",
    "HandlerSpec",
    "check_kind",
    "handler",
    "raw_kind",
]

PayloadT = TypeVar("PayloadT")
ResultT = TypeVar("ResultT")

MAX_KIND: Final = 64
"""The longest handler kind, in characters."""
RAW_PREFIX: Final = "raw:"
"""The reserved prefix of RAW-job kinds: ``raw:<mess_type>``."""
MESS_TYPE_RANGE: Final = range(-32768, 32768)
_KIND = re.compile(rf"[!-~]{{1,{MAX_KIND}}}")
_CONTEXT_NAMES: Final = frozenset({"ctx", "context"})
_POSITIONAL: Final = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class HandlerOptionArgs(TypedDict, total=False):
    """The keyword options ``@app.handler(...)`` accepts (see :class:`HandlerOptions`)."""

    codec: str
    max_attempts: int
    timeout: float
    retry_on: tuple[type[Exception], ...]


class HandlerOptions(BaseModel):
    """Per-handler options; each unset one falls back to the app's settings.

    Attributes:
        codec: the codec of payloads and results that are not ``bytes`` (``"json"``).
        max_attempts: overrides ``Settings.max_attempts`` for this handler.
        timeout: seconds an attempt may run before it is cancelled and counts as failed.
        retry_on: only these exception types are retried; empty means every
            ``Exception`` is (``Retry`` always is). Use ``max_attempts=1`` for none.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    codec: str = "json"
    max_attempts: int | None = Field(default=None, ge=1, le=1_000)
    timeout: float | None = Field(default=None, gt=0.0)
    retry_on: tuple[type[Exception], ...] = ()


def raw_kind(mess_type: int) -> str:
    """Return the kind of RAW jobs with this Spread ``mess_type``: ``raw:4660`` for 0x1234.

    Raises:
        ConfigurationError: ``mess_type`` is not a signed 16-bit number.
    """
    if isinstance(mess_type, bool) or not isinstance(mess_type, int):
        raise ConfigurationError(f"a raw mess_type is an int, got {mess_type!r}")
    if mess_type not in MESS_TYPE_RANGE:
        raise ConfigurationError(
            f"a raw mess_type is a signed 16-bit number (-32768..32767), got {mess_type}"
        )
    return f"{RAW_PREFIX}{mess_type}"


def check_kind(kind: str) -> str:
    """Return ``kind`` if it can name a handler.

    Raises:
        ConfigurationError: not 1..64 visible ASCII characters, or a ``raw:`` kind that
            is not ``raw:<mess_type>`` in canonical decimal.
    """
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ConfigurationError(
            f"handler kind {kind!r} must be 1 to {MAX_KIND} visible ASCII characters "
            "('!' to '~', no spaces)"
        )
    if kind.startswith(RAW_PREFIX):
        number = kind.removeprefix(RAW_PREFIX)
        try:
            canonical = raw_kind(int(number))
        except ValueError:
            canonical = None
        if canonical != kind:
            raise ConfigurationError(
                f"handler kind {kind!r}: kinds starting with {RAW_PREFIX!r} are reserved for "
                "RAW jobs and read 'raw:<mess_type>' with mess_type in -32768..32767"
            )
    return kind


@dataclass(frozen=True, slots=True, eq=False)
class HandlerSpec(Generic[PayloadT, ResultT]):
    """A handler, declared: its kind, function, resolved types, adapters, codecs, options.

    Build one with :meth:`build`; ``App(handlers=[...])`` and ``Plugin(handlers=...)``
    take these, and ``@app.handler`` builds them for you.

    Attributes:
        kind: the kind jobs are put for (``"raw:<mess_type>"`` for RAW jobs).
        fn: the function (``async def``, or a plain ``def`` when ``blocking``).
        where: ``qualname (file:line)`` of the function, for messages.
        payload_type: the resolved annotation of the payload parameter (with any
            ``Annotated`` metadata, such as pydantic ``Field`` constraints).
        result_type: the resolved return annotation (``object`` when there is none).
        takes_context: whether ``fn`` takes a :class:`Context` second.
        payload_adapter: the ``TypeAdapter`` payloads are decoded with.
        result_adapter: the ``TypeAdapter`` results are encoded with.
        payload_codec: the codec name for payloads (``raw`` for ``bytes``).
        result_codec: the codec name for results (``raw`` for ``bytes``).
        raw_mess_type: the Spread mess_type for a RAW handler, else None.
        options: validated :class:`HandlerOptions`.
        endpoint: ``await spec.endpoint(ctx, payload)`` calls ``fn`` with or without
            the context, as it wants; the innermost link of the middleware chain. A
            worker builds its chains on :meth:`bind` instead.
        blocking: ``fn`` is a plain ``def``, run in a worker thread.
    """

    kind: str
    fn: Callable[..., Any] = field(repr=False)
    where: str
    payload_type: object
    result_type: object
    takes_context: bool
    payload_adapter: TypeAdapter[PayloadT] = field(repr=False)
    result_adapter: TypeAdapter[ResultT] = field(repr=False)
    payload_codec: str
    result_codec: str
    raw_mess_type: int | None
    options: HandlerOptions
    endpoint: CallNext = field(repr=False)
    blocking: bool = False

    @overload
    @classmethod
    def build(
        cls,
        fn: Callable[[PayloadT, Context], Awaitable[ResultT]],
        kind: str | None = None,
        /,
        *,
        raw: int | None = None,
        **options: Unpack[HandlerOptionArgs],
    ) -> HandlerSpec[PayloadT, ResultT]: ...

    @overload
    @classmethod
    def build(
        cls,
        fn: Callable[[PayloadT], Awaitable[ResultT]],
        kind: str | None = None,
        /,
        *,
        raw: int | None = None,
        **options: Unpack[HandlerOptionArgs],
    ) -> HandlerSpec[PayloadT, ResultT]: ...

    @overload
    @classmethod
    def build(
        cls,
        fn: Callable[[PayloadT, Context], ResultT],
        kind: str | None = None,
        /,
        *,
        raw: int | None = None,
        **options: Unpack[HandlerOptionArgs],
    ) -> HandlerSpec[PayloadT, ResultT]: ...

    @overload
    @classmethod
    def build(
        cls,
        fn: Callable[[PayloadT], ResultT],
        kind: str | None = None,
        /,
        *,
        raw: int | None = None,
        **options: Unpack[HandlerOptionArgs],
    ) -> HandlerSpec[PayloadT, ResultT]: ...

    @classmethod
    def build(
        cls,
        fn: Callable[..., Any],
        kind: str | None = None,
        /,
        *,
        raw: int | None = None,
        **options: Unpack[HandlerOptionArgs],
    ) -> HandlerSpec[Any, Any]:
        """Inspect ``fn`` and return its spec. Give exactly one of ``kind`` and ``raw``.

        Args:
            fn: an ``async def`` or plain ``def`` function ``(payload[, ctx]) -> result``
                (a plain one runs in a worker thread).
            kind: the kind jobs are put for.
            raw: instead of ``kind``: the Spread mess_type of RAW jobs to handle.
            options: see :class:`HandlerOptions`.

        Raises:
            ConfigurationError: ``fn`` is not a function, or is a generator; its
                payload parameter is missing or
                unannotated; an annotation cannot be resolved or has no pydantic schema;
                an extra parameter has no default; the kind is invalid or both/neither
                of ``kind`` and ``raw`` were given; a RAW handler's payload is not
                ``bytes``; an option is unknown or out of range. The message names the
                function and its ``file:line``.
        """
        if isinstance(fn, Handler):
            fn = fn.spec.fn
        where = describe_callable(fn)

        def fail(problem: str) -> ConfigurationError:
            return ConfigurationError(f"handler {where}: {problem}")

        target = inspect.unwrap(fn)
        if not (inspect.isfunction(target) or inspect.ismethod(target)):
            raise fail(
                f"a handler must be a function (async def, or def to run it in a thread), "
                f"not {type(target).__name__}"
            )
        if inspect.isasyncgenfunction(target) or inspect.isgeneratorfunction(target):
            raise fail(
                "a handler must be a function that returns its result (async def or def), "
                "not a generator"
            )
        blocking = not inspect.iscoroutinefunction(target)
        resolved_kind, raw_mess_type = _resolve_kind(kind, raw, fail)
        try:
            validated = HandlerOptions.model_validate(options)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in problem['loc'])}: {problem['msg']}"
                for problem in error.errors(include_url=False)
            )
            raise fail(f"invalid options: {problems}") from None
        if validated.codec == "raw":
            raise fail(
                "codec='raw' is implied by a bytes annotation; name the codec for other types"
            )

        payload_type, takes_context, result_type = _resolve_signature(target, fail)
        if raw_mess_type is not None and _bare(payload_type) is not bytes:
            raise fail(f"a RAW handler ({resolved_kind}) takes bytes, not {payload_type!r}")
        payload_adapter = _adapter(payload_type, "payload", fail)
        result_adapter: TypeAdapter[Any] = (
            UNTYPED if result_type is object else _adapter(result_type, "result", fail)
        )

        call: Callable[..., Awaitable[object]] = fn
        endpoint: CallNext
        if blocking:
            endpoint = _threaded(fn, takes_context, _DEFAULT_THREADS)
        elif takes_context:

            def endpoint(ctx: Context, payload: object) -> Awaitable[object]:
                return call(payload, ctx)
        else:

            def endpoint(ctx: Context, payload: object) -> Awaitable[object]:
                return call(payload)

        return cls(
            kind=resolved_kind,
            fn=fn,
            where=where,
            payload_type=payload_type,
            result_type=result_type,
            takes_context=takes_context,
            payload_adapter=payload_adapter,
            result_adapter=result_adapter,
            payload_codec="raw" if _bare(payload_type) is bytes else validated.codec,
            result_codec="raw" if _bare(result_type) is bytes else validated.codec,
            raw_mess_type=raw_mess_type,
            options=validated,
            endpoint=endpoint,
            blocking=blocking,
        )

    def bind(self, threads: SyncThreads) -> CallNext:
        """The endpoint a worker chains: :attr:`endpoint`, or for a blocking handler one
        that runs ``fn`` in ``threads``."""
        if not self.blocking:
            return self.endpoint
        return _threaded(self.fn, self.takes_context, threads)


_DEFAULT_THREADS: Final = SyncThreads()
"""The threads of :attr:`HandlerSpec.endpoint` for blocking handlers called outside a
worker (a worker chains :meth:`HandlerSpec.bind` with its own)."""


def _threaded(call: Callable[..., Any], takes_context: bool, threads: SyncThreads) -> CallNext:
    if takes_context:

        def endpoint(ctx: Context, payload: object) -> Awaitable[object]:
            return threads.call(call, payload, ctx)
    else:

        def endpoint(ctx: Context, payload: object) -> Awaitable[object]:
            return threads.call(call, payload)

    return endpoint


AnyHandlerSpec = HandlerSpec[Any, Any]
"""A spec of any payload and result types, as collections of handlers hold them."""


def _resolve_kind(
    kind: str | None, raw: int | None, fail: Callable[[str], ConfigurationError]
) -> tuple[str, int | None]:
    if (kind is None) == (raw is None):
        raise fail("give exactly one of a kind (a string) or raw=<mess_type>")
    try:
        if raw is not None:
            return raw_kind(raw), raw
        assert kind is not None
        check_kind(kind)
    except ConfigurationError as error:
        raise fail(str(error)) from None
    if kind.startswith(RAW_PREFIX):
        return kind, int(kind.removeprefix(RAW_PREFIX))
    return kind, None


def _resolve_signature(
    target: Callable[..., object], fail: Callable[[str], ConfigurationError]
) -> tuple[object, bool, object]:
    """Return (payload type, takes context, result type) from the function's annotations."""
    try:
        hints = typing.get_type_hints(target, include_extras=True)  # Field constraints too
    except Exception as error:  # NameError, TypeError, SyntaxError from user annotations
        raise fail(
            f"cannot resolve its annotations ({type(error).__name__}: {error}); types named "
            "in annotations must be importable from the function's module at run time"
        ) from error
    parameters = list(inspect.signature(target).parameters.values())
    for parameter in parameters:
        if (
            parameter.kind is inspect.Parameter.KEYWORD_ONLY
            and parameter.default is parameter.empty
        ):
            raise fail(f"keyword-only parameter {parameter.name!r} needs a default")
    positional = [p for p in parameters if p.kind in _POSITIONAL]
    if not positional:
        raise fail("it takes no parameter; the first parameter receives the payload")
    first = positional[0]
    if first.name not in hints:
        raise fail(
            f"payload parameter {first.name!r} has no type annotation; "
            "annotate it with the payload type (a pydantic model, bytes, ...)"
        )
    payload_type = hints[first.name]
    if _is_context(payload_type):
        raise fail(f"the first parameter ({first.name!r}) is the payload; the Context goes second")
    takes_context = False
    rest = positional[1:]
    if rest:
        second = rest[0]
        if _is_context(hints.get(second.name)) or (
            second.name in _CONTEXT_NAMES and second.name not in hints
        ):
            takes_context = True
            rest = rest[1:]
        elif second.name in _CONTEXT_NAMES:
            raise fail(
                f"parameter {second.name!r} is annotated {hints[second.name]!r}, not Context"
            )
    for parameter in rest:
        if parameter.default is parameter.empty:
            raise fail(
                f"parameter {parameter.name!r} has no default; a handler takes the payload "
                "and, optionally, the Context (annotated Context or named ctx/context)"
            )
    return payload_type, takes_context, hints.get("return", object)


def _is_context(annotation: object) -> bool:
    annotation = _bare(annotation)
    return isinstance(annotation, type) and issubclass(annotation, Context)


def _bare(annotation: object) -> object:
    """``annotation`` without ``Annotated[...]``'s metadata (``Annotated[bytes, ...]`` is
    ``bytes``): what decides the codec; the metadata still constrains the adapter."""
    if typing.get_origin(annotation) is typing.Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def _adapter(
    annotation: object, what: str, fail: Callable[[str], ConfigurationError]
) -> TypeAdapter[Any]:
    try:
        return TypeAdapter(typing.cast(Any, annotation))
    except (PydanticUserError, TypeError, NameError) as error:
        raise fail(f"pydantic cannot handle the {what} type {annotation!r}: {error}") from error


class Handler(Generic[PayloadT, ResultT]):
    """A registered handler function: still callable as the function, and typed.

    ``await handler(payload)`` or ``await handler(payload, ctx)`` calls the function as
    it was written (handy in tests), and ``producer.put(handler, payload)`` is
    type-checked against ``PayloadT`` and types its receipt with ``ResultT``.
    """

    spec: HandlerSpec[PayloadT, ResultT]
    __name__: str
    __qualname__: str
    __wrapped__: Callable[..., Any]

    def __init__(self, spec: HandlerSpec[PayloadT, ResultT]) -> None:
        self.spec = spec
        functools.update_wrapper(self, spec.fn)

    @property
    def kind(self) -> str:
        """The kind jobs for this handler are put with."""
        return self.spec.kind

    async def __call__(self, payload: PayloadT, ctx: Context | None = None) -> ResultT:
        """Call the function directly (no codec, no middleware; a sync one in this thread)."""
        fn: Callable[..., Any] = self.spec.fn
        result = fn(payload) if ctx is None else fn(payload, ctx)
        if self.spec.blocking:
            return typing.cast(ResultT, result)
        return typing.cast(ResultT, await result)

    def __repr__(self) -> str:
        return f"<Handler {self.spec.kind!r} {self.spec.where}>"


class HandlerDecorator(Protocol):
    """What ``@app.handler(...)`` and ``@handler(...)`` return: a typed decorator."""

    @overload
    def __call__(
        self, fn: Callable[[PayloadT, Context], Awaitable[ResultT]], /
    ) -> Handler[PayloadT, ResultT]: ...

    @overload
    def __call__(
        self, fn: Callable[[PayloadT], Awaitable[ResultT]], /
    ) -> Handler[PayloadT, ResultT]: ...

    @overload
    def __call__(
        self, fn: Callable[[PayloadT, Context], ResultT], /
    ) -> Handler[PayloadT, ResultT]: ...

    @overload
    def __call__(self, fn: Callable[[PayloadT], ResultT], /) -> Handler[PayloadT, ResultT]: ...


class _Decorator:
    """Builds the spec and the :class:`Handler`, then hands the spec to ``register``."""

    __slots__ = ("_kind", "_options", "_raw", "_register")

    def __init__(
        self,
        kind: str | None,
        raw: int | None,
        options: HandlerOptionArgs,
        register: Callable[[AnyHandlerSpec], None] | None,
    ) -> None:
        self._kind = kind
        self._raw = raw
        self._options = options
        self._register = register

    @overload
    def __call__(
        self, fn: Callable[[PayloadT, Context], Awaitable[ResultT]], /
    ) -> Handler[PayloadT, ResultT]: ...

    @overload
    def __call__(
        self, fn: Callable[[PayloadT], Awaitable[ResultT]], /
    ) -> Handler[PayloadT, ResultT]: ...

    @overload
    def __call__(
        self, fn: Callable[[PayloadT, Context], ResultT], /
    ) -> Handler[PayloadT, ResultT]: ...

    @overload
    def __call__(self, fn: Callable[[PayloadT], ResultT], /) -> Handler[PayloadT, ResultT]: ...

    def __call__(self, fn: Callable[..., Any], /) -> Handler[Any, Any]:
        spec: AnyHandlerSpec = HandlerSpec.build(fn, self._kind, raw=self._raw, **self._options)
        if self._register is not None:
            self._register(spec)
        return Handler(spec)


def handler(
    kind: str | None = None, /, *, raw: int | None = None, **options: Unpack[HandlerOptionArgs]
) -> HandlerDecorator:
    """Declare a handler without an app: ``App(handlers=[resize])`` registers it later.

    ``@app.handler(...)`` takes the same arguments and registers at once.

    Raises:
        ConfigurationError: (when applied) as :meth:`HandlerSpec.build`.
    """
    return _Decorator(kind, raw, options, None)


def make_decorator(
    kind: str | None,
    raw: int | None,
    options: HandlerOptionArgs,
    register: Callable[[AnyHandlerSpec], None],
) -> HandlerDecorator:
    """The decorator behind ``@app.handler``: builds, calls ``register(spec)``, wraps."""
    return _Decorator(kind, raw, options, register)
