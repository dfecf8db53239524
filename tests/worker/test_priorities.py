"""``put(..., priority=)``: the owner runs its higher-priority ready jobs first
(issue 13); end to end with ``concurrency=1`` (the scheduler's own properties are in
``test_scheduler.py``)."""

from __future__ import annotations

import anyio
import pytest
from pydantic import BaseModel
from test_dispatcher import FAST, WAIT

from spreadq.context import Context
from spreadq.daemon import Daemon
from spreadq.errors import ConfigurationError
from spreadq.queue.protocol import PRIORITY_HEADER, read_priority
from spreadq.testing import run_app
from spreadq.worker.app import App


class Named(BaseModel):
    name: str


async def test_one_slot_runs_higher_priorities_first_and_fifo_within_one(
    spreadq_daemon: Daemon,
) -> None:
    app = App("prio", plugins=False)
    started: list[tuple[str, str | None]] = []

    @app.handler("job")
    async def run(job: Named, ctx: Context) -> None:
        started.append((job.name, ctx.headers.get(PRIORITY_HEADER)))

    puts = [("a", 0), ("b", 5), ("c", -3), ("d", 5), ("e", 100), ("f", 0)]
    with anyio.fail_after(WAIT):
        async with run_app(
            app, daemon=spreadq_daemon, settings=FAST.replace(concurrency=1)
        ) as producer:
            await producer.wait_for_consumers(1)
            # no await between the puts: they leave in one batch, so the worker has them
            # all when it picks the first
            receipts = [await producer.put(run, Named(name=n), priority=p) for n, p in puts]
            for receipt in receipts:
                await receipt
    assert [name for name, _ in started] == ["e", "b", "d", "a", "f", "c"]
    assert dict(started) == {"a": None, "b": "5", "c": "-3", "d": "5", "e": "100", "f": None}


@pytest.mark.parametrize("priority", [101, -101, True, 1.5, "1"])
async def test_a_bad_priority_is_refused_before_anything_is_put(
    spreadq_daemon: Daemon, priority: object
) -> None:
    app = App("prio", plugins=False)

    @app.handler("job")
    async def run(job: Named) -> None:
        return None

    async with run_app(app, daemon=spreadq_daemon, settings=FAST) as producer:
        with pytest.raises(ConfigurationError, match="priority must be"):
            await producer.put(run, Named(name="x"), priority=priority)  # type: ignore[call-overload]
        await (await producer.put(run, Named(name="y"), priority=-100))  # -100 is allowed: it runs


def test_a_foreign_priority_header_that_is_no_priority_reads_as_zero() -> None:
    assert read_priority({}) == 0
    assert read_priority({PRIORITY_HEADER: "7"}) == 7
    assert read_priority({PRIORITY_HEADER: "high"}) == 0
    assert read_priority({PRIORITY_HEADER: "1000"}) == 0
