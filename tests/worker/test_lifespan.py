"""``App(lifespan=...)``: startup before the worker joins, state as ``ctx.state``,
shutdown after the drain, typed errors for either half failing (issue 13, item 2)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest
from structlog.testing import capture_logs
from test_dispatcher import FAST, WAIT, Item, make_app, probe_on, start

from spreadq.context import Context
from spreadq.daemon import Daemon
from spreadq.errors import ConfigurationError, LifespanError
from spreadq.queue import Status
from spreadq.testing import run_app
from spreadq.worker.app import App


class Pool:
    """Stands for a database pool a lifespan opens for its worker."""

    def __init__(self) -> None:
        self.open = True


async def test_the_state_reaches_async_and_sync_handlers_and_the_shutdown_follows_the_drain(
    spreadq_daemon: Daemon,
) -> None:
    events: list[str] = []
    release = anyio.Event()
    started = anyio.Event()
    pools: list[Pool] = []

    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[Pool]:
        events.append(f"startup {app.queue}")
        pool = Pool()
        pools.append(pool)
        yield pool
        pool.open = False
        events.append("shutdown")

    app = make_app(spreadq_daemon, lifespan=lifespan)
    assert app.lifespan is lifespan

    @app.handler("async")
    async def use(item: Item, ctx: Context) -> bool:
        events.append("job start")
        started.set()
        await release.wait()
        events.append("job end")
        assert isinstance(ctx.state, Pool)
        return ctx.state.open

    @app.handler("sync")
    def use_sync(item: Item, ctx: Context) -> bool:
        return ctx.state is pools[0]

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            assert events == ["startup jobs"]  # before the worker joined
            (synced,) = await probe.put_items("sync", [0])
            assert (await probe.results([synced]))[synced].result == b"true"
            (running,) = await probe.put_items("async", [1])
            await started.wait()
            app.stop()
            await anyio.wait_all_tasks_blocked()
            assert "shutdown" not in events  # still draining
            release.set()
            outcome = (await probe.results([running]))[running]
    assert outcome.status is Status.OK
    assert outcome.result == b"true"
    assert events == ["startup jobs", "job start", "job end", "shutdown"]


async def test_without_a_lifespan_the_state_is_none(spreadq_daemon: Daemon) -> None:
    app = App("stateless", plugins=False)

    @app.handler("state")
    async def state(item: Item, ctx: Context) -> bool:
        return ctx.state is None

    with anyio.fail_after(WAIT):
        async with run_app(app, daemon=spreadq_daemon, settings=FAST) as producer:
            assert await (await producer.put(state, Item(n=1))) is True


async def test_a_startup_failure_stops_run_before_the_worker_joins(
    spreadq_daemon: Daemon,
) -> None:
    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        raise OSError("database unreachable")
        yield  # type: ignore[unreachable]  # makes it a generator

    failing = make_app(spreadq_daemon, name="a", lifespan=lifespan)
    failing.handler("x")(_noop)
    healthy = make_app(spreadq_daemon, name="b")
    healthy.handler("x")(_noop)
    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe:
            with pytest.raises(LifespanError) as caught:
                await failing.run(handle_signals=False)
            async with anyio.create_task_group() as tg:
                await start(tg, healthy)  # its join is the first the probe sees
                await probe.until(lambda: any("#b#" in m for m in probe.members()))
                healthy.stop()
    error = caught.value
    assert isinstance(error.__cause__, OSError)
    assert (error.queue, error.phase) == ("jobs", "startup")
    assert str(error) == (
        "the lifespan of the app for queue 'jobs' failed at startup: OSError: database unreachable"
    )
    memberships = [m for what, m in probe.history if what == "members"]
    assert not any("#a#" in member for members in memberships for member in members)  # type: ignore[attr-defined]


async def test_a_shutdown_failure_is_logged_and_raised_after_the_drain(
    spreadq_daemon: Daemon,
) -> None:
    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[str]:
        yield "state"
        raise RuntimeError("could not close")

    app = make_app(spreadq_daemon, lifespan=lifespan)
    app.handler("x")(_noop)
    raised: list[LifespanError] = []

    async def run(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        with pytest.raises(LifespanError) as caught:
            await app.run(handle_signals=False, task_status=task_status)
        raised.append(caught.value)

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await tg.start(run)
            (seq,) = await probe.put_items("x", [3])
            await probe.results([seq])
            app.stop()
    (error,) = raised
    assert error.phase == "shutdown"
    assert isinstance(error.__cause__, RuntimeError)
    assert probe.outcomes[seq].status is Status.OK
    assert [entry["event"] for entry in logs].count("lifespan_shutdown_failed") == 1


async def test_a_lifespan_that_is_no_context_manager_fails_at_startup(
    spreadq_daemon: Daemon,
) -> None:
    def lifespan(app: App) -> Any:
        return "not a context manager"

    app = make_app(spreadq_daemon, lifespan=lifespan)
    app.handler("x")(_noop)
    with anyio.fail_after(WAIT), pytest.raises(LifespanError, match="async context manager"):
        await app.run(handle_signals=False)
    with pytest.raises(ConfigurationError, match="lifespan must be a callable"):
        App("jobs", plugins=False, lifespan="later")  # type: ignore[arg-type]


async def test_run_app_runs_the_lifespan(spreadq_daemon: Daemon) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[dict[str, int]]:
        events.append("startup")
        yield {"answer": 42}
        events.append("shutdown")

    app = App("lifespan", plugins=False, lifespan=lifespan)

    @app.handler("answer")
    async def answer(item: Item, ctx: Context) -> int:
        assert isinstance(ctx.state, dict)
        return int(ctx.state["answer"]) + item.n

    with anyio.fail_after(WAIT):
        async with run_app(app, daemon=spreadq_daemon, settings=FAST) as producer:
            assert await (await producer.put(answer, Item(n=1))) == 43
            assert events == ["startup"]
    assert events == ["startup", "shutdown"]


async def _noop(item: Item) -> None:
    return None


async def test_run_app_raises_a_startup_failure_as_it_is(spreadq_daemon: Daemon) -> None:
    @asynccontextmanager
    async def lifespan(app: App) -> AsyncIterator[None]:
        raise OSError("db down")
        yield  # type: ignore[unreachable]  # makes it a generator

    app = App("lifespan", plugins=False, lifespan=lifespan)
    app.handler("x")(_noop)
    with anyio.fail_after(WAIT), pytest.raises(LifespanError, match="OSError: db down"):
        async with run_app(app, daemon=spreadq_daemon, settings=FAST):
            pytest.fail("the worker started")
