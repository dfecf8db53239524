"""The App run by the worker processes of the end-to-end tests.

``python -m spreadq worker tests.integration.worker_app:app --spread ADDRESS``, with:

* ``SPREADQ_TEST_QUEUE``: the queue name (one per test, so tests can share a daemon);
* ``SPREADQ_TEST_NAME``: the private name (``w0`` ... gives ``#w0#<daemon>``), so a
  test knows which process is which member;
* ``SPREADQ_TEST_RECORDS``: a directory; each process appends one line per handler
  start and end to its own file there, flushed at once, so what a process started is
  on disk even if it is killed with SIGKILL the next instant;
* ``SPREADQ_TEST_MAX_FAILOVERS``: ``Settings.max_failovers`` (``none`` for no limit;
  the default setting when unset);
* ``SPREADQ_TEST_DEAD_LETTER``: ``1`` puts jobs that fail for good on ``<queue>.dead``;
* ``SPREADQ_TEST_RULE``: the ownership rule (``round_robin`` when unset);
* ``SPREADQ_TEST_LIFESPAN``: ``fail`` makes the app's lifespan fail at startup. The
  lifespan writes ``startup`` and ``shutdown`` to ``lifespan-<pid>.log`` in the records
  directory and yields ``{"pid": <pid>}`` as the handlers' ``ctx.state``.
* ``SPREADQ_TEST_PERIODIC``: when set, seconds between the ticks of a periodic job
  ``tick`` (``catch_up="all"``), which records ``tick <t> <member> ...`` as it starts and
  returns the tick and who ran it.
* ``SPREADQ_TEST_CRON``: when set, the cron expression of a periodic job ``crontick``
  (``catch_up="all"``), which records ``crontick <t> <member> ...`` as it starts (``t``
  is the tick's due time in Unix seconds) and returns the tick and who ran it.

Besides ``work``, ``die`` ends the process at once (``os._exit(1)``, as a crash in an
extension or the OOM killer would) and ``raise`` raises what its payload names
(``cancel``, ``interrupt``, ``exit``); ``state`` (a plain ``def``) returns
``ctx.state["pid"]``. ``sync_work`` and ``sync_raise`` are the same as
plain ``def`` handlers, run in the worker's threads. The ``on_failure`` hook records
``failed``.

A record line reads ``start|done|failed <i> <member> <attempt> <monotonic seconds> <view
size>`` (``i`` is the job's seq for ``failed``), and ``work`` adds ``1`` or ``0``: its
``ctx.redelivered``;
``time.monotonic()`` is the system-wide CLOCK_MONOTONIC on Linux, so the test can compare
it with its own clock. The handler returns who ran the job and in which view, so the
test can check the round robin from the results alone.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
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


@asynccontextmanager
async def lifespan(app: App) -> AsyncIterator[dict[str, int]]:
    """Record startup and shutdown; fail at startup when the test asks for it."""
    path = RECORDS / f"lifespan-{os.getpid()}.log"
    with path.open("a", buffering=1) as sink:
        sink.write("startup\n")
        if os.environ.get("SPREADQ_TEST_LIFESPAN") == "fail":
            raise RuntimeError("no database")
        yield {"pid": os.getpid()}
        sink.write("shutdown\n")


app = App(
    QUEUE,
    rule=os.environ.get("SPREADQ_TEST_RULE", "round_robin"),
    lifespan=lifespan,
    dead_letter=os.environ.get("SPREADQ_TEST_DEAD_LETTER") == "1",
    plugins=False,
    name=os.environ.get("SPREADQ_TEST_NAME") or None,
    settings=Settings(ack_interval=0.01, max_attempts=1).replace(
        **({} if _FAILOVERS is None else {"max_failovers": _parse_failovers(_FAILOVERS)})
    ),
)

_records: list[TextIO] = []  # this process's record file, opened on first use
_records_lock = threading.Lock()  # sync handlers record from their threads


def _record(line: str) -> None:
    with _records_lock:
        if not _records:
            _records.append((RECORDS / f"worker-{os.getpid()}.log").open("a", buffering=1))
        _records[0].write(line)


class Work(BaseModel):
    """One job: its number and how long it takes (an I/O wait, like a real handler's);
    ``seconds_again``, when given, is how long a redelivered run of it takes."""

    i: int
    seconds: float = 0.0
    seconds_again: float | None = None


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
    again = int(ctx.redelivered)
    _record(f"start {job.i} {ctx.member} {ctx.attempt} {time.monotonic():.6f} {size} {again}\n")
    seconds = (
        job.seconds_again if ctx.redelivered and job.seconds_again is not None else job.seconds
    )
    if seconds:
        await anyio.sleep(seconds)
    _record(f"done {job.i} {ctx.member} {ctx.attempt} {time.monotonic():.6f} {size} {again}\n")
    group_id = ctx.view.group_id
    assert isinstance(group_id, tuple)
    return Ran(i=job.i, member=ctx.member, members=list(ctx.view.members), group_id=list(group_id))


class Boom(BaseModel):
    """What a ``raise`` job raises: ``cancel``, ``interrupt`` or ``exit``."""

    what: str


_RAISED: dict[str, Callable[[], BaseException]] = {
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


@app.handler("state")
def state(job: Work, ctx: Context) -> int:
    """What the lifespan yielded, read from a worker thread."""
    assert isinstance(ctx.state, dict)
    pid: int = ctx.state["pid"]
    return pid


@app.handler("sync_work")
def sync_work(job: Work, ctx: Context) -> Ran:
    """``work`` as a plain ``def``: it blocks its thread for ``job.seconds``."""
    size = len(ctx.view.members)
    _record(f"start {job.i} {ctx.member} {ctx.attempt} {time.monotonic():.6f} {size}\n")
    if job.seconds:
        time.sleep(job.seconds)
    _record(f"done {job.i} {ctx.member} {ctx.attempt} {time.monotonic():.6f} {size}\n")
    group_id = ctx.view.group_id
    assert isinstance(group_id, tuple)
    return Ran(i=job.i, member=ctx.member, members=list(ctx.view.members), group_id=list(group_id))


@app.handler("sync_raise")
def sync_raise(job: Boom) -> None:
    """``raise`` as a plain ``def``: the BaseException is raised in a worker thread."""
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


_CRON = os.environ.get("SPREADQ_TEST_CRON")
if _CRON:

    @app.periodic(cron=_CRON, name="crontick", catch_up="all")
    async def crontick(job: PeriodicTick, ctx: Context) -> dict[str, object]:
        """Record the tick's start; say which tick ran where."""
        size = len(ctx.view.members)
        _record(f"crontick {job.tick} {ctx.member} {ctx.attempt} {time.monotonic():.6f} {size}\n")
        return {"tick": job.tick, "member": ctx.member}
