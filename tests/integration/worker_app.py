"""The App run by the worker processes of the end-to-end tests.

``python -m spreadq worker tests.integration.worker_app:app --spread ADDRESS``, with:

* ``SPREADQ_TEST_QUEUE``: the queue name (one per test, so tests can share a daemon);
* ``SPREADQ_TEST_NAME``: the private name (``w0`` ... gives ``#w0#<daemon>``), so a
  test knows which process is which member;
* ``SPREADQ_TEST_RECORDS``: a directory; each process appends one line per handler
  start and end to its own file there, flushed at once, so what a process started is
  on disk even if it is killed with SIGKILL the next instant.

A record line reads ``start|done <i> <member> <attempt> <monotonic seconds> <view size>``;
``time.monotonic()`` is the system-wide CLOCK_MONOTONIC on Linux, so the test can compare
it with its own clock. The handler returns who ran the job and in which view, so the
test can check the round robin from the results alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TextIO

import anyio
from pydantic import BaseModel

from spreadq.app import App
from spreadq.context import Context
from spreadq.settings import Settings

__all__ = ["Ran", "Work", "app"]

QUEUE = os.environ.get("SPREADQ_TEST_QUEUE", "itest")
RECORDS = Path(os.environ.get("SPREADQ_TEST_RECORDS", "."))

app = App(
    QUEUE,
    plugins=False,
    name=os.environ.get("SPREADQ_TEST_NAME") or None,
    settings=Settings(ack_interval=0.01, max_attempts=1),
)

_records: list[TextIO] = []  # this process's record file, opened on first use


def _record(line: str) -> None:
    if not _records:
        _records.append((RECORDS / f"worker-{os.getpid()}.log").open("a", buffering=1))
    _records[0].write(line)


class Work(BaseModel):
    """One job: its number and how long it takes (an I/O wait, like a real handler's)."""

    i: int
    seconds: float = 0.0


class Ran(BaseModel):
    """Who ran a job, and the WORK view it was assigned in."""

    i: int
    member: str
    members: list[str]
    group_id: list[int]


@app.handler("work")
async def work(job: Work, ctx: Context) -> Ran:
    """Record the start, wait ``job.seconds``, record the end, say who ran it."""
    size = len(ctx.view.members)
    _record(f"start {job.i} {ctx.member} {ctx.attempt} {time.monotonic():.6f} {size}\n")
    if job.seconds:
        await anyio.sleep(job.seconds)
    _record(f"done {job.i} {ctx.member} {ctx.attempt} {time.monotonic():.6f} {size}\n")
    group_id = ctx.view.group_id
    assert isinstance(group_id, tuple)
    return Ran(i=job.i, member=ctx.member, members=list(ctx.view.members), group_id=list(group_id))
