"""A real worker process with the plugin installed serves ``/metrics``: jobs run through
it are counted in ``spreadq_jobs_total``, scraped over HTTP; and a producer serves its
own endpoint from ``Settings(metrics_port=...)``."""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.request
from pathlib import Path

import anyio
import anyio.abc
from prometheus_client.parser import text_string_to_metric_families
from spreadq_prometheus import observer

from spreadq.daemon import Daemon
from spreadq.producer import Producer
from spreadq.settings import Settings

HERE = Path(__file__).resolve().parent
QUEUE = "scraped"
JOBS = 25
WAIT = 30


def scrape_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = scrape_text(port)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def metrics_port(process: anyio.abc.Process) -> int:
    """The port of the worker's ``metrics_serving`` log line (JSON lines on stderr)."""
    assert process.stderr is not None
    buffer = b""
    while True:
        buffer += await process.stderr.receive()
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if b"metrics_serving" in line:
                return int(json.loads(line)["port"])


async def test_a_worker_process_counts_its_jobs_in_metrics(spreadq_daemon: Daemon) -> None:
    address = spreadq_daemon.address
    command = [sys.executable, "-m", "spreadq", "worker", "scrape_app:app", "--spread", address]
    command += ["--metrics-port", "0"]  # any free port; the worker logs which
    env = {**os.environ, "SPREADQ_TEST_QUEUE": QUEUE, "PYTHONPATH": str(HERE)}
    process = await anyio.open_process(command, cwd=HERE, env=env)
    try:
        with anyio.fail_after(WAIT):
            port = await metrics_port(process)
            async with anyio.create_task_group() as drain:
                assert process.stderr is not None
                drain.start_soon(lambda: _discard(process.stderr))
                async with Producer(QUEUE, address, plugins=False) as producer:
                    receipts = [await producer.put("double", n) for n in range(JOBS)]
                    assert [await r for r in receipts] == [2 * n for n in range(JOBS)]
                samples = await anyio.to_thread.run_sync(scrape, port)
                drain.cancel_scope.cancel()
        labels = (("kind", "double"), ("outcome", "succeeded"), ("queue", QUEUE))
        assert samples[("spreadq_jobs_total", labels)] == JOBS
        duration = (("kind", "double"), ("queue", QUEUE))
        assert samples[("spreadq_job_duration_seconds_count", duration)] == JOBS
        assert samples[("spreadq_view_members", (("queue", QUEUE),))] == 1
        assert samples[("spreadq_running_jobs", (("queue", QUEUE),))] == 0
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        with anyio.fail_after(WAIT):
            await process.wait()
        await process.aclose()


async def _discard(stream: anyio.abc.ByteReceiveStream | None) -> None:
    assert stream is not None
    async for _ in stream:
        pass


async def test_a_producer_serves_metrics_on_its_settings_port(spreadq_daemon: Daemon) -> None:
    """The plugin's observer (loaded from its entry point) serves from the producer's
    scope while the producer is open, and stops with it."""
    settings = Settings(metrics_port=0)
    async with Producer(QUEUE, spreadq_daemon.address, settings=settings) as producer:
        assert any(loaded.name == "prometheus" for loaded in producer.plugins)
        port = observer.port
        assert port is not None
        text = await anyio.to_thread.run_sync(scrape_text, port)
        assert "# TYPE spreadq_producer_window_blocked_seconds_total counter" in text
    assert observer.port is None  # closed with the producer
