"""The actors' channel: order, hand-over to waiting receivers, bounds, cancellation, end."""

from __future__ import annotations

import asyncio
from collections import deque

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spreadq.actors.channel import Channel


async def test_items_come_out_in_order_without_a_turn_of_the_loop() -> None:
    channel: Channel[int] = Channel()
    for item in range(3):
        channel.send_nowait(item)
    others_ran = False

    async def other() -> None:
        nonlocal others_ran
        others_ran = True

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(other)
        got = [await channel.receive() for _ in range(3)]
        assert not others_ran  # an item that is there is taken without yielding
    assert got == [0, 1, 2]
    assert others_ran


async def test_an_item_goes_to_the_receiver_that_waited_longest() -> None:
    channel: Channel[str] = Channel()
    got: list[tuple[int, str]] = []

    async def receiver(number: int) -> None:
        got.append((number, await channel.receive()))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            for number in range(3):
                tasks.start_soon(receiver, number)
                await anyio.wait_all_tasks_blocked()
            assert channel.waiting_receivers == 3
            for item in "abc":
                channel.send_nowait(item)
            assert len(channel) == 0  # handed over, not buffered
    assert got == [(0, "a"), (1, "b"), (2, "c")]


async def test_a_receiver_cancelled_as_it_was_handed_an_item_gives_it_back() -> None:
    """anyio does not cancel a task whose wait has just been answered (it gets the item);
    a plain asyncio cancel does, and then the item must not be lost."""
    channel: Channel[str] = Channel()
    with anyio.fail_after(5):
        receiver = asyncio.ensure_future(channel.receive())
        await anyio.wait_all_tasks_blocked()
        channel.send_nowait("first")  # handed to the waiting receiver ...
        receiver.cancel()  # ... which is cancelled before it runs again
        with pytest.raises(asyncio.CancelledError):
            await receiver
        channel.send_nowait("second")
        assert [await channel.receive(), await channel.receive()] == ["first", "second"]


async def test_a_cancelled_receiver_is_passed_over() -> None:
    channel: Channel[int] = Channel()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(channel.receive)
            await anyio.wait_all_tasks_blocked()
            tasks.cancel_scope.cancel()
        assert channel.waiting_receivers == 0
        channel.send_nowait(7)
        assert len(channel) == 1
        assert channel.receive_nowait() == 7


async def test_a_full_channel_holds_senders_back_in_order() -> None:
    channel: Channel[int] = Channel(max_items=1)
    channel.send_nowait(0)
    with pytest.raises(anyio.WouldBlock):
        channel.send_nowait(99)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            for item in (1, 2):
                tasks.start_soon(channel.send, item)
                await anyio.wait_all_tasks_blocked()
            assert channel.waiting_senders == 2
            got = [channel.receive_nowait()]  # room: sender 1's item goes in
            await anyio.wait_all_tasks_blocked()
            got.append(await channel.receive())
            got.append(await channel.receive())
    assert got == [0, 1, 2]
    assert channel.waiting_senders == 0


async def test_a_cancelled_sender_withdraws_its_item() -> None:
    channel: Channel[int] = Channel(max_items=1)
    channel.send_nowait(0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(channel.send, 1)
            await anyio.wait_all_tasks_blocked()
            tasks.cancel_scope.cancel()
    assert channel.receive_nowait() == 0
    with pytest.raises(anyio.WouldBlock):
        channel.receive_nowait()


async def test_the_end_lets_receivers_take_what_is_left() -> None:
    channel: Channel[int] = Channel()
    channel.send_nowait(1)
    channel.end()
    with pytest.raises(anyio.ClosedResourceError):
        channel.send_nowait(2)
    assert await channel.receive() == 1
    with pytest.raises(anyio.EndOfStream):
        await channel.receive()


async def test_the_end_wakes_a_waiting_receiver() -> None:
    channel: Channel[int] = Channel()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:

            async def receiver() -> None:
                with pytest.raises(anyio.EndOfStream):
                    await channel.receive()

            tasks.start_soon(receiver)
            await anyio.wait_all_tasks_blocked()
            channel.end()


async def test_close_fails_everyone_waiting_and_every_later_call() -> None:
    channel: Channel[int] = Channel(max_items=1)
    blocked: Channel[int] = Channel(max_items=1)
    blocked.send_nowait(0)
    failures: list[str] = []

    async def receiver() -> None:
        try:
            await channel.receive()
        except anyio.ClosedResourceError:
            failures.append("receiver")

    async def sender() -> None:
        try:
            await blocked.send(1)
        except anyio.ClosedResourceError:
            failures.append("sender")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(receiver)
            tasks.start_soon(sender)
            await anyio.wait_all_tasks_blocked()
            channel.close()
            blocked.close()
    assert sorted(failures) == ["receiver", "sender"]
    assert blocked.closed
    assert len(blocked) == 0  # what was buffered is dropped
    for call in (lambda: channel.send_nowait(1), channel.receive_nowait):
        with pytest.raises(anyio.ClosedResourceError):
            call()
    with pytest.raises(anyio.ClosedResourceError):
        await channel.receive()


@given(
    bound=st.integers(min_value=1, max_value=4),
    ops=st.lists(st.one_of(st.integers(min_value=0, max_value=99), st.none()), max_size=60),
)
def test_the_nowait_calls_behave_as_a_bounded_queue(bound: int, ops: list[int | None]) -> None:
    """Without waiters, send_nowait and receive_nowait are a bounded FIFO queue: an int
    is a send, None a receive."""
    channel: Channel[int] = Channel(max_items=bound)
    model: deque[int] = deque()
    for op in ops:
        if op is None:
            if model:
                assert channel.receive_nowait() == model.popleft()
            else:
                with pytest.raises(anyio.WouldBlock):
                    channel.receive_nowait()
        elif len(model) < bound:
            channel.send_nowait(op)
            model.append(op)
        else:
            with pytest.raises(anyio.WouldBlock):
                channel.send_nowait(op)
        assert len(channel) == len(model)


async def test_take_returns_none_when_nothing_is_buffered_and_lets_a_sender_in() -> None:
    channel: Channel[int] = Channel(max_items=1)
    assert channel.take() is None
    channel.send_nowait(1)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(channel.send, 2)
            await anyio.wait_all_tasks_blocked()
            assert channel.take() == 1  # room: the waiting sender's item goes in
            assert channel.waiting_senders == 0
    assert channel.take() == 2
    assert channel.take() is None
    channel.send_nowait(3)
    channel.close()
    assert channel.take() is None
