"""pytest fixtures for spreadq users, registered through the ``pytest11`` entry point.

Every fixture name starts with ``spreadq_``. They work with pytest-asyncio in its
``strict`` mode (``@pytest.mark.asyncio`` on the test is enough) and in ``auto`` mode,
and with anyio's pytest plugin (``@pytest.mark.anyio``, or ``anyio_mode = "auto"``, on
the asyncio backend; with pytest-asyncio installed too, keep it in strict mode).

* ``spreadq_daemon``: an embedded daemon for one test; yields its
  :class:`~spreadq.daemon.Daemon` handle (``.address`` for ``spreadq.connect``,
  ``.faults`` for fault injection). Options come from the ``spreadq_daemon`` marker::

      @pytest.mark.spreadq_daemon(max_session_messages=50, daemons=("d1", "d2"))
      async def test_partition(spreadq_daemon): ...

* ``spreadq_daemon_factory``: an async callable that starts more daemons with any
  :func:`~spreadq.daemon.serve` options; all of them stop when the test ends.

To run a whole :class:`~spreadq.App` in a test, see :func:`spreadq.testing.run_app`.

How one fixture serves both plugins. Each public fixture is a plain (sync) fixture that
hands over to an async one made for the plugin running the test: for a test that uses
anyio's ``anyio_backend`` fixture, an ordinary async fixture, which anyio's plugin runs
in one task; otherwise one declared with ``pytest_asyncio.fixture``, which
pytest-asyncio runs in strict mode too. A daemon lives on the test's event loop, in the
test loop scope pytest-asyncio gives fixtures by default (``function``).

There is deliberately no session-scoped daemon: a daemon lives on one event loop, and
pytest-asyncio gives each test its own loop unless the whole suite is configured for
one. Starting a daemon takes about a millisecond, so per-test daemons cost little.

pytest-asyncio runs an async fixture's setup and teardown in different tasks, while an
anyio task group must be left by the task that entered it. So under pytest-asyncio each
daemon runs in a task of its own (:func:`daemon_in_background`), which the fixture
starts and stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Final, cast

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


def _uses_anyio(request: pytest.FixtureRequest) -> bool:
    """Whether anyio's pytest plugin runs this test (it then runs its async fixtures)."""
    return "anyio_backend" in request.fixturenames


def _marker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("spreadq_daemon")
    return dict(marker.kwargs) if marker is not None else {}


def _asyncio_fixture(function: Callable[..., Any]) -> Any:
    """``pytest_asyncio.fixture`` when pytest-asyncio is installed, else ``pytest.fixture``."""
    try:
        import pytest_asyncio
    except ImportError:  # pytest-asyncio is optional for users
        return pytest.fixture(function)
    return pytest_asyncio.fixture(function)


@pytest.fixture
def spreadq_daemon(request: pytest.FixtureRequest) -> Daemon:
    """An embedded Spread daemon for one test (options: the ``spreadq_daemon`` marker)."""
    name = "_spreadq_anyio_daemon" if _uses_anyio(request) else "_spreadq_asyncio_daemon"
    return cast(Daemon, request.getfixturevalue(name))


@pytest.fixture
def spreadq_daemon_factory(request: pytest.FixtureRequest) -> DaemonFactory:
    """Start embedded daemons with any ``serve()`` options; all stop after the test."""
    name = "_spreadq_anyio_factory" if _uses_anyio(request) else "_spreadq_asyncio_factory"
    return cast(DaemonFactory, request.getfixturevalue(name))


@_asyncio_fixture
async def _spreadq_asyncio_daemon(request: pytest.FixtureRequest) -> AsyncIterator[Daemon]:
    async with daemon_in_background(**_marker_options(request)) as daemon:
        yield daemon


@_asyncio_fixture
async def _spreadq_asyncio_factory() -> AsyncIterator[DaemonFactory]:
    async with AsyncExitStack() as stack:

        async def start(**options: Any) -> Daemon:
            return await stack.enter_async_context(daemon_in_background(**options))

        yield start


@pytest.fixture
async def _spreadq_anyio_daemon(request: pytest.FixtureRequest) -> AsyncIterator[Daemon]:
    # anyio's plugin runs setup and teardown in one task: serve() directly.
    async with serve(**_marker_options(request)) as daemon:
        yield daemon


@pytest.fixture
async def _spreadq_anyio_factory() -> AsyncIterator[DaemonFactory]:
    async with AsyncExitStack() as stack:

        async def start(**options: Any) -> Daemon:
            return await stack.enter_async_context(serve(**options))

        yield start
