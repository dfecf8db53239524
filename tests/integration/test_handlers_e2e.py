"""What handlers users expect, end to end with worker processes (issue 13).

* Plain ``def`` handlers run in the workers' threads: jobs spread over both workers,
  and ``KeyboardInterrupt`` / ``SystemExit`` raised in a thread fail only their job.
* ``spreadq worker`` runs an app's lifespan around the worker: its state reaches the
  handlers, SIGTERM drains and then runs the shutdown, and a startup that fails ends
  the process with status 1 before it ever joins the WORK group.
* With ``dead_letter`` on, jobs that fail for good (a handler's error, given up after
  ``max_failovers``) land on ``<queue>.dead`` with their error; successful ones do not.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from harness import read_records, spread_daemon, worker_processes

from spreadq.client import connect
from spreadq.context import Context
from spreadq.errors import JobFailed
from spreadq.producer import Producer
from spreadq.testing import run_app
from spreadq.wire.events import DataMessage, RegularMembership
from spreadq.worker.app import App

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
                # the ACKs too, not only the notices: the workers are killed one by one when
                # the test ends, and a survivor would run again what another had not ACKed
                await producer.settled()
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


async def test_the_lifespan_wraps_a_worker_process_and_its_state_reaches_handlers(
    tmp_path: Path,
) -> None:
    queue = queue_name("ls")
    records = tmp_path / "records"
    async with (
        spread_daemon(None) as address,
        worker_processes([address], queue=queue, records=records, concurrency=1) as (worker,),
    ):
        with anyio.fail_after(WAIT):
            async with Producer(queue, address, close_timeout=0.0) as producer:
                await producer.wait_for_consumers(1)
                pid = await (await producer.put("state", {"i": 0}))
            worker.process.send_signal(signal.SIGTERM)  # drain, then the shutdown
            assert await worker.process.wait() == 0
    assert pid == worker.process.pid
    (lifespan,) = records.glob("lifespan-*.log")
    assert lifespan.read_text().split() == ["startup", "shutdown"]


async def test_a_lifespan_startup_failure_stops_the_worker_before_it_joins(
    tmp_path: Path,
) -> None:
    queue = queue_name("lf")
    records = tmp_path / "records"
    seen: list[tuple[str, ...]] = []
    async with spread_daemon(None) as address, connect(address, name="observer") as observer:
        await observer.join(queue)  # the WORK group: its members are the consumers
        async with worker_processes(
            [address],
            queue=queue,
            records=records,
            concurrency=1,
            extra_env={"SPREADQ_TEST_LIFESPAN": "fail"},
        ) as (worker,):
            with anyio.fail_after(WAIT):
                assert await worker.process.wait() == 1
        with anyio.fail_after(WAIT):
            # every membership of the group until now comes before our own marker
            await observer.multicast(queue, b"marker")
            async for event in observer:
                if isinstance(event, RegularMembership):
                    seen.append(event.members)
                elif isinstance(event, DataMessage) and event.data == b"marker":
                    break
    assert seen  # our own join, at least
    assert all(members == (observer.private_group,) for members in seen)
    assert "the lifespan of the app for queue" in worker.output()
    assert "failed at startup: RuntimeError: no database" in worker.output()
    (lifespan,) = records.glob("lifespan-*.log")
    assert lifespan.read_text().split() == ["startup"]


async def test_jobs_that_fail_for_good_land_on_the_dead_letter_queue(
    spread_address: str | None, tmp_path: Path
) -> None:
    """Three workers with max_failovers=1: a job that kills its worker is given up and
    lands with WorkerLost; one whose handler raises lands with its error; a job that
    succeeds does not land. The dead-letter consumer is an ordinary App."""
    queue = queue_name("dl")
    dead = App(f"{queue}.dead", plugins=False)
    landed: list[tuple[str, dict[str, str]]] = []
    both = anyio.Event()

    async def record(job: dict[str, Any], ctx: Context) -> None:
        landed.append((ctx.kind, dict(ctx.headers)))
        if len(landed) == 2:
            both.set()

    for kind in ("die", "raise", "work"):
        dead.handler(kind)(record)
    async with (
        spread_daemon(spread_address) as address,
        worker_processes(
            [address] * 3,
            queue=queue,
            records=tmp_path / "records",
            concurrency=1,
            extra_env={"SPREADQ_TEST_MAX_FAILOVERS": "1", "SPREADQ_TEST_DEAD_LETTER": "1"},
        ),
        run_app(dead, daemon=address),
    ):
        with anyio.fail_after(WAIT):
            async with Producer(queue, address, close_timeout=0.0) as producer:
                await producer.wait_for_consumers(3)
                with pytest.raises(JobFailed):
                    await (await producer.put("die", {"i": 0}))
                await (await producer.put("work", {"i": 1}))
                with pytest.raises(JobFailed):
                    await (await producer.put("raise", {"what": "interrupt"}))
            await both.wait()
    (died, died_headers), (raised, raised_headers) = landed
    assert (died, raised) == ("die", "raise")
    assert died_headers["spreadq-error-type"] == "spreadq.errors.WorkerLost"
    assert "max_failovers (1)" in died_headers["spreadq-error"]
    assert raised_headers["spreadq-error-type"] == "KeyboardInterrupt"
    assert raised_headers["spreadq-attempts"] == "1"
    assert {died_headers["spreadq-origin-queue"], raised_headers["spreadq-origin-queue"]} == {queue}
