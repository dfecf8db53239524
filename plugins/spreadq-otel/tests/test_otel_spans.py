"""Spans with the SDK's in-memory exporter: a put span whose context travels in the job's
headers, a handle span that continues its trace (errors and retries recorded), nothing
without a tracer provider, and one trace from a producer to a worker on the embedded
daemon."""

from __future__ import annotations

import time

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from spreadq_otel import (
    HANDLE_SPAN,
    PUT_SPAN,
    TRACEPARENT,
    extract,
    handle_middleware,
    handle_span,
    inject,
    plugin,
    traced_put,
)

from spreadq.context import Context
from spreadq.daemon import Daemon
from spreadq.plugins import load_plugins
from spreadq.testing import run_app
from spreadq.worker.app import App


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def test_headers_carry_the_context_of_a_span(provider: TracerProvider) -> None:
    with provider.get_tracer("t").start_as_current_span("outer") as span:
        headers = inject({"other": "kept"})
    context = span.get_span_context()
    assert headers["other"] == "kept"
    flags = int(context.trace_flags)
    assert flags & 1  # sampled
    assert headers[TRACEPARENT] == f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"
    assert extract({}) == {}  # no header: an empty context
    assert extract({TRACEPARENT: "garbage"}) == {}


async def echo(ctx: Context, payload: object) -> object:
    return payload


async def test_a_handle_span_continues_the_trace_in_the_headers(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    with provider.get_tracer("t").start_as_current_span("put") as parent:
        headers = inject()
    middleware = handle_middleware(provider)
    ctx = Context(job="ab:1", kind="resize", queue="thumbs", member="#w#h", headers=headers)
    assert await middleware(ctx, 7, echo) == 7
    retry = Context(
        job="ab:1", kind="resize", queue="thumbs", member="#w#h", headers=headers, attempt=2
    )

    async def broken(ctx: Context, payload: object) -> object:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await middleware(retry, 7, broken)
    first, second = by_name(exporter.get_finished_spans(), HANDLE_SPAN)
    for span in (first, second):
        assert span.kind is SpanKind.CONSUMER
        assert span.parent is not None
        assert span.parent.span_id == parent.get_span_context().span_id
        assert span.context.trace_id == parent.get_span_context().trace_id
        assert span.attributes is not None
        assert span.attributes["messaging.destination.name"] == "thumbs"
        assert span.attributes["spreadq.kind"] == "resize"
    assert first.status.status_code is StatusCode.UNSET
    assert [event.name for event in first.events] == []
    assert second.status.status_code is StatusCode.ERROR
    assert [event.name for event in second.events] == ["spreadq.retry", "exception"]


async def test_a_taken_over_job_gets_a_redelivered_event(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    middleware = handle_middleware(provider)
    first = Context(job="ab:2", kind="resize", queue="thumbs", member="#w1#h")
    again = Context(job="ab:2", kind="resize", queue="thumbs", member="#w2#h", redelivered=True)
    await middleware(first, 7, echo)
    await middleware(again, 7, echo)
    spans = by_name(exporter.get_finished_spans(), HANDLE_SPAN)
    assert [[event.name for event in span.events] for span in spans] == [
        [],
        ["spreadq.redelivered"],
    ]
    assert spans[1].events[0].attributes == {"spreadq.member": "#w2#h"}


async def test_without_a_tracer_provider_the_middleware_only_passes_through() -> None:
    ctx = Context(job="j", kind="k", queue="q", member="#w#h")
    assert await handle_span(ctx, "x", echo) == "x"


def test_the_plugin_contributes_the_middleware() -> None:
    (loaded,) = load_plugins(names=["otel"])
    assert loaded.plugin is plugin
    assert plugin.middleware == (handle_span,)


async def test_one_trace_from_put_to_handle_on_the_embedded_daemon(
    spreadq_daemon: Daemon, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = App("traced", plugins=[], middleware=[handle_middleware(provider)])
    seen: list[str] = []

    @app.handler("double")
    async def double(n: int, ctx: Context) -> int:
        seen.append(ctx.headers.get(TRACEPARENT, ""))
        return 2 * n

    async with run_app(app, daemon=spreadq_daemon) as producer:
        with anyio.fail_after(20):
            receipt = await traced_put(producer, double, 21, tracer_provider=provider)
            assert await receipt == 42
    (put,) = by_name(exporter.get_finished_spans(), PUT_SPAN)
    (handle,) = by_name(exporter.get_finished_spans(), HANDLE_SPAN)
    assert put.kind is SpanKind.PRODUCER
    assert handle.context.trace_id == put.context.trace_id
    assert handle.parent is not None
    assert handle.parent.span_id == put.context.span_id
    flags = int(put.context.trace_flags)
    assert seen == [f"00-{put.context.trace_id:032x}-{put.context.span_id:016x}-{flags:02x}"]


def test_the_global_provider_is_looked_up_at_most_once_a_recheck_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OpenTelemetry's getter reads the environment on every call while no provider
    is installed: a put hook asking on every put cost a producer 14% of its CPU."""
    import spreadq_otel
    from opentelemetry import trace
    from opentelemetry.trace import ProxyTracerProvider

    lookups: list[str] = []
    installed: list[object] = [ProxyTracerProvider()]

    def get_tracer_provider() -> object:
        lookups.append("looked")
        return installed[0]

    now = [1000.0]
    monkeypatch.setattr(trace, "get_tracer_provider", get_tracer_provider)
    monkeypatch.setattr(time, "monotonic", lambda: now[0])  # the clock spreadq_otel reads
    monkeypatch.setattr(spreadq_otel, "_global_provider", spreadq_otel._GlobalProvider())
    hook = spreadq_otel.put_hook()
    assert [hook("q", "k") for _ in range(1000)] == [None] * 1000
    assert lookups == ["looked"]
    installed[0] = TracerProvider()  # installed meanwhile: seen after the period
    now[0] += spreadq_otel.GLOBAL_RECHECK / 2
    assert spreadq_otel._tracing(None) is False
    now[0] += spreadq_otel.GLOBAL_RECHECK
    assert spreadq_otel._tracing(None) is True
    assert spreadq_otel._tracing(None) is True
    assert lookups == ["looked", "looked"]  # once installed, never asked again
