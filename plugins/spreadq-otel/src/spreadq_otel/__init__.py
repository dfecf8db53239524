"""OpenTelemetry traces for spreadq: ``spreadq.put`` and ``spreadq.handle`` spans, one
trace across processes through W3C trace context in the job's headers.

Producer side: the plugin contributes a put hook (:func:`put_hook`), so every
``Producer.put`` of a producer that loads it, with tracing on, records a ``spreadq.put``
span (kind PRODUCER, a child of the caller's current span) as the job is put and writes
that span's context into the job's headers (``traceparent``, and ``tracestate`` when
there is one): the job carries its trace with no change to the calling code. The span
marks the moment of the put; :func:`traced_put` instead opens the ``spreadq.put`` span
around the whole ``Producer.put``, waiting for flow control included (the hook then
stays out of its way).

Worker side: :func:`handle_span` is a middleware, contributed by the plugin to every
app that loads it: each handler attempt runs in a ``spreadq.handle`` span (kind
CONSUMER) whose parent is the context read from the job's headers; an attempt after the
first gets a ``spreadq.retry`` event, a job taken over from a member that left (or a
copy sent again) a ``spreadq.redelivered`` event, and an exception is recorded on the
span, which ends with an error status.

Nothing is traced, and the middleware costs one ``isinstance``, until the program
installs a tracer provider (``opentelemetry.trace.set_tracer_provider``); spans go to
whatever the program configured. Attributes follow OpenTelemetry's messaging
conventions: ``messaging.system = "spreadq"``, ``messaging.destination.name`` (the
queue), ``messaging.operation.type`` (``send``/``process``), plus ``spreadq.kind``,
``spreadq.job`` (worker) or ``spreadq.seq`` (producer), and ``spreadq.attempt``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Final, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.trace import ProxyTracerProvider, SpanKind, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from spreadq.context import Context
from spreadq.handlers import Handler
from spreadq.middleware import CallNext, Middleware, check_middleware
from spreadq.plugins import Plugin, PutHook, check_put_hook
from spreadq.producer import Producer
from spreadq.producer.receipt import Receipt

__all__ = [
    "GLOBAL_RECHECK",
    "PUT_SPAN",
    "HANDLE_SPAN",
    "TRACEPARENT",
    "TRACESTATE",
    "extract",
    "handle_middleware",
    "handle_span",
    "inject",
    "plugin",
    "put_hook",
    "put_headers",
    "traced_put",
]

PUT_SPAN: Final = "spreadq.put"
HANDLE_SPAN: Final = "spreadq.handle"
TRACEPARENT: Final = "traceparent"
"""The job header holding the W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``)."""
TRACESTATE: Final = "tracestate"

_W3C: Final = TraceContextTextMapPropagator()
_SCOPE: Final = "spreadq"
_IN_TRACED_PUT: Final = ContextVar("spreadq_otel_in_traced_put", default=False)

ResultT = TypeVar("ResultT")


def _tracer(provider: TracerProvider | None) -> Tracer:
    return trace.get_tracer(_SCOPE, tracer_provider=provider)


GLOBAL_RECHECK: Final = 0.1
"""Seconds between two looks for a global tracer provider while none is installed."""


class _GlobalProvider:
    """Whether a global tracer provider is installed, looked up at most every
    :data:`GLOBAL_RECHECK` seconds until one is. OpenTelemetry's getter reads an
    environment variable on every call while none is: that took 14% of a producer's
    CPU when every put asked. A provider is installed once and for good, so once seen
    it is not looked for again."""

    __slots__ = ("checked_at", "installed")

    def __init__(self) -> None:
        self.installed = False
        self.checked_at = -math.inf

    def __call__(self) -> bool:
        if self.installed:
            return True
        now = time.monotonic()
        if now - self.checked_at < GLOBAL_RECHECK:
            return False
        self.checked_at = now
        self.installed = not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)
        return self.installed


_global_provider = _GlobalProvider()


def _tracing(provider: TracerProvider | None) -> bool:
    """Whether spans go anywhere: a provider was given or installed globally (one
    installed while a process runs is seen within :data:`GLOBAL_RECHECK` seconds)."""
    return provider is not None or _global_provider()


def inject(
    headers: Mapping[str, str] | None = None, context: OtelContext | None = None
) -> dict[str, str]:
    """``headers`` plus the W3C trace context of ``context`` (the current one if None)."""
    carrier = dict(headers or {})
    _W3C.inject(carrier, context=context)
    return carrier


def extract(headers: Mapping[str, str]) -> OtelContext:
    """The trace context a job's headers carry (an empty context when they carry none
    or a malformed one)."""
    return _W3C.extract(headers)


async def traced_put(
    producer: Producer,
    handler: Handler[Any, ResultT] | str,
    payload: object,
    *,
    key: str | None = None,
    headers: Mapping[str, str] | None = None,
    delay: float | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Receipt[Any]:
    """``producer.put(...)`` inside a ``spreadq.put`` span, the span's trace context
    added to the job's headers.

    Raises:
        Whatever ``Producer.put`` raises (recorded on the span, which ends in error).
    """
    kind = handler if isinstance(handler, str) else handler.spec.kind
    attributes = {
        "messaging.system": "spreadq",
        "messaging.destination.name": producer.queue,
        "messaging.operation.type": "send",
        "spreadq.kind": kind,
    }
    tracer = _tracer(tracer_provider)
    with tracer.start_as_current_span(
        PUT_SPAN, kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        token = _IN_TRACED_PUT.set(True)  # the plugin's put hook adds no span of its own
        try:
            receipt = await producer.put(
                handler, payload, key=key, headers=inject(headers), delay=delay
            )
        finally:
            _IN_TRACED_PUT.reset(token)
        span.set_attribute("spreadq.seq", receipt.seq)
        return receipt


def put_hook(tracer_provider: TracerProvider | None = None) -> PutHook:
    """A put hook (``Plugin(put_hooks=...)``) bound to ``tracer_provider`` (the global
    one when None): with tracing on, it records a ``spreadq.put`` span, a child of the
    current span, and returns the headers carrying that span's context; otherwise None.
    """

    def put_headers(queue: str, kind: str) -> dict[str, str] | None:
        if _IN_TRACED_PUT.get() or not _tracing(tracer_provider):
            return None
        attributes: dict[str, AttributeValue] = {
            "messaging.system": "spreadq",
            "messaging.destination.name": queue,
            "messaging.operation.type": "send",
            "spreadq.kind": kind,
        }
        span = _tracer(tracer_provider).start_span(
            PUT_SPAN, kind=SpanKind.PRODUCER, attributes=attributes
        )
        try:
            return inject(context=trace.set_span_in_context(span))
        finally:
            span.end()

    put_headers.__qualname__ = "put_headers"
    return check_put_hook(put_headers)


put_headers: Final = put_hook()
"""The producer-side put hook the plugin contributes (the global tracer provider)."""


def handle_middleware(tracer_provider: TracerProvider | None = None) -> Middleware:
    """A :func:`handle_span` middleware bound to ``tracer_provider`` (the global one
    when None), for an app that traces to a provider of its own."""

    async def handle(ctx: Context, payload: object, call_next: CallNext) -> object:
        if not _tracing(tracer_provider):
            return await call_next(ctx, payload)
        attributes: dict[str, AttributeValue] = {
            "messaging.system": "spreadq",
            "messaging.destination.name": ctx.queue,
            "messaging.operation.type": "process",
            "spreadq.kind": ctx.kind,
            "spreadq.job": str(ctx.job),
            "spreadq.attempt": ctx.attempt,
            "spreadq.member": ctx.member,
        }
        tracer = _tracer(tracer_provider)
        with tracer.start_as_current_span(
            HANDLE_SPAN, context=extract(ctx.headers), kind=SpanKind.CONSUMER, attributes=attributes
        ) as span:
            if ctx.redelivered:  # taken over from a member that left, or a re-sent copy
                span.add_event("spreadq.redelivered", {"spreadq.member": ctx.member})
            if ctx.attempt > 1:
                span.add_event("spreadq.retry", {"spreadq.attempt": ctx.attempt})
            return await call_next(ctx, payload)

    handle.__qualname__ = "handle_span"
    return check_middleware(handle)


handle_span: Final = handle_middleware()
"""The worker-side middleware: each handler attempt in a ``spreadq.handle`` span."""

plugin: Final = Plugin(
    name="otel",
    description="OpenTelemetry spans for put and handle, W3C trace context in job headers",
    middleware=(handle_span,),
    put_hooks=(put_headers,),
)
"""The declaration behind the ``spreadq.plugins`` entry point ``otel``."""
