"""The daemon stops and comes back on the same port under a running producer and workers.

Every client loses its session; the workers reconnect as new members, the producer
reconnects, learns the new consumers and re-sends every job it has no outcome for.
Every receipt resolves, with the right result, and no job is lost. A job that ran before
the restart seldom runs again after it: the workers keep their outcome history across
the reconnection and announce the outcomes no ACK confirmed, and the producer gives the
consumers it knew a moment to come back before it re-sends. (How many did is printed,
not asserted: ``-s`` shows ``restart_reran=N``.) (A job can still run twice
*during* the shutdown: a worker whose session closes first leaves finished jobs it had
not ACKed yet, and a survivor takes them over.)

Runs against the embedded daemon, and against a real Spread daemon when
``SPREADQ_SPREAD_DAEMON`` names its binary (restarted on the same port).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from spreadq.daemon import Daemon
from spreadq.producer import Producer, Receipt
from spreadq.settings import Settings
from spreadq.testing.fixtures import daemon_in_background
from spreadq.worker.app import App

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
import anyio.lowlevel
import real_daemon
from real_daemon import ENV_VAR, RealDaemon

JOBS = 600
SETTINGS = Settings(
    reconnect_backoff_initial=0.02,
    reconnect_backoff_max=0.1,
    batch_max_jobs=16,
    batch_max_delay=0.001,
    max_in_flight=2_000,
)


class Restartable:
    """A daemon on a fixed port that the test can stop and start again."""

    def __init__(self, kind: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kind = kind
        self.workdir = workdir
        self.monkeypatch = monkeypatch
        self.port = 0
        self.starts = 0
        self._embedded: AbstractAsyncContextManager[Daemon] | None = None
        self._real: Any = None

    @property
    def address(self) -> str:
        return f"{self.port}@127.0.0.1"

    async def start(self) -> None:
        self.starts += 1
        if self.kind == "embedded":
            # the daemon runs in a task of its own, so the test can stop it from anywhere
            self._embedded = daemon_in_background(port=self.port)
            daemon = await self._embedded.__aenter__()
            self.port = daemon.port
            return
        binary = real_daemon.daemon_binary()
        if binary is None:
            pytest.skip(f"{ENV_VAR} is not set")
        if self.port:
            port = self.port
            self.monkeypatch.setattr(real_daemon, "free_port", lambda: port)
        manager = real_daemon.start_real_daemon(binary, self.workdir / f"run{self.starts}")
        started: RealDaemon = await anyio.to_thread.run_sync(manager.__enter__)
        self.port = started.port
        self._real = manager

    async def stop(self) -> None:
        if self._embedded is not None:
            manager, self._embedded = self._embedded, None
            await manager.__aexit__(None, None, None)
        if self._real is not None:
            manager, self._real = self._real, None
            await anyio.to_thread.run_sync(manager.__exit__, None, None, None)


@asynccontextmanager
async def restartable(
    kind: str, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Restartable]:
    daemon = Restartable(kind, workdir, monkeypatch)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


@pytest.fixture(params=["embedded", pytest.param("real", marks=pytest.mark.interop)])
def kind(request: pytest.FixtureRequest) -> str:
    param: str = request.param
    return param


@pytest.mark.slow
@pytest.mark.parametrize("notices", [True, False], ids=["notices", "acks-only"])
async def test_every_receipt_resolves_across_a_daemon_restart(
    kind: str, notices: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: Counter[int] = Counter()
    sessions: dict[int, set[int]] = {}  # job -> the daemon runs (1, 2) it ran in
    half_put = anyio.Event()
    some_done = anyio.Event()

    def make_app(address: str) -> App:
        settings = SETTINGS.replace(outcome_notices=notices)
        app = App("restart", address, plugins=False, settings=settings)

        @app.handler("square")
        async def square(n: int) -> int:
            ran[n] += 1
            sessions.setdefault(n, set()).add(daemon.starts)
            if sum(ran.values()) >= JOBS // 4:
                some_done.set()
            return n * n

        return app

    async with restartable(kind, tmp_path, monkeypatch) as daemon:
        receipts: list[Receipt[Any]] = []
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(2):
                    await tg.start(partial(make_app(daemon.address).run, handle_signals=False))
                async with Producer("restart", daemon.address, settings=SETTINGS) as producer:

                    async def put_all() -> None:
                        for n in range(JOBS):
                            receipts.append(await producer.put("square", n))
                            if n == JOBS // 2:
                                half_put.set()
                                await some_done.wait()  # the restart happens mid-stream
                            if n % 20 == 0:
                                await anyio.lowlevel.checkpoint()

                    async with anyio.create_task_group() as putting:
                        putting.start_soon(put_all)
                        await half_put.wait()
                        await some_done.wait()
                        await daemon.stop()
                        await daemon.start()
                    results = [await receipt for receipt in receipts]
                    stats = producer.statistics()
                tg.cancel_scope.cancel()

    assert results == [n * n for n in range(JOBS)]
    assert set(ran) == set(range(JOBS))  # every job ran; a few may have run twice
    again = sorted(n for n, runs in sessions.items() if runs == {1, 2})
    # Jobs that ran before the restart and again after it: a figure, not an assertion.
    # It is zero in most runs; it is not always zero, because a worker's recovered
    # outcomes can still race with the producer's re-send (see the README's guarantees;
    # tests/integration/test_recovered_outcomes.py checks the mechanism itself).
    print(f"restart_reran={len(again)} ran_twice={sum(1 for c in ran.values() if c > 1)}")
    assert stats.sessions == 2
    assert stats.resent > 0  # the jobs the old consumers never confirmed went again
    if not notices:  # each receipt resolved at its ACK: nothing is left unconfirmed
        assert stats.pending == 0  # (a notice resolves a receipt before its ACK)
    assert daemon.starts == 2


async def test_a_consumer_that_does_not_come_back_delays_re_sending_only_a_moment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The producer waits for as many consumers as it knew, but at most
    twice ``reconnect_backoff_max`` after the first one is back."""
    apps: list[App] = []

    def make_app(address: str, name: str) -> App:
        app = App("gone", address, plugins=False, name=name, settings=SETTINGS)

        @app.handler("square")
        async def square(n: int) -> int:
            return n * n

        apps.append(app)
        return app

    with capture_logs() as logs:
        async with restartable("embedded", tmp_path, monkeypatch) as daemon:
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    stays = anyio.CancelScope()

                    async def run_staying() -> None:
                        with stays:
                            await make_app(daemon.address, "a").run(handle_signals=False)

                    tg.start_soon(run_staying)
                    gone = make_app(daemon.address, "b")
                    await tg.start(partial(gone.run, handle_signals=False))
                    async with Producer("gone", daemon.address, settings=SETTINGS) as producer:
                        await producer.wait_for_consumers(2)
                        before = [await producer.put("square", n) for n in range(10)]
                        assert [await receipt for receipt in before] == [n * n for n in range(10)]
                        gone.stop()  # b drains and leaves for good
                        await daemon.stop()
                        await daemon.start()
                        after = [await producer.put("square", n) for n in range(10, 20)]
                        assert [await r for r in after] == [n * n for n in range(10, 20)]
                        assert producer.consumers == ("#a#localhost",)
                    stays.cancel()
    (waited,) = [entry for entry in logs if entry["event"] == "consumers_not_back"]
    assert (waited["expected"], waited["consumers"]) == (2, 1)
