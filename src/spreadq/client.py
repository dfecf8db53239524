"""``spreadq.connect()``: one session with a Spread daemon, as an async context manager.

::

    async with spreadq.connect("4803@localhost", name="me") as conn:
        await conn.join("jobs")
        await conn.multicast("jobs", b"hello")
        async for event in conn:
            ...

The :class:`Connection` it yields only queues commands for the
:class:`~spreadq.actors.connection.SpreadConnection` actor, which owns the socket, and
reads the events that actor decodes. Addresses use Spread's syntax
(docs/design/spread-protocol.md#addresses):

=====================  ========================================================
``None`` or ``""``     ``"4803"``
``"PORT"``             the Unix socket ``/tmp/PORT``
``"PORT@HOST"``        TCP; HOST is a name, an IPv4 address or a bare IPv6 address
``"unix:/some/path"``  spreadq's own extension: a Unix socket at that path
=====================  ========================================================
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, cast

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import SocketAttribute

from spreadq.actors.connection import ConnectionHandle, ConnectionStatistics, SpreadConnection
from spreadq.errors import CloseReason, ConfigurationError, ConnectionLost, CouldNotConnect
from spreadq.types import Address, GroupName, MemberName
from spreadq.wire.constants import DEFAULT_PORT, ServiceType
from spreadq.wire.events import DaemonMessage, Join, Leave, Multicast
from spreadq.wire.session import ClientSession

__all__ = [
    "Connection",
    "Endpoint",
    "TcpEndpoint",
    "UnixEndpoint",
    "connect",
    "parse_address",
]

UNIX_SOCKET_DIR: Final = "/tmp"
"""Where Spread daemons put their Unix sockets (``SP_UNIX_SOCKET``)."""
UNIX_PREFIX: Final = "unix:"


@dataclass(frozen=True, slots=True)
class TcpEndpoint:
    """A daemon reached over TCP."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.port}@{self.host}"


@dataclass(frozen=True, slots=True)
class UnixEndpoint:
    """A daemon reached over a Unix socket."""

    path: str

    def __str__(self) -> str:
        return f"{UNIX_PREFIX}{self.path}"


Endpoint = TcpEndpoint | UnixEndpoint


def _port(text: str, address: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ConfigurationError(
            f"bad Spread address {address!r}: the port must be a number from 1 to 65535"
        )
    return int(text)


def parse_address(address: Address | None) -> Endpoint:
    """Read a daemon address in Spread's syntax (or ``unix:/path``).

    Raises:
        ConfigurationError: the address is not one of the accepted forms.
    """
    if not address:
        address = str(DEFAULT_PORT)
    if address.startswith(UNIX_PREFIX):
        path = address[len(UNIX_PREFIX) :]
        if not path:
            raise ConfigurationError(f"bad Spread address {address!r}: no socket path")
        return UnixEndpoint(path)
    if any(char.isspace() for char in address):
        raise ConfigurationError(f"bad Spread address {address!r}: it contains white space")
    port, at, host = address.partition("@")
    if not at:
        return UnixEndpoint(f"{UNIX_SOCKET_DIR}/{_port(port, address)}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise ConfigurationError(f"bad Spread address {address!r}: no host after '@'")
    return TcpEndpoint(host, _port(port, address))


_READ_HIGH: Final = 4 * 1024 * 1024
"""Bytes read and not yet taken past which a stream stops reading its socket (the
daemon then queues for us, as flow control above expects)."""
_READ_LOW: Final = 1024 * 1024
"""...and below which it reads again."""


class _Protocol(asyncio.Protocol):
    """What the event loop tells a :class:`_LoopStream`: data, end, write pressure."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()  # looked up once, not per wait
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0  # bytes in chunks
        self.eof = False  # the peer shut its writing side
        self.error: OSError | None = None  # the socket failed
        self.lost = False  # the connection ended (closed, failed or aborted)
        self.reading_paused = False
        self.readable: asyncio.Future[None] | None = None  # receive() waits on it
        self.writable: asyncio.Future[None] | None = None  # send() waits on it
        self.writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport, though uvloop's do not subclass asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > _READ_HIGH and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        self.wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self.wake_reader()
        return True  # keep the transport for writing until we close it

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if isinstance(exc, OSError):
            self.error = exc
        self.wake_reader()
        self.resume_writing()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        waiter, self.writable = self.writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake_reader(self) -> None:
        """Let a receive() waiting for data look again."""
        waiter, self.readable = self.readable, None
        if waiter is not None and not waiter.done():  # not cancelled meanwhile
            waiter.set_result(None)


class _LoopStream(anyio.abc.ByteStream):
    """A connected socket driven by an asyncio protocol that keeps reading.

    anyio's socket streams stop reading the socket after every receive and start again
    at the next one: two ``epoll_ctl`` calls, and a turn of the loop, for each read;
    and a send ends with a turn of the loop too. A connection reads and writes once per
    message under light load, so those turns were a good part of its cost. This stream
    reads as data comes, keeps it until taken (up to :data:`_READ_HIGH` bytes, past which
    it stops reading until the taker is down to :data:`_READ_LOW`), returns buffered
    data without waiting, and writes without waiting unless the transport's buffer is
    full. A receive cancelled as data arrives loses nothing: the data stays buffered.
    """

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closed = False

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        sock: socket.socket = self._transport.get_extra_info("socket")
        return {
            SocketAttribute.family: lambda: sock.family,
            SocketAttribute.local_address: sock.getsockname,
            SocketAttribute.remote_address: sock.getpeername,
            SocketAttribute.raw_socket: lambda: sock,
        }

    async def receive(self, max_bytes: int = 65536) -> bytes:
        """Take what was read (at most ``max_bytes``), waiting only when nothing was.

        Raises:
            anyio.EndOfStream: the daemon closed its end.
            anyio.ClosedResourceError: we closed the stream.
            anyio.BrokenResourceError: the socket failed.
        """
        protocol = self._protocol
        while not protocol.chunks:
            if self._closed:
                raise anyio.ClosedResourceError
            if protocol.error is not None:
                raise anyio.BrokenResourceError from protocol.error
            if protocol.eof or protocol.lost:
                raise anyio.EndOfStream
            waiter = protocol.readable = protocol.loop.create_future()
            await waiter
        chunk = protocol.chunks.popleft()
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            protocol.chunks.appendleft(rest)
        protocol.buffered -= len(chunk)
        if protocol.reading_paused and protocol.buffered <= _READ_LOW and not self._closed:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return chunk

    async def rest(self, seconds: float) -> None:
        """Leave the socket unread for ``seconds``: the kernel and the peer hold what
        comes meanwhile, and nothing wakes this process for it. Returns at once when
        data read earlier waits to be taken or the stream has ended.
        """
        protocol, transport = self._protocol, self._transport
        if protocol.chunks or protocol.eof or protocol.lost or self._closed:
            return
        transport.pause_reading()
        try:
            await anyio.sleep(seconds)
        finally:
            if not (self._closed or protocol.lost or protocol.reading_paused):
                transport.resume_reading()

    async def send(self, item: bytes) -> None:
        """Write all of ``item``; wait only while the transport's buffer is full.

        Raises:
            anyio.ClosedResourceError: we closed the stream.
            anyio.BrokenResourceError: the socket failed.
        """
        protocol = self._protocol
        while protocol.writing_paused and not protocol.lost:
            waiter = protocol.writable = protocol.loop.create_future()
            await waiter
        if self._closed:
            raise anyio.ClosedResourceError
        if protocol.lost or self._transport.is_closing():
            raise anyio.BrokenResourceError from protocol.error
        self._transport.write(item)

    async def send_eof(self) -> None:
        """Shut our writing side down.

        Raises:
            anyio.BrokenResourceError: the socket failed.
        """
        try:
            self._transport.write_eof()
        except (OSError, RuntimeError) as exc:
            raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        """Close the socket; a task waiting on it gets ``anyio.ClosedResourceError``."""
        if not self._closed:
            self._closed = True
            self._transport.abort()  # what is unsent goes: the connection is over
            self._protocol.wake_reader()
            self._protocol.resume_writing()
        await anyio.lowlevel.checkpoint()


async def _open_stream(endpoint: Endpoint) -> anyio.abc.ByteStream:
    loop = asyncio.get_running_loop()
    try:
        if isinstance(endpoint, UnixEndpoint):
            transport, protocol = await loop.create_unix_connection(_Protocol, endpoint.path)
        else:
            transport, protocol = await loop.create_connection(
                _Protocol, endpoint.host, endpoint.port
            )
            raw = transport.get_extra_info("socket")
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # asyncio sets NODELAY
    except OSError as exc:
        raise CouldNotConnect(f"could not connect to {endpoint}: {exc}") from exc
    return _LoopStream(transport, protocol)


class Connection:
    """One session with a Spread daemon; what :func:`connect` yields.

    Sending methods return once the command is queued for writing (they wait only
    while the queue is full); iteration yields
    :class:`~spreadq.wire.events.DataMessage`,
    :class:`~spreadq.wire.events.RegularMembership`,
    :class:`~spreadq.wire.events.TransitionalMembership`,
    :class:`~spreadq.wire.events.SelfLeave` and
    :class:`~spreadq.wire.events.RejectedMessage` in the daemon's order.
    """

    __slots__ = ("_handle", "endpoint")

    def __init__(self, handle: ConnectionHandle, endpoint: Endpoint) -> None:
        self._handle = handle
        self.endpoint = endpoint
        """Where the daemon is."""

    def __repr__(self) -> str:
        return f"<Connection {self.private_group} to {self.endpoint}>"

    @property
    def private_group(self) -> MemberName:
        """This connection's private group name, ``#name#daemon``."""
        return self._handle.private_group

    @property
    def daemon_version(self) -> tuple[int, int, int]:
        """The daemon's version, from its accept."""
        return self._handle.daemon_version

    async def join(self, group: GroupName) -> None:
        """Join ``group``; its regular membership arrives among the events.

        Raises:
            InvalidName: ``group`` is not a legal group name (nothing is sent).
            ConnectionLost: the connection has ended.
        """
        await self._handle.send(Join(group))

    async def leave(self, group: GroupName) -> None:
        """Leave ``group``; a :class:`~spreadq.wire.events.SelfLeave` follows.

        Raises:
            InvalidName: ``group`` is not a legal group name (nothing is sent).
            ConnectionLost: the connection has ended.
        """
        await self._handle.send(Leave(group))

    async def multicast(
        self,
        groups: GroupName | Sequence[GroupName],
        data: bytes,
        service: ServiceType = ServiceType.AGREED,
        mess_type: int = 0,
        self_discard: bool = False,
    ) -> None:
        """Send ``data`` to one group or several (one message, delivered once each).

        Raises:
            InvalidName: a destination Spread cannot carry (nothing is sent).
            MessageTooLarge: the message passes the 140,000-byte cap (nothing is sent).
            LocalProtocolError: no groups, over 100 groups, or a bad ``service`` or
                ``mess_type`` (nothing is sent).
            ConnectionLost: the connection has ended.
        """
        targets = (groups,) if isinstance(groups, str) else tuple(groups)
        if self_discard:
            service = service | ServiceType.SELF_DISCARD
        await self._handle.send(Multicast(targets, data, service, mess_type))

    async def flush(self) -> None:
        """Wait until everything queued so far has been written to the socket.

        Raises:
            ConnectionLost: the connection ended first.
        """
        await self._handle.flush()

    async def receive(self) -> DaemonMessage:
        """Wait for the next event.

        Raises:
            ConnectionLost: the session has ended (``reason`` says why; it is
                ``CLOSED_LOCALLY`` once the connection was closed here).
        """
        return await self._handle.receive()

    async def receive_batch(self) -> Sequence[DaemonMessage]:
        """Wait for the next events: everything one socket read decoded, in order.

        Raises:
            ConnectionLost: the session has ended.
        """
        return await self._handle.receive_batch()

    def deliver_to(
        self,
        sink: Callable[[Sequence[DaemonMessage]], object],
        end: Callable[[ConnectionLost], object],
    ) -> None:
        """Push the events instead: ``sink`` gets everything each socket read decoded,
        in order (what was read before this call first), and ``end`` the session's end
        once. Both run in the connection's reader and must not block; a consumer with a
        queue of its own saves a task switch per read this way. Do not call
        :meth:`receive` or :meth:`receive_batch` after this.
        """
        self._handle.deliver_to(sink, end)

    def pace_reads(self, pace: Callable[[], float]) -> None:
        """Before each read of the socket that would wait for data, call ``pace`` (in the
        reader); while it returns ``s > 0``, leave the socket unread for ``s`` seconds
        first, so that what comes meanwhile is read at once and wakes this process once
        (a worker standing by, :mod:`spreadq.worker.standby`). ``pace`` must not block.
        """
        self._handle.pace_reads(pace)

    def statistics(self) -> ConnectionStatistics:
        """Counters of this connection: writes, reads, bytes, events, queued commands."""
        return self._handle.statistics()

    def __aiter__(self) -> Connection:
        return self

    async def __anext__(self) -> DaemonMessage:
        try:
            return await self._handle.receive()
        except ConnectionLost as exc:
            if exc.reason is CloseReason.CLOSED_LOCALLY:
                raise StopAsyncIteration from None
            raise


def connect(
    address: Address | None = None,
    name: str | None = None,
    membership: bool = True,
    timeout: float = 5.0,
) -> AbstractAsyncContextManager[Connection]:
    """Open a session with the Spread daemon at ``address``; close it on exit.

    ``name`` is the private name (0..10 bytes of ``$``..``~``; ``None`` lets the daemon
    choose). ``membership=False`` asks for no membership messages. Opening the socket
    and the handshake together take at most ``timeout`` seconds. On exit the queued
    commands and a disconnect are written (bounded) and the socket is closed.

    Raises:
        ConfigurationError: ``address`` is not a Spread address.
        InvalidName: ``name`` is not a legal private name.
        CouldNotConnect: the socket could not be opened, the daemon closed it during the
            handshake, or ``timeout`` passed.
        ConnectRejected: the daemon refused the session (``code`` says why).
        RemoteProtocolError: the daemon's handshake bytes are not Spread's.
    """
    endpoint = parse_address(address)
    session = ClientSession(name or "", membership=membership)
    return _Connecting(endpoint, session, timeout)


class _Connecting:
    """The context manager :func:`connect` returns.

    The actor's task group is entered in ``__aenter__`` and left in ``__aexit__``, but an
    exception from the ``async with`` body is not passed into it (only a cancellation
    is), so callers catch ``ConnectionLost`` itself, not an exception group.
    """

    __slots__ = ("_endpoint", "_group", "_handle", "_seconds", "_session")

    def __init__(self, endpoint: Endpoint, session: ClientSession, seconds: float) -> None:
        self._endpoint = endpoint
        self._session = session
        self._seconds = seconds
        self._group: anyio.abc.TaskGroup | None = None
        self._handle: ConnectionHandle | None = None

    async def __aenter__(self) -> Connection:
        if self._group is not None:
            raise RuntimeError("this connect() context was already entered")
        group = self._group = anyio.create_task_group()
        await group.__aenter__()
        try:
            with anyio.fail_after(self._seconds):
                stream = await _open_stream(self._endpoint)
                actor = SpreadConnection(stream, self._session, peer=str(self._endpoint))
                try:
                    self._handle = await group.start(actor.run)
                except BaseException:
                    await anyio.aclose_forcefully(stream)
                    raise
        except BaseException as exc:
            group.cancel_scope.cancel()
            await _leave_group(group, exc)
            if isinstance(exc, TimeoutError):
                raise CouldNotConnect(
                    f"could not connect to {self._endpoint} within {self._seconds} seconds"
                ) from None
            raise
        return Connection(self._handle, self._endpoint)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if self._group is None or self._handle is None:
            raise RuntimeError("this connect() context was not entered")
        await self._handle.aclose()
        self._group.cancel_scope.cancel()
        return await _leave_group(self._group, exc)


async def _leave_group(group: anyio.abc.TaskGroup, exc: BaseException | None) -> bool:
    """Exit ``group``; return whether ``exc`` (from the ``async with`` body) is suppressed.

    Only a cancellation is passed into the group, which may absorb the one it caused by
    cancelling its own scope. Any other exception of the body is never suppressed: the
    group's own ``True`` then speaks of that internal cancellation, not of ``exc``.
    """
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return bool(await group.__aexit__(type(exc), exc, exc.__traceback__))
    await group.__aexit__(None, None, None)
    return False
