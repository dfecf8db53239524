"""The seed's rule, end to end: after the last view, job k is run by member k mod 4.

Four worker processes (``python -m spreadq worker tests.integration.worker_app:app``)
join the queue; once a producer knows all four, it puts 2000 jobs. Each handler
returns the member that ran it and the view it was assigned in (``ctx.member``,
``ctx.view``), and writes a record of every start, so the test checks from the results
alone that job k went to ``members[k mod 4]`` of one and the same view, and from the
records that each job ran exactly once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from harness import figures, read_records, spread_daemon, starts_by_job, worker_processes

from spreadq.producer import Producer

pytestmark = pytest.mark.slow

JOBS = 2000
WORKERS = 4
WAIT = 45.0


async def test_job_k_after_the_last_view_runs_on_member_k_mod_4(
    spread_address: str | None, tmp_path: Path
) -> None:
    kind = "embedded" if spread_address is None else "real"
    queue = f"seed{time.monotonic_ns() % 10**6}"
    records = tmp_path / "records"
    async with (
        spread_daemon(spread_address) as address,
        worker_processes(
            [address] * WORKERS, queue=queue, records=records, concurrency=8
        ) as workers,
    ):
        with anyio.fail_after(WAIT):
            async with Producer(queue, address) as producer:
                await producer.wait_for_consumers(WORKERS)
                started = time.monotonic()
                receipts = [await producer.put("work", {"i": i}) for i in range(JOBS)]
                results: list[dict[str, Any]] = [await receipt for receipt in receipts]
                elapsed = time.monotonic() - started
                # the ACKs too, not only the notices: the workers are killed one by one when
                # the test ends, and a survivor would run again what another had not ACKed
                await producer.settled()

    members = results[0]["members"]
    assert members == sorted(worker.member() for worker in workers)  # Spread's order
    assert all(result["members"] == members for result in results)
    assert all(result["group_id"] == results[0]["group_id"] for result in results)
    assert [result["i"] for result in results] == list(range(JOBS))
    assert [result["member"] for result in results] == [members[k % 4] for k in range(JOBS)]
    starts = starts_by_job(read_records(records))
    assert sorted(starts) == list(range(JOBS))
    assert all(len(runs) == 1 for runs in starts.values())
    figures("seed", daemon=kind, jobs=JOBS, seconds=elapsed, jobs_per_second=JOBS / elapsed)
