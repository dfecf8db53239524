"""Plain ``def`` handlers run in a worker's own threads (issue 13, item 1).

:class:`~spreadq.threads.SyncThreads` on its own (slots held by abandoned threads), then
sync handlers through :func:`spreadq.testing.run_app` and ``App.run()``: codecs,
context, retries, a timeout that abandons a blocked thread, and ``BaseException`` s
raised in the thread failing only their job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio
import pytest
from anyio.to_thread import current_default_thread_limiter
from pydantic import BaseModel
from structlog.testing import capture_logs
from test_dispatcher import FAST, WAIT, Item, make_app, probe_on, start

from spreadq.context import Context
from spreadq.daemon import Daemon
from spreadq.errors import JobFailed
from spreadq.queue import Status
from spreadq.testing import run_app
from spreadq.threads import SyncThreads
from spreadq.worker.app import App

BLOCK = 10.0  # the longest a blocked test thread waits for its release


class Sum(BaseModel):
    numbers: list[int]


async def test_an_abandoned_thread_keeps_its_slot_until_it_returns() -> None:
    threads = SyncThreads(1)
    release, entered = threading.Event(), threading.Event()
    ran: list[str] = []

    def blocked() -> str:
        entered.set()
        release.wait(BLOCK)
        ran.append("first")
        return "discarded"

    def second() -> str:
        ran.append("second")
        return "second"

    with anyio.fail_after(WAIT):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(threads.call, blocked)
                await anyio.to_thread.run_sync(entered.wait, BLOCK)
                scope.cancel()  # the caller gives up; the thread runs on
        assert scope.cancelled_caught
        assert threads.busy == 1
        result: list[str] = []
        async with anyio.create_task_group() as tg:

            async def call_second() -> None:
                result.append(await threads.call(second))

            tg.start_soon(call_second)
            await anyio.wait_all_tasks_blocked()
            assert ran == []  # waiting for the abandoned thread's slot
            release.set()
    assert ran == ["first", "second"]
    assert result == ["second"]
    assert threads.busy == 0


async def test_sync_threads_do_not_touch_the_default_limiter() -> None:
    default = current_default_thread_limiter()
    before = default.total_tokens
    threads = SyncThreads(2)
    assert await threads.call(lambda a, b: a + b, 2, 3) == 5
    assert default.total_tokens == before
    assert default.borrowed_tokens == 0
    with pytest.raises(ValueError, match="positive"):
        SyncThreads(0)


async def test_a_sync_handler_runs_in_a_thread_with_codecs_context_and_retries(
    spreadq_daemon: Daemon,
) -> None:
    app = App("sums", plugins=False)
    loop_thread = threading.get_ident()
    seen: list[tuple[bool, int, str, str | None]] = []

    @app.handler("sum", max_attempts=3)
    def add(job: Sum, ctx: Context) -> int:
        seen.append((threading.get_ident() != loop_thread, ctx.attempt, ctx.kind, ctx.key))
        ctx.log.info("summing", count=len(job.numbers))
        if ctx.attempt < 2:
            raise ValueError("flaky")
        return sum(job.numbers)

    @app.handler("fail", max_attempts=1)
    def fail(job: Sum) -> None:
        raise LookupError(f"{len(job.numbers)} numbers")

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with run_app(app, daemon=spreadq_daemon, settings=FAST) as producer:
            total = await (await producer.put(add, Sum(numbers=[1, 2, 3]), key="k"))
            with pytest.raises(JobFailed) as caught:
                await (await producer.put(fail, Sum(numbers=[1])))
    assert total == 6
    assert seen == [(True, 1, "sum", "k"), (True, 2, "sum", "k")]
    assert caught.value.error_type == "LookupError"
    assert caught.value.error_message == "1 numbers"
    assert [entry["attempt"] for entry in logs if entry["event"] == "summing"] == [1, 2]


async def test_a_sync_handler_that_blocks_past_its_timeout_fails_and_the_worker_goes_on(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(max_attempts=1, sync_threads=2))
    release = threading.Event()
    returned = threading.Event()

    @app.handler("block", timeout=0.05)
    def block(item: Item) -> int:
        release.wait(BLOCK)
        returned.set()
        return item.n

    @app.handler("quick")
    def quick(item: Item) -> int:
        return item.n * 2

    try:
        with capture_logs() as logs, anyio.fail_after(WAIT):
            async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
                await start(tg, app)
                (blocked,) = await probe.put_items("block", [1])
                timed_out = (await probe.results([blocked]))[blocked]
                assert not returned.is_set()  # the thread still runs, abandoned
                (after,) = await probe.put_items("quick", [4])
                fine = (await probe.results([after]))[after]
                release.set()
                await anyio.to_thread.run_sync(returned.wait, BLOCK)
                app.stop()
    finally:
        release.set()
    assert timed_out.status is Status.FAILED
    assert timed_out.error_type == "TimeoutError"
    assert timed_out.error_message == "handler 'block' exceeded its 0.05 s timeout"
    assert fine.status is Status.OK
    assert fine.result == b"8"
    assert [entry["event"] for entry in logs].count("sync_handler_abandoned") == 1


RAISED: dict[str, Callable[[], BaseException]] = {
    "interrupt": KeyboardInterrupt,
    "exit": lambda: SystemExit(3),
}


async def test_base_exceptions_raised_in_a_sync_handler_fail_only_its_job(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(max_attempts=1))
    what = ["interrupt", "exit"]

    @app.handler("raise")
    def raise_(item: Item) -> int:
        if item.n < len(what):
            raise RAISED[what[item.n]]()
        return item.n

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            seqs = await probe.put_items("raise", [0, 1])
            failed = await probe.results(seqs)
            (after,) = await probe.put_items("raise", [5])
            fine = await probe.results([after])
            app.stop()
    assert [(failed[s].status, failed[s].error_type) for s in seqs] == [
        (Status.FAILED, "KeyboardInterrupt"),
        (Status.FAILED, "SystemExit"),
    ]
    assert fine[after].result == b"5"


async def test_calling_a_sync_handler_directly_runs_the_function() -> None:
    app = App("direct", plugins=False)

    @app.handler("twice")
    def twice(job: int) -> int:
        return job * 2

    assert await twice(4) == 8
    assert twice.spec.blocking


def test_slots_belong_to_one_event_loop() -> None:
    threads = SyncThreads(1)
    release, entered = threading.Event(), threading.Event()

    def blocked() -> None:
        entered.set()
        release.wait(BLOCK)

    async def abandon() -> None:
        with anyio.fail_after(WAIT), anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(threads.call, blocked)
                await anyio.to_thread.run_sync(entered.wait, BLOCK)
                scope.cancel()
        assert threads.busy == 1  # and its loop closes with the thread still running

    async def again() -> int:
        with anyio.fail_after(WAIT):
            return await threads.call(lambda: 7)

    try:
        anyio.run(abandon)
        assert anyio.run(again) == 7  # not stuck behind the old loop's abandoned thread
    finally:
        release.set()
