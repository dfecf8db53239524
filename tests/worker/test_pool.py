"""The runner pool on its own: a fault of the runner fails the job, never the runner."""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.abc
from structlog.testing import capture_logs

from spreadq.actors.channel import Channel
from spreadq.logs import get_logger
from spreadq.queue import Job, JobRef, Outcome, RunJob, View
from spreadq.settings import Settings
from spreadq.worker.pool import ENDED, Ended, EndedReady, Help, QueuedJob, Rescan, RunnerPool
from spreadq.worker.runner import JobRunner

PID = b"p" * 16
VIEW = View(("#me#h",), (1, 1, 1), 1)
WAIT = 10.0


class FaultyRunner:
    """Stands for the JobRunner: job 1 hits a bug of ours, the others succeed."""

    async def run(self, job: Job, *args: Any, **kwargs: Any) -> Outcome:
        if job.ref.seq == 1:
            raise RuntimeError("a bug in the runner")
        return Outcome.success(b"ok")


def queued(seq: int) -> QueuedJob:
    job = Job(JobRef(PID, seq), "k", None, "json", b"{}")
    return QueuedJob.of(RunJob(job, "#p#h", 0), VIEW)


async def test_a_runner_fault_fails_its_job_and_the_next_job_runs() -> None:
    ended: list[Ended] = []
    inbox = Channel[EndedReady | Help | Rescan]()  # as the dispatcher's loop gets them
    pool: RunnerPool

    async def loop() -> None:
        while len(ended) < 3:
            item = await inbox.receive()
            if item is ENDED:
                ended.extend(pool.take_ended())
            elif isinstance(item, Help):
                pool.help()

    runner: Any = FaultyRunner()
    assert not isinstance(runner, JobRunner)  # duck-typed: only run() is called here
    pool = RunnerPool(
        runner, Settings(), report=inbox.send_nowait, clock=time.monotonic, log=get_logger("test")
    )
    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            pool.attach(tg)
            pool.start_all([queued(0), queued(1), queued(2)], time.monotonic())
            assert len(pool) == 3
            await loop()
            tg.cancel_scope.cancel()
    outcomes = {e.ref.seq: e.outcome for e in ended}
    assert outcomes[0] == outcomes[2] == Outcome.success(b"ok")
    failed = outcomes[1]
    assert failed is not None
    assert (failed.ok, failed.error_type, failed.error_message) == (
        False,
        "RuntimeError",
        "a bug in the runner",
    )
    (crash,) = [entry for entry in logs if entry["event"] == "job_crashed"]
    assert (crash["job"], crash["kind"], crash["log_level"]) == (str(JobRef(PID, 1)), "k", "error")


class CountingRunner:
    """Stands for the JobRunner: every job succeeds at once (a handler that never waits)."""

    async def run(self, job: Job, *args: Any, **kwargs: Any) -> Outcome:
        return Outcome.success(b"ok")


class OneSlot:
    """Stands for the loop's scheduler and refill, with one slot: the next job starts
    only once the slot of the last one is freed (by a refill, or by the loop)."""

    def __init__(self, jobs: int) -> None:
        self.waiting = [queued(seq) for seq in range(jobs)]
        self.running: JobRef | None = None
        self.released: list[JobRef] = []
        self.refills = 0
        self.pool: RunnerPool | None = None

    def release(self) -> None:
        assert self.pool is not None
        for ref in self.pool.release_ended():
            assert ref == self.running  # only the job holding the slot ends
            self.released.append(ref)
            self.running = None

    def pump(self) -> None:
        assert self.pool is not None
        if self.running is None and self.waiting:
            job = self.waiting.pop(0)
            self.running = job.ref
            self.pool.start_all([job], time.monotonic())

    def refill(self) -> None:
        self.refills += 1
        self.release()
        self.pump()


async def run_one_slot(jobs: int, refill_limit: int) -> tuple[OneSlot, list[list[Ended]]]:
    """Run ``jobs`` jobs through a pool whose loop frees a slot only as the
    dispatcher does; return the slot and the ends the loop took, take by take."""
    slot = OneSlot(jobs)
    inbox = Channel[EndedReady | Help | Rescan]()
    runner: Any = CountingRunner()
    pool = RunnerPool(
        runner,
        Settings(concurrency=1),
        report=inbox.send_nowait,
        clock=time.monotonic,
        log=get_logger("test"),
        refill=slot.refill,
        refill_limit=refill_limit,
    )
    slot.pool = pool
    takes: list[list[Ended]] = []
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            pool.attach(tg)
            slot.pump()
            while sum(map(len, takes)) < jobs:
                item = await inbox.receive()
                if item is ENDED:  # what the dispatcher's _on_ended does
                    slot.release()
                    ended = pool.take_ended()
                    pool.ended_all([ref for ref, _ in ended])
                    takes.append(ended)
                    slot.pump()
                elif isinstance(item, Help):
                    pool.help()
            tg.cancel_scope.cancel()
    return slot, takes


async def test_a_runner_out_of_jobs_refills_without_waiting_for_the_loop() -> None:
    slot, takes = await run_one_slot(5, refill_limit=200)
    # one slot, five jobs: the runner freed the slot and started the next four itself,
    # and the loop took all five ends in one go
    assert [[ref.seq for ref, _ in take] for take in takes] == [[0, 1, 2, 3, 4]]
    assert all(outcome == Outcome.success(b"ok") for take in takes for _, outcome in take)
    assert slot.refills == 5  # once after each job (the last found nothing to start)
    assert [ref.seq for ref in slot.released] == [0, 1, 2, 3, 4]  # each slot freed once


async def test_a_runner_refills_only_while_fewer_ends_than_the_limit_wait() -> None:
    slot, takes = await run_one_slot(10, refill_limit=3)
    # after three ends the runner waits for the loop, which takes them (and their
    # outcomes to the table) before more start
    assert [len(take) for take in takes] == [3, 3, 3, 1]
    assert [ref.seq for take in takes for ref, _ in take] == list(range(10))
    assert [ref.seq for ref in slot.released] == list(range(10))


async def test_without_a_refill_each_end_waits_for_the_loop() -> None:
    slot, takes = await run_one_slot(4, refill_limit=1)
    assert [len(take) for take in takes] == [1, 1, 1, 1]
    assert slot.refills == 0
