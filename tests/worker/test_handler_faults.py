"""Handlers that misbehave fail their own job, never the worker (issue 8).

Through ``App.run()`` on the embedded daemon, with the :class:`Probe` of
``test_dispatcher.py``: a handler that raises ``KeyboardInterrupt``, ``SystemExit`` or
``asyncio.CancelledError`` itself, one that never returns, one that runs long, and a
16-byte envelope that declares 65,535 job slots.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from functools import partial

import anyio
import pytest
from structlog.testing import capture_logs
from test_dispatcher import FAST, QUEUE, WAIT, Item, make_app, probe_on, start

from spreadq.context import Context
from spreadq.daemon import Daemon
from spreadq.errors import Retry
from spreadq.queue import MESS_TYPE, Status
from spreadq.queue.jobs import JobRef

RAISED: dict[str, Callable[[], BaseException]] = {
    "cancel": asyncio.CancelledError,
    "interrupt": KeyboardInterrupt,
    "exit": lambda: SystemExit(3),
}


async def test_base_exceptions_a_handler_raises_fail_its_job_and_the_worker_goes_on(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(max_attempts=2))
    hooked: list[tuple[int, str]] = []
    what = ["cancel", "interrupt", "exit"]

    @app.handler("raise")
    async def raise_(item: Item) -> int:
        if item.n < len(what):
            raise RAISED[what[item.n]]()
        return item.n

    @app.on_failure
    async def hook(ctx: Context, error: BaseException) -> None:
        hooked.append((ctx.attempt, type(error).__name__))

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            seqs = await probe.put_items("raise", [0, 1, 2])
            failed = await probe.results(seqs)
            (after,) = await probe.put_items("raise", [7])  # the worker is still there
            fine = await probe.results([after])
            app.stop()
    assert [(failed[s].status, failed[s].error_type, failed[s].attempts) for s in seqs] == [
        (Status.FAILED, "asyncio.exceptions.CancelledError", 2),
        (Status.FAILED, "KeyboardInterrupt", 2),
        (Status.FAILED, "SystemExit", 2),
    ]
    assert (
        failed[seqs[0]].error_message == "asyncio.exceptions.CancelledError raised by the handler"
    )
    assert failed[seqs[2]].error_message == "3"
    assert fine[after].result == b"7"
    assert sorted(hooked) == [(2, "CancelledError"), (2, "KeyboardInterrupt"), (2, "SystemExit")]
    failures = [entry for entry in logs if entry["event"] == "job_failed"]
    assert len(failures) == 3  # once per job, with its kind and ref
    assert {(entry["kind"], entry["job"]) for entry in failures} == {
        ("raise", str(JobRef(probe.producer_id, s))) for s in seqs
    }


async def test_a_cancellation_by_the_worker_still_stops_a_handler(spreadq_daemon: Daemon) -> None:
    # stopping with a drain timeout of 0: the worker cancels the hung handler, which
    # answers with KeyboardInterrupt; that is not reported as the job's failure
    app = make_app(spreadq_daemon, settings=FAST.replace(handler_timeout=None))
    started = anyio.Event()

    @app.handler("hang")
    async def hang(item: Item) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            raise KeyboardInterrupt from None

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await tg.start(partial(app.run, handle_signals=False, drain_timeout=0.0))
            (seq,) = await probe.put_items("hang", [1])
            await started.wait()
            app.stop()
    assert seq not in probe.outcomes
    assert not [entry for entry in logs if entry["event"] in ("job_failed", "job_crashed")]


async def test_the_default_timeout_fails_a_handler_that_never_returns_and_says_so(
    spreadq_daemon: Daemon,
) -> None:
    settings = FAST.replace(handler_timeout=0.05, max_attempts=1, concurrency=1)
    app = make_app(spreadq_daemon, settings=settings)

    @app.handler("hang")
    async def hang(item: Item) -> None:
        await anyio.sleep_forever()

    @app.handler("echo")
    async def echo(item: Item) -> int:
        return item.n

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            hung = await probe.put_items("hang", [1, 2])
            (echoed,) = await probe.put_items("echo", [3])  # behind them, one slot
            outcomes = await probe.results([*hung, echoed])
            app.stop()
    for seq in hung:
        assert (outcomes[seq].error_type, outcomes[seq].error_message) == (
            "TimeoutError",
            "handler 'hang' exceeded its 0.05 s timeout",
        )
    assert outcomes[echoed].result == b"3"


async def test_a_timed_out_attempt_is_retried_and_the_last_one_fails_with_the_hooks(
    spreadq_daemon: Daemon,
) -> None:
    settings = FAST.replace(handler_timeout=0.05, max_attempts=2, concurrency=4)
    app = make_app(spreadq_daemon, settings=settings)
    hooked: list[tuple[int, str, str]] = []

    @app.handler("once")
    async def once(item: Item, ctx: Context) -> int:
        if ctx.attempt == 1:
            await anyio.sleep_forever()
        return ctx.attempt

    @app.handler("retrier")
    async def retrier(item: Item, ctx: Context) -> int:
        if ctx.attempt == 1:
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                raise Retry(0.0) from None  # still the timeout's doing
        return ctx.attempt

    @app.handler("stubborn")
    async def stubborn(item: Item) -> None:
        while True:  # swallows the cancellation: the next wait is cancelled again
            try:
                await anyio.sleep_forever()
            except anyio.get_cancelled_exc_class():
                if item.n:
                    raise
                item = Item(n=1)

    @app.on_failure
    async def hook(ctx: Context, error: BaseException) -> None:
        hooked.append((ctx.attempt, ctx.kind, str(error)))

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            seqs = await probe.put_items("once", [1, 2])
            (stuck,) = await probe.put_items("stubborn", [0])
            (retried,) = await probe.put_items("retrier", [0])
            outcomes = await probe.results([*seqs, stuck, retried])
            app.stop()
    assert [(outcomes[s].result, outcomes[s].attempts) for s in seqs] == [(b"2", 2), (b"2", 2)]
    assert (outcomes[retried].result, outcomes[retried].attempts) == (b"2", 2)
    assert (outcomes[stuck].error_type, outcomes[stuck].attempts) == ("TimeoutError", 2)
    assert hooked == [(2, "stubborn", "handler 'stubborn' exceeded its 0.05 s timeout")]


async def test_a_long_job_is_logged_once_when_it_passes_the_warning(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(running_warning=0.2))

    @app.handler("slow")
    async def slow(item: Item) -> int:
        await anyio.sleep(item.n / 100)  # the work itself
        return item.n

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            (fast,) = await probe.put_items("slow", [0])
            await probe.results([fast])  # it ended well before the threshold
            slow_seqs = await probe.put_items("slow", [60, 70])  # three thresholds long
            await probe.results(slow_seqs)
            app.stop()
    warnings = [entry for entry in logs if entry["event"] == "job_still_running"]
    assert sorted((entry["job"], entry["kind"]) for entry in warnings) == sorted(
        (str(JobRef(probe.producer_id, seq)), "slow") for seq in slow_seqs
    )  # once each, none for the fast one
    assert all(entry["seconds"] >= 0.2 for entry in warnings)
    assert all(entry["log_level"] == "warning" for entry in warnings)


async def test_one_unreadable_message_costs_one_log_line_however_many_slots_it_declares(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon)

    @app.handler("echo")
    async def echo(item: Item) -> int:
        return item.n

    bad = b"SQ\x02\x01\xff\xff" + b"0123456789"  # 16 bytes: version 2, 65,535 slots
    assert len(bad) == 16
    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            await probe.conn.multicast(QUEUE, bad, mess_type=MESS_TYPE)
            (seq,) = await probe.put_items("echo", [5])
            outcomes = await probe.results([seq])
            app.stop()
    assert outcomes[seq].result == b"5"
    rejected = [entry for entry in logs if entry["event"] == "job_rejected"]
    assert len(rejected) == 1
    assert rejected[0]["slots"] == 65_535
    assert "version 2" in rejected[0]["reason"]
    assert rejected[0]["sender"] == probe.conn.private_group
    assert re.fullmatch(r"[0-9a-f]+:[0-9]+", rejected[0]["job"])  # its first slot's ref


@pytest.mark.parametrize("value", [None, 0.5])
def test_handler_timeout_and_running_warning_take_none(value: float | None) -> None:
    settings = FAST.replace(handler_timeout=value, running_warning=value, max_failovers=None)
    assert (settings.handler_timeout, settings.running_warning) == (value, value)
