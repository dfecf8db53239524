"""A network partition and merge, injected through the embedded daemon's virtual daemons.

The embedded daemon runs two virtual daemons, ``d1`` and ``d2``. Worker processes
``w0`` and ``w1`` connect to ``d1``, ``w2`` and ``w3`` to ``d2``; the producer and a
FEEDBACK observer to ``d1``. The producer keeps about 400 jobs unfinished. Once 300
results are in, the daemons are partitioned: each side sees a NETWORK membership with
its own two workers and takes over the other side's outstanding jobs, whose payloads
it holds (docs/design/replicated-table.md#failover). The producer, on ``d1``, goes on putting jobs,
which only ``d1``'s side sees. When those are done the daemons merge, and more jobs are put,
which all four workers share again. Then:

* every receipt resolves with a result;
* a job ran twice only if it was put before the partition and not yet reported done
  when it happened (each side finished the other side's outstanding jobs);
* both sides ran jobs in their two-member view, and the jobs put after the merge ran
  on all four workers.

There is no real-daemon variant: one real daemon cannot be partitioned. Measured
(printed with ``pytest -s``): duplicates, and the time from the partition and the merge
to the membership change the observer sees.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from harness import (
    Observer,
    Pipeline,
    figures,
    read_records,
    starts_by_job,
    worker_processes,
)

from spreadq import connect
from spreadq.daemon import serve
from spreadq.producer import Producer

pytestmark = pytest.mark.slow

BEFORE_MERGE = 1500
AFTER_MERGE = 1000
PARTITION_AFTER = 300
IN_FLIGHT = 400
JOB_SECONDS = 0.004
WAIT = 50.0


async def test_partition_and_merge(tmp_path: Path) -> None:
    queue = f"pt{time.monotonic_ns() % 10**6}"
    feedback = f"{queue}~fb"
    records = tmp_path / "records"
    async with serve(daemons=("d1", "d2")) as daemon:
        d1, d2 = daemon.addresses["d1"], daemon.addresses["d2"]
        # Receipts resolve at the ACK here (no outcome notices), so a receipt done when
        # the network splits is a job every replica had completed: the bound below.
        async with worker_processes(
            [d1, d1, d2, d2],
            queue=queue,
            records=records,
            concurrency=4,
            extra_env={"SPREADQ_OUTCOME_NOTICES": "0"},
        ) as workers:
            side1 = {workers[0].member("d1"), workers[1].member("d1")}
            side2 = {workers[2].member("d2"), workers[3].member("d2")}
            with anyio.fail_after(WAIT):
                async with (
                    connect(d1, name="observer") as conn,
                    anyio.create_task_group() as tg,
                    Producer(queue, d1) as producer,
                ):
                    observer = Observer(conn, feedback)
                    await conn.join(feedback)
                    tg.start_soon(observer.run)
                    await producer.wait_for_consumers(4)
                    pipeline = Pipeline(producer, IN_FLIGHT, JOB_SECONDS)
                    parted_at = 0.0
                    put_before = 0
                    done_before: set[int] = set()
                    for i in range(BEFORE_MERGE):
                        await pipeline.put(i)
                        if not parted_at and len(pipeline.results) >= PARTITION_AFTER:
                            put_before = len(pipeline.receipts)
                            done_before = {
                                i for i, receipt in enumerate(pipeline.receipts) if receipt.done
                            }
                            parted_at = time.monotonic()
                            daemon.faults.partition([["d1"], ["d2"]])
                    await pipeline.settle()
                    parted_seen = await observer.until(
                        lambda members: not side2 & set(members), after=parted_at
                    )
                    merged_at = time.monotonic()
                    daemon.faults.merge()
                    merged_seen = await observer.until(
                        lambda members: side1 | side2 <= set(members), after=merged_at
                    )
                    for i in range(BEFORE_MERGE, BEFORE_MERGE + AFTER_MERGE):
                        await pipeline.put(i)
                    await pipeline.finish()
                    tg.cancel_scope.cancel()

    results = pipeline.results
    total = BEFORE_MERGE + AFTER_MERGE
    assert [result["i"] for result in results] == list(range(total))
    starts = starts_by_job(read_records(records))
    assert sorted(starts) == list(range(total))
    duplicates = {i for i, runs in starts.items() if len(runs) > 1}
    outstanding_at_partition = set(range(put_before)) - done_before
    assert duplicates <= outstanding_at_partition
    partitioned = [run for runs in starts.values() for run in runs if run.view_size == 2]
    assert {run.member for run in partitioned} == side1 | side2  # both sides worked
    after_merge = {result["member"] for result in results[BEFORE_MERGE:]}
    assert after_merge == side1 | side2
    figures(
        "partition",
        jobs=total,
        outstanding_at_partition=len(outstanding_at_partition),
        duplicates=len(duplicates),
        ran_partitioned=len(partitioned),
        partition_to_view_ms=(parted_seen - parted_at) * 1000,
        merge_to_view_ms=(merged_seen - merged_at) * 1000,
    )
