"""A lean FIFO between the tasks of one event loop: what every actor's inbox is made of.

Theory of operation
-------------------
anyio's memory object streams are general (several senders and receivers, clones,
trio and asyncio), and a worker pays for that on every message: a receive takes a turn
of the loop before it even looks at the buffer, and one that waits builds an anyio
``Event``, a generic receiver record and a cancel-aware wait. A worker under light load
waits in three such receives per message (the dispatcher, a runner, the connection's
writer), so that cost is a good part of what a message costs it.

A :class:`Channel` keeps the same contract for the way spreadq uses it, on the asyncio
loop it runs on (spreadq runs on anyio's asyncio backend, uvloop included):

* an item sent while a receiver waits goes to the receiver that waited longest, so a
  count of waiting receivers stays exact (the runner pool relies on it);
* a receive that finds an item returns it without yielding; one that waits costs one
  future;
* a receiver cancelled just after it was handed an item gives the item back, at the
  front, to the next waiting receiver or the buffer: nothing is lost;
* a full channel makes :meth:`send` wait (senders in order) and :meth:`send_nowait`
  raise ``anyio.WouldBlock``;
* :meth:`end` is the sender's end of the stream: receivers still take what is
  buffered, then get ``anyio.EndOfStream``; later sends raise
  ``anyio.ClosedResourceError``;
* :meth:`close` ends it for everyone: waiting receivers and senders, and every later
  call, get ``anyio.ClosedResourceError``; what was buffered is dropped (take it first,
  as :meth:`~spreadq.actors.mailbox.Inbox.close_and_drain` does).

Like anyio's streams, a receive is a cancellation point only when it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from typing import Generic, TypeVar

import anyio

__all__ = ["Channel"]

T = TypeVar("T")


class Channel(Generic[T]):
    """A bounded first-in first-out channel of items, for tasks of one event loop.

    Args:
        max_items: how many items it buffers at most (``math.inf``: no bound).
    """

    __slots__ = ("_closed", "_ended", "_items", "_loop", "_max", "_receivers", "_senders")

    def __init__(self, max_items: float = math.inf) -> None:
        self._items: deque[T] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None  # the first waiter's
        self._max = max_items
        self._receivers: deque[asyncio.Future[T]] = deque()
        self._senders: deque[tuple[asyncio.Future[None], T]] = deque()
        self._closed = False
        self._ended = False

    # -- sending -------------------------------------------------------------------------

    def send_nowait(self, item: T) -> None:
        """Hand ``item`` to the receiver waiting longest, or buffer it.

        Raises:
            anyio.WouldBlock: the buffer is full.
            anyio.ClosedResourceError: the channel is closed or ended.
        """
        if self._closed or self._ended:
            raise anyio.ClosedResourceError
        receivers = self._receivers
        while receivers:
            waiter = receivers.popleft()
            if not waiter.done():  # one cancelled meanwhile has left
                waiter.set_result(item)
                return
        if len(self._items) >= self._max:
            raise anyio.WouldBlock
        self._items.append(item)

    async def send(self, item: T) -> None:
        """Send ``item``, waiting while the buffer is full.

        Raises:
            anyio.ClosedResourceError: the channel is or gets closed or ended.
        """
        try:
            self.send_nowait(item)
        except anyio.WouldBlock:
            pass
        else:
            return
        waiter: asyncio.Future[None] = self._running_loop().create_future()
        entry = (waiter, item)
        self._senders.append(entry)
        try:
            await waiter  # resolved once a receiver moved our item into the buffer
        except BaseException:
            if not waiter.done() or waiter.cancelled():  # not moved in: withdraw it
                with contextlib.suppress(ValueError):
                    self._senders.remove(entry)
            raise

    # -- receiving -----------------------------------------------------------------------

    def receive_nowait(self) -> T:
        """Take the oldest item.

        Raises:
            anyio.WouldBlock: there is none.
            anyio.EndOfStream: there is none and the channel has ended.
            anyio.ClosedResourceError: the channel is closed.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        items = self._items
        if not items:
            raise anyio.EndOfStream if self._ended else anyio.WouldBlock
        item = items.popleft()
        senders = self._senders
        while senders:  # room now: the sender waiting longest gets its item in
            waiter, waiting = senders.popleft()
            if not waiter.done():
                items.append(waiting)
                waiter.set_result(None)
                break
        return item

    def take(self) -> T | None:
        """The oldest item, or None when none is buffered (or the channel is closed or
        ended): :meth:`receive_nowait` without an exception, for channels whose items
        are never None."""
        items = self._items
        if not items or self._closed:
            return None
        if self._senders:
            return self.receive_nowait()  # lets a waiting sender in
        return items.popleft()

    async def receive(self) -> T:
        """Take the oldest item, waiting for one when there is none.

        Raises:
            anyio.EndOfStream: the channel has ended and nothing is left in it.
            anyio.ClosedResourceError: the channel is or gets closed.
        """
        try:
            return self.receive_nowait()
        except anyio.WouldBlock:
            pass
        waiter: asyncio.Future[T] = self._running_loop().create_future()
        self._receivers.append(waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_back(waiter.result())  # handed an item as we were cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._receivers.remove(waiter)
            raise

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the channel's tasks run on, looked up once: each lookup asks the
        kernel for the process id (CPython 3.11), and a worker waits on a channel
        several times for each message it reads."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _give_back(self, item: T) -> None:
        """Return an item a cancelled receiver was handed: to the next receiver, or to
        the front of the buffer (it was the oldest)."""
        if self._closed:
            return
        receivers = self._receivers
        while receivers:
            waiter = receivers.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        self._items.appendleft(item)

    # -- the end and the state -------------------------------------------------------------

    def end(self) -> None:
        """End the stream of items: what is buffered can still be taken, then receivers
        get ``anyio.EndOfStream``; waiting and later senders get
        ``anyio.ClosedResourceError``. Idempotent."""
        if self._ended or self._closed:
            return
        self._ended = True
        self._fail_waiters(anyio.EndOfStream)  # a receiver waits only when nothing is left

    def close(self) -> None:
        """Close the channel: waiting receivers and senders, and every later call, get
        ``anyio.ClosedResourceError``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._items.clear()
        self._fail_waiters(anyio.ClosedResourceError)

    def _fail_waiters(self, receivers: type[Exception]) -> None:
        """Wake every waiting receiver with ``receivers``, every sender with
        ``anyio.ClosedResourceError``."""
        for receiver in self._receivers:
            if not receiver.done():
                receiver.set_exception(receivers())
        for sender, _ in self._senders:
            if not sender.done():
                sender.set_exception(anyio.ClosedResourceError())
        self._receivers.clear()
        self._senders.clear()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    @property
    def max_items(self) -> float:
        """The buffer's bound."""
        return self._max

    def __len__(self) -> int:
        """How many items are buffered."""
        return len(self._items)

    @property
    def waiting_senders(self) -> int:
        """How many senders wait for room."""
        return sum(1 for waiter, _ in self._senders if not waiter.done())

    @property
    def waiting_receivers(self) -> int:
        """How many receivers wait for an item."""
        return sum(1 for waiter in self._receivers if not waiter.done())
