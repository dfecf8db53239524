"""Smoke runs of the benchmark scripts with tiny sizes: their reports' shape, not speed.

Each takes a few seconds (they start worker processes); figures are not checked
beyond being sane, since nothing here runs on a quiet machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib.util import find_spec, module_from_spec, spec_from_file_location
from pathlib import Path
from typing import Any

import anyio
import pytest

from spreadq.bench import BenchReport

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
TINY = ("--workers", "2", "--loop", "asyncio")

pytestmark = pytest.mark.slow


def run_script(
    name: str, *args: str, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def script(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    completed = run_script(name, *args, timeout=180, env=env)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def refusal(name: str, *args: str) -> str:
    """Run a benchmark script that must refuse its arguments (argparse's exit status 2);
    return what it printed on stderr."""
    completed = run_script(name, *args, timeout=60)
    assert completed.returncode == 2, completed.stderr
    return completed.stderr


def figures(pattern: str, out: str) -> list[float]:
    """The numbers the groups of ``pattern`` find in a script's output ``out``."""
    found = re.search(pattern, out)
    assert found is not None, out
    return [float(group) for group in found.groups()]


def benchmark_module(name: str) -> Any:
    """Import ``benchmarks/<name>.py`` (not a package) as a module."""
    spec = spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = module_from_spec(spec)
    sys.modules[name] = module  # where pydantic looks up the names a model's fields use
    spec.loader.exec_module(module)
    return module


def sane_latency(spread: dict[str, Any]) -> None:
    assert 0 < spread["p50_ms"] <= spread["p99_ms"] <= spread["p999_ms"] <= spread["max_ms"]
    assert len(spread["cdf_ms"]) == 101


def test_compare_redis_says_what_to_install_without_redis_server(tmp_path: Path) -> None:
    bare = {**os.environ, "PATH": str(tmp_path)}  # no redis-server on it
    out = script("compare_redis.py", *TINY, "--jobs", "100", env=bare)
    assert "redis-server is not on PATH" in out
    assert "apt-get install redis-server" in out
    assert "pip install 'spreadq[bench]'" in out


def test_compare_redis_side_by_side(tmp_path: Path) -> None:
    chart = tmp_path / "compare.png"
    out = script(
        "compare_redis.py",
        *TINY,
        *("--jobs", "200", "--raw", "200", "--json", "--chart", str(chart), "--burn", "1:0.05"),
    )
    if shutil.which("redis-server") is None or find_spec("redis") is None:
        assert "pip install 'spreadq[bench]'" in out
        pytest.skip("redis-server or the redis package is missing: checked the message only")
    both = json.loads(out)
    ours = BenchReport.model_validate(both["spreadq"])
    assert (ours.workers, ours.flood.jobs, ours.half_load.jobs) == (2, 200, 100)
    assert both["burn"] == {"processes": 1, "share": 0.05, "period_s": 0.02}
    theirs = both["redis"]
    assert theirs["consumers"] == 2
    assert (theirs["flood"]["jobs"], theirs["half_load"]["jobs"]) == (200, 100)
    assert theirs["at_rate"]["jobs"] == 100  # at spreadq's half-load rate, open loop
    assert theirs["at_rate"]["jobs_per_s"] <= 1.5 * ours.half_load.jobs_per_s
    for run in (theirs["flood"], theirs["half_load"], theirs["at_rate"]):
        sane_latency(run["one_way"])
        sane_latency(run["round_trip"])
        assert run["one_way"]["p50_ms"] <= run["round_trip"]["p50_ms"]
        assert run["commands_per_job"] >= 1  # an XADD each, at least
        assert len(run["cpu"]["workers_s"]) == 2
        if os.path.exists("/proc/self/schedstat"):
            assert len(run["waited"]["workers_s"]) == 2
            assert min(run["waited"]["workers_s"]) >= 0
            assert len(run["mean_slice"]["workers_s"]) == 2
            assert run["mean_slice"]["producer_s"] > 0  # ms the producer ran at a time
    if find_spec("matplotlib") is not None:
        assert chart.read_bytes().startswith(b"\x89PNG")


def test_compare_redis_tables(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None or find_spec("redis") is None:
        pytest.skip("needs redis-server and the redis package")
    wide = {**os.environ, "COLUMNS": "200"}
    out = script("compare_redis.py", *TINY, "--jobs", "100", "--raw", "0", env=wide)
    rows: tuple[str, ...] = (
        "flood jobs/s",
        "half one way p99 ms",
        "half round trip p999 ms",
        "CPU us/job",
        "half CPU us/job: total",
        "same rate CPU us/job: daemon",
    )
    waits = ("half ms/s waiting for a CPU: producer", "same rate ms/s waiting for a CPU")
    for row in (*rows, *waits, "same rate jobs/s", "same rate round trip p99 ms"):
        assert row in out, out
    assert "Redis Streams" in out


def test_compare_redis_at_a_given_rate(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None or find_spec("redis") is None:
        pytest.skip("needs redis-server and the redis package")
    wide = {**os.environ, "COLUMNS": "200"}
    args = ("--jobs", "100", "--raw", "0", "--rate", "400")
    out = script("compare_redis.py", *TINY, *args, env=wide)
    for row in ("flood jobs/s", "at 400/s jobs/s", "at 400/s round trip p99 ms"):
        assert row in out, out
    assert "half one way" not in out  # spreadq ran at 400/s, not at its half load
    both = json.loads(script("compare_redis.py", *TINY, *args, "--json"))
    assert BenchReport.model_validate(both["spreadq"]).paced_rate == 400
    assert both["redis"]["at_rate"]["jobs_per_s"] <= 1.5 * 400


def test_compare_redis_in_rounds_prints_each_ratio_and_the_median() -> None:
    if shutil.which("redis-server") is None or find_spec("redis") is None:
        pytest.skip("needs redis-server and the redis package")
    wide = {**os.environ, "COLUMNS": "200"}
    args = ("--jobs", "100", "--raw", "0", "--rounds", "2")
    out = script("compare_redis.py", *TINY, *args, env=wide)
    for text in ("round 1", "round 2", "median", "flood jobs/s", "same rate one way p99"):
        assert text in out, out
    reports = json.loads(script("compare_redis.py", *TINY, *args, "--json"))["rounds"]
    assert len(reports) == 2
    for both in reports:
        assert BenchReport.model_validate(both["spreadq"]).flood.jobs == 100
        assert both["redis"]["flood"]["jobs"] == 100


def test_compare_redis_with_its_own_consumer_count() -> None:
    """Each side in its own shape: two spreadq workers against one Redis consumer."""
    if shutil.which("redis-server") is None or find_spec("redis") is None:
        pytest.skip("needs redis-server and the redis package")
    args = ("--jobs", "100", "--raw", "0", "--consumers", "1")
    both = json.loads(script("compare_redis.py", *TINY, *args, "--json"))
    assert BenchReport.model_validate(both["spreadq"]).workers == 2
    assert both["redis"]["consumers"] == 1
    for run in (both["redis"]["flood"], both["redis"]["half_load"]):
        assert len(run["cpu"]["workers_s"]) == 1
    wide = {**os.environ, "COLUMNS": "200"}
    out = script("compare_redis.py", *TINY, *args, "--rounds", "2", env=wide)
    assert "spreadq (2 workers) / Redis (1 consumer)" in out, out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--rounds", "0"), "--rounds must be at least 1"),
        (("--consumers", "0"), "--consumers must be at least 1"),
        (("--spread-pid", "5"), "--spread-pid names the daemon of --spread"),
        (("--burn", "3"), "give N:SHARE"),
        (("--burn", "0:0.5"), "N at least 1"),
        (("--burn", "2:1.5"), "SHARE in (0, 1]"),
    ],
)
def test_compare_redis_refuses_bad_arguments(args: tuple[str, ...], says: str) -> None:
    assert says in refusal("compare_redis.py", *args)


def test_compare_redis_burners_stop_with_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports redis_consumer from there
    compare = benchmark_module("compare_redis")
    with compare.burning(2, 0.05) as burners:
        assert len(burners) == 2
        assert [b.poll() for b in burners] == [None, None]  # running while the run runs
    assert all(b.returncode is not None for b in burners)  # killed and reaped after it


def test_split_queues_measures_both_shapes() -> None:
    out = script(
        "split_queues.py", "--queues", "2", "--jobs", "200", "--rate", "400", "--run", "5",
        "--loop", "asyncio", "--json",
    )  # fmt: skip
    both = json.loads(out)
    assert (both["one_queue"]["queues"], both["one_queue"]["workers"]) == (1, 2)
    assert (both["split"]["queues"], both["split"]["workers"]) == (2, 1)
    for shape in both.values():
        assert 0 < shape["jobs_per_s"] <= 1.5 * 400  # paced, open loop
        sane_latency(shape["one_way"])
        if os.path.exists("/proc/self/stat"):
            assert shape["workers_us_per_job"] > 0
            assert shape["producer_us_per_job"] > 0


def test_split_queues_refuses_bad_arguments() -> None:
    assert "--queues must be at least 1" in refusal("split_queues.py", "--queues", "0")


def test_scale_curve_quick() -> None:
    out = script(
        "scale_curve.py", "--quick", "--workers", "1,2", "--payloads", "100", "--jobs", "100",
        "--loop", "asyncio", "--json",
    )  # fmt: skip
    points = json.loads(out)
    assert [(p["workers"], p["payload_bytes"]) for p in points] == [(1, 100), (2, 100)]
    for p in points:
        assert p["jobs_per_s"] > 0
        assert 0 < p["one_way_p99_ms"] <= p["round_trip_p99_ms"]
        assert p["ratio_to_raw"] is None  # no raw flood asked for
        assert p["delivered_per_job"] > 0
        if os.path.exists("/proc/self/stat"):
            assert p["cpu_us_per_job"] is not None


def test_scale_curve_refuses_a_bad_list() -> None:
    assert "not a list of numbers" in refusal("scale_curve.py", "--workers", "0,x")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_memory_samples_each_round() -> None:
    out = script("memory.py", *TINY, "--jobs", "400", "--samples", "4", "--json")
    report = json.loads(out)
    assert [s["jobs"] for s in report["samples"]] == [100, 200, 300, 400]
    for sample in report["samples"]:
        assert len(sample["rss_mb"]) == 2
        assert all(10 < mb < 1000 for mb in sample["rss_mb"])
    assert len(report["peak_rss_mb"]) == len(report["growth_mb"]) == 2
    first, last = report["samples"][0]["rss_mb"], report["samples"][-1]["rss_mb"]
    assert report["growth_mb"] == pytest.approx([b - a for a, b in zip(first, last, strict=True)])
    half = report["samples"][1]["rss_mb"]  # after 200 of the 400 jobs
    late = [b - a for a, b in zip(half, last, strict=True)]
    assert report["late_growth_mb"] == pytest.approx(late)
    assert report["flat"] == all(g < max(5.0, 0.05 * a) for g, a in zip(late, half, strict=True))


def test_bench_put_reports_a_put_against_its_baselines_and_put_many() -> None:
    out = script("bench_put.py", "--jobs", "2000", "--repeat", "1", "--many", "16")
    put, spec, ratio, queued, _ = figures(
        r"2,000 puts \(best of 1\): put\(\) ([\d.]+) us \| envelope alone ([\d.]+) us "
        r"\(put/envelope x([\d.]+)\) \| asyncio.Queue.put ([\d.]+) us \(put/queue x([\d.]+)\)",
        out,
    )
    assert 0 < spec < put  # a put does more than either baseline
    assert 0 < queued < put
    assert ratio == pytest.approx(put / spec, rel=0.1)
    many, many_ratio = figures(
        r"put_many\(\) in groups of 16: ([\d.]+) us a job \(put/put_many x([\d.]+)\)", out
    )
    assert many > 0
    assert many_ratio == pytest.approx(put / many, rel=0.1)
    assert "put_many" not in script("bench_put.py", "--jobs", "100", "--repeat", "1")
    assert "at least 0" in refusal("bench_put.py", "--many", "-1")


def test_bench_feedback_settles_every_job_and_reports_against_decoding() -> None:
    # the script raises (exit 1) if an ACK left a job of the core pending
    out = script("bench_feedback.py", "--jobs", "2000", "--repeat", "1")
    notice, notice_decoding, _, ack, ack_decoding, ratio = figures(
        r"2,000 jobs, 4 workers \(best of 1\): NOTICEs ([\d.]+) us/job \(decoding them "
        r"([\d.]+), x([\d.]+)\) \| ACKs ([\d.]+) us/job \(decoding them ([\d.]+), x([\d.]+)\)",
        out,
    )
    assert min(notice, notice_decoding, ack, ack_decoding) > 0.005
    # the ratio of the unrounded figures: within what printing them rounded away
    assert (ack - 0.005) / (ack_decoding + 0.005) - 0.05 <= ratio
    assert ratio <= (ack + 0.005) / (ack_decoding - 0.005) + 0.05
    out = script("bench_feedback.py", "--jobs", "2000", "--repeat", "1", "--unnoticed")
    assert "(best of 1): no NOTICEs | ACKs " in out
    assert "at least 1" in refusal("bench_feedback.py", "--jobs", "0")


@pytest.mark.parametrize("members", ["1", "4"])
def test_bench_dispatcher_completes_every_job(members: str) -> None:
    # it ends only once the replica's table completed all 3,000 jobs (ours and the others')
    out = script("bench_dispatcher.py", "--jobs", "3000", "--members", members)
    assert f"3,000 jobs through one replica of {members} (64 per message):" in out
    assert "us/job of CPU" in out


def test_bench_dispatcher_paced_with_distinct_results_completes_every_job() -> None:
    # --pace: one read (of one message) every 2 ms, about 0.4 s here; --stamp: an 8-byte
    # result a job; under sticky, the others' ACKs name whole messages (it ends only
    # once every job completed)
    args = ("--jobs", "1000", "--batch", "5", "--per-read", "1", "--pace", "0.002", "--stamp")
    out = script("bench_dispatcher.py", *args, "--rule", "sticky")
    assert "1,000 jobs through one replica of 4 (5 per message, one every 2 ms, sticky):" in out
    jobs_per_s = float(out.split("):")[1].split(" jobs/s")[0].replace(",", ""))
    assert jobs_per_s < 2_600  # paced: 5 jobs every 2 ms at most, plus the first read


def test_bench_dispatcher_follows_the_first_member_under_fill_first() -> None:
    # listed last, the replica owns none of the jobs: it ends once the first member's
    # ACKs completed every one of them in its table
    out = script("bench_dispatcher.py", "--jobs", "1000", "--batch", "21", "--rule", "fill_first")
    assert "1,000 jobs through one replica of 4 (21 per message, fill_first):" in out


def test_bench_dispatcher_paces_uvloop_in_whole_milliseconds() -> None:
    # a cancel scope's deadline a fraction of a millisecond away spins uvloop (anyio
    # re-arms its timer until the loop's millisecond clock reaches it): the bench's
    # pacing waited so, and its CPU a job was the bench's spin as much as the worker's
    bench = benchmark_module("bench_dispatcher")

    async def on_asyncio() -> None:
        assert bench.pace_wait(0.0002) == 0.0002  # asyncio's loop waits what it is asked

    async def on_uvloop() -> None:
        waits = [round(bench.pace_wait(w), 6) for w in (0.0002, 0.001, 0.0101, -0.5)]
        assert waits == [0.001, 0.001, 0.011, 0.001]

    anyio.run(on_asyncio)
    pytest.importorskip("uvloop", reason="uvloop is not installed (pip install 'spreadq[uvloop]')")
    anyio.run(on_uvloop, backend_options={"use_uvloop": True})


def test_one_way_legs_stamps_every_paced_job_in_every_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # every paced job is found at its put, its batch, its worker's read and table and its
    # handler's start (a stamp on a renamed function would lose them), and each leg
    # runs forward in time on the machine's one clock
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports stamped_bench from there
    legs = benchmark_module("one_way_legs")
    out = script("one_way_legs.py", "--jobs", "1000", *TINY, "--json")
    figures = json.loads(out)
    assert figures["jobs"] == 500
    assert [row["leg"] for row in figures["legs"]] == list(legs.LEGS)
    assert all(row["p50_ms"] >= 0 for row in figures["legs"]), figures
    total = sum(row["p50_ms"] for row in figures["legs"])
    assert 0 < figures["one_way_p50_ms"] <= figures["one_way_p99_ms"]
    assert total > 0
    # the same stamps, by message: each of the two workers read every paced message, the
    # second after the first, and ran a share of the jobs
    readers = figures["readers"]
    assert readers["messages"] > 0
    assert 0 < readers["jobs"] <= 500
    first, second = readers["ranks"]
    assert 0 <= first["p50_ms"] <= second["p50_ms"]
    assert first["p50_ms"] <= first["p90_ms"] <= first["p99_ms"]
    for shares in (readers["share_by_rank"], readers["tail_share_by_rank"]):
        assert len(shares) == 2
        assert sum(shares) == pytest.approx(1.0)


def test_worker_steps_reports_the_idlest_worker_under_a_rule() -> None:
    # under fill_first every worker asks before each read whether it may rest, and the
    # report names the worker it chose
    out = script(
        "worker_steps.py",
        "--jobs",
        "1000",
        "--workers",
        "2",
        "--rule",
        "fill_first",
        "--worker",
        "idlest",
    )
    assert "idlest worker, whole run:" in out
    row = re.search(r"Dispatcher\._standby_wait\s+│\s+([\d.]+)%\s+│\s+([\d,]+)\s+│", out)
    assert row is not None, out
    assert int(row[2].replace(",", "")) > 0


def test_worker_steps_times_every_step_of_a_real_worker() -> None:
    # every step it wraps still exists (a renamed method is reported "not measured"),
    # and the first worker ran jobs through its runner and read messages into its table
    out = script("worker_steps.py", "--jobs", "1000", "--workers", "2")
    assert "not measured" not in out
    assert "whole run:" in out
    for step in ("JobRunner.run", "OutstandingTable._on_message", "Dispatcher._on_ended"):
        row = re.search(rf"{re.escape(step)}\s+│\s+([\d.]+)%\s+│\s+([\d,]+)\s+│", out)
        assert row is not None, step
        assert float(row[1]) > 0
        assert int(row[2].replace(",", "")) > 0


def test_floor_starts_each_job_once_under_either_rule() -> None:
    floor = benchmark_module("floor")
    for rule in ("round_robin", "fill_first"):
        for workers in range(1, 6):
            for first in range(12):
                for count in range(12):
                    starts = sorted(
                        position
                        for index in range(workers)
                        for position in floor.owned(index, workers, rule, first, count)
                    )
                    assert starts == list(range(count)), (rule, workers, first, count)
    # round robin: job k of the run to reader k mod n, whatever message it came in
    assert list(floor.owned(1, 4, "round_robin", 6, 10)) == [3, 7]


def test_floor_beside_spreadq_on_the_embedded_daemon() -> None:
    args = ("--jobs", "600", "--rate", "3000", "--notices", "--against-spreadq", "--json")
    report = json.loads(script("floor.py", *TINY, *args))
    floor = report["floor"]
    assert floor["jobs"] == 600  # it fails unless the readers started every job once
    assert floor["rule"] == "round_robin"
    assert floor["notices"] > 0  # the readers' notices reached the producer
    assert len(floor["worker_cpu_ms_per_s"]) == 2
    assert floor["daemon_cpu_ms_per_s"] is not None  # the embedded daemon's process
    sane_latency(floor["one_way"])
    ours = BenchReport.model_validate(report["spreadq"])
    assert ours.half_load.jobs == 600  # spreadq's paced run has the floor's jobs
    assert ours.paced_rate == 3000
    assert ours.workers == 2


def test_floor_with_the_table_in_its_readers() -> None:
    args = ("--jobs", "600", "--rate", "3000", "--notices", "--table", "--json")
    floor = json.loads(script("floor.py", *TINY, *args))["floor"]
    assert floor["table"] is True
    assert floor["jobs"] == 600  # it fails unless the readers started every job once
    # the tables gave job k to reader k mod 2, as round_robin does in one view
    assert floor["worker_jobs"] == [300, 300]
    assert floor["notices"] > 0  # the tables' NOTICEs (the jobs asked) reached the producer
    sane_latency(floor["one_way"])
    out = script("floor.py", *TINY, "--jobs", "200", "--table")
    assert "floor + table" in out  # its column says what ran


def test_floor_alone_prints_its_table() -> None:
    out = script("floor.py", *TINY, "--jobs", "300", "--rule", "fill_first")
    assert "300 jobs at 13,000/s, fill_first" in out
    assert "one-way p99 ms" in out
    assert "spreadq / floor" not in out  # not asked to run spreadq


def test_floor_refuses_bad_arguments() -> None:
    assert "--payload at least 8" in refusal("floor.py", "--payload", "4")


TIMEHIST = """\
           time    cpu  task name                       wait time  sch delay   run time
                        [tid/pid]                          (msec)     (msec)     (msec)
--------------- ------  ------------------------------  ---------  ---------  ---------
   100.000100 [0000]  python[5]                           0.000      0.000      0.400
   100.000200 [0001]  <idle>                              0.000      0.000      2.000
   100.500000 [0000]  python[6]                           0.100      0.500      1.000
   101.000000 [0001]  python[7/6]                         0.100      1.500      3.000
   101.200000 [0000]  python[8]                           0.100      0.500      1.000
   101.500000 [0001]  python[8]                           0.100      1.500      3.000
   102.000100 [0000]  kworker/0:1[9]                      0.000      9.000      9.000
   102.000100 [0000]  python[5]                           0.000                 0.400
"""


def test_sched_delays_reads_each_slice_of_perf_sched_timehist() -> None:
    sched = benchmark_module("sched_delays")
    slices = sched.parse_timehist(TIMEHIST)
    # the idle row, the headers and the row with a blank column are left out; a thread's
    # row counts for its process
    assert [(s.pid, s.delay_ms, s.run_ms) for s in slices] == [
        (5, 0.0, 0.4),
        (6, 0.5, 1.0),
        (6, 1.5, 3.0),
        (8, 0.5, 1.0),
        (8, 1.5, 3.0),
        (9, 9.0, 9.0),
    ]
    roles = {5: "producer", 6: "worker", 8: "worker"}  # 9 has none: left out
    producer, workers = sched.summarize(slices, roles, 2.0)
    assert (producer.role, producer.processes, producer.wakes_per_s) == ("producer", 1, 0.5)
    assert producer.cpu_ms_per_s == pytest.approx(0.2)
    assert (workers.role, workers.processes) == ("worker", 2)
    assert workers.wakes_per_s == 1.0  # 4 slices over 2 s, for each of 2
    assert workers.cpu_ms_per_s == 2.0  # 8 ms over 2 s, for each of 2
    assert workers.wait.p50 == 1.0
    assert workers.wait.p99 == pytest.approx(1.5)
    assert workers.slice.p90 == pytest.approx(3.0)


def test_sched_delays_says_what_the_cores_ran_while_a_process_waited() -> None:
    sched = benchmark_module("sched_delays")
    rows = """\
   10.002000 [0000]  python[5]                           0.000      0.000      2.000
   10.002000 [0001]  python[7]                           0.000      0.000      1.500
   10.003000 [0001]  python[6]                           0.000      2.000      1.000
"""
    # the worker (6) waited 10.000-10.002 on two cores: the producer (5) ran on one all
    # that time, a process of no role (7) on the other for its last three quarters
    shares = sched.behind(sched.parse_timehist(rows), {5: "producer", 6: "worker"})
    assert list(shares) == ["worker"]  # the producer never waited
    worker = shares["worker"]
    assert list(worker) == ["producer", "other", "idle"]  # largest first
    assert worker["producer"] == pytest.approx(0.5)
    assert worker["other"] == pytest.approx(0.375)
    assert worker["idle"] == pytest.approx(0.125)
    (figures,) = sched.summarize(sched.parse_timehist(rows), {6: "worker 6"}, 1.0)
    assert figures.role == "worker 6"
    assert figures.behind == pytest.approx({"other": 0.875, "idle": 0.125})


def test_sched_delays_says_what_is_missing_without_perf(tmp_path: Path) -> None:
    bare = {**os.environ, "PATH": str(tmp_path)}  # no perf on it
    out = script(
        "sched_delays.py", "--jobs", "4000", "--rate", "2000", "--seconds", "0.5", env=bare
    )
    assert out.startswith("sched_delays: skipped, perf is not on PATH")


def test_sched_delays_refuses_a_paced_run_shorter_than_its_window() -> None:
    assert "shorter than the window" in refusal("sched_delays.py", "--jobs", "1000")


def test_sched_delays_records_both_sides() -> None:
    sched = benchmark_module("sched_delays")
    missing = sched.unavailable()
    if missing is not None:
        pytest.skip(f"perf sched cannot record here: {missing}")
    redis = shutil.which("redis-server") is not None and find_spec("redis") is not None
    side = "both" if redis else "spreadq"
    tiny = ("--jobs", "4000", "--rate", "2000", "--seconds", "0.5", *TINY)
    reports = json.loads(script("sched_delays.py", "--side", side, *tiny, "--json"))
    roles = {
        report["side"]: {r["role"]: r["processes"] for r in report["roles"]} for report in reports
    }
    assert roles["spreadq"] == {"producer": 1, "worker": 2, "daemon": 1}
    if redis:
        assert roles["Redis Streams"] == {"producer": 1, "consumer": 2, "server": 1}
    for report in reports:
        assert report["one_way_p99_ms"] > 0
        for figures in report["roles"]:
            assert figures["wakes_per_s"] > 0
            assert sum(figures["behind"].values()) == pytest.approx(1.0) or not figures["behind"]
            assert 0 <= figures["wait"]["p50"] <= figures["wait"]["p99"]
            assert 0 < figures["slice"]["p50"] <= figures["slice"]["p99"]
