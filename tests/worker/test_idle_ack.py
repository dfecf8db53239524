"""A worker with nothing ready to run ACKs a finished job at once: a lone job's receipt
resolves without waiting for the ACK cadence (here a minute, and no outcome notices, so
only the idle ACK can resolve it)."""

from __future__ import annotations

import anyio

from spreadq import App, Settings
from spreadq.testing import run_app

WAIT = 10.0
NEVER_BY_CADENCE = Settings(ack_interval=60.0, ack_every=10_000, outcome_notices=False)


def echo_app() -> App:
    app = App("idleack", plugins=False)

    @app.handler("echo")
    async def echo(n: int) -> int:
        return n

    return app


async def test_an_idle_worker_acks_each_finished_job_at_once() -> None:
    async with run_app(echo_app(), settings=NEVER_BY_CADENCE) as producer:
        with anyio.fail_after(WAIT):
            for n in range(5):  # one at a time: the worker is idle after each
                assert await (await producer.put("echo", n)) == n


async def test_a_burst_is_acked_once_the_worker_is_idle_again() -> None:
    async with run_app(echo_app(), settings=NEVER_BY_CADENCE) as producer:
        with anyio.fail_after(WAIT):
            receipts = [await producer.put("echo", n) for n in range(300)]
            assert [await receipt for receipt in receipts] == list(range(300))
