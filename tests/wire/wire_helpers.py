"""Test helpers for the wire sessions: byte notation, opened sessions, a session pair.

``SessionPair`` joins a ``ClientSession`` and a ``ServerSession`` through bytes only,
in the way h11's ``ConnectionPair`` does: whatever one side's ``send`` returns is fed to
the other side's ``receive_data``, and the events that come out are returned.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from spreadq.wire import (
    NEED_DATA,
    Accepted,
    ClientCommand,
    ClientSession,
    DaemonMessage,
    ServerSession,
)
from spreadq.wire.events import AuthChoice, Closed, Hello

__all__ = [
    "SessionPair",
    "drain",
    "feed_all",
    "hx",
    "name32",
    "open_client",
    "open_server",
    "to_big_endian",
]


def hx(text: str) -> bytes:
    """Bytes from spaced hex, as byte dumps are written."""
    return bytes.fromhex(text.replace("|", " "))


def name32(name: str) -> bytes:
    """A name as its 32-byte NUL-padded wire field."""
    return name.encode("latin-1").ljust(32, b"\0")


def drain(session: ClientSession | ServerSession) -> list[object]:
    """Every event the session can produce now, up to (not including) ``NEED_DATA``.

    Stops after ``CLOSED`` too.
    """
    events: list[object] = []
    while True:
        event = session.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
        if isinstance(event, Closed):
            return events


def open_client(
    private_group: str = "#alice#localhost",
    *,
    daemon_version: tuple[int, int, int] = (5, 0, 1),
    name: str = "alice",
    **kwargs: object,
) -> ClientSession:
    """A client session that has been accepted as ``private_group`` (bytes only)."""
    client = ClientSession(name, **kwargs)  # type: ignore[arg-type]
    client.start()
    client.receive_data(b"\x05NULL ")
    assert client.next_event() is NEED_DATA
    assert len(client.data_to_send()) == 90
    raw = private_group.encode("latin-1")
    client.receive_data(bytes([1, *daemon_version, len(raw)]) + raw)
    accepted = client.next_event()
    assert isinstance(accepted, Accepted), accepted
    return client


def open_server(
    private_group: str = "#alice#localhost", *, max_message_size: int | None = None
) -> ServerSession:
    """A server session that has accepted a 5.0.1 client as ``private_group``."""
    server = (
        ServerSession()
        if max_message_size is None
        else ServerSession(max_message_size=max_message_size)
    )
    private = private_group.split("#")[1].encode()
    server.receive_data(bytes([5, 0, 1, 1, len(private)]) + private)
    assert isinstance(server.next_event(), Hello)
    server.auth_list()
    server.receive_data(b"NULL".ljust(90, b"\0"))
    assert isinstance(server.next_event(), AuthChoice)
    server.accept(private_group)
    return server


class SessionPair:
    """A client and a server session joined through bytes, both open."""

    def __init__(self, name: str = "alice", daemon: str = "localhost") -> None:
        self.client = ClientSession(name)
        self.server = ServerSession()
        self.server.receive_data(self.client.start())
        hello = self.server.next_event()
        assert isinstance(hello, Hello)
        self.client.receive_data(self.server.auth_list())
        assert self.client.next_event() is NEED_DATA
        self.server.receive_data(self.client.data_to_send())
        assert isinstance(self.server.next_event(), AuthChoice)
        self.client.receive_data(self.server.accept(f"#{name}#{daemon}"))
        accepted = self.client.next_event()
        assert isinstance(accepted, Accepted)

    def client_sends(self, *commands: ClientCommand) -> list[object]:
        """Send ``commands`` in one write; the server's events."""
        self.server.receive_data(self.client.send_many(commands))
        return drain(self.server)

    def server_sends(self, *messages: DaemonMessage) -> list[object]:
        """Send ``messages`` in one write; the client's events."""
        self.client.receive_data(b"".join(self.server.send(m) for m in messages))
        return drain(self.client)


def to_big_endian(message: bytes, *, swap_hint: bool, body_ints: Sequence[int] = ()) -> bytes:
    """Rewrite one LE message as a big-endian writer (Java) would have written it.

    ``type``, ``num_groups`` and ``data_len`` are swapped and the marker cleared; the
    hint is swapped too if ``swap_hint`` (a BE *sender*), else kept (a daemon passes the
    sender's hint through). A reject message's ``old_type`` and the 4-byte integers at
    the data offsets ``body_ints`` (membership and transitional bodies) are swapped too.
    Only for test inputs; nothing in spreadq writes big-endian.
    """
    marker = 0x80000080
    type_, sender, count, hint, data_len = struct.unpack_from("<I32siIi", message)
    out = bytearray(message)
    struct.pack_into(">I32si", out, 0, type_ & ~marker & 0xFFFFFFFF, sender, count)
    if swap_hint:
        struct.pack_into(">I", out, 40, hint & ~marker & 0xFFFFFFFF)
    struct.pack_into(">i", out, 44, data_len)
    at = 48
    if type_ & 0x00400000:
        (old,) = struct.unpack_from("<I", message, at)
        struct.pack_into(">I", out, at, old & ~marker & 0xFFFFFFFF)
        at += 4
    body = at + 32 * count
    for offset in body_ints:
        (value,) = struct.unpack_from("<I", message, body + offset)
        struct.pack_into(">I", out, body + offset, value)
    return bytes(out)


def feed_all(session: ClientSession | ServerSession, chunks: Iterable[bytes]) -> list[object]:
    """Feed each chunk and drain after each; all events in order."""
    events: list[object] = []
    for chunk in chunks:
        session.receive_data(chunk)
        events += drain(session)
    return events
