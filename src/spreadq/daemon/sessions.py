"""The embedded daemon's sessions: one task per client, coalesced writes.

Theory of operation
-------------------
Each accepted socket gets one task (:meth:`Sessions.handle`): it runs the handshake
with a :class:`~spreadq.wire.ServerSession`, then a reader loop and a writer loop.

* The reader reads at most ``READ_SIZE`` bytes at a time and drains every event the
  session decodes from them into the :class:`~spreadq.daemon.engine.Engine`, so what a
  client may make the daemon buffer is bounded by one read plus one partial message
  (whose size the session checks before waiting for it). A client that breaks the
  protocol is dropped: its groups see ``CAUSED_BY_DISCONNECT``, as with the real daemon.
* Sessions take turns: a reader yields to the others after every ``TURN_EVENTS``
  messages and after every read that did not have to wait, so a client that writes
  without pause (or joins thousands of groups in one write) delays the others by one
  turn at most.
* Once the engine has dropped a session (its queue passed the limit) or one of the
  session's commands failed unexpectedly, the rest of its input is discarded and only
  that session ends; the listener and every other session go on.
* The engine queues each receiver's messages (each encoded once and shared). After every
  read the server wakes the writers whose queues became non-empty and closes the
  sessions the engine dropped for passing ``max_session_messages``.
* A writer takes *everything* queued for its session and sends it with one
  ``sendmsg``, the messages' shared bytes as they are (joined into one copy only when
  they come to ``JOIN_BELOW`` bytes or less); while the socket is full (a slow
  reader), new messages accumulate in the engine, where the session limit applies. A
  data message's body of ``SHARED_BODY_SIZE`` bytes or more is not copied into its
  encoding either: the daemon holds each such message once, however many receivers it
  waits for.

All of this runs on one event loop, so the engine needs no locks: every call into it
happens between two awaits.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Final

import anyio
import anyio.abc

from spreadq.daemon.engine import Engine, Output, SessionId, Wire
from spreadq.errors import RemoteProtocolError
from spreadq.logs import get_logger
from spreadq.wire.constants import (
    SAFE_MESSAGE_LIMIT,
    RejectCode,
)
from spreadq.wire.events import (
    CLOSED,
    NEED_DATA,
    AuthChoice,
    DaemonMessage,
    DataMessage,
    Disconnect,
    Hello,
    IncomingMulticast,
    Join,
    Leave,
)
from spreadq.wire.layouts import HEADER_LE
from spreadq.wire.server_session import ServerSession, encode_daemon_message

__all__ = [
    "DAEMON_VERSION",
    "HANDSHAKE_TIMEOUT",
    "JOIN_BELOW",
    "READ_SIZE",
    "SHARED_BODY_SIZE",
    "TURN_EVENTS",
    "Sessions",
    "encode_for_queue",
]

log = get_logger("spreadq.daemon.server")

Buffer = bytes | memoryview

DAEMON_VERSION: Final = (5, 0, 1)
"""The version the embedded daemon announces in its accept."""
READ_SIZE: Final = 65536
"""The most bytes read from one client before they are decoded."""
TURN_EVENTS: Final = 32
"""The most messages one session's input is decoded into before the others get a turn."""
HANDSHAKE_TIMEOUT: Final = 10.0
"""Seconds a client has to finish the handshake (the real daemon allows 1 s per step)."""

SHARED_BODY_SIZE: Final = 4096
"""Data messages with a body this large are written from the sender's bytes, not a copy."""

JOIN_BELOW: Final = 65536
"""Queued messages of at most this many bytes in all are joined into one write."""
_IOV_MAX: Final = 1024  # buffers per sendmsg (Linux's IOV_MAX)
_QUOTA_REJECT: Final = int(RejectCode.REJECT_QUOTA).to_bytes(1, "little", signed=True)


def encode_for_queue(message: DaemonMessage, hint: bytes | None) -> Wire:
    if type(message) is DataMessage:
        assert isinstance(message, DataMessage)
        data = message.data
        if len(data) >= SHARED_BODY_SIZE:
            # The header and group names, then the body: the sender's own bytes object,
            # which every receiver's queue shares instead of a copy inside the encoding.
            head = encode_daemon_message(replace(message, data=b""), hint_raw=hint)
            fields = HEADER_LE.unpack_from(head)
            head = HEADER_LE.pack(*fields[:-1], len(data)) + head[HEADER_LE.size :]
            return (head, data)
    return (encode_daemon_message(message, hint_raw=hint),)


class _Connection:
    """The server's side of one client socket (non-blocking, driven by readiness).

    Writes are tried at once, without blocking, by whoever flushes the engine; what the
    socket does not take waits in ``pending`` for the session's writer task, and while
    anything is pending the session's new messages stay queued in the engine, where the
    session limit counts them.
    """

    __slots__ = ("id", "open", "paused", "pending", "scope", "sock", "wake", "writable")

    def __init__(self, sock: socket.socket, scope: anyio.CancelScope) -> None:
        self.sock = sock
        self.scope = scope
        self.id: SessionId | None = None
        self.open = False  # the accept has been sent: messages may follow
        self.paused = False
        self.writable = True
        self.pending: list[Buffer] | None = None  # never an empty list
        self.wake = anyio.Event()

    async def receive(self) -> bytes:
        """Up to ``READ_SIZE`` bytes; ``b""`` at EOF or when the peer reset.

        Bytes the kernel already holds are returned before a reset is reported, so a
        client that sends and then closes with unread data (an RST) loses nothing.
        """
        sock = self.sock
        waited = False
        while True:
            try:
                data = sock.recv(READ_SIZE)
            except BlockingIOError:
                await anyio.wait_readable(sock)
                waited = True
                continue
            except OSError:
                return b""
            if not waited:
                # A client that never lets up would otherwise keep the loop to itself:
                # every other session gets its turn between two of its reads.
                await anyio.lowlevel.cancel_shielded_checkpoint()
            return data

    async def send(self, data: bytes) -> None:
        """Write all of ``data`` (the handshake's few bytes).

        Raises:
            OSError: the peer is gone.
        """
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                await anyio.wait_writable(self.sock)

    def write_now(self, take: Callable[[SessionId], list[Output]]) -> None:
        """Send what is queued for this session, as far as the socket takes it now."""
        if not self.open or self.paused or self.pending is not None or not self.writable:
            return
        assert self.id is not None
        outputs = take(self.id)
        if not outputs:
            return
        # The parts are the messages' own shared bytes, written with one sendmsg; only a
        # little of them (at most JOIN_BELOW bytes) is joined into one copy first, which
        # is cheaper for many small messages than one buffer each.
        buffers: list[Buffer] = [part for output in outputs for part in output.wire]
        if len(buffers) > 1 and sum(map(len, buffers)) <= JOIN_BELOW:
            buffers = [b"".join(buffers)]
        try:
            rest = _write_buffers(self.sock, buffers)
        except OSError as error:
            self.failed(error)
            return
        if rest is not None:
            self.pending = rest
            self.wake.set()

    def failed(self, error: OSError) -> None:
        # Stop writing but keep reading: what the client sent before it went away is
        # still delivered, then its EOF or reset ends the session.
        self.writable = False
        self.pending = None
        log.debug("session_write_failed", session=self.id, error=repr(error))


class Sessions:
    """Owns the engine and the connections; implements ``FaultTarget``."""

    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock
        self._connections: dict[SessionId, _Connection] = {}

    @property
    def engine(self) -> Engine:
        return self._engine

    def now(self) -> int:
        return int(self._clock())

    def abort(self, session_id: SessionId) -> None:
        connection = self._connections.get(session_id)
        if connection is not None:
            connection.scope.cancel()

    def set_paused(self, session_id: SessionId, paused: bool) -> None:
        connection = self._connections[session_id]
        connection.paused = paused
        if not paused:
            if connection.pending is not None:
                connection.wake.set()
            connection.write_now(self._engine.take)

    def flush(self) -> None:
        connections = self._connections
        take = self._engine.take
        for session_id in self._engine.pop_ready():
            connection = connections.get(session_id)
            if connection is not None:
                connection.write_now(take)
        for session_id in self._engine.pop_dropped():
            log.info("session_dropped", session=session_id, reason="queue_limit")
            self.abort(session_id)

    # --- one connection ---------------------------------------------------------------

    async def serve_listener(self, daemon: str, listener: socket.socket) -> None:
        """Accept clients of ``daemon`` on ``listener`` forever, one task each."""
        listener.setblocking(False)
        async with anyio.create_task_group() as tasks:
            while True:
                await anyio.wait_readable(listener)
                try:
                    sock, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as error:  # e.g. out of file descriptors
                    log.warning("accept_failed", daemon=daemon, error=repr(error))
                    await anyio.sleep(0.1)
                    continue
                sock.setblocking(False)
                if sock.family != socket.AF_UNIX:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                tasks.start_soon(self.handle, daemon, sock)

    async def handle(self, daemon: str, sock: socket.socket) -> None:
        """Serve one client socket until it closes, breaks the protocol or is dropped."""
        with anyio.CancelScope() as scope:
            connection = _Connection(sock, scope)
            try:
                await self._serve_connection(daemon, connection)
            except Exception as error:  # one session's failure never reaches the listener
                log.error(
                    "session_failed", daemon=daemon, session=connection.id, error=_one_line(error)
                )
            finally:
                session_id = connection.id
                if session_id is not None:
                    self._connections.pop(session_id, None)
                    self._engine.close_session(session_id)
                    self.flush()
                sock.close()

    async def _serve_connection(self, daemon: str, connection: _Connection) -> None:
        protocol = ServerSession(max_message_size=SAFE_MESSAGE_LIMIT)
        session_id: SessionId | None = None
        with anyio.move_on_after(HANDSHAKE_TIMEOUT):
            session_id = await self._handshake(connection, protocol, daemon)
        if session_id is None:
            return
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._write, connection)
            connection.write_now(self._engine.take)
            await self._read(connection, protocol, session_id)
            tasks.cancel_scope.cancel()

    async def _next(self, connection: _Connection, protocol: ServerSession) -> object:
        while True:
            event = protocol.next_event()
            if event is not NEED_DATA:
                return event
            protocol.receive_data(await connection.receive())

    async def _handshake(
        self, connection: _Connection, protocol: ServerSession, daemon: str
    ) -> SessionId | None:
        try:
            return await self._handshake_steps(connection, protocol, daemon)
        except OSError:
            return None
        except RemoteProtocolError as error:
            log.info("handshake_failed", daemon=daemon, error=str(error))
            return None

    async def _handshake_steps(
        self, connection: _Connection, protocol: ServerSession, daemon: str
    ) -> SessionId | None:
        send = connection.send
        if not self._engine.has_room(daemon):
            await send(_QUOTA_REJECT)  # before the hello, as the real daemon does
            return None
        hello = await self._next(connection, protocol)
        if not isinstance(hello, Hello):
            return None
        if hello.refusal is not None:
            await send(protocol.reject(hello.refusal))
            return None
        opened = self._engine.open_session(
            hello.private_name, daemon=daemon, membership=hello.membership, version=hello.version
        )
        if isinstance(opened, RejectCode):
            await send(protocol.reject(opened))
            return None
        connection.id = opened.id
        self._connections[opened.id] = connection
        accepted = False
        try:
            if hello.wants_auth:
                await send(protocol.auth_list())
                choice = await self._next(connection, protocol)
                if not isinstance(choice, AuthChoice):
                    return None
                if choice.refusal is not None:
                    await send(protocol.reject(choice.refusal))
                    return None
            await send(protocol.accept(opened.private_group, DAEMON_VERSION))
            accepted = connection.open = True
        finally:
            if not accepted:
                self._connections.pop(opened.id, None)
                self._engine.close_session(opened.id)
        log.debug("session_opened", session=opened.id, private_group=opened.private_group)
        return opened.id

    async def _read(
        self, connection: _Connection, protocol: ServerSession, session_id: SessionId
    ) -> None:
        try:
            await self._read_loop(connection, protocol, session_id)
        except OSError as error:
            log.debug("session_lost", session=session_id, error=repr(error))
        except RemoteProtocolError as error:
            # The real daemon drops such a client without a word
            # (docs/design/spread-protocol.md#what-a-daemon-refuses).
            log.info("session_dropped", session=session_id, reason="protocol", error=str(error))

    async def _read_loop(
        self, connection: _Connection, protocol: ServerSession, session_id: SessionId
    ) -> None:
        engine = self._engine
        receive = connection.receive
        feed = protocol.receive_data
        next_event = protocol.next_event
        join, leave, multicast = engine.join, engine.leave, engine.multicast
        is_open = engine.is_open
        turn = TURN_EVENTS
        while True:
            while True:
                if not turn:  # the other sessions' turn, in the middle of a long read
                    self.flush()
                    await anyio.lowlevel.cancel_shielded_checkpoint()
                    if not is_open(session_id):
                        return
                    turn = TURN_EVENTS
                turn -= 1
                event = next_event()
                if event is NEED_DATA:
                    break
                kind = type(event)
                if kind is IncomingMulticast:
                    assert isinstance(event, IncomingMulticast)
                    multicast(
                        session_id,
                        event.groups,
                        event.data,
                        service=event.service,
                        mess_type=event.mess_type,
                        hint=event.hint_raw,
                    )
                elif kind is Join:
                    assert isinstance(event, Join)
                    join(session_id, event.group)
                elif kind is Leave:
                    assert isinstance(event, Leave)
                    leave(session_id, event.group)
                else:  # Disconnect, CLOSED (EOF)
                    assert kind is Disconnect or event is CLOSED, event
                    return
                if engine.pressing:  # write before a queue nears the session limit
                    self.flush()
                    if not is_open(session_id):
                        return  # dropped: the rest of its input is discarded
            self.flush()
            feed(await receive())
            if not is_open(session_id):
                return  # dropped or killed while this read waited

    async def _write(self, connection: _Connection) -> None:
        """Finish writes the socket could not take at once, then take more."""
        sock = connection.sock
        take = self._engine.take
        while True:
            await connection.wake.wait()
            connection.wake = anyio.Event()
            while connection.pending is not None and not connection.paused:
                await anyio.wait_writable(sock)
                pending = _pending(connection)  # may have changed while waiting
                if pending is None:
                    break
                try:
                    rest = _write_buffers(sock, pending)
                except OSError as error:
                    connection.failed(error)
                    break
                connection.pending = rest
                if rest is None:
                    connection.write_now(take)


def _pending(connection: _Connection) -> list[Buffer] | None:
    return connection.pending


def _write_buffers(sock: socket.socket, buffers: list[Buffer]) -> list[Buffer] | None:
    """Write ``buffers`` in order as far as the socket takes them now; return the rest.

    ``None`` means everything was written. Nothing is copied: a buffer the socket took
    in part stays as a view of its unwritten end.

    Raises:
        OSError: the peer is gone (never ``BlockingIOError``).
    """
    start, count = 0, len(buffers)
    while start < count:
        end = min(start + _IOV_MAX, count)
        chunk = buffers if start == 0 and end == count else buffers[start:end]
        try:
            sent = sock.sendmsg(chunk)
        except BlockingIOError:
            return buffers[start:]
        if sent == sum(map(len, chunk)):
            start = end
            continue
        while sent >= len(buffers[start]):  # the socket is full: keep what it did not take
            sent -= len(buffers[start])
            start += 1
        rest = buffers[start:]
        if sent:
            rest[0] = memoryview(rest[0])[sent:]
        return rest
    return None


def _one_line(error: BaseException) -> str:
    """``Type: message`` of an error, or of the first error of a group, for a log line."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return " ".join(f"{type(error).__name__}: {error}".split())
