"""The App a worker process of ``test_otel_processes.py`` runs, tracing with the plugin.

``python -m spreadq worker traced_app:app`` (this directory on the path). The process
installs an SDK tracer provider whose exporter appends each finished span to the file
``SPREADQ_TEST_SPANS`` as one JSON line (name, trace id, span id, parent span id),
written as the span ends, so the test reads it once the job's receipt resolves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from spreadq.worker.app import App

__all__ = ["FileExporter", "app"]


class FileExporter(SpanExporter):
    """Appends one JSON line per finished span to ``path``."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._path.open("a") as sink:
            for span in spans:
                context = span.get_span_context()
                assert context is not None
                record = {
                    "name": span.name,
                    "trace_id": f"{context.trace_id:032x}",
                    "span_id": f"{context.span_id:016x}",
                    "parent_id": None if span.parent is None else f"{span.parent.span_id:016x}",
                    "attributes": dict(span.attributes or {}),
                }
                sink.write(json.dumps(record) + "\n")
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(
    SimpleSpanProcessor(FileExporter(Path(os.environ["SPREADQ_TEST_SPANS"])))
)
trace.set_tracer_provider(provider)

app = App(os.environ.get("SPREADQ_TEST_QUEUE", "traced"), plugins=["otel"])


@app.handler("double")
async def double(n: int) -> int:
    """Twice ``n``."""
    return 2 * n
