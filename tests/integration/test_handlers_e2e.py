"""What handlers users expect, end to end with worker processes (issue 13).

* Plain ``def`` handlers run in the workers' threads: jobs spread over both workers,
  and ``KeyboardInterrupt`` / ``SystemExit`` raised in a thread fail only their job.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from harness import read_records, spread_daemon, worker_processes

from spreadq.errors import JobFailed
from spreadq.producer import Producer

pytestmark = pytest.mark.slow

WAIT = 30.0


def queue_name(prefix: str) -> str:
    return f"{prefix}{time.monotonic_ns() % 10**6}"


async def test_sync_handlers_run_in_worker_processes(
    spread_address: str | None, tmp_path: Path
) -> None:
    queue = queue_name("sy")
    records = tmp_path / "records"
    async with (
        spread_daemon(spread_address) as address,
        worker_processes([address] * 2, queue=queue, records=records, concurrency=2) as workers,
    ):
        with anyio.fail_after(WAIT):
            async with Producer(queue, address, close_timeout=0.0) as producer:
                await producer.wait_for_consumers(2)
                receipts = [
                    await producer.put("sync_work", {"i": i, "seconds": 0.02}) for i in range(6)
                ]
                results = [await receipt for receipt in receipts]
                errors: list[JobFailed] = []
                for what in ("interrupt", "exit"):
                    with pytest.raises(JobFailed) as caught:
                        await (await producer.put("sync_raise", {"what": what}))
                    errors.append(caught.value)
                after = [await producer.put("sync_work", {"i": i}) for i in range(6, 8)]
                later = [await receipt for receipt in after]
            alive = [worker.process.returncode for worker in workers]
            members = {worker.member() for worker in workers}
    assert [result["i"] for result in results] == list(range(6))
    assert {result["member"] for result in results} == members
    done = sorted(r.i for r in read_records(records) if r.event == "done")
    assert done == list(range(8))
    assert [(error.error_type, error.error_message) for error in errors] == [
        ("KeyboardInterrupt", "KeyboardInterrupt raised by the handler"),
        ("SystemExit", "3"),
    ]
    assert {result["member"] for result in later} == members
    assert alive == [None, None]
