"""``Producer.put_many``: a group of jobs put together, all or none, receipts in order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from pydantic import BaseModel

from spreadq.context import Context
from spreadq.daemon import Daemon, serve
from spreadq.errors import ConfigurationError, ConnectionLost, LocalProtocolError, PayloadError
from spreadq.handlers import Handler
from spreadq.plugins import Plugin
from spreadq.producer import Producer, putting
from spreadq.queue.envelope import JobSpec
from spreadq.settings import Settings
from spreadq.testing import run_app
from spreadq.worker.app import App

QUEUE = "many"
WAIT = 20.0


class Point(BaseModel):
    x: int
    y: int


Result = tuple[int, str | None, str | None]


def make_app(gate: anyio.Event | None = None) -> tuple[App, Handler[Point, Result]]:
    app = App(QUEUE, plugins=False)

    @app.handler("norm")
    async def norm(point: Point, ctx: Context) -> Result:
        if gate is not None:
            await gate.wait()
        return abs(point.x) + abs(point.y), ctx.headers.get("tag"), ctx.headers.get("priority")

    return app, norm


async def test_put_many_queues_the_jobs_in_order_and_every_receipt_resolves(
    spreadq_daemon: Daemon,
) -> None:
    app, norm = make_app()
    async with run_app(app, daemon=spreadq_daemon) as producer:
        with anyio.fail_after(WAIT):
            first = await producer.put(norm, Point(x=0, y=0))
            points = [Point(x=i, y=-2 * i) for i in range(40)]
            receipts = await producer.put_many(norm, points, headers={"tag": "t"}, priority=5)
            results = [await receipt for receipt in receipts]
            by_name = await producer.put_many("norm", [{"x": 1, "y": 1}, {"x": -3, "y": 0}])
            named = [await receipt for receipt in by_name]
            assert await first == (0, None, None)
        assert [r.seq for r in receipts] == list(range(1, 41))
        assert [r.seq for r in by_name] == [41, 42]
        assert results == [(3 * i, "t", "5") for i in range(40)]
        assert named == [[2, None, None], [3, None, None]]  # by name: JSON, untyped
        assert len({r.job_id for r in receipts}) == 40
        assert producer.statistics().put == 43
        assert await producer.put_many(norm, []) == []
        assert producer.statistics().put == 43


async def test_a_payload_that_fails_queues_none_of_them() -> None:
    _, norm = make_app()
    async with (
        serve() as daemon,
        Producer(QUEUE, daemon.address, close_timeout=0) as producer,
    ):
        with anyio.fail_after(WAIT):
            good = Point(x=1, y=2)
            with pytest.raises(PayloadError, match="payload 1 of 3"):
                await producer.put_many(norm, [good, "not a point", good])  # type: ignore[misc]
            with pytest.raises(PayloadError, match="payload 2 of 3"):
                await producer.put_many("norm", [{}, b"raw is fine", object()])
            with pytest.raises(ConfigurationError, match="kind"):
                await producer.put_many("bad kind", [{}])
            for one in ("abc", b"abc"):
                with pytest.raises(ConfigurationError, match="not one"):
                    await producer.put_many("norm", one)
            with pytest.raises(ConfigurationError, match="delay"):
                await producer.put_many(norm, [good], delay=-1.0)
            with pytest.raises(ConfigurationError, match="priority"):
                await producer.put_many(norm, [good], priority=101)
            with pytest.raises(LocalProtocolError):
                await producer.put_many(norm, [good, good], headers={"h": "v" * 70_000})
            stats = producer.statistics()
            assert (stats.put, stats.pending) == (0, 0)
            receipt = await producer.put(norm, good)
            assert receipt.seq == 0  # the refused groups took no sequence number


async def test_a_job_the_envelope_refuses_after_the_wait_queues_none_of_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job's envelope is built after the wait for room; one that cannot be (a payload
    over 4 GiB, played here by a refusing ``JobSpec``) leaves the group unqueued."""
    real = JobSpec

    def refusing(seq: int, kind: str, payload: bytes, *rest: Any) -> JobSpec:
        if payload == b"too big":
            raise LocalProtocolError("payload size out of range")
        return real(seq, kind, payload, *rest)

    monkeypatch.setattr(putting, "JobSpec", refusing)
    async with (
        serve() as daemon,
        Producer(QUEUE, daemon.address, close_timeout=0) as producer,
    ):
        with anyio.fail_after(WAIT):
            with pytest.raises(LocalProtocolError, match="payload size"):
                await producer.put_many("norm", [b"a", b"b", b"too big"])
            stats = producer.statistics()
            assert (stats.put, stats.pending) == (0, 0)
            assert [r.seq for r in await producer.put_many("norm", [b"a", b"b"])] == [0, 1]


async def test_more_jobs_than_max_in_flight_are_refused_at_once() -> None:
    settings = Settings(max_in_flight=3)
    async with (
        serve() as daemon,
        Producer(QUEUE, daemon.address, settings=settings, close_timeout=0) as producer,
    ):
        with anyio.fail_after(WAIT):
            with pytest.raises(ConfigurationError, match=r"more than max_in_flight \(3\)"):
                await producer.put_many("norm", [{}] * 4)
            assert len(await producer.put_many("norm", [{}] * 3)) == 3


async def test_put_many_waits_for_room_for_all_and_a_cancelled_wait_takes_nothing(
    spreadq_daemon: Daemon,
) -> None:
    gate = anyio.Event()
    app, norm = make_app(gate)
    settings = Settings(max_in_flight=4)
    async with run_app(app, daemon=spreadq_daemon, producer_settings=settings) as producer:
        with anyio.fail_after(WAIT):
            held = await producer.put_many(norm, [Point(x=1, y=0)] * 3)  # run, held at the gate

            async def put_two(into: list[int]) -> None:
                receipts = await producer.put_many(norm, [Point(x=2, y=0)] * 2)
                into += [receipt.seq for receipt in receipts]

            # one slot is free, two are asked for: the group waits, and a cancel leaves
            # nothing behind
            async with anyio.create_task_group() as tg:
                tg.start_soon(put_two, [])
                await wait_all_tasks_blocked()
                state = await producer.flow_state()
                assert state is not None
                assert state.waiting_puts == 1
                tg.cancel_scope.cancel()
            state = await producer.flow_state()
            assert state is not None
            assert (state.waiting_puts, state.admitted + state.in_flight) == (0, 3)
            assert producer.statistics().put == 3

            seqs: list[int] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(put_two, seqs)
                await wait_all_tasks_blocked()
                state = await producer.flow_state()
                assert state is not None
                assert state.waiting_puts == 1
                assert seqs == []
                gate.set()  # the three finish, their ACK makes room for both
            assert seqs == [3, 4]
            assert [await receipt for receipt in held] == [(1, None, None)] * 3


async def test_the_put_hooks_run_once_for_the_group(spreadq_daemon: Daemon) -> None:
    calls: list[tuple[str, str]] = []

    def tag(queue: str, kind: str) -> Mapping[str, str]:
        calls.append((queue, kind))
        return {"tag": "hooked"}

    app, _ = make_app()
    plugins: list[str | Plugin] = [Plugin(name="tagger", put_hooks=(tag,))]
    async with run_app(app, daemon=spreadq_daemon):
        producer = Producer(QUEUE, spreadq_daemon.address, plugins=plugins)
        async with producer:
            with anyio.fail_after(WAIT):
                receipts = await producer.put_many("norm", [{"x": i, "y": 0} for i in range(5)])
                results = [await receipt for receipt in receipts]
    assert calls == [(QUEUE, "norm")]
    assert results == [[i, "hooked", None] for i in range(5)]


async def test_put_many_on_a_closed_producer_raises() -> None:
    async with serve() as daemon:
        producer = Producer(QUEUE, daemon.address)
        with pytest.raises(ConnectionLost):
            await producer.put_many("norm", [{}])
