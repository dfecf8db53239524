"""Busy announcements: a worker whose own jobs wait too long for a slot says so.

A dispatcher with one slot holds a job until the test lets it go; the job behind it
waits for the slot. After ``busy_after`` the worker announces capacity 0 in a HELLO
(``fill_first`` then passes over it: ``test_rules.py`` and ``test_table.py``), and once
nothing waits it announces its capacity again. A worker whose jobs never wait that long
announces nothing but the HELLO every view brings.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import pytest
from structlog.testing import capture_logs
from test_dispatcher import FAST, Item, Probe, probe_on, result

from spreadq.client import connect
from spreadq.context import Context
from spreadq.daemon import Daemon
from spreadq.observe import Event, EventBus, JobAssigned
from spreadq.worker.app import App
from spreadq.worker.dispatcher import Dispatcher, worth_giving_back

WAIT = 10.0


@asynccontextmanager
async def one_slot_workers(
    daemon: Daemon, app: App, names: Sequence[str], events: EventBus | None = None
) -> AsyncIterator[tuple[Probe, list[str]]]:
    """Dispatchers of ``app``, one per name, each with one slot and ``busy_after`` 10 ms
    (publishing to ``events`` if given), and a probe on the queue's FEEDBACK group that
    has heard every one's capacity in the last view; yields the probe and the workers'
    member names."""
    settings = FAST.model_copy(update={"concurrency": 1, "busy_after": 0.01})
    async with probe_on(daemon) as probe, contextlib.AsyncExitStack() as stack:
        conns = [
            await stack.enter_async_context(connect(daemon.address, name=name)) for name in names
        ]
        members = [conn.private_group for conn in conns]
        async with anyio.create_task_group() as tg:
            for conn in conns:
                await tg.start(Dispatcher(conn, app.spec(), settings=settings, events=events).run)
            # every view's HELLO: the last view (all of them) is heard from everyone
            await probe.until(lambda: all(probe.capacities(m)[-1:] == [1] for m in members))
            await probe.until(lambda: len(probe.hellos) >= len(members) * (len(members) + 1) // 2)
            yield probe, members
            tg.cancel_scope.cancel()


@asynccontextmanager
async def one_slot_worker(daemon: Daemon, app: App) -> AsyncIterator[tuple[Probe, str]]:
    """One of :func:`one_slot_workers`, named ``a``."""
    async with one_slot_workers(daemon, app, ["a"]) as (probe, (me,)):
        yield probe, me


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


async def test_a_busy_worker_gives_back_jobs_its_slot_would_reach_late(
    spreadq_daemon: Daemon,
) -> None:
    # four jobs that wait for the test land on the first worker (fill_first); its one
    # slot runs the first, and once the others have waited busy_after with none
    # ending, it gives back all but the next one (RELEASE): the second worker runs them
    app = App("jobs", spreadq_daemon.address, plugins=False, rule="fill_first")
    gate = anyio.Event()

    @app.handler("hold")
    async def hold(item: Item, ctx: Context) -> dict[str, object]:
        await gate.wait()
        return {"n": item.n, "member": ctx.member}

    assigned: list[JobAssigned] = []

    def note(event: Event) -> None:
        if isinstance(event, JobAssigned):
            assigned.append(event)

    bus = EventBus([note])
    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with one_slot_workers(spreadq_daemon, app, ["a", "b"], bus) as (probe, members):
            seqs = await probe.put_items("hold", [1, 2, 3, 4])
            # both busy: the giver with 2 waiting, then the taker with 4 waiting behind 3
            await probe.until(lambda: all(probe.capacities(m)[-1] == 0 for m in members))
            gate.set()
            outcomes = await probe.results(seqs)
    results = [json.loads(outcomes[seq].result) for seq in seqs]
    ran = {result["n"]: result["member"] for result in results}
    giver = ran[1]
    (taker,) = set(members) - {giver}
    assert ran == {1: giver, 2: giver, 3: taker, 4: taker}
    (given,) = [log for log in logs if log["event"] == "jobs_given_back"]
    assert given["jobs"] == 2
    assert given["member"] == giver
    # the giver was assigned all four; the taker's two say they were dealt to it
    by = sorted((e.member == giver, e.ref.seq, e.released) for e in assigned)
    assert by == [(False, seqs[2], True), (False, seqs[3], True)] + [
        (True, seq, False) for seq in seqs
    ]


@pytest.mark.parametrize(
    ("queued", "limit", "ended", "seconds", "worth"),
    [
        (3, 1, 0, 0.0, True),  # nothing ended while they waited: the slots are held
        (100, 4, 20, 0.08, True),  # 4 ms jobs: 100 take the slots 100 ms more
        (2000, 16, 5000, 0.05, False),  # 10 us jobs under a flood: the loop is behind
        (40, 16, 100, 0.8, True),  # 8 ms jobs: exactly 20 ms more, at the bound
        (39, 16, 100, 0.8, False),  # just under it
    ],
)
def test_a_busy_worker_gives_back_only_jobs_its_handlers_would_be_long_over(
    queued: int, limit: int, ended: int, seconds: float, worth: bool
) -> None:
    assert worth_giving_back(queued, limit, 0.02, ended, seconds) is worth
