"""``App(dead_letter=...)``: jobs that fail for good land on ``QUEUE.dead`` with their
error; successful ones do not (issue 13)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs
from test_dispatcher import FAST, WAIT

from spreadq.context import Context
from spreadq.daemon import Daemon
from spreadq.errors import ConfigurationError, JobFailed
from spreadq.queue.protocol import (
    ATTEMPTS_HEADER,
    ERROR_HEADER,
    ERROR_TYPE_HEADER,
    ORIGIN_QUEUE_HEADER,
    dead_letter_queue,
)
from spreadq.testing import run_app
from spreadq.worker.app import App


class Order(BaseModel):
    n: int


def test_dead_letter_queue_names() -> None:
    assert App("orders", plugins=False).dead_letter is None
    assert App("orders", plugins=False, dead_letter=True).dead_letter == "orders.dead"
    assert App("orders", plugins=False, dead_letter="graveyard").dead_letter == "graveyard"
    assert dead_letter_queue("q" * 23) == "q" * 23 + ".dead"
    with pytest.raises(ConfigurationError, match="dead-letter queue of 'qqq"):
        dead_letter_queue("q" * 24)  # 29 bytes with .dead: give a name
    with pytest.raises(ConfigurationError, match="its own dead-letter queue"):
        App("orders", plugins=False, dead_letter="orders")
    with pytest.raises(ConfigurationError, match="'~' is reserved"):
        App("orders", plugins=False, dead_letter="orders~x")
    with pytest.raises(ConfigurationError, match="True, False or a queue name"):
        App("orders", plugins=False, dead_letter=1)  # type: ignore[arg-type]


async def test_failed_jobs_land_on_the_dead_letter_queue_and_successful_ones_do_not(
    spreadq_daemon: Daemon,
) -> None:
    app = App("orders", plugins=False, dead_letter=True)

    @app.handler("order", max_attempts=2)
    async def order(job: Order) -> int:
        if job.n < 0:
            raise ValueError(f"bad order {job.n}")
        return job.n

    dead = App("orders.dead", plugins=False)
    landed: list[tuple[Any, str | None, dict[str, str]]] = []
    arrived = anyio.Event()

    @dead.handler("order")
    async def dead_order(job: dict[str, Any], ctx: Context) -> None:
        landed.append((job, ctx.key, dict(ctx.headers)))
        if len(landed) == 3:
            arrived.set()

    settings = FAST.replace(concurrency=1)
    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with (
            run_app(dead, daemon=spreadq_daemon, settings=FAST),
            run_app(app, daemon=spreadq_daemon, settings=settings) as producer,
        ):
            with pytest.raises(JobFailed):
                await (await producer.put(order, Order(n=-1), key="k1", headers={"trace": "t"}))
            assert await (await producer.put(order, Order(n=2))) == 2
            with pytest.raises(JobFailed):  # does not decode: fails at once
                await (await producer.put("order", {"n": "many"}))
            with pytest.raises(JobFailed):
                await (await producer.put(order, Order(n=-3)))
            await arrived.wait()
    first, undecodable, last = landed
    assert first[0] == {"n": -1}
    assert first[1] == "k1"
    assert first[2] == {
        "trace": "t",
        ERROR_HEADER: "bad order -1",
        ERROR_TYPE_HEADER: "ValueError",
        ATTEMPTS_HEADER: "2",
        ORIGIN_QUEUE_HEADER: "orders",
    }
    assert undecodable[0] == {"n": "many"}  # the original bytes, not a re-encoding
    assert undecodable[2][ERROR_TYPE_HEADER] == "spreadq.errors.PayloadError"
    assert undecodable[2][ATTEMPTS_HEADER] == "1"
    assert last[0] == {"n": -3}  # and nothing for the job that succeeded
    assert [entry["event"] for entry in logs].count("job_dead_lettered") == 3
