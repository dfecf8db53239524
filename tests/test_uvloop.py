"""spreadq on uvloop: ``spreadq worker``, ``spreadq daemon`` and ``spreadq bench`` run on it
whenever it is installed (``pip install 'spreadq[uvloop]'``), so the client, the daemon
and a worker must work there as they do on asyncio's own loop.

uvloop's transports do not subclass ``asyncio.Transport``; a check that they did made
every connection fail on uvloop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import anyio
import pytest
from pydantic import BaseModel

import spreadq
from spreadq.client import connect
from spreadq.daemon import serve
from spreadq.wire import DataMessage

pytest.importorskip("uvloop", reason="uvloop is not installed (pip install 'spreadq[uvloop]')")

WAIT = 10.0


class Echo(BaseModel):
    text: str


def run_on_uvloop(main: Callable[[], Awaitable[object]]) -> None:
    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})


async def _client_round_trip(address: str) -> None:
    with anyio.fail_after(WAIT):
        async with connect(address, name="uv") as conn:
            await conn.join("uvgroup")
            await conn.multicast("uvgroup", b"over uvloop")
            async for event in conn:
                if isinstance(event, DataMessage):
                    assert event.data == b"over uvloop"
                    assert event.sender == conn.private_group
                    return


@pytest.mark.parametrize("socket_kind", ["tcp", "unix"])
def test_a_client_talks_to_the_daemon_on_uvloop(socket_kind: str, tmp_path: Path) -> None:
    async def main() -> None:
        unix = str(tmp_path / "spread.sock") if socket_kind == "unix" else None
        async with serve(unix_path=unix) as daemon:
            address = f"unix:{unix}" if unix else daemon.address
            await _client_round_trip(address)

    run_on_uvloop(partial(main))


def test_a_job_runs_on_uvloop() -> None:
    app = spreadq.App(queue="uvq")

    @app.handler("echo")
    async def echo(job: Echo) -> Echo:
        return Echo(text=job.text.upper())

    async def main() -> None:
        with anyio.fail_after(WAIT):
            async with serve() as daemon, anyio.create_task_group() as tasks:
                await tasks.start(partial(app.run, spread=daemon.address, handle_signals=False))
                async with spreadq.Producer("uvq", daemon.address) as producer:
                    receipt = await producer.put(echo, Echo(text="quiet"))
                    assert await receipt == Echo(text="QUIET")
                app.stop()

    run_on_uvloop(partial(main))


def test_a_producer_waiting_for_company_asks_uvloop_for_whole_milliseconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # with batch_max_delay, a short batch waits in a cancel scope with that deadline;
    # under a millisecond away, anyio re-armed the scope's timer until uvloop's
    # millisecond clock reached it: the sender's loop spun for the rest of the wait
    waits: list[float] = []
    move_on_after = anyio.move_on_after

    def recorded(delay: float, shield: bool = False) -> anyio.CancelScope:
        waits.append(delay)
        return move_on_after(delay, shield=shield)

    monkeypatch.setattr(anyio, "move_on_after", recorded)
    app = spreadq.App(queue="uvq")

    @app.handler("echo")
    async def echo(job: Echo) -> Echo:
        return job

    async def main() -> None:
        settings = spreadq.Settings(batch_max_delay=0.0004)
        with anyio.fail_after(WAIT):
            async with serve() as daemon, anyio.create_task_group() as tasks:
                await tasks.start(partial(app.run, spread=daemon.address, handle_signals=False))
                async with spreadq.Producer("uvq", daemon.address, settings=settings) as producer:
                    await producer.wait_for_consumers(1)
                    receipt = await producer.put(echo, Echo(text="alone"))
                    assert await receipt == Echo(text="alone")
                app.stop()

    run_on_uvloop(partial(main))
    short = [wait for wait in waits if wait < 0.01]
    assert short, "the short batch never waited for company"
    assert all(round(wait, 6) == 0.001 for wait in short), short
