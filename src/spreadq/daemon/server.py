"""The embedded daemon's I/O: listeners, one task per session, coalesced writes.

Theory of operation
-------------------
:func:`serve` binds one TCP listener per virtual daemon (loopback unless a host is
given; any other address is logged as a warning, because Spread's NULL authentication
admits whoever reaches the port), plus Unix sockets when asked, and runs until its
context ends. A Unix socket is made mode ``0o600`` unless told otherwise; a socket file
on which a live daemon accepts is never taken over, and only the file this daemon made
is removed at the end. Each accepted
socket gets one task: it runs the handshake with a :class:`~spreadq.wire.ServerSession`,
then a reader loop and a writer loop.

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

import contextlib
import errno
import ipaddress
import os
import socket
import stat
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Final, cast

import anyio
import anyio.abc

from spreadq.daemon.engine import Engine, Output, SessionId, Wire
from spreadq.daemon.faults import Faults
from spreadq.errors import AddressInUse, ConfigurationError, RemoteProtocolError
from spreadq.logs import get_logger
from spreadq.wire.constants import (
    DEFAULT_MAX_SESSION_MESSAGES,
    MAX_SESSIONS,
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
    "DEFAULT_SOCKET_MODE",
    "HANDSHAKE_TIMEOUT",
    "JOIN_BELOW",
    "NOT_LOOPBACK_RISK",
    "READ_SIZE",
    "SHARED_BODY_SIZE",
    "TURN_EVENTS",
    "Daemon",
    "Listening",
    "run_forever",
    "serve",
]

log = get_logger(__name__)

Buffer = bytes | memoryview

DAEMON_VERSION: Final = (5, 0, 1)
"""The version the embedded daemon announces in its accept."""
READ_SIZE: Final = 65536
"""The most bytes read from one client before they are decoded."""
TURN_EVENTS: Final = 32
"""The most messages one session's input is decoded into before the others get a turn."""
HANDSHAKE_TIMEOUT: Final = 10.0
"""Seconds a client has to finish the handshake (the real daemon allows 1 s per step)."""

DEFAULT_SOCKET_MODE: Final = 0o600
"""Permission bits of the daemon's Unix sockets: only the user running it may connect."""
NOT_LOOPBACK_RISK: Final = (
    "Spread's NULL authentication lets anyone who can reach this port join any group "
    "and send anything"
)
"""Why listening on an address other than loopback is worth a warning."""

SHARED_BODY_SIZE: Final = 4096
"""Data messages with a body this large are written from the sender's bytes, not a copy."""

JOIN_BELOW: Final = 65536
"""Queued messages of at most this many bytes in all are joined into one write."""
_IOV_MAX: Final = 1024  # buffers per sendmsg (Linux's IOV_MAX)
_QUOTA_REJECT: Final = int(RejectCode.REJECT_QUOTA).to_bytes(1, "little", signed=True)


def _encode(message: DaemonMessage, hint: bytes | None) -> Wire:
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


@dataclass(frozen=True, slots=True)
class Listening:
    """Where one virtual daemon listens."""

    daemon: str
    host: str
    port: int
    unix_path: str | None = None

    @property
    def address(self) -> str:
        """``"PORT@HOST"``, the Spread address of the TCP listener."""
        return f"{self.port}@{self.host}"


class Daemon:
    """A running embedded daemon: where it listens, its faults, and how to stop it.

    Yielded by :func:`serve`; do not build one yourself.
    """

    def __init__(
        self,
        server: _Server,
        listening: Sequence[Listening],
        stop: Callable[[], None],
        exposed: Sequence[str] = (),
    ) -> None:
        self._server = server
        self._listening = tuple(listening)
        self._stop = stop
        self._exposed = tuple(exposed)
        self.faults: Faults = Faults(server)
        """Fault injection (kill, pause, partition, merge)."""

    @property
    def name(self) -> str:
        """The (first) daemon's name, the suffix of its private groups."""
        return self._listening[0].daemon

    @property
    def daemons(self) -> tuple[str, ...]:
        """Every virtual daemon, in configuration order."""
        return tuple(item.daemon for item in self._listening)

    @property
    def host(self) -> str:
        """The host the (first) daemon listens on."""
        return self._listening[0].host

    @property
    def port(self) -> int:
        """The (first) daemon's TCP port."""
        return self._listening[0].port

    @property
    def address(self) -> str:
        """``"PORT@HOST"`` of the (first) daemon, for ``spreadq.connect``."""
        return self._listening[0].address

    @property
    def unix_path(self) -> str | None:
        """The (first) daemon's Unix socket path, if it has one."""
        return self._listening[0].unix_path

    @property
    def exposed(self) -> tuple[str, ...]:
        """The bound addresses that are not loopback (anyone who reaches them may join)."""
        return self._exposed

    @property
    def listening(self) -> tuple[Listening, ...]:
        """Where every virtual daemon listens, in configuration order."""
        return self._listening

    @property
    def addresses(self) -> Mapping[str, str]:
        """``"PORT@HOST"`` of each virtual daemon, by name."""
        return MappingProxyType({item.daemon: item.address for item in self._listening})

    @property
    def engine(self) -> Engine:
        """The daemon's engine (read its state; change it only through ``faults``)."""
        return self._server.engine

    def stop(self) -> None:
        """Stop the daemon: close the listeners and every session."""
        self._stop()

    async def aclose(self) -> None:
        """Stop the daemon (the same as :meth:`stop`, awaitable)."""
        self._stop()
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"<Daemon {self.name!r} at {self.address}>"


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


class _Server:
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


@asynccontextmanager
async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    unix_path: str | os.PathLike[str] | None = None,
    *,
    name: str = "localhost",
    max_session_messages: int = DEFAULT_MAX_SESSION_MESSAGES,
    daemons: Sequence[str] | None = None,
    unix: bool = False,
    unix_mode: int = DEFAULT_SOCKET_MODE,
    max_sessions: int = MAX_SESSIONS,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Daemon]:
    """Run an embedded Spread-compatible daemon for the duration of the context.

    It listens on ``host`` (loopback by default) at ``port`` (0 picks a free port) and
    speaks the Spread 4/5 client protocol, so ``spreadq.connect(daemon.address)``, the
    C library and the Java client can use it.

    Args:
        host: the address to listen on.
        port: the TCP port; 0 picks a free one. With several ``daemons``, daemon ``i``
            listens on ``port + i`` (each on a free port when ``port`` is 0).
        unix_path: also listen on this Unix socket (the first daemon). A stale socket
            file (nobody accepts on it) is replaced; a live one raises ``AddressInUse``
            and is left alone. The file is removed at the end if it is still ours.
        name: the daemon's name, the suffix of private groups (``#alice#localhost``).
        max_session_messages: a client with more messages queued is dropped.
        daemons: names of several virtual daemons in one process (overrides ``name``);
            ``daemon.faults`` can partition and merge them.
        unix: also listen on Spread's own Unix socket ``/tmp/<port>`` (each daemon).
        unix_mode: the permission bits of the Unix sockets (default ``0o600``: only
            this user may connect; ``0o666`` lets every local user in).
        max_sessions: sessions per daemon before ``REJECT_QUOTA``.
        clock: the wall clock, in Unix seconds (ring ids use it).

    A host that is not a loopback address is logged as a ``daemon_not_loopback``
    warning: Spread's NULL authentication lets anyone who reaches the port join any
    group and send anything.

    Raises:
        ConfigurationError: bad daemon names, limits or socket mode.
        AddressInUse: the TCP port, or a Unix socket a live daemon accepts on, is taken.
        OSError: a port or path that cannot be bound for another reason.
    """
    names = tuple(daemons) if daemons else (name,)
    engine = Engine(
        daemons=names,
        start_time=int(clock()),
        max_session_messages=max_session_messages,
        max_sessions=max_sessions,
        encode=_encode,
    )
    if unix_path is not None and unix:
        raise ConfigurationError("give either unix_path or unix=True, not both")
    if not 0 <= unix_mode <= 0o777:
        raise ConfigurationError(f"unix_mode {unix_mode:#o} is not a permission mode")
    server = _Server(engine, clock)
    listeners: list[tuple[str, anyio.abc.SocketListener]] = []
    listening: list[Listening] = []
    owned: list[tuple[str, tuple[int, int]]] = []  # Unix socket files this daemon made
    body_error: Exception | None = None
    try:
        for index, daemon in enumerate(names):
            wanted = port + index if port else 0
            path = os.fspath(unix_path) if unix_path is not None and index == 0 else None
            bound, where = await _listen(
                daemon, host, wanted, path, spread_unix=unix, mode=unix_mode, owned=owned
            )
            listeners.extend((daemon, listener) for listener in bound)
            listening.append(where)
        exposed = _warn_if_exposed(host, [listener for _, listener in listeners])
        async with anyio.create_task_group() as tasks:
            stopper = anyio.CancelScope()
            tasks.start_soon(_run_listeners, stopper, listeners, server)
            log.info(
                "daemon_listening",
                daemons=names,
                addresses=[where.address for where in listening],
                unix=[where.unix_path for where in listening if where.unix_path],
            )
            try:
                yield Daemon(server, listening, stopper.cancel, exposed)
            except Exception as error:  # re-raised below, not wrapped in a group
                body_error = error
            finally:
                stopper.cancel()
        if body_error is not None:
            raise body_error
    finally:
        with anyio.CancelScope(shield=True):
            for _, listener in listeners:
                await listener.aclose()
        for path, identity in owned:
            _remove_socket(path, identity)


async def _listen(
    daemon: str,
    host: str,
    port: int,
    unix_path: str | None,
    *,
    spread_unix: bool,
    mode: int,
    owned: list[tuple[str, tuple[int, int]]],
) -> tuple[list[anyio.abc.SocketListener], Listening]:
    try:
        tcp = await anyio.create_tcp_listener(local_host=host, local_port=port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise AddressInUse(
                f"{port}@{host}", "the port is already in use (another Spread daemon?)"
            ) from error
        raise
    listeners = [cast(anyio.abc.SocketListener, listener) for listener in tcp.listeners]
    bound = tcp.listeners[0].extra(anyio.abc.SocketAttribute.local_port)
    if spread_unix:
        unix_path = f"/tmp/{bound}"  # Spread's own socket is named after the port
    if unix_path is not None:
        try:
            _claim_socket_path(unix_path)
            unix = await anyio.create_unix_listener(unix_path, mode=mode)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await tcp.aclose()
            raise
        listeners.append(unix)
        made = os.stat(unix_path)
        owned.append((unix_path, (made.st_dev, made.st_ino)))
    return listeners, Listening(daemon, host, bound, unix_path)


def _claim_socket_path(path: str) -> None:
    """Make way for a Unix socket at ``path``: remove a stale one, refuse a live one."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(found.st_mode):
        raise AddressInUse(path, "the path exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)  # a Unix connect never waits: it is accepted or refused
        code = probe.connect_ex(path)
    if code in (0, errno.EAGAIN, errno.EINPROGRESS):
        raise AddressInUse(path, "a daemon is listening on this socket")
    if code == errno.ECONNREFUSED:  # a socket file left behind: nobody listens on it
        log.info("stale_socket_removed", path=path)
        _remove_socket(path, (found.st_dev, found.st_ino))
    elif code != errno.ENOENT:
        raise OSError(code, f"cannot tell whether a daemon listens on {path}", path)


def _warn_if_exposed(host: str, listeners: Sequence[anyio.abc.SocketListener]) -> list[str]:
    exposed: list[str] = []
    for listener in listeners:
        local = listener.extra(anyio.abc.SocketAttribute.local_address)
        if isinstance(local, tuple) and not ipaddress.ip_address(local[0]).is_loopback:
            exposed.append(str(local[0]))
    if exposed:
        log.warning(
            "daemon_not_loopback",
            host=host,
            addresses=exposed,
            risk=NOT_LOOPBACK_RISK,
        )
    return exposed


async def _run_listeners(
    stopper: anyio.CancelScope,
    listeners: Sequence[tuple[str, anyio.abc.SocketListener]],
    server: _Server,
) -> None:
    raw = [listener.extra(anyio.abc.SocketAttribute.raw_socket) for _, listener in listeners]
    try:
        with stopper:
            async with anyio.create_task_group() as tasks:
                for (daemon, _), sock in zip(listeners, raw, strict=True):
                    tasks.start_soon(server.serve_listener, daemon, sock)
    finally:
        for sock in raw:  # refuse new clients at once after stop()
            sock.close()


def _remove_socket(path: str, identity: tuple[int, int]) -> None:
    """Remove the socket file at ``path`` only if it is still the file ``identity`` names."""
    with contextlib.suppress(FileNotFoundError):
        found = os.stat(path)
        if (found.st_dev, found.st_ino) == identity:
            Path(path).unlink()


async def run_forever(
    host: str = "127.0.0.1",
    port: int = 4803,
    unix_path: str | None = None,
    *,
    name: str = "localhost",
    max_session_messages: int = DEFAULT_MAX_SESSION_MESSAGES,
    daemons: Sequence[str] | None = None,
    unix: bool = False,
    unix_mode: int = DEFAULT_SOCKET_MODE,
    ready: Callable[[Daemon], object] | None = None,
) -> None:
    """Run the daemon until cancelled (what ``spreadq daemon`` calls).

    ``ready`` is called with the running daemon once it listens.

    Raises:
        ConfigurationError: bad daemon names, limits or socket mode.
        AddressInUse: the TCP port, or a Unix socket a live daemon accepts on, is taken.
        OSError: a port or path that cannot be bound for another reason.
    """
    async with serve(
        host,
        port,
        unix_path,
        name=name,
        max_session_messages=max_session_messages,
        daemons=daemons,
        unix=unix,
        unix_mode=unix_mode,
    ) as daemon:
        if ready is not None:
            ready(daemon)
        await anyio.sleep_forever()
