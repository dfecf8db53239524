"""``spreadq bench`` end to end with tiny sizes: the shape of its output, not its speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import anyio
import pytest
from typer.testing import CliRunner

from spreadq.bench import BenchReport
from spreadq.cli import app
from spreadq.daemon import Daemon

TINY = ("--workers", "2", "--jobs", "200", "--raw", "200", "--loop", "asyncio")
WIDE = {**os.environ, "COLUMNS": "200"}  # rich tables not folded


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spreadq", "bench", *TINY, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_json_report_on_the_embedded_daemon() -> None:
    completed = bench("--json")
    assert completed.returncode == 0, completed.stderr
    report = BenchReport.model_validate(json.loads(completed.stdout))
    assert (report.daemon, report.workers, report.payload_bytes) == ("embedded", 2, 100)
    assert (report.raw_messages, report.flood.jobs, report.half_load.jobs) == (200, 200, 100)
    assert report.uvloop is False
    assert report.raw_msgs_per_s > 0
    assert report.flood.jobs_per_s > 0
    assert report.ratio == pytest.approx(report.flood.jobs_per_s / report.raw_msgs_per_s)
    for figures in (report.flood, report.half_load):
        assert 0 < figures.p50_ms <= figures.p99_ms


async def test_tables_against_a_given_daemon(spreadq_daemon: Daemon) -> None:
    address = spreadq_daemon.address  # served by this test's loop while the bench runs
    command = [sys.executable, "-m", "spreadq", "bench", *TINY, "--spread", address]
    with anyio.fail_after(120):
        completed = await anyio.run_process(command, check=False, env=WIDE)
    assert completed.returncode == 0, completed.stderr.decode()
    out = completed.stdout.decode()
    for heading in ("raw flood msg/s", "queue jobs/s", "ratio", "p50 ms", "p99 ms"):
        assert heading in out, out
    assert out.count(address) == 3, out  # its throughput row and two latency rows
    assert "flood" in out
    assert "half" in out


def test_bad_loop_and_role_are_refused() -> None:
    assert CliRunner().invoke(app, ["bench", "--loop", "trio"]).exit_code == 2
    assert CliRunner().invoke(app, ["bench", "--role", "nobody"]).exit_code == 2
