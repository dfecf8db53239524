"""Inbox, Mailbox and Reply: the actor plumbing, without any actor."""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from spreadq.actors.mailbox import Inbox, Reply
from spreadq.errors import CloseReason, ConnectionLost

LOST = ConnectionLost(CloseReason.EOF)


async def test_reply_carries_a_value_to_a_waiting_task() -> None:
    reply: Reply[int] = Reply()
    got: list[int] = []

    async def waiter() -> None:
        got.append(await reply)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await wait_all_tasks_blocked()
            assert not reply.done
            reply.set(7)
    assert got == [7]
    assert reply.done


async def test_a_cancelled_waiter_leaves_the_others_their_reply() -> None:
    reply: Reply[int] = Reply()
    got: list[int] = []

    async def waiter() -> None:
        got.append(await reply)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            async with anyio.create_task_group() as inner:
                inner.start_soon(waiter)
                await wait_all_tasks_blocked()
                inner.cancel_scope.cancel()  # one of the two waiters gives up
            await wait_all_tasks_blocked()
            reply.set(7)
    assert got == [7]


async def test_reply_raises_the_error_it_was_failed_with() -> None:
    reply: Reply[None] = Reply()
    reply.fail(LOST)
    with anyio.fail_after(5), pytest.raises(ConnectionLost) as info:
        await reply.wait()
    assert info.value is LOST


def test_reply_is_one_shot() -> None:
    reply: Reply[int] = Reply()
    reply.set(1)
    with pytest.raises(RuntimeError):
        reply.set(2)
    with pytest.raises(RuntimeError):
        reply.fail(LOST)


async def test_a_burst_of_puts_is_taken_as_one_batch() -> None:
    inbox: Inbox[int] = Inbox(100)
    mailbox = inbox.mailbox(lambda: None)
    with anyio.fail_after(5):
        for i in range(10):
            await mailbox.put(i)
        assert inbox.statistics().queued == 10
        assert await inbox.receive_batch(100) == list(range(10))
        for i in range(10):
            assert mailbox.put_nowait(i)
        assert await inbox.receive_batch(4) == [0, 1, 2, 3]
        assert await inbox.receive_batch(100, weigh=lambda i: i, budget=9) == [4, 5]
    inbox.close_and_drain()


async def test_put_waits_while_the_inbox_is_full() -> None:
    inbox: Inbox[str] = Inbox(1)
    mailbox = inbox.mailbox(lambda: None)
    done = anyio.Event()

    async def sender() -> None:
        await mailbox.put("b")
        done.set()

    with anyio.fail_after(5):
        await mailbox.put("a")
        assert not mailbox.put_nowait("x")
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender)
            await wait_all_tasks_blocked()
            assert not done.is_set()
            assert inbox.statistics().blocked_senders == 1
            assert await inbox.receive() == "a"
            assert await inbox.receive() == "b"
        assert done.is_set()
    inbox.close_and_drain()


async def test_stopping_drains_the_queue_and_fails_blocked_and_later_senders() -> None:
    inbox: Inbox[str] = Inbox(2)
    error: list[BaseException] = []
    mailbox = inbox.mailbox(lambda: error[0] if error else None)
    failures: list[BaseException] = []

    async def blocked_sender() -> None:
        try:
            await mailbox.put("late")
        except ConnectionLost as exc:
            failures.append(exc)

    with anyio.fail_after(5):
        await mailbox.put("a")
        await mailbox.put("b")
        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked_sender)
            await wait_all_tasks_blocked()
            error.append(LOST)
            drained = inbox.close_and_drain()
        assert drained[:2] == ["a", "b"]
        assert failures == [LOST]
        with pytest.raises(ConnectionLost):
            await mailbox.put("after")
        with pytest.raises(ConnectionLost):
            mailbox.put_nowait("after")
    assert inbox.closed
    assert inbox.close_and_drain() == []
