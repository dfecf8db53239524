"""Worker processes, their records and a FEEDBACK observer, for the end-to-end tests.

* :func:`spread_daemon` yields a real daemon's address, or runs an embedded daemon.
* :func:`worker_processes` starts ``python -m spreadq worker
  tests.integration.worker_app:app`` processes (named ``w0``, ``w1`` ...) and kills
  whatever is left of them when the block ends, however it ends.
* :func:`read_records` reads what the workers wrote about every handler they started
  and finished (see ``worker_app.py``); :func:`starts_by_job` groups the starts, and
  :func:`running_members` says who has a job started and not finished.
* :class:`Pipeline` puts jobs through a producer, a bounded number unfinished at once.
* :class:`Observer` is a FEEDBACK member that timestamps every membership of the group
  (and reads, so drains, the group's traffic).
* :func:`figures` prints measured figures on one line (``pytest -s`` shows them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from spreadq.client import Connection
from spreadq.daemon import serve
from spreadq.producer import Producer, Receipt
from spreadq.wire.events import RegularMembership

__all__ = [
    "REPO",
    "Observer",
    "Pipeline",
    "Record",
    "WorkerProcess",
    "figures",
    "read_records",
    "running_members",
    "spread_daemon",
    "starts_by_job",
    "worker_processes",
]

REPO = Path(__file__).resolve().parents[2]
WORKER_APP = "tests.integration.worker_app:app"
KILL_WAIT = 5.0


@dataclass
class WorkerProcess:
    """One worker process and its private name (``w0`` -> member ``#w0#<daemon>``)."""

    name: str
    process: anyio.abc.Process
    log: Path

    def member(self, daemon: str = "localhost") -> str:
        return f"#{self.name}#{daemon}"

    def freeze(self) -> None:
        """SIGSTOP the process: it runs nothing, writes nothing and sends nothing until
        :meth:`thaw` or :meth:`kill`."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT a frozen process."""
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> float:
        """SIGKILL the process; return the monotonic time just before."""
        at = time.monotonic()
        self.process.send_signal(signal.SIGKILL)
        return at

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@asynccontextmanager
async def worker_processes(
    addresses: Sequence[str],
    *,
    queue: str,
    records: Path,
    concurrency: int,
    extra_env: Mapping[str, str] | None = None,
    names: Sequence[str] | None = None,
) -> AsyncIterator[list[WorkerProcess]]:
    """Start one worker process per address (``w0`` on ``addresses[0]`` ..., or the
    given ``names``), with ``extra_env`` added to their environment.

    Every process still running when the block ends is killed (all of them before any
    is reaped) and reaped; when the block fails, the end of each worker's output is
    printed first.
    """
    await anyio.Path(records).mkdir(parents=True, exist_ok=True)
    started: list[WorkerProcess] = []
    try:
        for index, address in enumerate(addresses):
            name = f"w{index}" if names is None else names[index]
            log = records / f"{name}.stderr"
            env = {
                **os.environ,
                "SPREADQ_TEST_QUEUE": queue,
                "SPREADQ_TEST_NAME": name,
                "SPREADQ_TEST_RECORDS": str(records),
                **(extra_env or {}),
            }
            command = [
                sys.executable,
                "-m",
                "spreadq",
                "--log-level",
                "warning",
                "worker",
                WORKER_APP,
                "--spread",
                address,
                "--concurrency",
                str(concurrency),
            ]
            with log.open("wb") as sink:
                process = await anyio.open_process(
                    command, cwd=REPO, env=env, stdin=None, stdout=sink, stderr=sink
                )
            started.append(WorkerProcess(name, process, log))
        try:
            yield started
        except BaseException:
            for worker in started:
                print(f"--- {worker.name}\n{worker.output()[-3000:]}")
            raise
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(KILL_WAIT):
            # all at once: a worker killed while others live would leave them its
            # finished jobs that no ACK confirmed yet, to run again
            for worker in started:
                if worker.process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        worker.process.kill()
            for worker in started:
                await worker.process.wait()
                await worker.process.aclose()


@asynccontextmanager
async def spread_daemon(address: str | None) -> AsyncIterator[str]:
    """Yield ``address`` (a real daemon's), or run an embedded daemon and yield its."""
    if address is not None:
        yield address
        return
    async with serve() as daemon:
        yield daemon.address


@dataclass
class Pipeline:
    """Puts ``work`` jobs, keeping at most ``in_flight`` unfinished; ``results`` holds
    the finished ones' results in put order."""

    producer: Producer
    in_flight: int
    seconds: float
    receipts: list[Receipt[Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    async def put(self, i: int) -> None:
        """Put job ``i``, then wait while too many are unfinished."""
        payload = {"i": i, "seconds": self.seconds}
        self.receipts.append(await self.producer.put("work", payload))
        await self.settle(self.in_flight)

    async def settle(self, limit: int = 0) -> None:
        """Collect results until at most ``limit`` jobs are unfinished."""
        while len(self.receipts) - len(self.results) > limit:
            self.results.append(await self.receipts[len(self.results)])

    async def finish(self) -> None:
        """Collect every result, then wait for the ACKs that settle every job. A receipt
        resolves from its outcome notice first, and the ACK follows within the worker's
        ``ack_interval``; when the test ends the workers are killed one after the other,
        and a survivor that saw another leave would run again what that one had not
        ACKed yet: a duplicate of the teardown's making, not of the run's."""
        await self.settle()
        await self.producer.settled()


@dataclass(frozen=True, slots=True)
class Record:
    """One line a worker wrote: a handler ``start`` or ``done``; ``redelivered`` is the
    handler's ``ctx.redelivered`` (False for lines that do not say)."""

    event: str
    i: int
    member: str
    attempt: int
    at: float
    view_size: int
    redelivered: bool = False


def read_records(records: Path) -> list[Record]:
    """Every record line of every worker, file by file, in the order written."""
    found: list[Record] = []
    for path in sorted(records.glob("worker-*.log")):
        for line in path.read_text().splitlines():
            event, i, member, attempt, at, size, *rest = line.split()
            redelivered = rest == ["1"]
            found.append(
                Record(event, int(i), member, int(attempt), float(at), int(size), redelivered)
            )
    return found


def running_members(records: Path) -> set[str]:
    """The members whose records show a job they started and have not finished (one
    read of every worker's records)."""
    open_jobs: set[tuple[str, int]] = set()
    for record in read_records(records):
        if record.event == "start":
            open_jobs.add((record.member, record.i))
        elif record.event == "done":
            open_jobs.discard((record.member, record.i))
    return {member for member, _ in open_jobs}


def starts_by_job(records: Sequence[Record]) -> dict[int, list[Record]]:
    """The ``start`` records of each job number."""
    starts: dict[int, list[Record]] = defaultdict(list)
    for record in records:
        if record.event == "start":
            starts[record.i].append(record)
    return dict(starts)


@dataclass
class Observer:
    """A member of the FEEDBACK group that timestamps its memberships."""

    conn: Connection
    group: str
    changes: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def run(self) -> None:
        async for event in self.conn:
            if isinstance(event, RegularMembership) and event.group == self.group:
                self.changes.append((time.monotonic(), event.members))
                self.changed.set()
                self.changed = anyio.Event()

    async def until(self, check: Callable[[tuple[str, ...]], bool], after: float = 0.0) -> float:
        """Wait (the caller bounds it) for a membership at or after ``after`` that passes
        ``check``; return the time it arrived."""
        while True:
            for at, members in self.changes:
                if at >= after and check(members):
                    return at
            await self.changed.wait()


def figures(title: str, **values: object) -> None:
    """Print measured figures on one line: ``FIGURES title: key=value ...``."""
    text = " ".join(
        f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}"
        for key, value in values.items()
    )
    print(f"FIGURES {title}: {text}")
