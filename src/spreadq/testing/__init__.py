"""Test support for spreadq users and for spreadq itself (public, like ``structlog.testing``).

* :class:`WireClient`: a Spread client on a raw socket, driven by a
  :class:`~spreadq.wire.ClientSession`, with full control over what is sent and when it
  is read. It talks to any Spread daemon (the embedded one or a real one) and is meant
  for tests of daemons: stop reading, send raw bytes, vanish without a goodbye.
* :func:`parse_address`: Spread's address syntax (``"4803"``, ``"4803@host"``) plus
  spreadq's ``"unix:/path"``.
* :func:`run_app` (from :mod:`spreadq.testing.harness`): run an :class:`~spreadq.App`
  as a worker inside a test, on the embedded daemon, and get a
  :class:`~spreadq.Producer` for its queue; jobs go through the app's codecs,
  middleware, retries, timeouts and ``on_failure`` hooks.
* The pytest fixtures ``spreadq_daemon`` and ``spreadq_daemon_factory`` live in
  :mod:`spreadq.testing.fixtures`, which pytest loads by itself (``pytest11``).

Every wait in :class:`WireClient` is bounded by a timeout.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import TracebackType

import anyio
import anyio.abc

from spreadq.errors import (
    CloseReason,
    ConnectionLost,
    ConnectRejected,
    CouldNotConnect,
    InvalidName,
)
from spreadq.testing.harness import run_app as run_app
from spreadq.wire.constants import CLIENT_VERSION, DEFAULT_PORT, RejectCode
from spreadq.wire.events import (
    CLOSED,
    NEED_DATA,
    Accepted,
    ClientCommand,
    DaemonMessage,
    Disconnect,
    Rejected,
)
from spreadq.wire.session import ClientSession

__all__ = ["SpreadAddress", "WireClient", "parse_address", "run_app"]


@dataclass(frozen=True, slots=True)
class SpreadAddress:
    """A parsed daemon address: TCP ``host``/``port``, or a Unix socket ``path``."""

    host: str | None = None
    port: int | None = None
    path: str | None = None


def parse_address(address: str | None) -> SpreadAddress:
    """Parse ``""``/``None`` (``/tmp/4803``), ``"PORT"``, ``"PORT@HOST"`` or ``"unix:/path"``.

    Raises:
        InvalidName: anything else.
    """
    if not address:
        return SpreadAddress(path=f"/tmp/{DEFAULT_PORT}")
    if address.startswith("unix:"):
        return SpreadAddress(path=address[5:])
    port, at, host = address.partition("@")
    if not port.isdigit() or (at and not host):
        raise InvalidName(address, "a Spread address is PORT, PORT@HOST or unix:/path")
    if not at:
        return SpreadAddress(path=f"/tmp/{int(port)}")
    return SpreadAddress(host=host, port=int(port))


class WireClient:
    """A Spread client on a raw socket, for tests of daemons.

    Build it with :meth:`connect`. ``receive`` decodes one message at a time and reads
    the socket only when asked, so a test can stop reading to play a slow client.
    """

    def __init__(
        self, stream: anyio.abc.ByteStream, session: ClientSession, *, wait_limit: float = 5.0
    ) -> None:
        self.stream = stream
        self.session = session
        self.private_group: str = session.private_group or ""
        self.wait_limit = wait_limit
        """Seconds any one wait (connect, receive, closed_by_daemon) may take."""

    @classmethod
    async def connect(
        cls,
        address: str,
        name: str = "",
        *,
        membership: bool = True,
        version: tuple[int, int, int] = CLIENT_VERSION,
        wait_limit: float = 5.0,
    ) -> WireClient:
        """Open a session with the daemon at ``address``.

        Raises:
            CouldNotConnect: no socket could be opened, or the handshake timed out.
            ConnectRejected: the daemon refused the session.
            InvalidName: ``name`` or ``address`` is malformed.
        """
        where = parse_address(address)
        session = ClientSession(name, membership=membership, version=version)
        try:
            with anyio.fail_after(wait_limit):
                stream: anyio.abc.ByteStream
                if where.path is not None:
                    stream = await anyio.connect_unix(where.path)
                else:
                    assert where.host is not None
                    assert where.port is not None
                    stream = await anyio.connect_tcp(where.host, where.port)
                try:
                    await stream.send(session.start())
                    while True:
                        event = session.next_event()
                        pending = session.data_to_send()  # the auth choice
                        if pending:
                            await stream.send(pending)
                        if event is NEED_DATA:
                            try:
                                data = await stream.receive()
                            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                                data = b""
                            session.receive_data(data)
                            continue
                        if isinstance(event, Accepted):
                            return cls(stream, session, wait_limit=wait_limit)
                        if isinstance(event, Rejected):
                            raise ConnectRejected(event.code)
                        raise ConnectRejected(RejectCode.CONNECTION_CLOSED, repr(event))
                except BaseException:
                    await anyio.aclose_forcefully(stream)
                    raise
        except TimeoutError:
            raise CouldNotConnect(f"the daemon at {address} did not finish the handshake") from None
        except OSError as error:
            if isinstance(error, CouldNotConnect):
                raise
            raise CouldNotConnect(f"cannot connect to {address}: {error}") from error

    async def send(self, *commands: ClientCommand) -> None:
        """Encode ``commands`` and write them in one write.

        Raises:
            LocalProtocolError: a command the session may not send now.
            ConnectionLost: the daemon closed the connection.
        """
        await self.send_raw(self.session.send_many(commands))

    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` as it is (to send what a well-behaved client would not).

        Raises:
            ConnectionLost: the daemon closed the connection.
        """
        try:
            await self.stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as error:
            raise ConnectionLost(CloseReason.RESET, str(error)) from error

    async def receive(self) -> DaemonMessage:
        """The next message from the daemon.

        Raises:
            TimeoutError: nothing arrived within ``wait_limit`` seconds.
            ConnectionLost: the daemon closed the connection.
            RemoteProtocolError: the daemon sent bytes the codec refuses.
        """
        with anyio.fail_after(self.wait_limit):
            while True:
                event = self.session.next_event()
                if event is NEED_DATA:
                    await self._read()
                    continue
                if event is CLOSED:
                    raise ConnectionLost(CloseReason.EOF)
                assert not isinstance(event, Accepted | Rejected)
                return event

    async def receive_many(self, count: int) -> list[DaemonMessage]:
        """The next ``count`` messages (each within ``wait_limit`` seconds).

        Raises:
            TimeoutError: they did not all arrive in time.
            ConnectionLost: the daemon closed the connection first.
        """
        return [await self.receive() for _ in range(count)]

    async def _read(self) -> None:
        try:
            data = await self.stream.receive()
        except anyio.EndOfStream:
            data = b""
        except (anyio.BrokenResourceError, OSError):
            data = b""
        self.session.receive_data(data)

    async def closed_by_daemon(self) -> list[DaemonMessage]:
        """Read until the daemon closes the connection; return what came before.

        Raises:
            TimeoutError: the connection stayed open for ``wait_limit`` seconds.
        """
        received: list[DaemonMessage] = []
        with anyio.fail_after(self.wait_limit):
            while True:
                try:
                    received.append(await self.receive())
                except ConnectionLost:
                    return received

    async def disconnect(self) -> None:
        """Say goodbye (``KILL_MESS``) and close the socket."""
        with contextlib.suppress(ConnectionLost):
            await self.send(Disconnect())
        await self.aclose()

    async def aclose(self) -> None:
        """Close the socket without a goodbye (what a crashed client does)."""
        await anyio.aclose_forcefully(self.stream)

    async def __aenter__(self) -> WireClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
