"""SpreadConnection: the actor that owns one socket to a Spread daemon.

Theory of operation
-------------------
The actor owns a connected byte stream (TCP or Unix) and a sans-IO
:class:`~spreadq.wire.session.ClientSession`. Nothing else touches either.

``run()`` first does the handshake (hello, auth choice, accept) and then hands a
:class:`ConnectionHandle` back through ``task_status.started``. From then on two tasks run:

* the **reader** receives chunks of up to 256 KiB, feeds them to the session, decodes
  every complete message in the chunk, and puts them as one tuple into a bounded stream
  of event batches. When the consumer is slow the reader blocks, stops reading the
  socket, and the daemon queues for us: that is what flow control above manages. A
  consumer that keeps its own queue (a worker's dispatcher) may instead take each tuple
  from the reader itself (:meth:`ConnectionHandle.deliver_to`), saving a task switch
  per read.
* the **writer** waits for one command in the inbox, takes every command queued behind
  it, encodes them all, and writes the bytes with one ``send``. A burst of multicasts
  costs one system call, not one per message.

When the daemon closes the socket, resets it, sends bytes the codec refuses, or a write
fails, the actor records one :class:`~spreadq.errors.ConnectionLost` (with its
:class:`~spreadq.errors.CloseReason`). At that moment the inbox is closed and drained,
and every command waiting in it, blocked on it or written but not yet confirmed fails
with that error. The events decoded before the end are still delivered, then the event
stream ends and ``receive()`` raises the same error. Nothing waits forever.

Closing locally queues a ``Close`` command behind everything already queued: the writer
writes those commands and a ``Disconnect`` (``KILL_MESS``) in its last write.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import anyio
import anyio.abc
import anyio.lowlevel

from spreadq.actors.channel import Channel
from spreadq.actors.mailbox import Inbox, Mailbox, Reply
from spreadq.errors import (
    CloseReason,
    ConnectionLost,
    ConnectRejected,
    CouldNotConnect,
    RemoteProtocolError,
)
from spreadq.logs import get_logger
from spreadq.wire.constants import RejectCode
from spreadq.wire.events import (
    CLOSED,
    NEED_DATA,
    Accepted,
    ClientCommand,
    DaemonMessage,
    Disconnect,
    Multicast,
    Rejected,
)
from spreadq.wire.session import ClientSession

__all__ = [
    "Close",
    "ConnectionCommand",
    "ConnectionHandle",
    "ConnectionStatistics",
    "Flush",
    "SpreadConnection",
]

log = get_logger(__name__)

RECEIVE_SIZE: Final = 256 * 1024
"""Bytes asked of the socket per read."""
WRITE_BUDGET: Final = 1 << 20
"""The writer stops adding commands to one write past this many bytes."""
MAX_BATCH: Final = 4096
"""The writer takes at most this many commands per write."""

_SOCKET_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
_STREAM_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError)


@dataclass(frozen=True, slots=True)
class Flush:
    """Answer ``reply`` once every command queued before this one has been written."""

    reply: Reply[None]


@dataclass(frozen=True, slots=True)
class Close:
    """Write what is queued before this, then a ``Disconnect``, and stop."""

    reply: Reply[None]


ConnectionCommand = ClientCommand | Flush | Close
"""What a :class:`SpreadConnection` inbox holds."""


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    """Counters of one connection since it opened (a snapshot)."""

    writes: int
    """``send`` calls on the socket after the handshake."""
    bytes_written: int
    commands_written: int
    reads: int
    """``receive`` calls on the socket that returned data."""
    bytes_read: int
    events_received: int
    queued: int
    """Commands waiting in the inbox now."""
    rests: int = 0
    """Times the reader left the socket unread for a while (:meth:`SpreadConnection.pace_reads`)."""


def _weight(command: ConnectionCommand) -> int:
    if type(command) is Multicast:
        return len(command.data) + 48 + 32 * len(command.groups)
    return 80


class ConnectionHandle:
    """How other code talks to a running :class:`SpreadConnection`.

    Sending methods only queue commands; they raise the connection's
    :class:`~spreadq.errors.ConnectionLost` once it has ended. One task should consume
    the events.
    """

    __slots__ = (
        "_actor",
        "_events",
        "_mailbox",
        "_pending",
        "daemon_version",
        "private_group",
    )

    def __init__(
        self,
        actor: SpreadConnection,
        events: Channel[tuple[DaemonMessage, ...]],
        accepted: Accepted,
    ) -> None:
        self._actor = actor
        self._mailbox = actor.mailbox()
        self._events = events
        self._pending: deque[DaemonMessage] = deque()
        self.private_group: str = accepted.private_group
        """This connection's private group, ``#name#daemon``."""
        self.daemon_version: tuple[int, int, int] = accepted.daemon_version
        """The daemon's version from its accept."""

    @property
    def error(self) -> ConnectionLost | None:
        """Why the connection ended, or ``None`` while it is open."""
        return self._actor.error

    async def send(self, command: ClientCommand) -> None:
        """Queue ``command`` for the writer; wait only while the inbox is full.

        Raises:
            ConnectionLost: the connection has ended (before or while waiting).
        """
        await self._mailbox.put(command)

    async def flush(self) -> None:
        """Wait until every command queued before this call has been written.

        Raises:
            ConnectionLost: the connection ended first.
        """
        await self._call(Flush)

    async def _call(self, command: type[Flush | Close]) -> None:
        """Queue a command carrying a reply and wait for the answer.

        The reply is registered with the actor first, so the actor fails it when the
        connection ends wherever the command is then: queued, taken or written.
        """
        reply: Reply[None] = Reply()
        with self._actor.failing_on_end(reply):
            await self._mailbox.put(command(reply))
            await reply

    async def receive_batch(self) -> Sequence[DaemonMessage]:
        """Wait for the next events: all that one read of the socket decoded.

        Raises:
            ConnectionLost: the event stream has ended; ``reason`` says why
                (``CLOSED_LOCALLY`` after :meth:`aclose`).
        """
        if self._pending:
            batch = tuple(self._pending)
            self._pending.clear()
            return batch
        try:
            try:
                return self._events.receive_nowait()  # no turn of the loop when it waits
            except anyio.WouldBlock:
                return await self._events.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        # raised outside the except block, so the cause the actor recorded (the codec's
        # RemoteProtocolError, the socket's OSError) stays on the error
        raise self._ended()

    def deliver_to(
        self,
        sink: Callable[[tuple[DaemonMessage, ...]], object],
        end: Callable[[ConnectionLost], object],
    ) -> None:
        """From now on hand the events of each read to ``sink``, in the reader task, and
        call ``end`` with the connection's error once it has ended (once; at once if it
        already has). Events read before this call go to ``sink`` first. Both are
        called synchronously and must not block: one hop less per read than a task
        waiting in :meth:`receive_batch`, which must not be used after this.
        """
        if self._pending:
            sink(tuple(self._pending))
            self._pending.clear()
        while True:
            try:
                sink(self._events.receive_nowait())
            except anyio.WouldBlock:
                break
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                end(self._ended())
                return
        self._actor.deliver_to(sink, end)

    def pace_reads(self, pace: Callable[[], float]) -> None:
        """See :meth:`SpreadConnection.pace_reads`."""
        self._actor.pace_reads(pace)

    async def receive(self) -> DaemonMessage:
        """Wait for the next event.

        Raises:
            ConnectionLost: the event stream has ended; ``reason`` says why.
        """
        pending = self._pending
        if not pending:
            pending.extend(await self.receive_batch())
        return pending.popleft()

    def statistics(self) -> ConnectionStatistics:
        """Counters of this connection so far."""
        return self._actor.statistics()

    async def aclose(self, grace: float = 1.0) -> None:
        """Disconnect politely: write what is queued and a ``Disconnect``, then stop.

        Waits at most ``grace`` seconds (shielded from cancellation) and then stops
        the actor without writing more. Never raises :class:`ConnectionLost`.
        """
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(grace),
            contextlib.suppress(ConnectionLost),  # already ended: nothing to close
        ):
            await self._call(Close)
        self._actor.abort()
        self._events.close()

    def _ended(self) -> ConnectionLost:
        error = self._actor.error
        return error if error is not None else ConnectionLost(CloseReason.CLOSED_LOCALLY)


class SpreadConnection:
    """The actor owning one connected byte stream and its :class:`ClientSession`.

    Start it with ``handle = await tg.start(connection.run)``; bound that call with
    ``anyio.fail_after`` to bound the handshake.
    """

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        session: ClientSession,
        *,
        inbox_size: int = 1024,
        event_batches: int = 16,
        peer: str = "",
    ) -> None:
        self._stream = stream
        self._peer = peer
        self._session = session
        self._inbox: Inbox[ConnectionCommand] = Inbox(inbox_size)
        self._event_batches = event_batches
        self._events_send: Channel[tuple[DaemonMessage, ...]] | None = None
        self._sink: Callable[[tuple[DaemonMessage, ...]], object] | None = None
        self._sink_end: Callable[[ConnectionLost], object] | None = None
        self._pace: Callable[[], float] | None = None
        self._error: ConnectionLost | None = None
        self._writer_scope = anyio.CancelScope()
        self._run_scope = anyio.CancelScope()
        self._receive_scope: anyio.CancelScope | None = None
        self._waiters: set[Reply[None]] = set()
        """Replies callers wait for; each is answered or failed, never forgotten."""
        self._eof = False
        self._opened = False
        self._log = log
        self._writes = self._bytes_written = self._commands_written = 0
        self._reads = self._bytes_read = self._events_received = self._rests = 0

    async def run(
        self,
        *,
        task_status: anyio.abc.TaskStatus[ConnectionHandle] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Do the handshake, report the handle, then read and write until the end.

        Raises:
            ConnectRejected: the daemon refused the session.
            CouldNotConnect: the daemon closed or broke the socket during the handshake.
            RemoteProtocolError: the daemon's handshake bytes are not Spread's.
        """
        try:
            with self._run_scope:
                accepted = await self._handshake()
                events: Channel[tuple[DaemonMessage, ...]] = Channel(self._event_batches)
                self._events_send = events
                handle = ConnectionHandle(self, events, accepted)
                self._log = log.bind(private_group=accepted.private_group, peer=self._peer)
                self._opened = True
                self._log.info("connection_opened", daemon_version=accepted.daemon_version)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._read_loop, name="spreadq.connection.reader")
                    tg.start_soon(self._write_loop, name="spreadq.connection.writer")
                    task_status.started(handle)
        finally:
            self._lose(ConnectionLost(CloseReason.CLOSED_LOCALLY))
            if self._events_send is not None:
                self._events_send.end()
            await anyio.aclose_forcefully(self._stream)

    @property
    def error(self) -> ConnectionLost | None:
        """Why the connection ended, or ``None`` while it runs."""
        return self._error

    def deliver_to(
        self,
        sink: Callable[[tuple[DaemonMessage, ...]], object],
        end: Callable[[ConnectionLost], object],
    ) -> None:
        """Hand each read's events to ``sink`` instead of the event stream, and the end
        to ``end`` (see :meth:`ConnectionHandle.deliver_to`, which drains the stream
        first)."""
        self._sink, self._sink_end = sink, end

    def pace_reads(self, pace: Callable[[], float]) -> None:
        """Ask ``pace`` before each read that would wait for data; while it returns
        ``s > 0`` (asked again after one turn of the loop, so that the consumer has
        taken the last read), leave the socket unread for ``s`` seconds first. Only a
        stream with a ``rest(seconds)`` method can rest (spreadq's own sockets); on any
        other ``pace`` is never asked."""
        self._pace = pace

    def mailbox(self) -> Mailbox[ConnectionCommand]:
        """A sending end of the inbox; it raises :attr:`error` once the connection ended."""
        return self._inbox.mailbox(lambda: self._error)

    @contextlib.contextmanager
    def failing_on_end(self, reply: Reply[None]) -> Iterator[None]:
        """Fail ``reply`` with :attr:`error` if the connection ends inside the block.

        Enter it before queueing the command that carries ``reply``: wherever the
        command then is (queued, taken or written), the caller's wait ends.
        """
        self._waiters.add(reply)
        try:
            yield
        finally:
            self._waiters.discard(reply)

    def abort(self) -> None:
        """Stop at once, writing nothing more; pending calls fail with ``CLOSED_LOCALLY``."""
        self._lose(ConnectionLost(CloseReason.CLOSED_LOCALLY))
        self._run_scope.cancel()

    def statistics(self) -> ConnectionStatistics:
        """Counters of this connection so far."""
        return ConnectionStatistics(
            writes=self._writes,
            bytes_written=self._bytes_written,
            commands_written=self._commands_written,
            reads=self._reads,
            bytes_read=self._bytes_read,
            events_received=self._events_received,
            queued=self._inbox.statistics().queued,
            rests=self._rests,
        )

    # --- handshake ---------------------------------------------------------------------

    async def _handshake(self) -> Accepted:
        session = self._session
        await self._handshake_send(session.start())
        while True:
            event = session.next_event()
            out = session.data_to_send()
            if out:
                await self._handshake_send(out)
            if event is NEED_DATA:
                session.receive_data(await self._handshake_receive())
            elif isinstance(event, Accepted):
                return event
            elif isinstance(event, Rejected):
                if event.code is RejectCode.CONNECTION_CLOSED:
                    raise CouldNotConnect("the daemon closed the connection during the handshake")
                raise ConnectRejected(event.code)
            elif event is CLOSED:
                raise CouldNotConnect("the daemon closed the connection during the handshake")
            else:
                raise RemoteProtocolError(f"the daemon sent {event!r} during the handshake")

    async def _handshake_send(self, data: bytes) -> None:
        try:
            await self._stream.send(data)
        except _SOCKET_ERRORS as exc:
            raise CouldNotConnect(f"the handshake write failed: {exc!r}") from exc

    async def _handshake_receive(self) -> bytes:
        try:
            return await self._stream.receive(RECEIVE_SIZE)
        except anyio.EndOfStream:
            return b""
        except _SOCKET_ERRORS as exc:
            raise CouldNotConnect(f"the handshake read failed: {exc!r}") from exc

    # --- the end -----------------------------------------------------------------------

    def _lose(self, error: ConnectionLost) -> None:
        """Record the end once; fail every command that waits on this connection."""
        if self._error is not None:
            return
        self._error = error
        if not self._opened:
            pass
        elif error.reason is CloseReason.CLOSED_LOCALLY:
            self._log.info("connection_closed")
        else:
            self._log.warning("connection_lost", reason=error.reason.name, detail=str(error))
        self._writer_scope.cancel()
        if self._receive_scope is not None:
            self._receive_scope.cancel()
        self._inbox.close_and_drain()  # blocked and later senders get ``error``
        for reply in self._waiters:
            if not reply.done:
                reply.fail(error)

    # --- reader ------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._events_send is not None
        send = self._events_send
        stream, session = self._stream, self._session
        rest: Callable[[float], Awaitable[None]] | None = getattr(stream, "rest", None)
        # one scope for the reader's life (``_lose`` cancels it), not one per read
        scope = self._receive_scope = anyio.CancelScope()
        try:
            with scope:
                while True:
                    events, ended = self._decode()
                    if events:
                        self._events_received += len(events)
                        sink = self._sink
                        if sink is not None:
                            sink(events)
                        else:
                            try:
                                try:
                                    send.send_nowait(events)  # no turn of the loop if there is room
                                except anyio.WouldBlock:
                                    await send.send(events)
                            except _STREAM_GONE:
                                return  # the consumer closed its end
                    if ended or self._error is not None:
                        return
                    pace = self._pace
                    if pace is not None and rest is not None and pace() > 0:
                        await anyio.lowlevel.checkpoint()  # the consumer takes this read first
                        wait = pace()
                        if wait > 0:
                            self._rests += 1
                            await rest(wait)
                    try:
                        data = await stream.receive(RECEIVE_SIZE)
                    except anyio.EndOfStream:
                        data = b""
                    except _SOCKET_ERRORS as exc:
                        lost = ConnectionLost(CloseReason.RESET, repr(exc))
                        lost.__cause__ = exc
                        self._lose(lost)
                        return
                    if data:
                        self._reads += 1
                        self._bytes_read += len(data)
                    else:
                        self._eof = True
                    session.receive_data(data)
        finally:
            self._receive_scope = None
            self._lose(ConnectionLost(CloseReason.CLOSED_LOCALLY))
            send.end()  # the consumer takes what was read, then the end
            end, self._sink_end = self._sink_end, None
            if end is not None:
                assert self._error is not None
                end(self._error)

    def _decode(self) -> tuple[tuple[DaemonMessage, ...], bool]:
        """Decode every complete message buffered; say whether the session has ended."""
        next_event = self._session.next_event
        events: list[DaemonMessage] = []
        append = events.append
        try:
            while True:
                event = next_event()
                if event is NEED_DATA:
                    return tuple(events), False
                if event is CLOSED:
                    self._lose(ConnectionLost(CloseReason.EOF))
                    return tuple(events), True
                if isinstance(event, Accepted | Rejected):
                    raise RemoteProtocolError(f"handshake event {event!r} after the accept")
                append(event)
        except RemoteProtocolError as exc:
            reason = CloseReason.EOF if self._eof else CloseReason.PROTOCOL_ERROR
            lost = ConnectionLost(reason, str(exc))
            lost.__cause__ = exc
            self._lose(lost)
            return tuple(events), True

    # --- writer ------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        stream, session, inbox = self._stream, self._session, self._inbox
        with self._writer_scope:
            while True:
                try:
                    batch = await inbox.receive_batch(MAX_BATCH, weigh=_weight, budget=WRITE_BUDGET)
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    return
                if self._error is not None:
                    return  # taken just as the connection ended; _lose failed the replies
                commands: list[ClientCommand] = []
                replies: list[Reply[None]] = []  # answered once this write is done
                closing: Reply[None] | None = None
                for item in batch:
                    if isinstance(item, Flush):
                        replies.append(item.reply)
                    elif isinstance(item, Close):
                        closing = item.reply
                        commands.append(Disconnect())
                        break  # what follows a Close is never written; _lose fails it
                    else:
                        commands.append(item)
                data = session.send_many(commands) if commands else b""
                if data:
                    try:
                        await stream.send(data)
                    except _SOCKET_ERRORS as exc:
                        lost = ConnectionLost(CloseReason.RESET, f"write failed: {exc!r}")
                        lost.__cause__ = exc
                        self._lose(lost)
                        return
                    self._writes += 1
                    self._bytes_written += len(data)
                    self._commands_written += len(commands)
                if replies or closing is not None:
                    # a turn of the loop before answering: a task that loops on put and
                    # flush must be seen waiting at least once per turn, or a cancel of
                    # it could wait for ever (the stream's writes no longer yield)
                    await anyio.lowlevel.cancel_shielded_checkpoint()
                for reply in replies:
                    reply.set(None)
                if closing is not None:
                    closing.set(None)
                    self._lose(ConnectionLost(CloseReason.CLOSED_LOCALLY))
                    return
