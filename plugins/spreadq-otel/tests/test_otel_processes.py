"""One trace across two processes: a put in this process (the plugin's put hook, the
SDK's in-memory exporter) and the job's handle span in a worker process (the plugin's
middleware, spans written to a file), compared by trace and parent span ids."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import anyio
import anyio.abc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from spreadq_otel import HANDLE_SPAN, PUT_SPAN, plugin, put_headers, put_hook

from spreadq.daemon import Daemon
from spreadq.plugins import Plugin
from spreadq.producer import Producer

HERE = Path(__file__).resolve().parent
QUEUE = "traced"
JOBS = 3
WAIT = 30


def test_the_plugin_contributes_its_put_hook() -> None:
    assert plugin.put_hooks == (put_headers,)
    assert put_headers(QUEUE, "double") is None  # no tracer provider installed: nothing


async def test_a_put_and_its_handle_in_another_process_share_one_trace(
    spreadq_daemon: Daemon, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Plugin(name="otel", put_hooks=(put_hook(provider),))
    spans_file = tmp_path / "spans.jsonl"
    address = spreadq_daemon.address
    command = [sys.executable, "-m", "spreadq", "worker", "traced_app:app", "--spread", address]
    env = {
        **os.environ,
        "SPREADQ_TEST_QUEUE": QUEUE,
        "SPREADQ_TEST_SPANS": str(spans_file),
        "PYTHONPATH": str(HERE),
    }
    log = (tmp_path / "worker.stderr").open("wb")
    process = await anyio.open_process(command, cwd=HERE, env=env, stdout=log, stderr=log)
    try:
        async with Producer(QUEUE, address, plugins=[tracing]) as producer:
            with anyio.fail_after(WAIT):
                await producer.wait_for_consumers(1)
                receipts = [await producer.put("double", n) for n in range(JOBS)]
                assert [await r for r in receipts] == [2 * n for n in range(JOBS)]
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        with anyio.fail_after(WAIT):
            await process.wait()
        await process.aclose()
        log.close()
    puts = [span for span in exporter.get_finished_spans() if span.name == PUT_SPAN]
    assert len(puts) == JOBS
    assert all(span.kind is SpanKind.PRODUCER for span in puts)
    handled = [json.loads(line) for line in spans_file.read_text().splitlines()]
    handles = [span for span in handled if span["name"] == HANDLE_SPAN]
    assert len(handles) == JOBS, (tmp_path / "worker.stderr").read_text()[-2000:]
    put_ids = {
        (f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}") for s in puts if s.context
    }
    assert {(span["trace_id"], span["parent_id"]) for span in handles} == put_ids
    assert len({trace_id for trace_id, _ in put_ids}) == JOBS  # one trace per put
