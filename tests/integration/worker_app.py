"""The App run by the worker processes of the end-to-end tests.

``python -m spreadq worker tests.integration.worker_app:app --spread ADDRESS``, with:

* ``SPREADQ_TEST_QUEUE``: the queue name (one per test, so tests can share a daemon);
* ``SPREADQ_TEST_NAME``: the private name (``w0`` ... gives ``#w0#<daemon>``), so a
  test knows which process is which member;
* ``SPREADQ_TEST_RECORDS``: a directory; each process appends one line per handler
  start and end to its own file there, flushed at once, so what a process started is
  on disk even if it is killed with SIGKILL the next instant;
* ``SPREADQ_TEST_MAX_FAILOVERS``: ``Settings.max_failovers`` (``none`` for no limit;
  the default setting when unset).
* ``SPREADQ_TEST_PERIODIC``: when set, seconds between the ticks of a periodic job
  ``tick`` (``catch_up="all"``), which records ``tick <t> <member> ...`` as it starts and
  returns the tick and who ran it.

Besides ``work``, ``die`` ends the process at once (``os._exit(1)``, as a crash in an
extension or the OOM killer would) and ``raise`` raises what its payload names
(``cancel``, ``interrupt``, ``exit``). The ``on_failure`` hook records ``failed``.

A record line reads ``start|done|failed <i> <member> <attempt> <monotonic seconds> <view
size>`` (``i`` is the job's seq for ``failed``);
``time.monotonic()`` is the system-wide CLOCK_MONOTONIC on Linux, so the test can compare
it with its own clock. The handler returns who ran the job and in which view, so the
test can check the round robin from the results alone.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import TextIO

import anyio
from pydantic import BaseModel

from spreadq.context import Context
from spreadq.settings import Settings
from spreadq.worker.app import App
from spreadq.worker.periodic import PeriodicTick

__all__ = ["Boom", "Ran", "Work", "app"]

QUEUE = os.environ.get("SPREADQ_TEST_QUEUE", "itest")


def _parse_failovers(text: str) -> int | None:
    return None if text == "none" else int(text)


RECORDS = Path(os.environ.get("SPREADQ_TEST_RECORDS", "."))

_FAILOVERS = os.environ.get("SPREADQ_TEST_MAX_FAILOVERS")

app = App(
    QUEUE,
    plugins=False,
    name=os.environ.get("SPREADQ_TEST_NAME") or None,
    settings=Settings(ack_interval=0.01, max_attempts=1).replace(
        **({} if _FAILOVERS is None else {"max_failovers": _parse_failovers(_FAILOVERS)})
    ),
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


class Boom(BaseModel):
    """What a ``raise`` job raises: ``cancel``, ``interrupt`` or ``exit``."""

    what: str


_RAISED = {
    "cancel": asyncio.CancelledError,
    "interrupt": KeyboardInterrupt,
    "exit": lambda: SystemExit(3),
}


@app.handler("die")
async def die(job: Work, ctx: Context) -> None:
    """Record the start and end the process at once, as a crash would."""
    _record(f"start {job.i} {ctx.member} {ctx.attempt} {time.monotonic():.6f} 0\n")
    os._exit(1)


@app.handler("raise")
async def raise_(job: Boom) -> None:
    """Raise a BaseException from the handler itself."""
    raise _RAISED[job.what]()


@app.on_failure
async def failed(ctx: Context, error: BaseException) -> None:
    """Record which member reported a job failed."""
    seq = getattr(ctx.job, "seq", -1)
    _record(f"failed {seq} {ctx.member} {ctx.attempt} {time.monotonic():.6f} 0\n")


_PERIODIC = os.environ.get("SPREADQ_TEST_PERIODIC")
if _PERIODIC:

    @app.periodic(float(_PERIODIC), name="tick", catch_up="all")
    async def tick(job: PeriodicTick, ctx: Context) -> dict[str, object]:
        """Record the tick's start; say which tick ran where."""
        size = len(ctx.view.members)
        _record(f"tick {job.tick} {ctx.member} {ctx.attempt} {time.monotonic():.6f} {size}\n")
        return {"tick": job.tick, "member": ctx.member}
