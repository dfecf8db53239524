"""pytest fixtures for spreadq users, registered through the ``pytest11`` entry point.

Every fixture name starts with ``spreadq_``. They need an asyncio test runner
(pytest-asyncio, ``asyncio_mode = "auto"`` or ``@pytest.mark.asyncio``).

* ``spreadq_daemon``: an embedded daemon for one test; yields its
  :class:`~spreadq.daemon.Daemon` handle (``.address`` for ``spreadq.connect``,
  ``.faults`` for fault injection). Options come from the ``spreadq_daemon`` marker::

      @pytest.mark.spreadq_daemon(max_session_messages=50, daemons=("d1", "d2"))
      async def test_partition(spreadq_daemon): ...

* ``spreadq_daemon_factory``: an async callable that starts more daemons with any
  :func:`~spreadq.daemon.serve` options; all of them stop when the test ends.

There is deliberately no session-scoped daemon: a daemon lives on one event loop, and
pytest-asyncio gives each test its own loop unless the whole suite is configured for
one. Starting a daemon takes about a millisecond, so per-test daemons cost little.

pytest-asyncio runs an async fixture's setup and teardown in different tasks, while an
anyio task group must be left by the task that entered it. So each daemon runs in a task
of its own (:func:`daemon_in_background`), which the fixture starts and stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Final

import pytest

from spreadq.daemon import Daemon, serve

__all__ = [
    "STOP_TIMEOUT",
    "daemon_in_background",
    "pytest_configure",
    "spreadq_daemon",
    "spreadq_daemon_factory",
]

STOP_TIMEOUT: Final = 10.0
"""Seconds a daemon may take to start or to stop before the fixture fails."""

DaemonFactory = Callable[..., Awaitable[Daemon]]


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``spreadq_daemon`` marker (for ``--strict-markers``)."""
    config.addinivalue_line(
        "markers",
        "spreadq_daemon(**options): options for the spreadq_daemon fixture "
        "(any keyword of spreadq.daemon.serve)",
    )


@asynccontextmanager
async def daemon_in_background(**options: Any) -> AsyncIterator[Daemon]:
    """Run :func:`~spreadq.daemon.serve` in its own task; usable across fixture tasks.

    Raises:
        TimeoutError: the daemon did not start or stop within :data:`STOP_TIMEOUT`.
        OSError: its port or path cannot be bound.
    """
    loop = asyncio.get_running_loop()
    started: asyncio.Future[Daemon] = loop.create_future()
    stop = asyncio.Event()

    async def run() -> None:
        try:
            async with serve(**options) as daemon:
                started.set_result(daemon)
                await stop.wait()
        except BaseException as error:
            if not started.done():
                started.set_exception(error)
                return
            raise

    # A bare task on purpose: see the module docstring.
    task = loop.create_task(run(), name="spreadq-embedded-daemon")
    try:
        daemon = await asyncio.wait_for(asyncio.shield(started), STOP_TIMEOUT)
    except BaseException:
        task.cancel()
        raise
    try:
        yield daemon
    finally:
        stop.set()
        await asyncio.wait_for(task, STOP_TIMEOUT)


@pytest.fixture
async def spreadq_daemon(request: pytest.FixtureRequest) -> AsyncIterator[Daemon]:
    """An embedded Spread daemon for one test (options: the ``spreadq_daemon`` marker)."""
    marker = request.node.get_closest_marker("spreadq_daemon")
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    async with daemon_in_background(**options) as daemon:
        yield daemon


@pytest.fixture
async def spreadq_daemon_factory() -> AsyncIterator[DaemonFactory]:
    """Start embedded daemons with any ``serve()`` options; all stop after the test."""
    async with AsyncExitStack() as stack:

        async def start(**options: Any) -> Daemon:
            return await stack.enter_async_context(daemon_in_background(**options))

        yield start
