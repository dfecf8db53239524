"""Inboxes and one-shot replies: the only way code talks to an actor.

Theory of operation. An actor owns an :class:`Inbox` (a bounded
:class:`~spreadq.actors.channel.Channel`) and hands out a :class:`Mailbox` (the sending end) inside
its handle. Commands are immutable values put into the mailbox; a command that needs an
answer carries a :class:`Reply`, which the actor resolves with a value or an exception.

When an actor stops it calls :meth:`Inbox.close_and_drain`: every command still queued
comes back to it (so it can fail their replies), and every later or blocked
:meth:`Mailbox.put` raises the actor's terminal error, which the mailbox learns from a
callback. Nothing waits forever on a dead actor.

The fast path of :meth:`Mailbox.put` does not yield when the inbox has room, so a
producer can queue a burst of commands and the actor takes them all in one batch
(:meth:`Inbox.receive_batch`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio
import anyio.lowlevel

from spreadq.actors.channel import Channel

__all__ = ["Inbox", "InboxStatistics", "Mailbox", "Reply"]

T = TypeVar("T")

_CLOSED = (anyio.BrokenResourceError, anyio.ClosedResourceError)


class Reply(Generic[T]):
    """A one-shot answer to a command: the actor sets a value or an exception once.

    Awaiting a reply waits for the answer; the caller bounds the wait (``fail_after``).
    The actor guarantees that every reply it received is resolved when it stops.
    """

    __slots__ = ("_done", "_error", "_event", "_value")

    def __init__(self) -> None:
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None
        self._event: asyncio.Event | None = None  # made when someone waits

    @property
    def done(self) -> bool:
        """True once a value or an exception was set."""
        return self._done

    def set(self, value: T) -> None:
        """Resolve the reply with ``value``.

        Raises:
            RuntimeError: the reply was already resolved.
        """
        self._check_pending()
        self._value = value
        self._resolve()

    def fail(self, error: BaseException) -> None:
        """Resolve the reply with ``error``, which awaiting it raises.

        Raises:
            RuntimeError: the reply was already resolved.
        """
        self._check_pending()
        self._error = error
        self._resolve()

    async def wait(self) -> T:
        """Wait for the answer and return it.

        Raises:
            BaseException: whatever the actor failed the reply with.
        """
        if not self._done:
            event = self._event
            if event is None:
                event = self._event = asyncio.Event()
            await event.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def __await__(self) -> Generator[Any, None, T]:
        return self.wait().__await__()

    def _resolve(self) -> None:
        self._done = True
        if self._event is not None:
            self._event.set()

    def _check_pending(self) -> None:
        if self._done:
            raise RuntimeError("this reply was already resolved")


@dataclass(frozen=True, slots=True)
class InboxStatistics:
    """A snapshot of an inbox: how many commands wait and how many senders are blocked."""

    queued: int
    capacity: float
    blocked_senders: int


class Mailbox(Generic[T]):
    """The sending end of an actor's inbox, held by its handle.

    ``stopped`` returns the actor's terminal error once it has stopped and ``None``
    while it runs; :meth:`put` raises that error when the inbox is closed.
    """

    __slots__ = ("_send", "_stopped")

    def __init__(self, send: Channel[T], stopped: Callable[[], BaseException | None]) -> None:
        self._send = send
        self._stopped = stopped

    async def put(self, item: T) -> None:
        """Queue ``item``; wait only while the inbox is full.

        Raises:
            BaseException: the actor's terminal error, when it has stopped (before or
                while waiting).
        """
        try:
            self._send.send_nowait(item)
        except anyio.WouldBlock:
            pass
        except _CLOSED:
            raise self._error() from None
        else:
            return
        try:
            await self._send.send(item)
        except _CLOSED:
            raise self._error() from None
        error = self._stopped()
        if error is not None:
            # admitted into the queue while the actor was draining it: never handled
            raise error

    def put_nowait(self, item: T) -> bool:
        """Queue ``item`` if there is room; return False when the inbox is full.

        Raises:
            BaseException: the actor's terminal error, when it has stopped.
        """
        try:
            self._send.send_nowait(item)
        except anyio.WouldBlock:
            return False
        except _CLOSED:
            raise self._error() from None
        return True

    def _error(self) -> BaseException:
        error = self._stopped()
        return error if error is not None else anyio.BrokenResourceError("the actor has stopped")


class Inbox(Generic[T]):
    """An actor's bounded queue of commands (never None), and the factory of its
    :class:`Mailbox`."""

    __slots__ = ("_channel", "_closed")

    def __init__(self, max_items: int) -> None:
        self._channel: Channel[T] = Channel(max_items)
        self._closed = False

    def mailbox(self, stopped: Callable[[], BaseException | None]) -> Mailbox[T]:
        """A sending end for a handle; ``stopped`` reports the actor's terminal error."""
        return Mailbox(self._channel, stopped)

    async def receive(self) -> T:
        """Wait for the next command.

        Raises:
            anyio.ClosedResourceError: the inbox was closed.
        """
        return await self._channel.receive()

    async def receive_batch(
        self, max_items: int, *, weigh: Callable[[T], int] | None = None, budget: int = 0
    ) -> list[T]:
        """Wait for one command, then take every queued one without waiting. When
        commands are queued already, take a turn of the loop first, so that what the
        other tasks are about to send joins this batch (batching only under load).

        Stops at ``max_items`` commands, or, with ``weigh``, once their total weight
        reaches ``budget``.

        Raises:
            anyio.ClosedResourceError: the inbox was closed.
        """
        channel = self._channel
        take = channel.take
        if len(channel):  # busy: a turn of the loop first lets more pile up for one batch
            await anyio.lowlevel.checkpoint()
        first = await channel.receive()
        batch = [first]
        weight = weigh(first) if weigh is not None else 0
        while len(batch) < max_items and (weigh is None or weight < budget):
            item = take()
            if item is None:
                break
            batch.append(item)
            if weigh is not None:
                weight += weigh(item)
        return batch

    def close_and_drain(self) -> list[T]:
        """Close the inbox and return what was still queued in it.

        Call it after the actor's terminal error is set: a sender admitted while
        draining sees that error, and later senders get it from :meth:`Mailbox.put`.
        """
        items: list[T] = []
        if self._closed:
            return items
        self._closed = True
        channel = self._channel
        while (item := channel.take()) is not None:  # a blocked sender's item comes in too
            items.append(item)
        channel.close()
        return items

    @property
    def closed(self) -> bool:
        """True once :meth:`close_and_drain` ran."""
        return self._closed

    def statistics(self) -> InboxStatistics:
        """How full the inbox is now."""
        channel = self._channel
        return InboxStatistics(
            queued=len(channel),
            capacity=channel.max_items,
            blocked_senders=channel.waiting_senders,
        )
