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
from spreadq.errors import JobFailed

TINY = ("--workers", "2", "--jobs", "200", "--raw", "200", "--loop", "asyncio")
WIDE = {**os.environ, "COLUMNS": "200"}  # rich tables not folded
SCHEDSTAT = os.path.exists("/proc/self/schedstat")  # Linux: the time waited for a CPU


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
    assert report.raw_msgs_per_s is not None
    assert report.raw_msgs_per_s > 0
    for figures in (report.flood, report.half_load):
        assert figures.jobs_per_s == pytest.approx(figures.jobs / figures.seconds)
        assert figures.ratio_to_raw == pytest.approx(figures.jobs_per_s / report.raw_msgs_per_s)
        for spread in (figures.one_way, figures.round_trip):
            assert 0 < spread.p50_ms <= spread.p99_ms <= spread.p999_ms <= spread.max_ms
            assert len(spread.cdf_ms) == 101
            assert list(spread.cdf_ms) == sorted(spread.cdf_ms)
        # the handler starts between put() and the receipt
        assert figures.one_way.p50_ms <= figures.round_trip.p50_ms
        # at least one JOB message from the producer, one ACK from some worker
        wire = figures.wire
        assert wire.producer_messages >= 1
        assert wire.worker_messages >= 1
        sent = (wire.producer_messages + wire.worker_messages) / figures.jobs
        assert wire.sent_per_job == pytest.approx(sent)
        assert wire.delivered_per_job > wire.sent_per_job  # each JOB reaches both workers
        assert 0 <= wire.worker_private_messages <= wire.worker_messages
        shared = wire.worker_messages - wire.worker_private_messages
        delivered = wire.producer_messages * 2 + shared * 3 + wire.worker_private_messages
        assert wire.delivered_per_job == pytest.approx(delivered / figures.jobs)
        assert figures.cpu is not None  # Linux: /proc is there
        assert len(figures.cpu.workers_s) == 2
        assert figures.cpu.daemon_s is not None  # the embedded daemon is ours
        assert min(figures.cpu.producer_s, *figures.cpu.workers_s, figures.cpu.daemon_s) >= 0
        if SCHEDSTAT:
            waited = figures.waited
            assert waited is not None
            assert len(waited.workers_s) == 2
            assert waited.daemon_s is not None
            assert min(waited.producer_s, *waited.workers_s, waited.daemon_s) >= 0
            ran = figures.mean_slice  # ms it ran at a time: each worker ran, so above 0
            assert ran is not None
            assert len(ran.workers_s) == 2
            assert ran.daemon_s is not None
            assert min(ran.producer_s, *ran.workers_s) > 0
            assert max(ran.producer_s, *ran.workers_s) < figures.seconds
    assert report.worker_peak_rss_mb is not None
    assert len(report.worker_peak_rss_mb) == 2
    assert all(10 < mb < 1000 for mb in report.worker_peak_rss_mb)


async def test_tables_against_a_given_daemon(spreadq_daemon: Daemon) -> None:
    address = spreadq_daemon.address  # served by this test's loop while the bench runs
    command = [sys.executable, "-m", "spreadq", "bench", *TINY, "--spread", address]
    with anyio.fail_after(120):
        completed = await anyio.run_process(command, check=False, env=WIDE)
    assert completed.returncode == 0, completed.stderr.decode()
    out = completed.stdout.decode()
    headings = ("raw flood msg/s", "jobs/s", "ratio", "one way p50", "round trip p50", "p999")
    for heading in (*headings, "producer", "workers", "delivered", "worker peak RSS"):
        assert heading in out, out
    # a flood and a half-load row in each of the four tables (the fourth: Linux)
    tables = 4 if SCHEDSTAT else 3
    assert out.count(address) == 2 * tables + 1, out  # and the peak RSS line
    assert out.count("flood") == tables + 1, out  # and the column heading
    assert out.count("half") == tables, out
    # not our daemon: its CPU time is not known
    cost = out.split("cost per job")[1].split("ms a second")[0].split("worker peak RSS")[0]
    rows = [row.split("│") for row in cost.splitlines() if address in row and "│" in row]
    assert len(rows) == 2, cost
    assert all(cells[5].strip() == "-" for cells in rows), cost
    if tables == 4:  # each process's ms a second on a CPU / waiting, the daemon's unknown
        busy = out.split("ms a second")[1].split("worker peak RSS")[0]
        rows = [row.split("│") for row in busy.splitlines() if address in row and "│" in row]
        assert len(rows) == 2, busy
        assert all(" / " in cells[3] and cells[5].strip() == "-" for cells in rows), busy
        assert all(" · " in cells[3] for cells in rows), busy  # and how long it ran at a time


async def test_a_given_daemons_cpu_is_counted_when_its_pid_is_named(
    spreadq_daemon: Daemon,
) -> None:
    address = spreadq_daemon.address  # served by this process: its pid is the daemon's
    command = [sys.executable, "-m", "spreadq", "bench", *TINY, "--json", "--raw", "0"]
    command += ["--jobs", "100", "--spread", address, "--daemon-pid", str(os.getpid())]
    with anyio.fail_after(120):
        completed = await anyio.run_process(command, check=False)
    assert completed.returncode == 0, completed.stderr.decode()
    report = BenchReport.model_validate(json.loads(completed.stdout))
    for figures in (report.flood, report.half_load):
        assert figures.cpu is not None
        assert figures.cpu.daemon_s is not None
        assert figures.cpu.daemon_s >= 0


def test_skipping_the_raw_flood_leaves_the_ratio_out() -> None:
    completed = bench("--json", "--raw", "0", "--jobs", "100")
    assert completed.returncode == 0, completed.stderr
    report = BenchReport.model_validate(json.loads(completed.stdout))
    assert (report.raw_messages, report.raw_msgs_per_s) == (0, None)
    assert report.flood.ratio_to_raw is None
    assert report.half_load.ratio_to_raw is None


def test_a_rate_paces_the_second_run_and_labels_it() -> None:
    completed = bench("--json", "--raw", "0", "--jobs", "100", "--rate", "500")
    assert completed.returncode == 0, completed.stderr
    report = BenchReport.model_validate(json.loads(completed.stdout))
    assert report.paced_rate == 500
    assert not report.smooth
    assert report.half_load.jobs_per_s < 600  # paced at 500 jobs/s, not at the flood's half
    tables = bench("--raw", "0", "--jobs", "100", "--rate", "500")
    assert tables.returncode == 0, tables.stderr
    assert "500/s" in tables.stdout
    assert "half" not in tables.stdout


def test_smooth_puts_each_paced_job_alone_and_says_so() -> None:
    completed = bench("--json", "--raw", "0", "--jobs", "100", "--rate", "500", "--smooth")
    assert completed.returncode == 0, completed.stderr
    report = BenchReport.model_validate(json.loads(completed.stdout))
    assert report.smooth
    assert report.half_load.jobs_per_s < 600  # still paced
    tables = bench("--raw", "0", "--jobs", "100", "--rate", "500", "--smooth")
    assert tables.returncode == 0, tables.stderr
    assert "500/s, smooth" in tables.stdout


def test_a_rule_is_given_to_the_workers_and_named_in_the_report() -> None:
    completed = bench("--json", "--raw", "0", "--jobs", "200", "--rule", "sticky")
    assert completed.returncode == 0, completed.stderr
    report = BenchReport.model_validate(json.loads(completed.stdout))
    assert report.rule == "sticky"
    assert report.flood.jobs == 200


def test_bad_loop_rule_and_role_are_refused() -> None:
    assert CliRunner().invoke(app, ["bench", "--loop", "trio"]).exit_code == 2
    assert CliRunner().invoke(app, ["bench", "--role", "nobody"]).exit_code == 2
    alone = CliRunner().invoke(app, ["bench", "--daemon-pid", "5"])  # whose daemon?
    assert alone.exit_code == 2
    assert "--spread" in alone.output
    refused = CliRunner().invoke(app, ["bench", "--rule", "fastest"])
    assert refused.exit_code == 2
    assert "sticky" in refused.output  # the rules it knows


def test_a_failed_job_ends_the_run_with_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import spreadq.bench

    async def lost(*args: object, **kwargs: object) -> BenchReport:
        raise JobFailed("spreadq.errors.WorkerLost", "the worker running it left 3 time(s)", 1)

    monkeypatch.setattr(spreadq.bench, "run_bench", lost)
    result = CliRunner().invoke(app, ["bench", "--spread", "4803@127.0.0.1"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: a job of the run failed, so no figures: "
        + str(JobFailed("spreadq.errors.WorkerLost", "the worker running it left 3 time(s)", 1))
    ]


def test_the_measuring_process_tunes_its_collector_and_a_child_leaves_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parent is the benchmark's producer, and the program: it tunes the collector
    (a full collection over its pending receipts stalled puts by tens of milliseconds).
    A worker child tunes it in ``App.run``; the bench role code does not do it twice."""
    import spreadq.bench
    import spreadq.worker.runtime

    tuned: list[str] = []
    monkeypatch.setattr(spreadq.worker.runtime, "tune_collector", lambda: tuned.append("tuned"))

    async def measured(*args: object, **kwargs: object) -> BenchReport:
        assert tuned == ["tuned"]  # before the run, not after
        raise TimeoutError("stop here")

    monkeypatch.setattr(spreadq.bench, "run_bench", measured)
    result = CliRunner().invoke(app, ["bench", "--spread", "4803@127.0.0.1"])
    assert result.exit_code == 1, result.output
    assert tuned == ["tuned"]
    roles: list[str] = []
    monkeypatch.setattr(spreadq.bench, "run_role", lambda role, *a, **k: roles.append(role))
    assert CliRunner().invoke(app, ["bench", "--role", "daemon"]).exit_code == 0
    assert (roles, tuned) == (["daemon"], ["tuned"])
