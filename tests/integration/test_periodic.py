"""A periodic job on worker processes: each tick runs once, none skipped, across a kill
and across joins.

The workers run ``worker_app`` with a periodic job ``tick`` every 0.25 s
(``catch_up="all"``). A FEEDBACK member reads the ACKs (each tick's result names its
tick and who ran it) until ticks have run; then the announcer, ``w0`` (the first
member: all workers share a daemon, so the view is ordered by name), is killed with
SIGKILL, and the test reads on until more ticks have run on the survivors. Then, from
the workers' records (one line per tick started, even by the killed process):

* every tick between the first and the last started at least once: none skipped,
  including those that came due while the survivors noticed the death;
* no tick started twice, except one the killed worker had started (failed over);
* the ticks after the kill ran on survivors, announced by the next witness.

Two more scenarios start a worker process while the ticks run. In one the newcomer
(``v0``) sorts first, so it leads the view and announces once the tick ledger settled
(its LEDGER and the others' went through the order). In the other, the announcer
``w0`` is killed as soon as the view with the newcomer (``x0``) is seen, before or while
the ledger settles. In both, from the records: no tick between the first and the last
was skipped, and none ran twice (except, after the kill, one the killed worker had
started).

Measured (printed with ``pytest -s``): ticks, and the delay from the kill to the first
tick the survivors ran.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import anyio
import pytest
from harness import figures, read_records, spread_daemon, worker_processes

from spreadq import connect
from spreadq.client import Connection
from spreadq.queue.envelope import Ack, decode
from spreadq.queue.view import View
from spreadq.wire.events import DataMessage

pytestmark = pytest.mark.slow

WORKERS = 3
EVERY = 0.25
WAIT = 30.0


class TickWatcher:
    """Reads ACKs on FEEDBACK and keeps, per tick, who reported it and when."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.ticks: dict[int, list[tuple[str, float]]] = defaultdict(list)
        self.views: list[tuple[str, ...]] = []  # the VIEW envelopes, as announced
        self.failed: list[tuple[str, str]] = []  # (reporter, error type): a refused TICK
        self.changed = anyio.Event()

    async def run(self) -> None:
        async for event in self.conn:
            if not isinstance(event, DataMessage) or not event.data.startswith(b"SQ"):
                continue
            envelope = decode(event.data)
            if isinstance(envelope, View):
                self.views.append(envelope.members)
                self.changed.set()
                self.changed = anyio.Event()
            if not isinstance(envelope, Ack):
                continue
            for _, outcome in envelope.outcomes:
                if outcome.ok and outcome.result.startswith(b'{"tick"'):
                    result = json.loads(outcome.result)
                    self.ticks[result["tick"]].append((result["member"], time.monotonic()))
                elif not outcome.ok:  # StaleTick: a TICK no member runs
                    self.failed.append((event.sender, outcome.error_type))
            self.changed.set()
            self.changed = anyio.Event()

    async def until(self, count: int, after: float = 0.0) -> None:
        """Wait (the caller bounds it) for ``count`` ticks reported after ``after``."""
        while sum(1 for runs in self.ticks.values() if runs[0][1] >= after) < count:
            await self.changed.wait()

    async def settle(self, within: float = 5.0) -> int:
        """The last tick reported now, once every tick before it (from the first
        reported) is reported too, or ``within`` seconds have passed: a tick a slower
        worker still runs is not taken for a skipped one when the workers stop."""
        last = max(self.ticks)
        with anyio.move_on_after(within):
            while any(t not in self.ticks for t in range(min(self.ticks), last)):
                await self.changed.wait()
        return last

    async def until_view_with(self, member: str) -> None:
        """Wait (the caller bounds it) for a VIEW that lists ``member``."""
        while not any(member in members for members in self.views):
            await self.changed.wait()


def tick_runs(records: Path) -> dict[int, list[str]]:
    """Who started each tick, from the workers' records."""
    runs: dict[int, list[str]] = defaultdict(list)
    for record in read_records(records):
        if record.event == "tick":
            runs[record.i].append(record.member)
    return runs


async def test_a_periodic_job_survives_the_kill_of_its_announcer(
    spread_address: str | None, tmp_path: Path
) -> None:
    kind = "embedded" if spread_address is None else "real"
    queue = f"pe{time.monotonic_ns() % 10**6}"
    records = tmp_path / "records"
    env = {"SPREADQ_TEST_PERIODIC": str(EVERY)}
    async with (
        spread_daemon(spread_address) as address,
        worker_processes(
            [address] * WORKERS, queue=queue, records=records, concurrency=2, extra_env=env
        ) as workers,
    ):
        victim = workers[0]
        with anyio.fail_after(WAIT):
            async with connect(address, name="ticks") as conn, anyio.create_task_group() as tg:
                watcher = TickWatcher(conn)
                await conn.join(f"{queue}~fb")
                tg.start_soon(watcher.run)
                await watcher.until(6)
                killed_at = victim.kill()
                await watcher.until(6, after=killed_at)
                last = await watcher.settle()
                tg.cancel_scope.cancel()
            assert await victim.process.wait() != 0

    # the workers stop one by one: a tick after the last reported may run or not
    runs = defaultdict(list, {t: ran for t, ran in tick_runs(records).items() if t <= last})
    ticks = sorted(runs)
    assert ticks == list(range(ticks[0], ticks[-1] + 1)), f"skipped: {ticks}, {watcher.failed}"
    twice = {t: members for t, members in runs.items() if len(members) > 1}
    assert all(victim.member() in members for members in twice.values()), twice
    after = [t for t, reports in watcher.ticks.items() if reports[0][1] >= killed_at]
    assert all(victim.member() not in runs[t][-1:] for t in after)
    first_after = min(
        reports[0][1] for reports in watcher.ticks.values() if reports[0][1] >= killed_at
    )
    figures(
        "periodic",
        daemon=kind,
        ticks=len(ticks),
        ran_twice=len(twice),
        kill_to_next_tick_ms=(first_after - killed_at) * 1000,
    )


@pytest.mark.parametrize("kill_announcer", [False, True], ids=["join", "join-then-kill"])
async def test_a_periodic_job_runs_each_tick_once_across_a_join(
    spread_address: str | None, tmp_path: Path, kill_announcer: bool
) -> None:
    kind = "embedded" if spread_address is None else "real"
    queue = f"pj{time.monotonic_ns() % 10**6}"
    records = tmp_path / "records"
    env = {"SPREADQ_TEST_PERIODIC": str(EVERY)}
    # the newcomer sorts last when the announcer is killed, first (and leads) otherwise
    joiner = "x0" if kill_announcer else "v0"
    async with spread_daemon(spread_address) as address:
        with anyio.fail_after(WAIT):
            async with (
                worker_processes(
                    [address] * 2, queue=queue, records=records, concurrency=2, extra_env=env
                ) as workers,
                connect(address, name="ticks") as conn,
                anyio.create_task_group() as tg,
            ):
                watcher = TickWatcher(conn)
                await conn.join(f"{queue}~fb")
                tg.start_soon(watcher.run)
                await watcher.until(4)
                async with worker_processes(
                    [address],
                    queue=queue,
                    records=records,
                    concurrency=2,
                    extra_env=env,
                    names=[joiner],
                ) as (newcomer,):
                    await watcher.until_view_with(newcomer.member())
                    joined_at = time.monotonic()
                    if kill_announcer:
                        workers[0].kill()
                    await watcher.until(6, after=joined_at)
                    last = await watcher.settle()
                    tg.cancel_scope.cancel()

    # the workers stop one by one: a tick after the last reported may run or not
    runs = defaultdict(list, {t: ran for t, ran in tick_runs(records).items() if t <= last})
    ticks = sorted(runs)
    assert ticks == list(range(ticks[0], ticks[-1] + 1)), f"skipped: {ticks}, {watcher.failed}"
    twice = {t: members for t, members in runs.items() if len(members) > 1}
    if kill_announcer:  # only a tick the killed announcer had started may run again
        assert all(workers[0].member() in members for members in twice.values()), twice
        assert len(twice) <= 1, twice
    else:
        assert twice == {}
    after = [t for t, reports in watcher.ticks.items() if reports[0][1] >= joined_at]
    assert len(after) >= 6
    assert all(runs[t] for t in after)
    figures(
        "periodic_join",
        daemon=kind,
        killed=kill_announcer,
        ticks=len(ticks),
        ran_twice=len(twice),
    )
