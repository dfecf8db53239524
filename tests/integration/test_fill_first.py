"""``fill_first`` end to end: a light load runs on the first member alone, a burst on
whoever the rule spills it to, each job once.

Three worker processes run the queue with ``rule="fill_first"`` (room for 512 jobs
unacknowledged). A producer first puts jobs one at a time, each after the last one's
result: the first member of the view (Spread's order) never holds more than one, so
it runs every one, while the others count the jobs and stand by (they read in batches:
``spreadq.worker.standby``), and their results still come at once. Then it puts a
burst without waiting: the records show each job ran exactly once, whoever ran it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from harness import read_records, spread_daemon, starts_by_job, worker_processes

from spreadq.producer import Producer

pytestmark = pytest.mark.slow

ONE_BY_ONE = 60
BURST = 1500
WORKERS = 3
WAIT = 45.0


async def test_a_light_load_runs_on_the_first_member_and_a_burst_runs_once(
    spread_address: str | None, tmp_path: Path
) -> None:
    queue = f"fill{time.monotonic_ns() % 10**6}"
    records = tmp_path / "records"
    async with (
        spread_daemon(spread_address) as address,
        worker_processes(
            [address] * WORKERS,
            queue=queue,
            records=records,
            concurrency=8,
            extra_env={"SPREADQ_TEST_RULE": "fill_first"},
        ),
    ):
        with anyio.fail_after(WAIT):
            async with Producer(queue, address) as producer:
                await producer.wait_for_consumers(WORKERS)
                one_by_one: list[dict[str, Any]] = []
                for i in range(ONE_BY_ONE):
                    one_by_one.append(await (await producer.put("work", {"i": i})))
                burst = [
                    await producer.put("work", {"i": i})
                    for i in range(ONE_BY_ONE, ONE_BY_ONE + BURST)
                ]
                for receipt in burst:
                    await receipt
                await producer.settled()  # the ACKs too: the workers are killed at the end

    first = one_by_one[0]["members"][0]
    assert all(result["group_id"] == one_by_one[0]["group_id"] for result in one_by_one)
    assert {result["member"] for result in one_by_one} == {first}
    starts = starts_by_job(read_records(records))
    assert sorted(starts) == list(range(ONE_BY_ONE + BURST))
    assert all(len(runs) == 1 for runs in starts.values())
