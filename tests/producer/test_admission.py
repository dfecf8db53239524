"""Puts are admitted in the order they were called (``Putting._admission``): a put waits
behind any earlier put still waiting for room, so a group is not passed by single puts
that fit in less room; the line wakes one put at a time and empties when the producer
closes."""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from spreadq.daemon import Daemon, serve
from spreadq.errors import ConnectionLost
from spreadq.handlers import Handler
from spreadq.observe import Event, WindowBlocked
from spreadq.producer import Producer
from spreadq.settings import Settings
from spreadq.testing import run_app
from spreadq.worker.app import App

QUEUE = "line"
WAIT = 20.0


class Recorder:
    """An observer that keeps the ``WindowBlocked`` events it takes."""

    def __init__(self) -> None:
        self.blocked: list[WindowBlocked] = []

    def __call__(self, event: Event, /) -> None:
        if isinstance(event, WindowBlocked):
            self.blocked.append(event)


def gated_app(gate: anyio.Event) -> tuple[App, Handler[int, int]]:
    """An app whose handler returns its payload once ``gate`` is set."""
    app = App(QUEUE, plugins=False)

    @app.handler("echo")
    async def echo(n: int) -> int:
        await gate.wait()
        return n

    return app, echo


async def test_a_single_put_waits_behind_a_group_and_goes_after_it(
    spreadq_daemon: Daemon,
) -> None:
    """A group waiting for room for two is not passed by a single put that would fit in
    the one slot free: the single put waits behind it, and goes after it."""
    gate = anyio.Event()
    app, echo = gated_app(gate)
    recorder = Recorder()
    settings = Settings(max_in_flight=4)
    producer = Producer(
        QUEUE, spreadq_daemon.address, settings=settings, plugins=False, observers=[recorder]
    )
    async with run_app(app, daemon=spreadq_daemon), producer:
        with anyio.fail_after(WAIT):
            held = await producer.put_many(echo, [1, 2, 3])  # one slot left
            order: list[tuple[str, list[int]]] = []

            async def put_group() -> None:
                receipts = await producer.put_many(echo, [4, 5])
                order.append(("group", [receipt.seq for receipt in receipts]))

            async def put_one() -> None:
                receipt = await producer.put(echo, 6)
                order.append(("one", [receipt.seq]))

            async with anyio.create_task_group() as tg:
                tg.start_soon(put_group)
                await wait_all_tasks_blocked()
                tg.start_soon(put_one)
                await wait_all_tasks_blocked()
                state = await producer.flow_state()
                assert state is not None
                assert (state.waiting_puts, state.admitted + state.in_flight) == (2, 3)
                assert order == []
                gate.set()  # the three finish; their ACK makes room for all
            assert order == [("group", [3, 4]), ("one", [5])]
            assert [await receipt for receipt in held] == [1, 2, 3]
    assert [event.reason for event in recorder.blocked] == ["in_flight", "behind"]


async def test_a_put_behind_a_cancelled_group_goes_in_at_once(spreadq_daemon: Daemon) -> None:
    """The first in line is cancelled: the put behind it fits in the slot free and
    takes it without waiting for more room."""
    gate = anyio.Event()
    app, echo = gated_app(gate)
    settings = Settings(max_in_flight=4)
    async with run_app(app, daemon=spreadq_daemon, producer_settings=settings) as producer:
        with anyio.fail_after(WAIT):
            held = await producer.put_many(echo, [1, 2, 3])  # one slot left
            seqs: list[int] = []

            async def put_group(scope: anyio.CancelScope) -> None:
                with scope:
                    await producer.put_many(echo, [4, 5])

            async def put_one() -> None:
                seqs.append((await producer.put(echo, 6)).seq)

            group_scope = anyio.CancelScope()
            async with anyio.create_task_group() as tg:
                tg.start_soon(put_group, group_scope)
                await wait_all_tasks_blocked()
                tg.start_soon(put_one)
                await wait_all_tasks_blocked()
                assert seqs == []
                group_scope.cancel()
            assert seqs == [3]
            state = await producer.flow_state()
            assert state is not None
            assert (state.waiting_puts, state.admitted + state.in_flight) == (0, 4)
            gate.set()
            assert [await receipt for receipt in held] == [1, 2, 3]


async def test_room_for_all_admits_the_whole_line_in_call_order(spreadq_daemon: Daemon) -> None:
    """Five puts wait in line for one slot each; when room opens for all of them, each
    is admitted in turn, in the order they were called."""
    gate = anyio.Event()
    app, echo = gated_app(gate)
    settings = Settings(max_in_flight=2)
    async with run_app(app, daemon=spreadq_daemon, producer_settings=settings) as producer:
        with anyio.fail_after(WAIT):
            held = await producer.put_many(echo, [0, 0])  # no room left
            admitted: list[tuple[int, int]] = []  # (payload, seq) as each put returns

            async def put_one(n: int) -> None:
                receipt = await producer.put(echo, n)
                admitted.append((n, receipt.seq))
                assert await receipt == n

            async with anyio.create_task_group() as tg:
                for n in range(1, 6):
                    tg.start_soon(put_one, n)
                    await wait_all_tasks_blocked()  # called in this order
                state = await producer.flow_state()
                assert state is not None
                assert state.waiting_puts == 5
                gate.set()  # every job runs as soon as it is put: the line drains
            assert admitted == [(n, n + 1) for n in range(1, 6)]
            assert [await receipt for receipt in held] == [0, 0]


async def test_closing_the_producer_fails_every_put_in_line() -> None:
    """No consumer: the producer holds two jobs (its ``max_in_flight``); three puts wait,
    one first in line and two behind it. Closing it fails all three (the first wakes to
    the close, and each put that leaves the line wakes the next)."""
    async with serve() as daemon:
        producer = Producer(
            QUEUE, daemon.address, settings=Settings(max_in_flight=2), close_timeout=0
        )
        errors: list[BaseException] = []

        async def put_one(n: int) -> None:
            try:
                await producer.put("echo", n)
            except ConnectionLost as error:
                errors.append(error)

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg, producer:
                await producer.put_many("echo", [0, 0])
                for n in range(3):
                    tg.start_soon(put_one, n)
                await wait_all_tasks_blocked()
                state = await producer.flow_state()
                assert state is not None
                assert state.waiting_puts == 3
        assert len(errors) == 3
        with pytest.raises(ConnectionLost):
            await producer.put("echo", 9)
