"""The worker runtime's own lines and limits: it says where it connects, that it joined,
and gives up after ``Settings.connect_timeout`` without a daemon."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs

from spreadq import App, CouldNotConnect, Settings
from spreadq.daemon import Daemon

WAIT = 10
FAST = Settings(reconnect_backoff_initial=0.02, reconnect_backoff_max=0.05)


class Item(BaseModel):
    n: int


def make_app(address: str, settings: Settings = FAST) -> App:
    app = App("rt", address, plugins=False, settings=settings)

    @app.handler("double")
    async def double(item: Item) -> int:
        return item.n * 2

    @app.handler("noop")
    async def noop(item: Item) -> None:
        return None

    return app


async def test_a_joined_worker_says_where_as_whom_and_what_it_serves(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon.address)
    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            await tg.start(
                lambda task_status: app.run(handle_signals=False, task_status=task_status)
            )
            app.stop()
    (joined,) = [entry for entry in logs if entry["event"] == "worker_joined"]
    assert joined["log_level"] == "info"
    assert joined["address"] == spreadq_daemon.address
    assert joined["member"].startswith("#")
    assert joined["handlers"] == ["double", "noop"]
    assert (joined["queue"], joined["rule"], joined["concurrency"]) == ("rt", "round_robin", 16)


async def test_a_worker_without_a_daemon_warns_where_and_gives_up_after_connect_timeout() -> None:
    app = make_app("1@127.0.0.1", FAST.replace(connect_timeout=0.2))
    started = anyio.current_time()
    with capture_logs() as logs, anyio.fail_after(WAIT), pytest.raises(CouldNotConnect):
        await app.run(handle_signals=False)
    assert anyio.current_time() - started >= 0.2
    tries = [entry for entry in logs if entry["event"] == "worker_reconnecting"]
    assert tries, "every failed try is a warning"
    assert {entry["log_level"] for entry in tries} == {"warning"}
    assert {entry["address"] for entry in tries} == {"1@127.0.0.1"}
    assert all("could not connect" in entry["error"] for entry in tries)
    assert [entry["attempt"] for entry in tries] == list(range(1, len(tries) + 1))
    (gave_up,) = [entry for entry in logs if entry["event"] == "worker_gave_up"]
    assert gave_up["log_level"] == "error"
    assert gave_up["seconds"] >= 0.2
