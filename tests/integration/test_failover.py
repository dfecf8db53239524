"""kill -9 of a worker process mid-run: every job completes, duplicates only where due.

Four worker processes (under ``round_robin``, and again under ``sticky``) run 3000
jobs (each an I/O wait of a few milliseconds) put by one producer that keeps about 400
unfinished, so every worker always has work queued and running. Once a third of the
results are in, worker ``w1`` is killed with SIGKILL while its records show a job it is
running.
Then:

* every receipt resolves with a result (no job is lost, none fails);
* a job started twice was started by the dead worker: the survivors re-run only what
  it had started and not reported, and take over its queued jobs without duplicates;
* there were such re-runs (the victim had a job in hand), and every job that ran
  in the 3-member view after the kill ran on a survivor.

Measured (printed with ``pytest -s``): duplicates, and the recovery time from the
SIGKILL to the membership change a FEEDBACK observer sees, to the first job a
survivor started in the new view (the dispatcher starts taken-over jobs before its own
queued ones, so that is a taken-over job), and to the first re-run of a job the victim
had started.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from harness import (
    Observer,
    Pipeline,
    Record,
    figures,
    read_records,
    running_members,
    spread_daemon,
    starts_by_job,
    worker_processes,
)

from spreadq import connect
from spreadq.producer import Producer

pytestmark = pytest.mark.slow

JOBS = 3000
IN_FLIGHT = 400
WORKERS = 4
JOB_SECONDS = 0.004
WAIT = 50.0


@pytest.mark.parametrize("rule", ["round_robin", "sticky", "fill_first"])
async def test_sigkill_of_a_worker_mid_run(
    spread_address: str | None, tmp_path: Path, rule: str
) -> None:
    kind = "embedded" if spread_address is None else "real"
    queue = f"fo{time.monotonic_ns() % 10**6}"
    feedback = f"{queue}~fb"
    records = tmp_path / "records"
    async with (
        spread_daemon(spread_address) as address,
        worker_processes(
            [address] * WORKERS,
            queue=queue,
            records=records,
            concurrency=4,
            extra_env={"SPREADQ_TEST_RULE": rule},
        ) as workers,
    ):
        victim = workers[1]
        with anyio.fail_after(WAIT):
            async with (
                connect(address, name="observer") as conn,
                anyio.create_task_group() as tg,
            ):
                observer = Observer(conn, feedback)
                await conn.join(feedback)
                tg.start_soon(observer.run)
                async with Producer(queue, address) as producer:
                    await producer.wait_for_consumers(WORKERS)
                    started = time.monotonic()
                    pipeline = Pipeline(producer, IN_FLIGHT, JOB_SECONDS)
                    killed_at = 0.0
                    for i in range(JOBS):
                        await pipeline.put(i)
                        # killed with a job in hand: what it started is run again. (It
                        # can be idle for a moment, every outcome ACKed, when the oldest
                        # unfinished jobs, which hold the pipeline back, are the others'.
                        # Under fill_first only the first member in Spread's order has
                        # jobs: the victim is the first worker seen with one.) Frozen
                        # first, it cannot finish and report that job before the kill
                        # (a handler records "done" before its outcome goes out).
                        if not killed_at and len(pipeline.results) >= JOBS // 3:
                            busy = running_members(records)
                            if busy:
                                if victim.member() not in busy:
                                    victim = next(w for w in workers if w.member() in busy)
                                victim.freeze()
                                if victim.member() in running_members(records):
                                    killed_at = victim.kill()
                                else:
                                    victim.thaw()
                    await pipeline.finish()
                    elapsed = time.monotonic() - started
                view_changed = await observer.until(
                    lambda members: victim.member() not in members, after=killed_at
                )
                tg.cancel_scope.cancel()
            assert await victim.process.wait() != 0

    assert [result["i"] for result in pipeline.results] == list(range(JOBS))
    starts = starts_by_job(read_records(records))
    assert sorted(starts) == list(range(JOBS))
    victim_member = victim.member()
    started_by_victim = {
        i for i, runs in starts.items() if victim_member in {r.member for r in runs}
    }
    duplicates = {i for i, runs in starts.items() if len(runs) > 1}
    assert duplicates <= started_by_victim
    # it was killed with a job running: that one, at least, ran again
    assert duplicates
    new_view = [run for runs in starts.values() for run in runs if run.view_size == WORKERS - 1]
    assert new_view
    assert all(run.member != victim_member for run in new_view)
    # survivors start the jobs they took over (ctx.redelivered) first: ahead of the rest
    # of their own queued jobs and of later ones
    found = read_records(records)
    takers = {r.member for r in found if r.event == "start" and r.redelivered}
    assert takers
    assert victim_member not in takers
    for survivor in takers:
        assert_taken_over_first(found, survivor)
    reruns = [run.at for i in duplicates for run in starts[i] if run.member != victim_member]
    figures(
        "failover",
        daemon=kind,
        rule=rule,
        jobs=JOBS,
        seconds=elapsed,
        victim_started=len(started_by_victim),
        duplicates=len(duplicates),
        kill_to_view_ms=(view_changed - killed_at) * 1000,
        kill_to_first_takeover_ms=(min(run.at for run in new_view) - killed_at) * 1000,
        kill_to_first_rerun_ms=(min(reruns) - killed_at) * 1000,
    )


def assert_taken_over_first(records: list[Record], member: str) -> None:
    """``member``'s jobs taken over from the victim start before its own queued ones.

    A taken-over job is one its handler saw with ``ctx.redelivered``. They all reach
    ``member`` at the one view change and go ahead of the jobs it had queued and of
    later ones, so in its starts, in the order written, no start that is not
    redelivered lies between its first and its last redelivered start.
    """
    mine = [r for r in records if r.event == "start" and r.member == member]
    taken = [n for n, r in enumerate(mine) if r.redelivered]
    between = [r.i for r in mine[taken[0] : taken[-1] + 1] if not r.redelivered]
    assert not between, f"{member} started its own jobs {between} amid the taken-over ones"


async def test_sigterm_drains_a_worker_without_duplicates(
    spread_address: str | None, tmp_path: Path
) -> None:
    """SIGTERM: the worker takes no new work, finishes and reports what it owns, leaves
    and exits 0; nothing is run twice and nobody has to take anything over."""
    jobs = 1500
    kind = "embedded" if spread_address is None else "real"
    queue = f"dr{time.monotonic_ns() % 10**6}"
    records = tmp_path / "records"
    async with (
        spread_daemon(spread_address) as address,
        worker_processes(
            [address] * WORKERS, queue=queue, records=records, concurrency=4
        ) as workers,
    ):
        leaver = workers[1]
        with anyio.fail_after(WAIT):
            async with Producer(queue, address) as producer:
                await producer.wait_for_consumers(WORKERS)
                pipeline = Pipeline(producer, IN_FLIGHT, JOB_SECONDS)
                signalled = False
                for i in range(jobs):
                    await pipeline.put(i)
                    if not signalled and len(pipeline.results) >= jobs // 3:
                        leaver.process.terminate()
                        signalled = True
                await pipeline.finish()
            assert await leaver.process.wait() == 0

    results = pipeline.results
    assert [result["i"] for result in results] == list(range(jobs))
    starts = starts_by_job(read_records(records))
    assert all(len(runs) == 1 for runs in starts.values())
    leaver_member = leaver.member()
    ran_by_leaver = {i for i, runs in starts.items() if runs[0].member == leaver_member}
    reported_by_leaver = {r["i"] for r in results if r["member"] == leaver_member}
    assert ran_by_leaver == reported_by_leaver  # it finished and reported all it started
    assert ran_by_leaver
    assert all(len(r["members"]) == WORKERS for r in results if r["member"] == leaver_member)
    figures("drain", daemon=kind, jobs=jobs, ran_by_leaver=len(ran_by_leaver))
