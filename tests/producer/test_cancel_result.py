"""``receipt.cancel()`` and ``Producer.result()`` end to end, on the embedded daemon.

A worker runs in this process (its handlers signal the test through events, so no test
sleeps); ``spreadq result`` is also run as a separate process.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from spreadq.client import connect
from spreadq.daemon import serve
from spreadq.errors import (
    ConfigurationError,
    JobCancelled,
    JobFailed,
    OutcomeUnknown,
)
from spreadq.producer import Producer, Receipt
from spreadq.producer.receipt import ReceiptState
from spreadq.queue.envelope import MESS_TYPE, Cancel, encode
from spreadq.queue.jobs import JobRef
from spreadq.settings import Settings
from spreadq.wire.constants import ServiceType
from spreadq.worker.app import App

WAIT = 10.0


@dataclass
class Worker:
    """What the handlers of the test app saw, and the events that steer them."""

    address: str
    ran: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    started: dict[int, anyio.Event] = field(default_factory=dict)
    release: anyio.Event = field(default_factory=anyio.Event)

    def started_event(self, n: int) -> anyio.Event:
        return self.started.setdefault(n, anyio.Event())


def make_app(queue: str, worker: Worker, name: str | None = None) -> App:
    app = App(
        queue,
        worker.address,
        plugins=False,
        name=name,
        settings=Settings(concurrency=1, ack_interval=0.01, max_attempts=1),
    )

    @app.handler("block")
    async def block(n: int) -> int:
        """Run until the test releases it (recording a cancel)."""
        worker.ran.append(n)
        worker.started_event(n).set()
        try:
            await worker.release.wait()
        except anyio.get_cancelled_exc_class():
            worker.cancelled.append(n)
            raise
        return n * 10

    @app.handler("quick")
    async def quick(n: int) -> int:
        worker.ran.append(n)
        return n * 10

    @app.handler("fail")
    async def fail(n: int) -> int:
        raise ValueError(f"no {n}")

    return app


@asynccontextmanager
async def queue_with_worker(queue: str) -> AsyncIterator[tuple[Worker, Producer]]:
    async with serve() as daemon:
        worker = Worker(daemon.address)
        async with anyio.create_task_group() as tg:
            await tg.start(partial(make_app(queue, worker).run, handle_signals=False))
            async with Producer(queue, daemon.address) as producer:
                await producer.wait_for_consumers(1)
                yield worker, producer
            tg.cancel_scope.cancel()


async def test_cancelling_a_job_queued_at_its_owner_means_it_never_runs() -> None:
    with anyio.fail_after(WAIT):
        async with queue_with_worker("cq") as (worker, producer):
            first = await producer.put("block", 1)
            await worker.started_event(1).wait()  # concurrency 1: job 2 waits behind it
            second = await producer.put("block", 2)
            await producer.flush()  # on the wire: the CANCEL is ordered after it
            assert await second.cancel() is True
            assert second.state is ReceiptState.CANCELLED
            with pytest.raises(JobCancelled, match=second.job_id):
                await second
            worker.release.set()
            assert await first == 10
            third = await producer.put("quick", 3)  # the worker goes on
            assert await third == 30
    assert worker.ran == [1, 3]  # job 2 never started


async def test_cancelling_a_running_job_cancels_its_handler() -> None:
    with anyio.fail_after(WAIT):
        async with queue_with_worker("cr") as (worker, producer):
            receipt = await producer.put("block", 1)
            await worker.started_event(1).wait()
            with capture_logs() as logs:
                assert await receipt.cancel() is True
            with pytest.raises(JobCancelled):
                await receipt
            assert await (await producer.put("quick", 2)) == 20
    assert worker.cancelled == [1]
    assert any(entry["event"] == "job_cancel_sent" for entry in logs)


async def test_a_finished_job_cannot_be_cancelled_and_keeps_its_result() -> None:
    with anyio.fail_after(WAIT):
        async with queue_with_worker("cf") as (_, producer):
            receipt = await producer.put("quick", 4)
            assert await receipt == 40
            assert await receipt.cancel() is False
            assert await receipt == 40


def live_receipts(producer: str) -> list[int]:
    """The seqs of the receipts alive of the producer whose id is ``producer`` (hex)."""
    found = [o for o in gc.get_objects() if type(o) is Receipt]
    return sorted(o.seq for o in found if o.job_id.startswith(producer + ":"))


async def test_a_finished_receipt_nobody_holds_is_freed_without_the_cycle_collector() -> None:
    """A receipt must not refer to itself (its cancel took a closure over it once):
    then every job left garbage that only a full collection frees, and a producer
    stalled for tens of milliseconds in those collections."""
    with anyio.fail_after(WAIT):
        async with queue_with_worker("cg") as (_, producer):
            gc.disable()
            try:
                receipts = [await producer.put("quick", n) for n in range(20)]
                assert [await receipt for receipt in receipts] == [n * 10 for n in range(20)]
                mine = receipts[0].job_id.split(":")[0]
                assert live_receipts(mine) == list(range(20))
                del receipts
                # the sender keeps its last batch: one more job moves it past ours
                last = await producer.put("quick", 20)
                assert await last == 200
                assert live_receipts(mine) == [20]
            finally:
                gc.enable()


async def test_a_job_never_sent_is_withdrawn_at_once_and_never_runs() -> None:
    async with serve() as daemon:
        worker = Worker(daemon.address)
        with anyio.fail_after(WAIT):
            async with Producer("cw", daemon.address) as producer:
                held = await producer.put("quick", 5)  # no consumer: held, unsent
                assert await held.cancel() is True
                with pytest.raises(JobCancelled):
                    await held
                async with anyio.create_task_group() as tg:
                    await tg.start(partial(make_app("cw", worker).run, handle_signals=False))
                    later = await producer.put("quick", 6)
                    assert await later == 60
                    tg.cancel_scope.cancel()
    assert worker.ran == [6]


async def test_a_cancel_from_another_client_is_refused_and_the_job_runs() -> None:
    with anyio.fail_after(WAIT):
        async with queue_with_worker("ci") as (worker, producer):
            receipt = await producer.put("block", 7)
            await worker.started_event(7).wait()
            ref = JobRef(producer.producer_id, receipt.seq)
            with capture_logs() as logs:
                async with connect(worker.address) as intruder:
                    data = encode(Cancel(ref))
                    groups = (producer.work_group, producer.feedback_group)
                    await intruder.multicast(groups, data, ServiceType.AGREED, MESS_TYPE)
                    await intruder.flush()
                # the worker refuses it; the producer, which sees it on FEEDBACK, drops
                # it by the same rule (bounded by fail_after; no sleeping)
                while len(refusals(logs)) < 2:
                    await anyio.wait_all_tasks_blocked()
            worker.release.set()
            assert await receipt == 70
    worker_side, producer_side = sorted(refusals(logs), key=lambda e: str(e["event"]))
    assert worker_side["event"] == "cancel_refused"
    assert worker_side["job"] == str(ref)
    assert producer_side["event"] == "feedback_dropped"
    assert producer_side["reason"] == "it did not send the job"
    assert worker.cancelled == []


def refusals(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [
        e
        for e in logs
        if e["event"] == "cancel_refused"
        or (e["event"] == "feedback_dropped" and e.get("kind") == "cancel")
    ]


async def test_a_fire_and_forget_receipt_cannot_be_cancelled() -> None:
    async with serve() as daemon, Producer("cx", daemon.address, member=False) as producer:
        receipt = await producer.put("quick", 1)
        with pytest.raises(ConfigurationError, match="fire-and-forget"):
            await receipt.cancel()


# -- results -----------------------------------------------------------------------------


async def test_another_producer_reads_outcomes_while_a_consumer_remembers_them() -> None:
    with anyio.fail_after(WAIT):
        async with queue_with_worker("rq") as (worker, producer):
            done = await producer.put("quick", 1)
            failed = await producer.put("fail", 2)
            cancelled = await producer.put("block", 3)
            assert await done == 10
            with pytest.raises(JobFailed):
                await failed
            await worker.started_event(3).wait()
            assert await cancelled.cancel()
            async with Producer("rq", worker.address) as other:
                assert await other.result(done.job_id) == 10
                with pytest.raises(JobFailed, match="ValueError: no 2"):
                    await other.result(failed.job_id)
                with pytest.raises(JobCancelled):
                    await other.result(cancelled.job_id)
                unknown = JobRef(b"\x07" * 16, 1).id
                with pytest.raises(OutcomeUnknown, match="none of the 1 consumers remembers it"):
                    await other.result(unknown)
                with pytest.raises(ConfigurationError, match="is not a job id"):
                    await other.result("nonsense")


async def test_a_result_asked_while_the_job_runs_waits_for_it() -> None:
    with anyio.fail_after(WAIT):
        async with queue_with_worker("rp") as (worker, producer):
            running = await producer.put("block", 4)
            await worker.started_event(4).wait()
            async with Producer("rp", worker.address) as other, anyio.create_task_group() as tg:
                answers: list[object] = []

                async def ask() -> None:
                    answers.append(await other.result(running.job_id, timeout=WAIT))

                tg.start_soon(ask)
                await anyio.wait_all_tasks_blocked()
                worker.release.set()
            assert answers == [40]


async def test_a_result_still_outstanding_at_the_bound_is_unknown() -> None:
    with anyio.fail_after(WAIT):
        async with queue_with_worker("ro") as (worker, producer):
            running = await producer.put("block", 5)
            await worker.started_event(5).wait()
            with pytest.raises(OutcomeUnknown, match=r"still outstanding after 0\.2 s"):
                await producer.result(running.job_id, timeout=0.2)
            worker.release.set()
            assert await running == 50


async def test_an_answer_comes_from_the_member_that_remembers() -> None:
    # w1 completes the job alone; w0 joins later and does not remember it: whichever the
    # view lists first, one query per member at most finds the one that does
    async with serve() as daemon:
        first, second = Worker(daemon.address), Worker(daemon.address)
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                await tg.start(partial(make_app("ra", first, "w1").run, handle_signals=False))
                async with Producer("ra", daemon.address) as producer:
                    receipt = await producer.put("quick", 9)
                    assert await receipt == 90
                    # the ACK that completes it (after the notice that resolved the receipt)
                    # is ordered before w0 joins: w0 never reads it
                    await producer.settled()
                    await tg.start(partial(make_app("ra", second, "w0").run, handle_signals=False))
                    consumers = await producer.wait_for_consumers(2)
                    with capture_logs() as logs:
                        assert await producer.result(receipt.job_id) == 90
                tg.cancel_scope.cancel()
    asked = [e["index"] for e in logs if e["event"] == "result_asked"]
    # the view lists w0 first: it answers "unknown", and w1, asked next, remembers
    assert consumers[0].startswith("#w0#")
    assert asked == [0, 1]


async def test_spreadq_result_reads_an_outcome_from_another_process() -> None:
    with anyio.fail_after(3 * WAIT):
        async with queue_with_worker("rc") as (worker, producer):
            receipt = await producer.put("quick", 8)
            assert await receipt == 80
            command = [sys.executable, "-m", "spreadq", "result", "rc", receipt.job_id]
            command += ["--spread", worker.address]
            done = await anyio.run_process(command, check=False, env=dict(os.environ))
            assert done.returncode == 0, done.stderr.decode()
            assert json.loads(done.stdout) == 80
            unknown = JobRef(b"\x07" * 16, 1).id
            command[5] = unknown
            done = await anyio.run_process([*command, "-t", "2"], check=False)
            assert done.returncode == 1
            assert b"none of the 1 consumers remembers it" in done.stderr
