"""SyncThreads: where plain ``def`` handlers run, and how many of them at once.

A sync handler runs in one of anyio's worker threads (``anyio.to_thread``), never on
the event loop. Each worker holds one :class:`SyncThreads` with its own slot count
(``Settings.sync_threads``); anyio's process-wide default limiter is neither used nor
changed, so a worker stays a polite guest in a program that has its own threads.

Theory of operation. A thread cannot be cancelled. When the worker gives up waiting
for one (the attempt's timeout passed, the job completed elsewhere, the worker stops),
:meth:`SyncThreads.call` raises the cancellation at once, the attempt goes on as any
cancelled or timed-out attempt, and the thread is *abandoned*: it runs on until its
function returns, and whatever it returns or raises is discarded. An abandoned thread
keeps its slot until then, so at most ``size`` threads ever run handlers of one worker,
abandoned ones included; when every slot is held, the next sync handler waits for one
(and that wait counts against its attempt's timeout). A handler that may run long can
call ``anyio.from_thread.check_cancelled()`` now and then: it raises once the worker
has given up on the call, and lets the thread (and its slot) go early.

The slot is taken on the event loop before the thread starts and given back by the
thread itself as its function returns (through the loop, which owns the limiter). If
the caller is cancelled before the thread picked the call up, the function never runs
and the caller gives the slot back. The slots belong to one event loop: used from
another one (a new ``anyio.run``), a :class:`SyncThreads` starts over with all its
slots free, and the threads abandoned under the old loop no longer count.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Callable
from typing import Final, TypeVar

import anyio

from spreadq.logs import get_logger

__all__ = ["DEFAULT_SYNC_THREADS", "SyncThreads"]

log = get_logger(__name__)

T = TypeVar("T")

DEFAULT_SYNC_THREADS: Final = 8
"""The default number of threads one worker runs sync handlers in (``Settings.sync_threads``)."""


class SyncThreads:
    """Runs blocking functions in worker threads, at most ``size`` at a time.

    Args:
        size: how many threads may run functions at once, abandoned ones included.

    Raises:
        ValueError: ``size`` is less than 1.
    """

    __slots__ = ("_limiter", "_loop", "_passage", "_size")

    def __init__(self, size: int = DEFAULT_SYNC_THREADS) -> None:
        self._size = _checked(size)
        self._limiter: anyio.CapacityLimiter | None = None
        self._passage: anyio.CapacityLimiter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the limiters' loop

    @property
    def size(self) -> int:
        """How many threads may run at once."""
        return self._size

    @property
    def busy(self) -> int:
        """How many slots are held now: running calls plus abandoned threads."""
        limiter = self._limiter
        return 0 if limiter is None else int(limiter.borrowed_tokens)

    def open(self, size: int) -> None:
        """Start over with ``size`` slots (a worker calls it as it starts running).

        Raises:
            ValueError: ``size`` is less than 1.
        """
        self._size = _checked(size)
        self._limiter = None
        self._passage = None
        self._loop = None

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` in a worker thread once a slot is free; return its result.

        The current ``contextvars`` context goes with it (anyio copies it), so
        structlog's bound context and a :class:`~spreadq.context.Context`'s logger work
        in the thread.

        Raises:
            anyio.get_cancelled_exc_class(): the caller was cancelled; the thread, if it
                started, runs on abandoned and keeps its slot until it returns.
            BaseException: whatever ``fn`` raised, unchanged.
        """
        loop = asyncio.get_running_loop()
        limiter, passage = self._limiter, self._passage
        if limiter is None or passage is None or loop is not self._loop:
            limiter = self._limiter = anyio.CapacityLimiter(self._size)
            # anyio's own limiter for the hand-over; ours already bounds the threads
            passage = self._passage = anyio.CapacityLimiter(math.inf)
            self._loop = loop
        token = object()
        await limiter.acquire_on_behalf_of(token)
        claim = threading.Lock()
        claimed = False  # by the thread as it starts, or by the caller that gave up first

        def release() -> None:
            limiter.release_on_behalf_of(token)

        def work() -> T:
            nonlocal claimed
            with claim:
                if claimed:
                    raise anyio.get_cancelled_exc_class()("abandoned before it started")
                claimed = True
            try:
                return fn(*args)
            finally:
                # a closed loop raises RuntimeError: nobody waits for the slot then
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(release)

        try:
            return await anyio.to_thread.run_sync(work, abandon_on_cancel=True, limiter=passage)
        except anyio.get_cancelled_exc_class():
            with claim:
                started, claimed = claimed, True
            if started:
                log.warning(
                    "sync_handler_abandoned",
                    function=getattr(fn, "__qualname__", repr(fn)),
                    busy_threads=int(limiter.borrowed_tokens),
                    sync_threads=self._size,
                )
            else:
                release()
            raise


def _checked(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"sync_threads must be a positive int, got {size!r}")
    return size
