"""Cancel end to end with a worker process: a queued job never starts, a running one's
handler is cancelled, and the worker goes on serving.

One worker process with two slots (``concurrency=2``) runs ``work`` jobs that record
their start and end (``worker_app.py``). A job that waits 60 seconds holds a slot; a
job with no wait put after it finishes only once the long one has started (the first
runner takes the long job before a second runner is added for the next one), so the test
knows what runs and what waits without sleeping.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from harness import read_records, spread_daemon, starts_by_job, worker_processes

from spreadq.errors import JobCancelled
from spreadq.producer import Producer
from spreadq.producer.receipt import ReceiptState

pytestmark = pytest.mark.slow

WAIT = 30.0
LONG = 60.0


async def test_cancel_a_queued_and_a_running_job(
    spread_address: str | None, tmp_path: Path
) -> None:
    queue = f"cx{time.monotonic_ns() % 10**6}"
    records = tmp_path / "records"
    async with (
        spread_daemon(spread_address) as address,
        worker_processes([address], queue=queue, records=records, concurrency=2),
    ):
        with anyio.fail_after(WAIT):
            async with Producer(queue, address) as producer:
                await producer.wait_for_consumers(1)
                running = await producer.put("work", {"i": 0, "seconds": LONG})
                first = await producer.put("work", {"i": 1})
                assert (await first)["i"] == 1  # so job 0 has started
                other = await producer.put("work", {"i": 2, "seconds": LONG})  # 2nd slot
                queued = await producer.put("work", {"i": 3})  # no free slot: it waits
                await producer.flush()  # job 3 is on the wire before its CANCEL
                assert await queued.cancel() is True
                assert await running.cancel() is True  # frees a slot; job 3 must not take it
                after = await producer.put("work", {"i": 4})
                assert (await after)["i"] == 4
                assert await other.cancel() is True
                for receipt in (running, queued, other):
                    assert receipt.state is ReceiptState.CANCELLED
                    with pytest.raises(JobCancelled, match=receipt.job_id):
                        await receipt
                assert await after.cancel() is False  # finished: its outcome stands
    found = read_records(records)
    assert sorted(starts_by_job(found)) == [0, 1, 2, 4]  # job 3 never started
    done = {record.i for record in found if record.event == "done"}
    assert done == {1, 4}  # the handlers of jobs 0 and 2 were cancelled mid-run
