"""A scripted one-client-at-a-time Spread daemon for connection tests.

It speaks the real handshake through :class:`~spreadq.wire.server_session.ServerSession`
and then lets the test drive the session by hand: read the client's commands, send it
messages or raw bytes, stop reading, close or reset the socket. The embedded daemon is
the daemon for behaviour; this fake is for the failures a real daemon will not produce
on demand.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from spreadq.wire.constants import RejectCode
from spreadq.wire.events import (
    CLOSED,
    NEED_DATA,
    AuthChoice,
    ClientCommand,
    DaemonMessage,
    Hello,
    IncomingMulticast,
)
from spreadq.wire.server_session import ServerSession

__all__ = ["FakeDaemon", "FakePeer", "fake_daemon"]


@dataclass
class FakePeer:
    """One accepted client: its socket, its session and what it sent so far."""

    stream: anyio.abc.SocketStream
    session: ServerSession
    hello: Hello
    received: list[ClientCommand | IncomingMulticast] = field(default_factory=list)

    async def command(self) -> ClientCommand | IncomingMulticast | None:
        """The client's next command; ``None`` once it has closed the socket."""
        while True:
            event = self.session.next_event()
            if event is CLOSED:
                return None
            if event is NEED_DATA:
                try:
                    data = await self.stream.receive(65536)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    data = b""
                self.session.receive_data(data)
                continue
            assert not isinstance(event, Hello | AuthChoice)
            self.received.append(event)
            return event

    async def send(self, message: DaemonMessage) -> None:
        await self.stream.send(self.session.send(message))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def close(self) -> None:
        """Close the socket (the client sees EOF)."""
        await self.stream.aclose()

    async def reset(self) -> None:
        """Close the socket with a TCP reset (SO_LINGER 0)."""
        raw = self.stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.stream.aclose()


@dataclass
class FakeDaemon:
    """Accepts clients on a loopback port or a Unix socket; the test answers handshakes."""

    listener: anyio.abc.SocketListener
    address: str
    name: str = "fake"
    peers: list[FakePeer] = field(default_factory=list)

    @property
    def port(self) -> int:
        """The TCP port (TCP fakes only)."""
        return int(self.address.partition("@")[0])

    async def aclose(self) -> None:
        """Close every accepted client's socket."""
        for peer in self.peers:
            await anyio.aclose_forcefully(peer.stream)

    async def accept(
        self, *, reject: RejectCode | None = None, version: tuple[int, int, int] = (5, 0, 1)
    ) -> FakePeer:
        """Take the next client and run its handshake: accept it, or ``reject`` it."""
        stream = await self.listener.accept()
        session = ServerSession()
        peer = FakePeer(stream, session, Hello((0, 0, 0), "", False, False))
        self.peers.append(peer)
        hello: Hello | None = None
        while True:
            event = session.next_event()
            if event is NEED_DATA:
                session.receive_data(await stream.receive(65536))
            elif isinstance(event, Hello):
                hello = event
                if reject is not None:
                    await stream.send(session.reject(reject))
                    await stream.aclose()
                    peer.hello = hello
                    return peer
                await stream.send(session.auth_list())
            elif isinstance(event, AuthChoice):
                assert hello is not None
                group = f"#{hello.private_name or 'r1-1'}#{self.name}"
                await stream.send(session.accept(group, version))
                peer.hello = hello
                return peer
            else:
                raise AssertionError(f"unexpected {event!r} during the handshake")


@asynccontextmanager
async def fake_daemon(unix_path: str | None = None) -> AsyncIterator[FakeDaemon]:
    """A fake daemon listening on a free loopback TCP port, or on ``unix_path``."""
    if unix_path is not None:
        async with await anyio.create_unix_listener(unix_path) as unix_listener:
            fake = FakeDaemon(unix_listener, f"unix:{unix_path}")
            try:
                yield fake
            finally:
                await fake.aclose()
        return
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    listener = multi.listeners[0]
    assert isinstance(listener, anyio.abc.SocketListener)
    port = listener.extra(SocketAttribute.local_port)
    fake = FakeDaemon(listener, f"{port}@127.0.0.1")
    try:
        yield fake
    finally:
        await fake.aclose()
        await multi.aclose()
