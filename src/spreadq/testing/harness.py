"""Run a user's :class:`~spreadq.App` inside a test, on the real embedded daemon.

:func:`run_app` is the in-process harness for handler tests: it starts an embedded daemon
(or uses the one given), runs the app as a worker in the test's own event loop, and
yields a :class:`~spreadq.Producer` for the app's queue. Every job goes the whole way a
production job goes (the envelope, the payload and result codecs, the middleware chain,
retries with their backoff, timeouts, ``on_failure`` hooks, the ACK back to the
producer), so a handler test is a few lines::

    async def test_resize() -> None:
        async with spreadq.testing.run_app(app) as producer:
            thumbnail = await (await producer.put(resize, Resize(path="a.png", width=8)))
            assert thumbnail.path == "a.png@8px"

A job that fails for good raises :class:`~spreadq.JobFailed` from its receipt, as in
production. An exception that escapes the worker itself (not a handler's, which fails
its job) ends the ``async with`` block with that exception; an exception raised in the
block comes out as it is.

Unlike a stub broker there is no ``join()``: awaiting a receipt is the wait. Bound it
the way every wait in a test is bounded, with ``anyio.fail_after``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Final

import anyio

from spreadq.codecs import default_codecs
from spreadq.daemon import Daemon, serve
from spreadq.producer import Producer
from spreadq.settings import Settings
from spreadq.worker.app import App

__all__ = ["START_TIMEOUT", "STOP_TIMEOUT", "run_app"]

START_TIMEOUT: Final = 10.0
"""Seconds :func:`run_app` allows the worker to join its queue before it fails."""
STOP_TIMEOUT: Final = 10.0
"""Seconds the worker's drain may take when the block ends; running jobs are then
cancelled."""


@asynccontextmanager
async def run_app(
    app: App,
    *,
    daemon: Daemon | str | None = None,
    settings: Settings | None = None,
    producer_settings: Settings | None = None,
) -> AsyncIterator[Producer]:
    """Run ``app`` as a worker for the block and yield a producer for its queue.

    Args:
        app: the app to run (it is frozen by starting, like ``App.run()``).
        daemon: a running daemon (e.g. the ``spreadq_daemon`` fixture) or an address;
            None starts an embedded daemon for the block.
        settings: the worker's settings; the app's own when None. Tests of retries may
            want a small ``retry_backoff_base``.
        producer_settings: the producer's settings; ``Settings()`` when None.

    Raises:
        ConfigurationError: the app has no handlers, or is already running.
        ConnectError: the daemon given cannot be reached.
        TimeoutError: the worker did not join its queue within :data:`START_TIMEOUT`.
    """
    app.freeze()  # a ConfigurationError here, not from inside the worker's task
    try:
        async with AsyncExitStack() as stack:
            if daemon is None:
                daemon = await stack.enter_async_context(serve(port=0))
            address = daemon if isinstance(daemon, str) else daemon.address
            worker = partial(
                app.run,
                spread=address,
                settings=settings,
                drain_timeout=STOP_TIMEOUT,
                handle_signals=False,
            )
            async with anyio.create_task_group() as tasks:
                with anyio.fail_after(START_TIMEOUT):
                    await tasks.start(worker)
                try:
                    builtin = set(default_codecs())
                    extra = [app.codecs[name] for name in app.codecs if name not in builtin]
                    async with Producer(
                        app.queue, address, settings=producer_settings, codecs=extra
                    ) as producer:
                        yield producer
                finally:
                    app.stop()
    except BaseExceptionGroup as group:
        # The block's own exception (a failed assert, an expected JobFailed) or the
        # worker's, as it is, rather than in the task group's wrapper.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from group.exceptions[0].__cause__
        raise
