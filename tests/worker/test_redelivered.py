"""``Context.redelivered``: False for a job's first delivery, True for a job taken over
from a member that left and for a copy a producer sent again (issue 13)."""

from __future__ import annotations

import anyio
from test_dispatcher import WAIT, Item, make_app, probe_on, start

from spreadq.context import Context
from spreadq.daemon import Daemon
from spreadq.queue import Status

A, B = "#a#localhost", "#b#localhost"


async def test_a_job_taken_over_from_a_lost_member_is_redelivered(spreadq_daemon: Daemon) -> None:
    runs: list[tuple[str, int, bool]] = []
    blocked = anyio.Event()
    apps = [make_app(spreadq_daemon, name=name) for name in ("a", "b")]
    for app in apps:

        @app.handler("task")
        async def task(item: Item, ctx: Context) -> int:
            runs.append((ctx.member, item.n, ctx.redelivered))
            if ctx.member == A and not ctx.redelivered:
                blocked.set()
                await anyio.sleep_forever()  # until the lost session cancels it
            return item.n

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            for app in apps:
                await start(tg, app)
            await probe.until(lambda: {A, B} <= set(probe.members()))
            seqs = await probe.put_items("task", [0, 1])
            await blocked.wait()
            (held,) = [n for member, n, _ in runs if member == A]
            spreadq_daemon.faults.kill(A)
            outcomes = await probe.results(seqs)
            for app in apps:
                app.stop()
    assert all(outcome.status is Status.OK for outcome in outcomes.values())
    assert probe.reporter[seqs[held]] == B
    assert (A, held, False) in runs
    assert (B, held, True) in runs  # taken over: it may have run on A before
    assert (B, 1 - held, False) in runs  # B's own job: a first delivery


async def test_a_copy_sent_again_is_redelivered(spreadq_daemon: Daemon) -> None:
    runs: list[tuple[str, bool]] = []
    first_started = anyio.Event()
    apps = [make_app(spreadq_daemon, name=name) for name in ("a", "b")]
    for app in apps:

        @app.handler("task")
        async def task(item: Item, ctx: Context) -> int:
            runs.append((ctx.member, ctx.redelivered))
            if not ctx.redelivered:
                first_started.set()
                await anyio.sleep_forever()  # until the copy's outcome completes it
            return item.n

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            for app in apps:
                await start(tg, app)
            await probe.until(lambda: {A, B} <= set(probe.members()))
            (seq,) = await probe.put_items("task", [7])
            await first_started.wait()
            probe.seq = seq  # the same (producer, seq) again: the next slot, the other member
            assert await probe.put_items("task", [7]) == [seq]
            outcome = (await probe.results([seq]))[seq]
            for app in apps:
                app.stop()
    assert outcome.status is Status.OK
    assert outcome.result == b"7"
    (first, _), (second, redelivered) = runs
    assert first != second
    assert redelivered
