"""Busy announcements: a worker whose own jobs wait too long for a slot says so.

A dispatcher with one slot holds a job until the test lets it go; the job behind it
waits for the slot. After ``busy_after`` the worker announces capacity 0 in a HELLO
(``fill_first`` then passes over it: ``test_rules.py`` and ``test_table.py``), and once
nothing waits it announces its capacity again. A worker whose jobs never wait that long
announces nothing but the HELLO every view brings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from structlog.testing import capture_logs
from test_dispatcher import FAST, Item, Probe, probe_on, result

from spreadq.client import connect
from spreadq.daemon import Daemon
from spreadq.worker.app import App
from spreadq.worker.dispatcher import Dispatcher

WAIT = 10.0


@asynccontextmanager
async def one_slot_worker(daemon: Daemon, app: App) -> AsyncIterator[tuple[Probe, str]]:
    """A dispatcher of ``app`` with one slot and ``busy_after`` 10 ms, and a probe on the
    queue's FEEDBACK group that has seen its first HELLO; yields the probe and the
    worker's member name."""
    settings = FAST.model_copy(update={"concurrency": 1, "busy_after": 0.01})
    async with (
        probe_on(daemon) as probe,
        connect(daemon.address, name="a") as conn,
        anyio.create_task_group() as tg,
    ):
        await tg.start(Dispatcher(conn, app.spec(), settings=settings).run)
        me = conn.private_group
        await probe.until(lambda: probe.capacities(me) == [1])  # the view's
        yield probe, me
        tg.cancel_scope.cancel()


async def test_a_worker_whose_jobs_wait_for_a_slot_says_it_is_busy_then_ready(
    spreadq_daemon: Daemon,
) -> None:
    app = App("jobs", spreadq_daemon.address, plugins=False, rule="fill_first")
    gate = anyio.Event()

    @app.handler("hold")
    async def hold(item: Item) -> Item:
        await gate.wait()
        return item

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with one_slot_worker(spreadq_daemon, app) as (probe, me):
            seqs = await probe.put_items("hold", [1, 2])  # the second waits for the slot
            await probe.until(lambda: probe.capacities(me) == [1, 0])
            assert not probe.outcomes  # busy while the first still runs
            gate.set()
            outcomes = await probe.results(seqs)
            await probe.until(lambda: probe.capacities(me) == [1, 0, 1])
    assert [result(outcomes[seq]) for seq in seqs] == [Item(n=1), Item(n=2)]
    said = [log for log in logs if log["event"] in {"worker_busy", "worker_ready"}]
    assert [log["event"] for log in said] == ["worker_busy", "worker_ready"]
    assert said[0]["waiting"] == 1  # the job behind the held one
    assert said[0]["seconds"] >= 0.01  # busy_after


async def test_a_worker_that_keeps_up_announces_nothing_more(spreadq_daemon: Daemon) -> None:
    app = App("jobs", spreadq_daemon.address, plugins=False, rule="fill_first")

    @app.handler("double")
    async def double(item: Item) -> Item:
        return Item(n=2 * item.n)

    with anyio.fail_after(WAIT):
        async with one_slot_worker(spreadq_daemon, app) as (probe, me):
            for n in range(20):  # one at a time: none waits for the slot
                (seq,) = await probe.put_items("double", [n])
                assert result((await probe.results([seq]))[seq]) == Item(n=2 * n)
    assert probe.capacities(me) == [1]
