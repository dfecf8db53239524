"""SpreadConnection and spreadq.connect(): handshake, commands, events, and every way to end.

The failures (rejects, refused and silent sockets, codec-refused bytes, a daemon that
vanishes while calls are pending) run against the scripted fake in ``fake_daemon.py``;
the behaviour of a daemon (membership, delivery) against the embedded daemon.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import structlog
from anyio import wait_all_tasks_blocked
from fake_daemon import FakeDaemon, FakePeer, fake_daemon

from spreadq.actors.connection import ConnectionHandle, SpreadConnection
from spreadq.client import (
    Connection,
    TcpEndpoint,
    UnixEndpoint,
    _open_stream,
    connect,
    parse_address,
)
from spreadq.daemon import serve
from spreadq.errors import (
    CloseReason,
    ConfigurationError,
    ConnectionLost,
    ConnectRejected,
    CouldNotConnect,
    InvalidName,
    LocalProtocolError,
    MessageTooLarge,
    RemoteProtocolError,
)
from spreadq.wire.constants import Cause, RejectCode, ServiceType
from spreadq.wire.events import (
    DaemonMessage,
    DataMessage,
    Disconnect,
    IncomingMulticast,
    Join,
    Leave,
    Multicast,
    RegularMembership,
)
from spreadq.wire.session import ClientSession

WAIT = 5.0  # bound on every wait in this file


@asynccontextmanager
async def connected(
    fake: FakeDaemon, name: str | None = "me", **accept: object
) -> AsyncIterator[tuple[Connection, FakePeer]]:
    """spreadq.connect() to the fake, with the fake's side of the handshake in a task."""
    send, receive = anyio.create_memory_object_stream[FakePeer](1)
    with send, receive:
        async with anyio.create_task_group() as tg:

            async def serve() -> None:
                await send.send(await fake.accept(**accept))  # type: ignore[arg-type]

            tg.start_soon(serve)
            async with connect(fake.address, name=name) as conn:
                yield conn, await receive.receive()


async def collect(conn: Connection, into: list[DaemonMessage]) -> None:
    """Iterate ``conn`` to its end, keeping every event."""
    async for event in conn:
        into.append(event)


# --- addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "endpoint"),
    [
        (None, UnixEndpoint("/tmp/4803")),
        ("", UnixEndpoint("/tmp/4803")),
        ("4803", UnixEndpoint("/tmp/4803")),
        ("4903", UnixEndpoint("/tmp/4903")),
        ("4803@localhost", TcpEndpoint("localhost", 4803)),
        ("4803@127.0.0.1", TcpEndpoint("127.0.0.1", 4803)),
        ("4803@::1", TcpEndpoint("::1", 4803)),
        ("4803@[::1]", TcpEndpoint("::1", 4803)),
        ("1@db.example.org", TcpEndpoint("db.example.org", 1)),
        ("unix:/run/spread.sock", UnixEndpoint("/run/spread.sock")),
    ],
)
def test_addresses_follow_spread_syntax(address: str | None, endpoint: object) -> None:
    assert parse_address(address) == endpoint


@pytest.mark.parametrize(
    "address",
    ["abc", "/tmp/4803", "4803@", "@localhost", "0", "65536", "48x3@host", "unix:", "4803 @h"],
)
def test_bad_addresses_raise_configuration_error(address: str) -> None:
    with pytest.raises(ConfigurationError, match="bad Spread address"):
        parse_address(address)


async def test_bad_private_name_is_refused_before_connecting() -> None:
    with pytest.raises(InvalidName):
        async with connect("1@127.0.0.1", name="has space"):
            pass  # pragma: no cover


# --- opening ---------------------------------------------------------------------------


async def test_handshake_opens_the_session_and_commands_reach_the_daemon() -> None:
    async with fake_daemon() as fake:
        async with connected(fake, name="me") as (conn, peer):
            assert conn.private_group == "#me#fake"
            assert conn.daemon_version == (5, 0, 1)
            assert peer.hello.private_name == "me"
            assert peer.hello.membership
            with anyio.fail_after(WAIT):
                await conn.join("g1")
                await conn.multicast(["g1", "g2"], b"payload", ServiceType.SAFE, mess_type=-7)
                await conn.multicast("g1", b"quiet", self_discard=True)
                await conn.leave("g1")
                assert await peer.command() == Join("g1")
                first = await peer.command()
                assert isinstance(first, IncomingMulticast)
                assert (first.groups, first.data, first.service, first.mess_type) == (
                    ("g1", "g2"),
                    b"payload",
                    ServiceType.SAFE,
                    -7,
                )
                second = await peer.command()
                assert isinstance(second, IncomingMulticast)
                assert second.service == ServiceType.AGREED | ServiceType.SELF_DISCARD
                assert await peer.command() == Leave("g1")

                message = DataMessage("#you#fake", ("g1",), ServiceType.AGREED, 3, b"hi")
                await peer.send(message)
                assert await conn.receive() == message
        with anyio.fail_after(WAIT):
            # leaving the context wrote a Disconnect, then closed the socket
            assert await peer.command() == Disconnect()
            assert await peer.command() is None


async def test_a_unix_socket_address_works(tmp_path: Path) -> None:
    path = str(tmp_path / "spread.sock")
    async with fake_daemon(unix_path=path) as fake, connected(fake, name=None) as (conn, peer):
        assert fake.address == f"unix:{path}"
        assert conn.private_group == "#r1-1#fake"  # the daemon chose the name
        assert peer.hello.private_name == ""
        with anyio.fail_after(WAIT):
            await conn.join("g")
            assert await peer.command() == Join("g")


async def test_a_unix_read_cancelled_as_data_arrives_leaves_no_loop_error(tmp_path: Path) -> None:
    # the cause of a traceback `spreadq put --wait` printed now and then: a connection
    # cancels its reader when it ends; if the socket became readable in that very loop
    # turn, anyio's Unix stream had its reader callback set the cancelled future
    # (asyncio: "Exception in callback Future.set_result", InvalidStateError)
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    path = str(tmp_path / "s.sock")
    async with await anyio.create_unix_listener(path) as listener:
        stream = await _open_stream(UnixEndpoint(path))
        peer = await listener.accept()
        previous = loop.get_exception_handler()
        loop.set_exception_handler(lambda _, context: errors.append(context))
        try:
            for _ in range(3):
                async with anyio.create_task_group() as tg:
                    reading = anyio.CancelScope()

                    async def read(scope: anyio.CancelScope = reading) -> None:
                        with scope:
                            await stream.receive()

                    tg.start_soon(read)
                    await wait_all_tasks_blocked()  # the reader waits for the socket
                    await peer.send(b"x")  # readable: its callback is queued next turn
                    await anyio.lowlevel.checkpoint()  # that turn: we run before it
                    reading.cancel()
                for _ in range(3):
                    await anyio.lowlevel.checkpoint()  # let queued callbacks run
                assert await stream.receive() == b"x"  # nothing lost either
        finally:
            loop.set_exception_handler(previous)
            await stream.aclose()
            await peer.aclose()
    assert errors == []


@pytest.mark.parametrize(
    "code",
    [
        RejectCode.REJECT_QUOTA,
        RejectCode.REJECT_ILLEGAL_NAME,
        RejectCode.REJECT_NOT_UNIQUE,
        RejectCode.REJECT_VERSION,
        RejectCode.REJECT_AUTH,
    ],
)
async def test_a_reject_code_raises_connect_rejected(code: RejectCode) -> None:
    async with fake_daemon() as fake, anyio.create_task_group() as tg:
        tg.start_soon(partial(fake.accept, reject=code))
        with anyio.fail_after(WAIT), pytest.raises(ConnectRejected) as info:
            async with connect(fake.address):
                pass  # pragma: no cover
    assert info.value.code is code


async def test_a_refused_connection_raises_could_not_connect() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
    with anyio.fail_after(WAIT), pytest.raises(CouldNotConnect, match=f"{port}@127.0.0.1"):
        async with connect(f"{port}@127.0.0.1"):
            pass  # pragma: no cover


async def test_a_missing_unix_socket_raises_could_not_connect(tmp_path: Path) -> None:
    with anyio.fail_after(WAIT), pytest.raises(CouldNotConnect):
        async with connect(f"unix:{tmp_path / 'nothing'}"):
            pass  # pragma: no cover


async def test_a_silent_daemon_raises_could_not_connect_after_the_timeout() -> None:
    async with fake_daemon() as fake:  # the kernel accepts; nobody answers the hello
        with anyio.fail_after(WAIT), pytest.raises(CouldNotConnect, match=r"within 0\.2 seconds"):
            async with connect(fake.address, timeout=0.2):
                pass  # pragma: no cover


async def test_a_daemon_closing_during_the_handshake_raises_could_not_connect() -> None:
    async with fake_daemon() as fake, anyio.create_task_group() as tg:

        async def hang_up() -> None:
            stream = await fake.listener.accept()
            await stream.receive()
            await stream.aclose()

        tg.start_soon(hang_up)
        with anyio.fail_after(WAIT), pytest.raises(CouldNotConnect, match="handshake"):
            async with connect(fake.address):
                pass  # pragma: no cover


# --- sending ---------------------------------------------------------------------------


async def test_invalid_commands_raise_before_anything_is_sent() -> None:
    async with fake_daemon() as fake, connected(fake) as (conn, peer):
        with anyio.fail_after(WAIT):
            with pytest.raises(InvalidName):
                await conn.join("x" * 32)
            with pytest.raises(InvalidName):
                await conn.multicast("bad name", b"")
            with pytest.raises(MessageTooLarge):
                await conn.multicast("g", bytes(140_000))
            with pytest.raises(LocalProtocolError):
                await conn.multicast([], b"")
            with pytest.raises(LocalProtocolError):
                await conn.multicast("g", b"", mess_type=40_000)
            await conn.multicast("g", b"ok")
            command = await peer.command()
            assert isinstance(command, IncomingMulticast)
            assert command.data == b"ok"  # nothing before it reached the daemon


async def test_a_burst_of_multicasts_is_coalesced_into_few_writes() -> None:
    count = 2000
    async with fake_daemon() as fake, connected(fake) as (conn, peer):
        with anyio.fail_after(WAIT):
            for i in range(count):
                await conn.multicast("g", i.to_bytes(4, "big"))
            await conn.flush()
            stats = conn.statistics()
            assert stats.commands_written == count
            assert stats.writes <= 4, stats
            for i in range(count):
                command = await peer.command()
                assert isinstance(command, IncomingMulticast)
                assert command.data == i.to_bytes(4, "big")


class CountingStream(anyio.abc.ByteStream):
    """A byte stream that counts the writes it passes on."""

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        self.inner = inner
        self.sends: list[int] = []

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        self.sends.append(len(item))
        await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_the_writer_makes_one_socket_write_per_batch() -> None:
    async with fake_daemon() as fake, anyio.create_task_group() as tg:
        peers: list[FakePeer] = []

        async def serve() -> None:
            peers.append(await fake.accept())

        tg.start_soon(serve)
        with anyio.fail_after(WAIT):
            stream = CountingStream(await anyio.connect_tcp("127.0.0.1", fake.port))
            actor = SpreadConnection(stream, ClientSession("me"), inbox_size=64)
            handle: ConnectionHandle = await tg.start(actor.run)
            handshake_writes = len(stream.sends)
            for i in range(64):  # fills the inbox exactly; the writer has not run yet
                await handle.send(Join(f"g{i}"))
            await handle.flush()
            assert len(stream.sends) == handshake_writes + 1
            assert stream.sends[-1] == 64 * 80
            assert handle.statistics().writes == 1
            await handle.aclose()


# --- the end ---------------------------------------------------------------------------


async def test_local_close_ends_iteration_and_later_calls_fail() -> None:
    async with fake_daemon() as fake:
        async with connected(fake) as (conn, peer):
            with anyio.fail_after(WAIT):
                await conn.multicast("g", b"before")
        with anyio.fail_after(WAIT):
            assert [event async for event in conn] == []
            with pytest.raises(ConnectionLost) as info:
                await conn.join("g")
            assert info.value.reason is CloseReason.CLOSED_LOCALLY
            with pytest.raises(ConnectionLost):
                await conn.receive()
            command = await peer.command()
            assert isinstance(command, IncomingMulticast)
            assert command.data == b"before"  # queued work is written before the disconnect
            assert await peer.command() == Disconnect()


async def test_the_daemon_closing_ends_iteration_with_connection_lost_eof() -> None:
    with structlog.testing.capture_logs() as logs:
        async with fake_daemon() as fake, connected(fake) as (conn, peer):
            with anyio.fail_after(WAIT):
                message = DataMessage("#x#fake", ("g",), ServiceType.AGREED, 0, b"last")
                await peer.send(message)
                await peer.close()
                seen: list[DaemonMessage] = []
                with pytest.raises(ConnectionLost) as info:
                    await collect(conn, seen)
                assert seen == [message]  # what came before the end is delivered first
                assert info.value.reason is CloseReason.EOF
                with pytest.raises(ConnectionLost) as later:
                    await conn.multicast("g", b"too late")
                assert later.value is info.value
    events = {entry["event"]: entry for entry in logs}
    assert events["connection_opened"]["private_group"] == "#me#fake"
    assert events["connection_lost"]["reason"] == "EOF"


async def test_codec_refused_bytes_end_the_session_with_protocol_error() -> None:
    async with fake_daemon() as fake, connected(fake) as (conn, peer):
        with anyio.fail_after(WAIT):
            good = DataMessage("#x#fake", ("g",), ServiceType.AGREED, 0, b"fine")
            # a JOIN header is a client-only type: no daemon sends it
            bad = struct.pack("<I32siIi", 0x80010080, b"#x#fake", 0, 0x80000080, 0)
            await peer.send_raw(peer.session.send(good) + bad)
            assert await conn.receive() == good
            with pytest.raises(ConnectionLost) as info:
                await conn.receive()
            assert info.value.reason is CloseReason.PROTOCOL_ERROR
            assert isinstance(info.value.__cause__, RemoteProtocolError)
            with pytest.raises(ConnectionLost) as later:
                await conn.join("g")
            assert later.value is info.value


async def test_pending_calls_fail_when_the_daemon_vanishes_mid_write() -> None:
    """The fake stops reading; the writer blocks; the inbox fills; then the socket dies."""
    async with fake_daemon() as fake, anyio.create_task_group() as tg:
        peers: list[FakePeer] = []

        async def serve() -> None:
            peers.append(await fake.accept())

        tg.start_soon(serve)
        failures: dict[str, BaseException] = {}

        async def call(what: str, handle: ConnectionHandle) -> None:
            try:
                if what == "flood":
                    while True:
                        await handle.send(big)
                elif what == "join":
                    await handle.send(Join("g"))
                else:
                    await handle.flush()
            except ConnectionLost as exc:
                failures[what] = exc

        big = Multicast(("g",), bytes(130_000))
        with anyio.fail_after(WAIT):
            stream = await anyio.connect_tcp("127.0.0.1", fake.port)
            actor = SpreadConnection(stream, ClientSession("me"), inbox_size=4)
            handle: ConnectionHandle = await tg.start(actor.run)
            async with anyio.create_task_group() as callers:
                callers.start_soon(call, "flood", handle)
                await wait_all_tasks_blocked()  # socket buffers and inbox are full
                assert handle.statistics().queued == 4
                callers.start_soon(call, "flush", handle)
                callers.start_soon(call, "join", handle)
                await wait_all_tasks_blocked()
                assert not failures
                await peers[0].reset()
        assert set(failures) == {"flood", "flush", "join"}
        error = failures["join"]
        assert isinstance(error, ConnectionLost)
        assert error.reason in (CloseReason.RESET, CloseReason.EOF)
        assert failures["flood"] is error
        assert failures["flush"] is error
        assert handle.error is error
        with anyio.fail_after(WAIT), pytest.raises(ConnectionLost):
            await handle.receive()
        await handle.aclose()


async def test_closing_with_a_stuck_writer_is_bounded_and_fails_pending_calls() -> None:
    async with fake_daemon() as fake, anyio.create_task_group() as tg:
        tg.start_soon(fake.accept)  # then never reads
        failures: list[ConnectionLost] = []

        async def flood(handle: ConnectionHandle) -> None:
            try:
                while True:
                    await handle.send(Multicast(("g",), bytes(130_000)))
            except ConnectionLost as exc:
                failures.append(exc)

        async def flush(handle: ConnectionHandle) -> None:
            try:
                await handle.flush()
            except ConnectionLost as exc:
                failures.append(exc)

        with anyio.fail_after(WAIT):
            stream = await anyio.connect_tcp("127.0.0.1", fake.port)
            actor = SpreadConnection(stream, ClientSession("me"), inbox_size=2)
            handle: ConnectionHandle = await tg.start(actor.run)
            async with anyio.create_task_group() as callers:
                callers.start_soon(flood, handle)
                await wait_all_tasks_blocked()
                callers.start_soon(flush, handle)
                await wait_all_tasks_blocked()
                await handle.aclose(grace=0.05)
        assert len(failures) == 2
        assert {failure.reason for failure in failures} == {CloseReason.CLOSED_LOCALLY}


# --- against the embedded daemon -------------------------------------------------------


async def next_view(conn: Connection, group: str) -> RegularMembership:
    while True:
        event = await conn.receive()
        if isinstance(event, RegularMembership) and event.group == group:
            return event


async def test_join_see_yourself_and_round_trip_a_multicast(tmp_path: Path) -> None:
    path = str(tmp_path / "daemon.sock")
    async with serve(unix_path=path) as daemon:
        for address in (daemon.address, f"unix:{path}"):
            with anyio.fail_after(WAIT):
                async with connect(address, name="me") as conn:
                    assert conn.private_group == "#me#localhost"
                    await conn.join("g")
                    view = await next_view(conn, "g")
                    assert view.members == ("#me#localhost",)
                    assert view.changed_member == "#me#localhost"
                    await conn.multicast("g", b"hello", mess_type=42)
                    assert await conn.receive() == DataMessage(
                        "#me#localhost", ("g",), ServiceType.AGREED, 42, b"hello"
                    )


async def test_two_connections_see_each_other() -> None:
    async with serve() as daemon:
        with anyio.fail_after(WAIT):
            async with (
                connect(daemon.address, name="a") as a,
                connect(daemon.address, name="b") as b,
            ):
                await a.join("g")
                await next_view(a, "g")
                await b.join("g")
                seen_by_a, seen_by_b = await next_view(a, "g"), await next_view(b, "g")
                assert seen_by_a == seen_by_b
                assert seen_by_a.members == ("#a#localhost", "#b#localhost")
                await b.multicast("g", b"from b")
                for conn in (a, b):
                    message = await conn.receive()
                    assert isinstance(message, DataMessage)
                    assert (message.sender, message.data) == ("#b#localhost", b"from b")
            # b left with the context: a saw its disconnect before a closed too


async def test_the_daemon_vanishing_fails_iteration_and_later_calls() -> None:
    async with serve() as daemon:
        with anyio.fail_after(WAIT):
            async with connect(daemon.address, name="me") as conn:
                await conn.join("g")
                await next_view(conn, "g")
                daemon.stop()
                seen: list[DaemonMessage] = []
                with pytest.raises(ConnectionLost) as info:
                    await collect(conn, seen)
                assert seen == []
                assert info.value.reason in (CloseReason.EOF, CloseReason.RESET)
                with pytest.raises(ConnectionLost) as later:
                    await conn.join("g2")
                assert later.value is info.value


async def test_a_killed_session_fails_a_blocked_consumer_and_its_peers_see_it() -> None:
    async with serve() as daemon:
        with anyio.fail_after(WAIT):
            async with (
                connect(daemon.address, name="victim") as victim,
                connect(daemon.address, name="peer") as peer,
            ):
                await victim.join("g")
                await next_view(victim, "g")
                await peer.join("g")
                await next_view(victim, "g")
                await next_view(peer, "g")
                failures: list[ConnectionLost] = []

                async def consume() -> None:
                    try:
                        await collect(victim, [])
                    except ConnectionLost as exc:
                        failures.append(exc)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(consume)
                    await wait_all_tasks_blocked()
                    daemon.faults.kill("#victim#localhost")
                assert [failure.reason for failure in failures] in (
                    [CloseReason.EOF],
                    [CloseReason.RESET],
                )
                gone = await next_view(peer, "g")
                assert gone.cause is Cause.DISCONNECT
                assert gone.members == ("#peer#localhost",)


@pytest.mark.parametrize("error", [ValueError("boom"), AssertionError("failed check")])
async def test_an_exception_in_the_connect_block_propagates(error: Exception) -> None:
    async def body(address: str) -> None:
        async with connect(address) as conn:
            await conn.join("g")
            raise error

    async with serve() as daemon:
        with anyio.fail_after(WAIT), pytest.raises(type(error)) as raised:
            await body(daemon.address)
    assert raised.value is error


# --- pushing the events ----------------------------------------------------------------


def message(data: bytes) -> DataMessage:
    return DataMessage("#x#fake", ("g",), ServiceType.AGREED, 0, data)


async def test_pushed_events_come_in_order_after_those_read_before_then_the_end_once() -> None:
    async with fake_daemon() as fake, connected(fake) as (conn, peer):
        with anyio.fail_after(WAIT):
            await peer.send(message(b"early"))
            while conn.statistics().events_received < 1:  # read, not yet taken
                await wait_all_tasks_blocked()
            got: list[DaemonMessage] = []
            ends: list[ConnectionLost] = []
            conn.deliver_to(got.extend, ends.append)
            assert got == [message(b"early")]  # read before the call: handed over first
            await peer.send(message(b"a"))
            await peer.send(message(b"b"))
            while len(got) < 3:
                await wait_all_tasks_blocked()
            assert got == [message(b"early"), message(b"a"), message(b"b")]
            assert ends == []
            await peer.close()
            while not ends:
                await wait_all_tasks_blocked()
            await wait_all_tasks_blocked()
            assert [end.reason for end in ends] == [CloseReason.EOF]  # once


async def test_pushing_from_a_connection_that_already_ended_reports_its_end_at_once() -> None:
    async with fake_daemon() as fake, connected(fake) as (conn, peer):
        with anyio.fail_after(WAIT):
            await peer.send(message(b"last"))
            await peer.close()
            handle = conn._handle  # the reader has seen the end once it records it
            assert handle is not None
            while handle.error is None:
                await wait_all_tasks_blocked()
            got: list[DaemonMessage] = []
            ends: list[ConnectionLost] = []
            conn.deliver_to(got.extend, ends.append)
            assert got == [message(b"last")]
            assert [end.reason for end in ends] == [CloseReason.EOF]


async def test_a_task_looping_on_multicast_and_flush_can_be_cancelled() -> None:
    # the socket's writes do not yield; the writer still takes a turn of the loop before
    # answering a flush, so a cancel reaches a task that does nothing else
    async with fake_daemon() as fake, connected(fake) as (conn, peer):

        async def drain() -> None:
            while await peer.command() is not None:
                pass

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as outer:
                outer.start_soon(drain)
                sent = 0
                enough = anyio.Event()
                async with anyio.create_task_group() as tasks:

                    async def flood() -> None:
                        nonlocal sent
                        while True:
                            await conn.multicast("g", b"x" * 64)
                            sent += 1
                            if sent % 32 == 0:
                                await conn.flush()
                            if sent == 1000:
                                enough.set()

                    tasks.start_soon(flood)
                    await enough.wait()
                    tasks.cancel_scope.cancel()
                outer.cancel_scope.cancel()
        assert sent >= 1000


async def test_paced_reads_rest_between_reads_and_lose_nothing() -> None:
    # the reader asks pace() before each read that would wait, rests for what it says,
    # then reads everything that came meanwhile in the daemon's order
    asked: list[float] = []

    def pace() -> float:
        asked.append(0.002)
        return asked[-1]

    async with (
        serve() as daemon,
        connect(daemon.address, name="rest") as resting,
        connect(daemon.address, name="talk") as talker,
    ):
        with anyio.fail_after(WAIT):
            await resting.join("g")
            assert isinstance(await resting.receive(), RegularMembership)
            resting.pace_reads(pace)  # from the read after the one waiting now
            got: list[bytes] = []
            for first in (0, 10):  # the second ten come while the reader rests
                for n in range(first, first + 10):
                    await talker.multicast("g", b"%d" % n)
                while len(got) < first + 10:
                    event = await resting.receive()
                    assert isinstance(event, DataMessage)
                    got.append(event.data)
            assert got == [b"%d" % n for n in range(20)]
            assert resting.statistics().rests >= 1
            assert len(asked) >= 2 * resting.statistics().rests  # asked twice a rest
