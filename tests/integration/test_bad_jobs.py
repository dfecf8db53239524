"""One bad job never takes the queue down: end to end, with worker processes.

* A job whose handler ends its process (``os._exit(1)``, as a segfault in an
  extension or the OOM killer would): with three workers and ``max_failovers=1`` it
  kills two of them, then the third gives it up; the receipt raises ``JobFailed``
  with the remote type ``WorkerLost``, the survivor ran the ``on_failure`` hook and
  still runs jobs.
* Handlers that raise ``asyncio.CancelledError``, ``KeyboardInterrupt`` or
  ``SystemExit(3)`` themselves fail their own job; both workers stay up.
* A second SIGINT or SIGTERM while a worker drains a running job stops it at once
  with exit status 130 or 143, not 0.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import anyio
import pytest
from harness import read_records, spread_daemon, worker_processes

from spreadq.client import Connection, connect
from spreadq.errors import JobFailed
from spreadq.producer import Producer
from spreadq.queue import Drain, decode
from spreadq.wire.events import DataMessage, RegularMembership

pytestmark = pytest.mark.slow

WAIT = 30.0


def queue_name(prefix: str) -> str:
    return f"{prefix}{time.monotonic_ns() % 10**6}"


async def joined(conn: Connection) -> None:
    """Wait (the caller bounds it) for the membership that lists ``conn`` itself."""
    async for event in conn:
        if isinstance(event, RegularMembership) and conn.private_group in event.members:
            return


async def drain_announced(conn: Connection) -> None:
    """Wait (the caller bounds it) for a DRAIN on the FEEDBACK group ``conn`` joined."""
    async for event in conn:
        if isinstance(event, DataMessage) and isinstance(decode(event.data), Drain):
            return


async def test_a_job_that_kills_its_worker_is_given_up_after_max_failovers(
    spread_address: str | None, tmp_path: Path
) -> None:
    queue = queue_name("px")
    records = tmp_path / "records"
    async with (
        spread_daemon(spread_address) as address,
        worker_processes(
            [address] * 3,
            queue=queue,
            records=records,
            concurrency=1,
            extra_env={"SPREADQ_TEST_MAX_FAILOVERS": "1"},
        ) as workers,
    ):
        with anyio.fail_after(WAIT):
            async with Producer(queue, address, close_timeout=0.0) as producer:
                await producer.wait_for_consumers(3)
                receipt = await producer.put("die", {"i": 0})
                with pytest.raises(JobFailed) as caught:
                    await receipt
                survivor_result = await (await producer.put("work", {"i": 1}))
            by_member = {worker.member(): worker for worker in workers}
            found = read_records(records)
            starts = [r.member for r in found if r.event == "start" and r.i == 0]
            hooked = [r.member for r in found if r.event == "failed"]
            for member in starts:
                assert await by_member[member].process.wait() == 1
            survivors = [w.member() for w in workers if w.process.returncode is None]
    assert caught.value.error_type == "spreadq.errors.WorkerLost"
    assert "max_failovers (1)" in caught.value.error_message
    assert len(starts) == 2  # run once, re-run once (max_failovers=1), then given up
    assert len(set(starts)) == 2
    (survivor,) = set(by_member) - set(starts)
    assert hooked == [survivor]  # the member that would have taken it over reported it
    assert survivors == [survivor]
    assert survivor_result["member"] == survivor


async def test_base_exceptions_raised_by_handlers_fail_their_jobs_not_the_workers(
    spread_address: str | None, tmp_path: Path
) -> None:
    queue = queue_name("bx")
    async with (
        spread_daemon(spread_address) as address,
        worker_processes(
            [address] * 2, queue=queue, records=tmp_path / "records", concurrency=2
        ) as workers,
    ):
        with anyio.fail_after(WAIT):
            async with Producer(queue, address, close_timeout=0.0) as producer:
                await producer.wait_for_consumers(2)
                raised = [
                    await producer.put("raise", {"what": what})
                    for what in ("cancel", "interrupt", "exit", "cancel")
                ]
                errors: list[JobFailed] = []
                for receipt in raised:
                    with pytest.raises(JobFailed) as caught:
                        await receipt
                    errors.append(caught.value)
                after = [await producer.put("work", {"i": i}) for i in range(4)]
                results = [await receipt for receipt in after]
            alive = [worker.process.returncode for worker in workers]
    assert [error.error_type for error in errors] == [
        "asyncio.exceptions.CancelledError",
        "KeyboardInterrupt",
        "SystemExit",
        "asyncio.exceptions.CancelledError",
    ]
    assert errors[2].error_message == "3"
    assert {result["member"] for result in results} == {w.member() for w in workers}
    assert alive == [None, None]


@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"]
)
async def test_a_second_signal_during_the_drain_exits_non_zero(
    signum: signal.Signals, status: int, tmp_path: Path
) -> None:
    queue = queue_name("fs")
    async with (
        spread_daemon(None) as address,
        worker_processes([address], queue=queue, records=tmp_path / "r", concurrency=2) as (
            worker,
        ),
    ):
        with anyio.fail_after(WAIT):
            async with Producer(queue, address, close_timeout=0.0) as producer:
                await producer.put("work", {"i": 0, "seconds": 600.0})  # runs on
                await (await producer.put("work", {"i": 1}))  # read after the long one
                async with connect(address, name="observer") as observer:
                    await observer.join(f"{queue}~fb")
                    await joined(observer)
                    worker.process.send_signal(signum)  # drain: waits for the long job
                    await drain_announced(observer)  # (two signals at once may merge)
                    worker.process.send_signal(signum)  # stop at once
                    assert await worker.process.wait() == status
    assert "worker_forced_stop" in worker.output()
