"""The benchmark's pure parts: latency summaries, /proc parsing, per-job arithmetic."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from hypothesis import given
from hypothesis import strategies as st

from spreadq.bench import (
    Workers,
    cpu_seconds,
    cpu_snapshot,
    cpu_spent,
    latency,
    memory,
    per_slice,
    sched_snapshot,
    sched_spent,
    schedstat,
    wait_seconds,
)
from spreadq.bench.procs import (
    parse_schedstat,
    parse_schedstat_wait,
    parse_stat_cpu,
    parse_status_kb,
    processes,
)
from spreadq.bench.report import Cpu, delivered_per_job, quantile

# /proc/<pid>/stat of a process whose name holds a space and a parenthesis; utime 250 and
# stime 50 ticks are fields 14 and 15
STAT = (
    "4242 (spreadq (bench) w) S 1 4242 4242 0 -1 4194560 1520 0 0 0 250 50 0 0 20 0 3 0 "
    "123456 250000000 12000 18446744073709551615 1 1 0 0 0 0 0 16781312 16386 0 0 0 17 1"
)


def test_stat_cpu_counts_fields_after_the_command_name() -> None:
    assert parse_stat_cpu(STAT, 100) == pytest.approx(3.0)


@pytest.mark.parametrize("text", ["", "4242 S 1 2 3", "4242 (x) S 1 2"])
def test_a_line_that_is_not_stat_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a /proc"):
        parse_stat_cpu(text, 100)


def test_schedstat_gives_the_seconds_spent_waiting_for_a_cpu() -> None:
    assert parse_schedstat_wait("2839274598 1424921711 839\n") == pytest.approx(1.424921711)


def test_schedstat_gives_time_on_a_cpu_waiting_and_the_slices_run() -> None:
    on_cpu, waited, slices = parse_schedstat("2839274598 1424921711 839\n")
    assert on_cpu == pytest.approx(2.839274598)
    assert waited == pytest.approx(1.424921711)
    assert slices == 839


@pytest.mark.parametrize("text", ["", "1 2", "1 2 3 4"])
def test_a_line_that_is_not_schedstat_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a /proc"):
        parse_schedstat_wait(text)
    with pytest.raises(ValueError, match="not a /proc"):
        parse_schedstat(text)


def test_the_mean_slice_is_each_process_run_time_over_its_slices() -> None:
    ran = Cpu(producer_s=0.3, workers_s=(0.2, 0.0), daemon_s=0.1)
    slices = Cpu(producer_s=600, workers_s=(400, 0), daemon_s=None)
    mean = per_slice(ran, slices)
    assert mean is not None
    assert mean.producer_s == pytest.approx(0.0005)
    assert mean.workers_s == pytest.approx((0.0005, 0.0))  # a worker that never ran: 0
    assert mean.daemon_s is None  # its slices unknown
    assert per_slice(None, slices) is None
    assert per_slice(ran, None) is None


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="needs schedstat")
def test_this_process_runs_and_is_switched_in() -> None:
    (ran, _, _), _, (slices, _, _) = sched_snapshot([], None)  # this process: the producer's
    assert ran is not None
    assert slices is not None
    assert ran > 0
    assert slices >= 1
    burnt = time.thread_time() + 0.05
    while time.thread_time() < burnt:  # 50 ms of CPU (a running task's count may lag a tick)
        pass
    after = sched_snapshot([os.getpid()], None)
    (ran_after, workers_ran, _), _, (slices_after, workers_slices, _) = after
    assert ran_after is not None
    assert slices_after is not None
    assert 0.03 < ran_after - ran < 60  # seconds, not nanoseconds or ticks
    assert slices_after >= slices
    assert workers_ran is not None  # the same process by pid, read just before
    assert workers_slices is not None
    assert ran < workers_ran[0] <= ran_after
    assert slices <= workers_slices[0] <= slices_after
    waited, mean_slice = sched_spent(sched_snapshot([], None), sched_snapshot([], None))
    assert waited is not None
    assert waited.producer_s >= 0
    assert mean_slice is not None
    assert mean_slice.producer_s >= 0
    assert schedstat(2**22 + 12345) is None  # no such process


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="needs schedstat")
def test_time_waited_for_a_cpu_is_read_for_this_process_and_each_pid() -> None:
    before = cpu_snapshot([os.getpid()], None, read=wait_seconds)
    after = cpu_snapshot([os.getpid()], None, read=wait_seconds)
    spent = cpu_spent(before, after)
    assert spent is not None
    assert spent.producer_s >= 0
    assert spent.workers_s[0] >= 0
    assert spent.daemon_s is None  # no daemon pid given
    assert wait_seconds(2**22 + 12345) is None  # no such process


def test_status_values_in_kb() -> None:
    text = "Name:\tpython\nVmPeak:\t  300000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n"
    assert parse_status_kb(text, "VmRSS") == 40960
    assert parse_status_kb(text, "VmHWM") == 51200
    assert parse_status_kb("Name:\tkthreadd\n", "VmRSS") is None


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")
def test_cpu_and_memory_of_a_child_and_of_this_process() -> None:
    burn = "import time\nend = time.process_time() + 0.05\nwhile time.process_time() < end: pass\n"
    child = subprocess.Popen(
        [sys.executable, "-c", burn + "import sys; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        # read only once the child runs Python: just after the fork its /proc entry is
        # the bare exec'd image (about 12 KB resident)
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        found = memory(child.pid)
        assert found is not None
        assert 1 < found.rss_mb <= found.peak_mb
        assert memory() is not None
        spent = cpu_seconds(child.pid)
        assert spent is not None
        assert spent >= 0
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
        assert child.stdout is not None
        child.stdout.close()
    assert cpu_seconds(child.pid) is None  # gone: nothing to read
    assert memory(child.pid) is None
    before = cpu_seconds()
    assert before is not None
    assert before > 0


def test_latency_summary_in_milliseconds() -> None:
    summary = latency([i / 1000 for i in range(1000, 0, -1)])  # 1..1000 ms, any order
    assert summary.p50_ms == pytest.approx(500.5)
    assert summary.p99_ms == pytest.approx(990.01)
    assert summary.p999_ms == pytest.approx(999.001)
    assert summary.max_ms == pytest.approx(1000)
    assert summary.cdf_ms[0] == pytest.approx(1)
    assert summary.cdf_ms[-1] == pytest.approx(1000)
    assert len(summary.cdf_ms) == 101


def test_one_sample_is_every_quantile() -> None:
    summary = latency([0.002])
    assert summary.p50_ms == summary.p999_ms == summary.max_ms == pytest.approx(2)
    with pytest.raises(ValueError, match="no latency samples"):
        latency([])


@given(st.lists(st.floats(0, 1e3), min_size=1, max_size=200), st.floats(0, 1), st.floats(0, 1))
def test_quantile_lies_within_the_samples_and_grows_with_q(
    samples: list[float], q1: float, q2: float
) -> None:
    ordered = sorted(samples)
    low, high = sorted((q1, q2))
    assert ordered[0] <= quantile(ordered, low) <= quantile(ordered, high) <= ordered[-1]


def test_quantile_outside_0_1_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        quantile([1.0], 1.5)


def test_deliveries_count_every_member_of_each_group() -> None:
    # 10 JOB messages to 4 workers, 5 worker ACKs to the 4 workers and the producer
    assert delivered_per_job(10, 5, workers=4, jobs=100) == pytest.approx((40 + 25) / 100)
    with pytest.raises(ValueError, match="positive"):
        delivered_per_job(1, 1, workers=1, jobs=0)


def test_a_notice_is_delivered_once() -> None:
    # 2 of the 5 worker messages are NOTICEs to the producer's private group
    assert delivered_per_job(10, 5, workers=4, jobs=100, private=2) == pytest.approx(
        (40 + 3 * 5 + 2) / 100
    )
    with pytest.raises(ValueError, match=r"not within 0\.\.5"):
        delivered_per_job(10, 5, workers=4, jobs=100, private=6)


REPORTER = """
import signal, sys
signal.signal(signal.SIGUSR1, lambda *_: print("7 3", flush=True))
print("ready", flush=True)
signal.pause()
"""


async def test_a_worker_reports_its_messages_and_those_to_private_groups() -> None:
    says = [sys.executable, "-c", REPORTER]  # as a bench worker does on SIGUSR1
    async with processes([says, says], stdout=True) as started:
        with anyio.fail_after(30):
            for process in started:  # its handler is in place
                assert process.stdout is not None
                assert await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 9)
            workers = Workers(started)
            assert await workers.messages() == (14, 6)


async def test_a_worker_that_exits_is_a_child_process_error() -> None:
    gone = [sys.executable, "-c", "pass"]  # exits at once, reporting nothing
    async with processes([gone], stdout=True) as started:
        workers = Workers(started)
        with anyio.fail_after(30), pytest.raises(ChildProcessError, match="exited"):
            await workers.messages()


def test_a_queue_run_keeps_only_the_receipts_still_pending() -> None:
    from collections import deque

    from spreadq.bench.roles import STAMP
    from spreadq.bench.run import _harvest
    from spreadq.producer import Receipt

    receipts = [Receipt[bytes]("noop", seq, decode=bytes) for seq in range(4)]
    receipts[0]._succeed(STAMP.pack(10.0), 1.0)
    receipts[1]._succeed(STAMP.pack(11.0), 2.0)
    receipts[3]._succeed(STAMP.pack(13.0), 4.0)  # behind a pending one: kept, in order
    pending = deque(enumerate(receipts))
    done_at, results = [0.0] * 4, [b""] * 4
    _harvest(pending, done_at, results)
    assert [index for index, _ in pending] == [2, 3]
    assert done_at == [1.0, 2.0, 0.0, 0.0]
    assert [STAMP.unpack(r)[0] for r in results[:2]] == [10.0, 11.0]
    receipts[2]._succeed(STAMP.pack(12.0), 3.0)
    _harvest(pending, done_at, results)
    assert not pending
    assert done_at == [1.0, 2.0, 3.0, 4.0]
