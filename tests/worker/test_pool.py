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
