"""``fill_first`` end to end: a light load runs on the first member alone, a burst on
whoever the rule spills it to, each job once.

Three worker processes run the queue with ``rule="fill_first"`` (room for 512 jobs
unacknowledged). A producer first puts jobs one at a time, each after the last one's
result: the first member of the view (Spread's order) never holds more than one, so
it runs every one, while the others count the jobs and stand by (they read in batches:
``spreadq.worker.standby``), and their results still come at once. Then it puts a
burst without waiting: the records show each job ran exactly once, whoever ran it.

Then jobs that take a while: with two slots a worker, a stream of 20 ms jobs keeps the
first member's jobs waiting for a slot, so it says it is busy (capacity 0 in a HELLO,
``busy_after``) and the next jobs go down the list, where they would all have queued on
the first member before (it holds far fewer than ``room`` of them). And a burst of such
jobs put at once, all on the first member before it can say anything: once busy, it
gives back those its slots would reach late (RELEASE), and the others run them.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from harness import read_records, spread_daemon, starts_by_job, worker_processes

from spreadq.producer import Producer, Receipt

pytestmark = pytest.mark.slow

ONE_BY_ONE = 60
BURST = 1500
WORKERS = 3
WAIT = 45.0


@asynccontextmanager
async def fill_first_queue(
    spread_address: str | None,
    records: Path,
    *,
    concurrency: int,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Producer]:
    """``WORKERS`` worker processes under ``fill_first`` (``env`` added to theirs), and a
    producer that has seen them all; once the caller is done, every job it put is
    settled by an ACK too (the workers are killed at the end). Bounded by ``WAIT``."""
    queue = f"fill{time.monotonic_ns() % 10**6}"
    async with (
        spread_daemon(spread_address) as address,
        worker_processes(
            [address] * WORKERS,
            queue=queue,
            records=records,
            concurrency=concurrency,
            extra_env={"SPREADQ_TEST_RULE": "fill_first", **(env or {})},
        ),
    ):
        with anyio.fail_after(WAIT):
            async with Producer(queue, address) as producer:
                await producer.wait_for_consumers(WORKERS)
                yield producer
                await producer.settled()


async def test_a_light_load_runs_on_the_first_member_and_a_burst_runs_once(
    spread_address: str | None, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    async with fill_first_queue(spread_address, records, concurrency=8) as producer:
        one_by_one: list[dict[str, Any]] = []
        for i in range(ONE_BY_ONE):
            one_by_one.append(await (await producer.put("work", {"i": i})))
        burst = [
            await producer.put("work", {"i": i}) for i in range(ONE_BY_ONE, ONE_BY_ONE + BURST)
        ]
        for receipt in burst:
            await receipt

    first = one_by_one[0]["members"][0]
    assert all(result["group_id"] == one_by_one[0]["group_id"] for result in one_by_one)
    assert {result["member"] for result in one_by_one} == {first}
    ran_once(records, ONE_BY_ONE + BURST)


def ran_once(records: Path, jobs: int) -> Counter[str]:
    """Check that jobs 0 .. ``jobs`` - 1 each started exactly once; how many each member
    ran."""
    starts = starts_by_job(read_records(records))
    assert sorted(starts) == list(range(jobs))
    assert all(len(runs) == 1 for runs in starts.values())
    return Counter(runs[0].member for runs in starts.values())


SLOW_JOBS = 120
SLOW_SECONDS = 0.02
SLOW_IN_FLIGHT = 16


async def test_slow_jobs_go_past_a_member_that_says_it_is_busy(
    spread_address: str | None, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    env = {"SPREADQ_BUSY_AFTER": "0.02"}
    async with fill_first_queue(spread_address, records, concurrency=2, env=env) as producer:
        in_flight: deque[Receipt[Any]] = deque()
        for i in range(SLOW_JOBS):
            if len(in_flight) == SLOW_IN_FLIGHT:
                await in_flight.popleft()
            in_flight.append(await producer.put("work", {"i": i, "seconds": SLOW_SECONDS}))
        for receipt in in_flight:
            await receipt
    ran = ran_once(records, SLOW_JOBS)
    # one member alone would have run all of them (16 in flight is far below its room)
    assert len([member for member, count in ran.items() if count >= 10]) >= 2, ran


BURST_SLOW = 60


async def test_a_burst_of_slow_jobs_is_given_back_to_the_other_members(
    spread_address: str | None, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    env = {"SPREADQ_BUSY_AFTER": "0.02"}
    async with fill_first_queue(spread_address, records, concurrency=2, env=env) as producer:
        burst = [
            await producer.put("work", {"i": i, "seconds": SLOW_SECONDS}) for i in range(BURST_SLOW)
        ]
        for receipt in burst:
            await receipt
    ran = ran_once(records, BURST_SLOW)
    # the first member alone would have run all 60 (600 ms on its two slots); it keeps
    # what it ran before it was busy and what its slots reach next, the others share
    # the rest (27 and 27 of 60 in a run on the embedded daemon)
    assert len(ran) == WORKERS, ran
    assert len([member for member, count in ran.items() if count >= 20]) == 2, ran
