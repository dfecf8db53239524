"""``sticky`` end to end: the jobs of one message run on one member, the next message's
on the next.

Four worker processes run the queue with ``rule="sticky"``; a producer puts 2000 jobs
as fast as it can, packing at most 20 into a message (``batch_max_jobs``), so that each
message is one run of the rule (32 jobs at most). The results alone show who ran each
job: read in job order, they fall into runs of one member, one run a message, and the
runs go around Spread's member list in order. The records show that each job ran
exactly once.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from harness import read_records, spread_daemon, starts_by_job, worker_processes

from spreadq.producer import Producer
from spreadq.settings import Settings

pytestmark = pytest.mark.slow

JOBS = 2000
WORKERS = 4
WAIT = 45.0
PACKED = 20  # jobs a message at most: under Sticky().run (32), one run a message


async def test_the_jobs_of_a_message_run_on_one_member_and_messages_go_around(
    spread_address: str | None, tmp_path: Path
) -> None:
    queue = f"sticky{time.monotonic_ns() % 10**6}"
    records = tmp_path / "records"
    async with (
        spread_daemon(spread_address) as address,
        worker_processes(
            [address] * WORKERS,
            queue=queue,
            records=records,
            concurrency=8,
            extra_env={"SPREADQ_TEST_RULE": "sticky"},
        ),
    ):
        with anyio.fail_after(WAIT):
            settings = Settings(batch_max_jobs=PACKED)
            async with Producer(queue, address, settings=settings) as producer:
                await producer.wait_for_consumers(WORKERS)
                receipts = [await producer.put("work", {"i": i}) for i in range(JOBS)]
                results: list[dict[str, Any]] = [await receipt for receipt in receipts]
                messages = producer.statistics().messages
                await producer.settled()  # the ACKs too: the workers are killed at the end

    members = results[0]["members"]
    assert all(result["group_id"] == results[0]["group_id"] for result in results)
    runs = [
        (member, len(list(jobs)))
        for member, jobs in itertools.groupby(result["member"] for result in results)
    ]
    assert len(runs) == messages > JOBS // PACKED - 1  # one run a message
    assert all(length <= PACKED for _, length in runs), runs
    # message m of the view goes to members[m mod 4]: the first message after the
    # view that the producer waited for is message 0
    assert [member for member, _ in runs] == [members[m % WORKERS] for m in range(len(runs))]
    starts = starts_by_job(read_records(records))
    assert sorted(starts) == list(range(JOBS))
    assert all(len(runs) == 1 for runs in starts.values())
