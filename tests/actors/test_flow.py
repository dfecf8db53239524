"""FlowControl: admission and send clearance driven by synthetic ACK and view events.

Every wait is bounded; "has not woken" is checked after ``wait_all_tasks_blocked()``,
never after a sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from spreadq.actors.flow import FlowControl, FlowHandle
from spreadq.errors import ConnectionLost
from spreadq.queue.windows import BlockReason

PID = bytes(range(16))
OTHER = bytes(16)
WAIT = 5.0


@asynccontextmanager
async def running(
    *, window: int = 4, max_in_flight: int = 100, max_backlog: int = 50, batch_max_jobs: int = 1
) -> AsyncIterator[tuple[FlowHandle, anyio.abc.TaskGroup]]:
    actor = FlowControl(
        PID,
        window=window,
        max_in_flight=max_in_flight,
        max_backlog=max_backlog,
        batch_max_jobs=batch_max_jobs,
    )
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            handle = await tg.start(actor.run)
            yield handle, tg
            tg.cancel_scope.cancel()


async def send(handle: FlowHandle, mseq: int, jobs: int = 1) -> None:
    await handle.admit()
    assert await handle.clear_to_send(mseq, jobs)


class Waiter:
    """Runs one flow call in the background and records when it returns."""

    def __init__(self) -> None:
        self.done = False
        self.cancelled = False
        self.scope = anyio.CancelScope()

    async def admit(self, handle: FlowHandle) -> None:
        with self.scope:
            await handle.admit()
            self.done = True
        self.cancelled = self.scope.cancelled_caught

    async def clear(self, handle: FlowHandle, mseq: int, jobs: int = 1) -> None:
        with self.scope:
            self.done = await handle.clear_to_send(mseq, jobs)
        self.cancelled = self.scope.cancelled_caught


async def test_a_gated_put_wakes_exactly_when_an_ack_opens_the_window() -> None:
    async with running() as (flow, tg):
        await flow.consumers_seen(("#c1#d",))
        for mseq in range(1, 5):  # window 4: messages 1..4 may run ahead of read 0
            await send(flow, mseq)
        state = await flow.snapshot()
        assert state.blocked is BlockReason.WINDOW
        assert state.in_flight == 4

        sender, put = Waiter(), Waiter()
        await flow.admit()  # one batch (batch_max_jobs=1) may wait while the window is shut
        tg.start_soon(sender.clear, flow, 5)
        tg.start_soon(put.admit, flow)
        await wait_all_tasks_blocked()
        assert (sender.done, put.done) == (False, False)

        # inputs that do not open the window wake nobody
        await flow.ack_seen("#c1#d", ((OTHER, 99),), 0)  # another producer's position
        await flow.ack_seen("#c1#d", ((PID, 0),), 0)  # no progress
        await flow.ack_seen("#gone#d", ((PID, 4),), 0)  # not a live consumer
        await flow.snapshot()
        await wait_all_tasks_blocked()
        assert (sender.done, put.done) == (False, False)
        assert (await flow.snapshot()).waiting_puts == 1

        # it read all four; the four ACKs sent since count too, capped one below the
        # window: 5 - 4 + 3 <= 4
        await flow.ack_seen("#c1#d", ((PID, 4),), 0)
        await wait_all_tasks_blocked()
        assert (sender.done, put.done) == (True, True)
        state = await flow.snapshot()
        assert state.last_mseq == 5
        assert state.waiting_puts == 0
        assert state.admitted == 1  # the woken put's slot, not yet sent


async def test_the_window_is_the_slowest_live_consumer() -> None:
    async with running() as (flow, tg):
        await flow.consumers_seen(("#a#d", "#b#d"))
        for mseq in range(1, 5):
            await send(flow, mseq)
        sender = Waiter()
        await flow.admit()
        tg.start_soon(sender.clear, flow, 5)
        await flow.ack_seen("#a#d", ((PID, 4),), 0)
        await wait_all_tasks_blocked()
        assert not sender.done  # b has read nothing
        await flow.consumers_seen(("#a#d",))  # b left
        await wait_all_tasks_blocked()
        assert sender.done


async def test_cancelling_a_waiting_put_leaves_no_slot_taken() -> None:
    async with running(max_in_flight=3) as (flow, tg):
        await flow.consumers_seen(("#c1#d",))
        for _ in range(3):
            await flow.admit()
        before = await flow.snapshot()
        assert before.admitted == 3
        put = Waiter()
        tg.start_soon(put.admit, flow)
        await wait_all_tasks_blocked()
        assert (await flow.snapshot()).waiting_puts == 1
        put.scope.cancel()
        await wait_all_tasks_blocked()
        assert (put.cancelled, put.done) == (True, False)
        after = await flow.snapshot()
        assert after.waiting_puts == 0
        assert after.admitted == before.admitted
        assert (after.in_flight, after.last_mseq) == (0, 0)


async def test_a_put_cancelled_just_as_it_is_granted_gives_its_credit_back() -> None:
    # Under anyio a task whose grant has arrived resumes before a cancel scope can
    # interrupt it (the put simply succeeds); a plain asyncio cancel can still land on
    # the granted put, and then the credit must come back.
    async with running(max_in_flight=1) as (flow, _):
        await flow.consumers_seen(("#c1#d",))
        await send(flow, 1)
        put = asyncio.get_running_loop().create_task(flow.admit())
        await wait_all_tasks_blocked()
        assert not put.done()
        # settlement and snapshot are taken in one batch; the snapshot's reply is set
        # before the grant, so this task runs before the put sees its credit
        await flow.settled(1)
        granted = await flow.snapshot()
        assert granted.waiting_puts == 1
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
        state = await flow.snapshot()
        assert (state.admitted, state.in_flight, state.waiting_puts) == (0, 0, 0)
        assert flow.credits == 0


async def test_jobs_are_held_while_no_consumer_is_present() -> None:
    async with running(max_in_flight=3, batch_max_jobs=8) as (flow, tg):
        for _ in range(3):  # admitted although nobody could receive them yet
            await flow.admit()
        put, sender = Waiter(), Waiter()
        tg.start_soon(put.admit, flow)
        tg.start_soon(sender.clear, flow, 1, 3)
        await wait_all_tasks_blocked()
        assert (put.done, sender.done) == (False, False)
        assert (await flow.snapshot()).blocked is BlockReason.NO_CONSUMERS
        await flow.consumers_seen(("#c1#d",))
        await wait_all_tasks_blocked()
        assert sender.done
        assert not put.done  # 3 unconfirmed = max_in_flight
        await flow.settled(2)
        await wait_all_tasks_blocked()
        assert put.done


async def test_a_consumer_backlog_past_its_bound_holds_sends() -> None:
    async with running(window=100, max_backlog=10) as (flow, tg):
        await flow.consumers_seen(("#c1#d",))
        await send(flow, 1)
        await flow.ack_seen("#c1#d", ((PID, 1),), 11)
        sender = Waiter()
        await flow.admit()
        tg.start_soon(sender.clear, flow, 2)
        await wait_all_tasks_blocked()
        assert not sender.done
        assert (await flow.snapshot()).blocked is BlockReason.BACKLOG
        await flow.ack_seen("#c1#d", ((PID, 1),), 10)
        await wait_all_tasks_blocked()
        assert sender.done


async def test_producers_share_the_window() -> None:
    async with running(window=600) as (flow, _):
        await flow.consumers_seen(("#c1#d",))
        assert (await flow.snapshot()).share == 600
        await flow.peers_seen(3)
        assert (await flow.snapshot()).share == 200
        await flow.peers_seen(1)
        await flow.ack_seen("#c1#d", ((PID, 0), (OTHER, 5), (bytes([7]) * 16, 1)), 0)
        assert (await flow.snapshot()).share == 200  # three producers in its read positions


async def test_credits_are_granted_in_batches_and_given_back() -> None:
    async with running(window=100, batch_max_jobs=10, max_in_flight=25) as (flow, _):
        await flow.consumers_seen(("#c1#d",))
        await flow.admit()
        assert flow.credits == 9  # one round trip admits ten puts
        assert (await flow.snapshot()).admitted == 10
        for _ in range(9):
            await flow.admit()
        assert flow.credits == 0
        await flow.admit()
        await flow.give_back()
        assert flow.credits == 0
        assert (await flow.snapshot()).admitted == 11


async def test_a_send_cancelled_before_clearance_is_withdrawn() -> None:
    async with running() as (flow, tg):
        sender = Waiter()
        await flow.admit()
        tg.start_soon(sender.clear, flow, 1)
        await wait_all_tasks_blocked()
        sender.scope.cancel()
        await wait_all_tasks_blocked()
        assert (sender.cancelled, sender.done) == (True, False)
        await flow.consumers_seen(("#c1#d",))
        state = await flow.snapshot()
        assert not state.waiting_send
        assert (state.last_mseq, state.in_flight, state.admitted) == (0, 0, 1)


async def test_waiting_requests_fail_when_the_actor_stops() -> None:
    errors: list[BaseException] = []

    async def put(handle: FlowHandle) -> None:
        try:
            await handle.admit()
        except ConnectionLost as error:
            errors.append(error)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as outer:
            actor = FlowControl(PID, max_in_flight=1)
            async with anyio.create_task_group() as inner:
                flow = await inner.start(actor.run)
                await flow.admit()
                outer.start_soon(put, flow)
                await wait_all_tasks_blocked()
                inner.cancel_scope.cancel()
    assert len(errors) == 1
    assert flow.credits == 0
    with anyio.fail_after(WAIT), pytest.raises(ConnectionLost):
        await flow.admit()


async def test_other_consumers_acks_count_against_a_silent_consumers_window() -> None:
    async with running() as (flow, tg):  # window 4
        await flow.consumers_seen(("#quiet#d", "#busy#d"))
        for _ in range(2):  # two ACKs wait, unread, in the quiet consumer's queue
            await flow.ack_seen("#busy#d", ((PID, 0),), 0)
        await send(flow, 1)
        await send(flow, 2)  # 2 of ours + 2 ACKs = 4
        assert (await flow.snapshot()).ack_slack == 2
        sender = Waiter()
        await flow.admit()
        tg.start_soon(sender.clear, flow, 3)
        await wait_all_tasks_blocked()
        assert (sender.done,) == (False,)
        # an ACK that reports none of ours may be read by nobody yet: it counts too
        await flow.ack_seen("#quiet#d", ((PID, 0),), 0)
        await flow.ack_seen("#quiet#d", ((PID, 2),), 0)  # quiet read ours: 3 - 2 + 2
        await wait_all_tasks_blocked()
        assert (sender.done,) == (False,)  # busy has read none of ours: 3 - 0 + 3 > 4
        await flow.ack_seen("#busy#d", ((PID, 2),), 0)  # 3 - 2 + 3 <= 4
        await wait_all_tasks_blocked()
        assert (sender.done,) == (True,)
        assert (await flow.snapshot()).ack_slack == 3


async def test_ack_slack_never_blocks_a_consumer_that_has_read_everything() -> None:
    async with running() as (flow, tg):  # window 4
        await flow.consumers_seen(("#new#d", "#busy#d"))
        for _ in range(50):  # a long tail of other work being acknowledged
            await flow.ack_seen("#busy#d", (), 0)
        assert (await flow.snapshot()).ack_slack == 3  # capped one below the share
        sender = Waiter()
        await flow.admit()
        tg.start_soon(sender.clear, flow, 1)
        await wait_all_tasks_blocked()
        assert sender.done  # the newcomer gets a message, reads it, and will ACK
