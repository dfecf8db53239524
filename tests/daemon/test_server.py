"""The embedded daemon over real sockets: handshake, limits, malformed clients, faults."""

from __future__ import annotations

import contextlib
import socket
import stat
import struct
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from structlog.testing import capture_logs

from spreadq.daemon import Daemon, serve, sessions
from spreadq.daemon.engine import daemon_proc_id
from spreadq.errors import (
    AddressInUse,
    ConfigurationError,
    ConnectRejected,
    CouldNotConnect,
    MessageTooLarge,
)
from spreadq.testing import WireClient, parse_address
from spreadq.wire.constants import Cause, RejectCode, ServiceType
from spreadq.wire.events import (
    DataMessage,
    Disconnect,
    Join,
    Leave,
    Multicast,
    RegularMembership,
    SelfLeave,
    TransitionalMembership,
)
from spreadq.wire.server_session import encode_daemon_message

LIMIT = anyio.fail_after  # every wait below is bounded
Connect = Callable[..., Awaitable[WireClient]]  # the ``wire`` fixture (conftest.py)


async def raw_exchange(daemon: Daemon, data: bytes) -> bytes:
    """Send ``data`` on a fresh socket and return everything until the daemon closes."""
    with LIMIT(5):
        async with await anyio.connect_tcp(daemon.host, daemon.port) as stream:
            await stream.send(data)
            received = b""
            try:
                while True:
                    received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                return received


async def member_and_watcher(wire: Connect, daemon: Daemon) -> tuple[WireClient, WireClient]:
    watcher = await wire(daemon.address, "watcher")
    member = await wire(daemon.address, "member")
    await watcher.send(Join("g"))
    await watcher.receive()
    await member.send(Join("g"))
    await member.receive()
    await watcher.receive()
    return member, watcher


async def expect_disconnect_of(watcher: WireClient, who: str) -> RegularMembership:
    message = await watcher.receive()
    assert isinstance(message, RegularMembership), message
    assert message.cause is Cause.DISCONNECT
    assert message.changed_member == who
    return message


# --- listening ----------------------------------------------------------------------------


async def test_loopback_by_default(spreadq_daemon: Daemon) -> None:
    assert spreadq_daemon.host == "127.0.0.1"
    assert spreadq_daemon.address == f"{spreadq_daemon.port}@127.0.0.1"
    assert parse_address(spreadq_daemon.address).port == spreadq_daemon.port
    assert spreadq_daemon.unix_path is None
    async with await WireClient.connect(spreadq_daemon.address, "a") as client:
        assert client.private_group == "#a#localhost"
        assert client.session.daemon_version == (5, 0, 1)


async def test_unix_socket_replaces_a_stale_file_and_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "spread.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()
    async with serve(unix_path=path, name="pd1") as daemon:
        assert daemon.unix_path == str(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # this user only
        async with await WireClient.connect(f"unix:{path}", "u") as client:
            assert client.private_group == "#u#pd1"
    assert not path.exists()


async def test_the_unix_socket_mode_can_be_widened(tmp_path: Path) -> None:
    path = tmp_path / "spread.sock"
    async with serve(unix_path=path, unix_mode=0o666):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666
    with pytest.raises(ConfigurationError, match="permission"):
        async with serve(unix_path=path, unix_mode=0o1777):
            pass


async def test_a_live_unix_socket_is_never_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "spread.sock"
    async with serve(unix_path=path, name="first") as first:
        with pytest.raises(AddressInUse) as caught:
            async with serve(unix_path=path, name="second"):
                pass
        assert caught.value.address == str(path)
        assert str(caught.value) == f"cannot listen on {path}: a daemon is listening on this socket"
        async with await WireClient.connect(f"unix:{path}", "u") as client:
            assert client.private_group == "#u#first"  # still the first daemon's socket
        assert first.faults.sessions() == ("#u#first",)
    assert not path.exists()


async def test_a_path_that_is_not_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spread.sock"
    path.write_text("mine")
    with pytest.raises(AddressInUse, match="not a socket"):
        async with serve(unix_path=path):
            pass
    assert path.read_text() == "mine"


async def test_only_the_daemons_own_socket_file_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "spread.sock"
    async with serve(unix_path=path):
        path.unlink()  # someone else takes the path over meanwhile
        other = socket.socket(socket.AF_UNIX)
        other.bind(str(path))
    try:
        assert path.exists()
    finally:
        other.close()


async def test_a_busy_port_names_the_address(spreadq_daemon: Daemon) -> None:
    with pytest.raises(AddressInUse) as caught:
        async with serve(port=spreadq_daemon.port):
            pass
    assert caught.value.address == spreadq_daemon.address
    assert str(caught.value).startswith(f"cannot listen on {spreadq_daemon.address}: ")


async def test_a_busy_unix_socket_closes_the_tcp_listener(tmp_path: Path) -> None:
    path = tmp_path / "spread.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        with pytest.raises(AddressInUse):
            async with serve(port=0, unix_path=path):
                pass
        assert path.exists()
    # nothing of the failed daemon is left listening: its port can be taken at once
    async with serve(unix_path=path):
        pass


async def test_listening_beyond_loopback_warns_about_null_authentication() -> None:
    with capture_logs() as logs:
        async with serve(host="0.0.0.0") as exposed:
            assert exposed.exposed == ("0.0.0.0",)
        async with serve(host="127.0.0.1") as local:
            assert local.exposed == ()
    warnings = [entry for entry in logs if entry["event"] == "daemon_not_loopback"]
    assert len(warnings) == 1, logs
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["addresses"] == ["0.0.0.0"]
    assert "join any group and send anything" in warnings[0]["risk"]


async def test_spread_style_unix_socket_is_named_after_the_port() -> None:
    async with serve(unix=True) as daemon:
        assert daemon.unix_path == f"/tmp/{daemon.port}"
        async with await WireClient.connect(str(daemon.port), "u") as client:
            assert client.private_group == "#u#localhost"
    assert not await anyio.Path(f"/tmp/{daemon.port}").exists()


async def test_an_error_in_the_body_is_not_wrapped() -> None:
    with pytest.raises(LookupError, match="body"):
        async with serve():
            raise LookupError("body")


async def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        async with serve(name="has space"):
            pass
    with pytest.raises(ConfigurationError):
        async with serve(unix_path="/tmp/x", unix=True):
            pass


async def test_stop_closes_every_session(
    wire: Connect,
) -> None:
    async with serve() as daemon:
        client = await wire(daemon.address, "a")
        daemon.stop()
        assert await client.closed_by_daemon() == []
        with pytest.raises(CouldNotConnect):
            await WireClient.connect(daemon.address, "late")
        await client.aclose()


# --- handshake ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hello", "reply"),
    [
        (bytes.fromhex("0500010103") + b"a b", b"\xfb"),  # illegal name
        (bytes.fromhex("050001010b") + b"abcdefghijk", b"\xfb"),  # 11 bytes
        (bytes.fromhex("03000001046361726c"), b"\xf9"),  # version 3.0.0
    ],
)
async def test_handshake_rejects_on_the_wire(
    spreadq_daemon: Daemon, hello: bytes, reply: bytes
) -> None:
    assert await raw_exchange(spreadq_daemon, hello) == reply


async def test_duplicate_name_is_rejected(spreadq_daemon: Daemon) -> None:
    async with await WireClient.connect(spreadq_daemon.address, "alice"):
        with pytest.raises(ConnectRejected) as caught:
            await WireClient.connect(spreadq_daemon.address, "alice")
    assert caught.value.code is RejectCode.REJECT_NOT_UNIQUE


@pytest.mark.spreadq_daemon(max_sessions=1)
async def test_quota(spreadq_daemon: Daemon) -> None:
    async with await WireClient.connect(spreadq_daemon.address, "a"):
        assert await raw_exchange(spreadq_daemon, b"") == b"\xfd"  # sent before the hello


async def test_bad_auth_method_is_rejected(spreadq_daemon: Daemon) -> None:
    hello = bytes.fromhex("0500010101") + b"x"
    with LIMIT(5):
        async with await anyio.connect_tcp(spreadq_daemon.host, spreadq_daemon.port) as stream:
            await stream.send(hello)
            assert await stream.receive() == b"\x05NULL "
            await stream.send(b"IP".ljust(90, b"\0"))
            assert await stream.receive() == b"\xf7"


async def test_old_clients_skip_the_auth_exchange(spreadq_daemon: Daemon) -> None:
    # docs/design/spread-protocol.md#the-handshake: 3.15.0 gets the accept at once, with
    # the patch byte
    hello = bytes([3, 15, 0, 1, 3]) + b"old"
    with LIMIT(5):
        async with await anyio.connect_tcp(spreadq_daemon.host, spreadq_daemon.port) as stream:
            await stream.send(hello)
            expected = bytes([1, 5, 0, 1, 14]) + b"#old#localhost"
            received = b""
            while len(received) < len(expected):
                received += await stream.receive()
            assert received == expected


async def test_auth_choice_and_join_in_one_write(spreadq_daemon: Daemon) -> None:
    # docs/design/spread-protocol.md#the-handshake: the bytes after the 90-byte choice are
    # the first message
    join = bytes.fromhex("80000180") + b"#pipe#localhost".ljust(32, b"\0")
    join += struct.pack("<i", 1) + bytes.fromhex("80000080") + struct.pack("<i", 0)
    join += b"grp".ljust(32, b"\0")
    with LIMIT(5):
        async with await anyio.connect_tcp(spreadq_daemon.host, spreadq_daemon.port) as stream:
            await stream.send(bytes.fromhex("0500010104") + b"pipe")
            assert await stream.receive() == b"\x05NULL "
            await stream.send(b"NULL".ljust(90, b"\0") + join)
            received = b""
            accept = bytes([1, 5, 0, 1, 15]) + b"#pipe#localhost"
            while len(received) < len(accept) + 48 + 32 + 56:
                received += await stream.receive()
    assert received.startswith(accept)
    header = received[len(accept) : len(accept) + 48]
    assert header[:4] == bytes.fromhex("80110080")  # REG_MEMB | CAUSED_BY_JOIN, LE marker
    assert header[4:36].rstrip(b"\0") == b"grp"
    gid = struct.unpack_from("<iii", received, len(accept) + 48 + 32)
    assert gid[0] == daemon_proc_id("localhost")
    assert gid[2] == 1


# --- clients that break the protocol ------------------------------------------------------


def header(type_: int, sender: str, groups: int, data_len: int, hint: int = 0x80000080) -> bytes:
    return struct.pack("<I32siIi", type_, sender.encode(), groups, hint, data_len)


G = b"g".ljust(32, b"\0")
MARK = 0x80000080  # the little-endian marker


@pytest.mark.parametrize(
    ("type_", "groups", "data_len", "hint", "tail", "sender"),
    [
        pytest.param(MARK | 0x30, 1, 0, MARK, G, None, id="AGREED|SAFE"),
        pytest.param(MARK | 0x40, 1, 0, MARK, G, None, id="no-level"),
        pytest.param(MARK | 0x10, 1, 0, MARK, G, "#other#localhost", id="sender"),
        pytest.param(MARK | 0x10, 101, 0, MARK, b"", None, id="101-groups"),
        pytest.param(MARK | 0x10, 1, 0, 0x81000080, G, None, id="hint"),
        pytest.param(MARK | 0x10, 1, 143_921, MARK, b"", None, id="over-144000"),
        pytest.param(MARK | 0x10, 1, 140_000 - 48 - 31, MARK, b"", None, id="over-140000"),
        pytest.param(MARK | 0x10000, 0, 0, MARK, b"", None, id="join-0-groups"),
        pytest.param(MARK | 0x10000, 1, 0, MARK, b"g" * 32, None, id="no-NUL"),
        pytest.param(MARK | 0x80010, 1, 0, MARK, G, None, id="GROUPS_MESS"),
    ],
)
async def test_a_malformed_header_drops_the_client(
    wire: Connect,
    spreadq_daemon: Daemon,
    type_: int,
    groups: int,
    data_len: int,
    hint: int,
    tail: bytes,
    sender: str | None,
) -> None:
    member, watcher = await member_and_watcher(wire, spreadq_daemon)
    bad = header(type_, sender or member.private_group, groups, data_len, hint) + tail
    await member.send_raw(bad)
    await expect_disconnect_of(watcher, member.private_group)
    assert await member.closed_by_daemon() == []
    # the daemon is still up
    async with await WireClient.connect(spreadq_daemon.address, "after"):
        pass


async def test_the_largest_allowed_message_is_delivered(
    wire: Connect, spreadq_daemon: Daemon
) -> None:
    member, watcher = await member_and_watcher(wire, spreadq_daemon)
    data = bytes(range(256)) * ((140_000 - 48 - 32) // 256) + b"x" * ((140_000 - 48 - 32) % 256)
    await member.send(Multicast(("g",), data))
    got = await watcher.receive()
    assert isinstance(got, DataMessage)
    assert got.data == data
    with pytest.raises(MessageTooLarge):
        Multicast(("g",), data + b"!")


async def test_a_client_that_vanishes_is_a_disconnect(
    wire: Connect, spreadq_daemon: Daemon
) -> None:
    member, watcher = await member_and_watcher(wire, spreadq_daemon)
    await member.aclose()
    message = await expect_disconnect_of(watcher, member.private_group)
    assert message.members == (watcher.private_group,)


async def test_disconnect_message_closes_the_socket(wire: Connect, spreadq_daemon: Daemon) -> None:
    member, watcher = await member_and_watcher(wire, spreadq_daemon)
    # say goodbye and keep the socket open: the daemon must act on the message alone
    await member.send(Disconnect())
    await expect_disconnect_of(watcher, member.private_group)
    assert await member.closed_by_daemon() == []  # EOF from the daemon, nothing before it


# --- delivery over sockets ----------------------------------------------------------------


async def test_leave_self_discard_and_hint_pass_through(
    wire: Connect, spreadq_daemon: Daemon
) -> None:
    member, watcher = await member_and_watcher(wire, spreadq_daemon)
    await member.send(
        Multicast(("g",), b"1", ServiceType.SAFE | ServiceType.SELF_DISCARD, mess_type=-32768)
    )
    got = await watcher.receive()
    assert isinstance(got, DataMessage)
    assert (got.data, got.mess_type, got.service) == (
        b"1",
        -32768,
        ServiceType.SAFE | ServiceType.SELF_DISCARD,
    )
    # a big-endian sender's hint arrives untouched (docs/design/spread-protocol.md#byte-order)
    be = struct.pack(">I32siIi", 0x10, member.private_group.encode(), 1, 0x00010200, 1)
    await member.send_raw(be + b"g".ljust(32, b"\0") + b"2")
    for client in (watcher, member):
        got = await client.receive()
        assert isinstance(got, DataMessage)
        assert (got.data, got.mess_type, got.endian_mismatch) == (b"2", 0x0102, True)
    await member.send(Leave("g"))
    assert await member.receive() == SelfLeave("g")
    left = await watcher.receive()
    assert isinstance(left, RegularMembership)
    assert left.cause is Cause.LEAVE


# --- the per-session queue limit ----------------------------------------------------------


@pytest.mark.spreadq_daemon(max_session_messages=10)
async def test_a_paused_reader_is_dropped_past_the_limit(
    wire: Connect, spreadq_daemon: Daemon
) -> None:
    member, watcher = await member_and_watcher(wire, spreadq_daemon)
    sender = await wire(spreadq_daemon.address, "sender")
    spreadq_daemon.faults.pause(member.private_group)
    for i in range(10):
        await sender.send(Multicast(("g",), b"%d" % i))
    assert [m.data for m in await watcher.receive_many(10)] == [b"%d" % i for i in range(10)]  # type: ignore[union-attr]
    assert spreadq_daemon.faults.queued("member") == 10
    await sender.send(Multicast(("g",), b"10"))
    assert isinstance(await watcher.receive(), DataMessage)
    await expect_disconnect_of(watcher, member.private_group)
    assert await member.closed_by_daemon() == []


@pytest.mark.spreadq_daemon(max_session_messages=10)
async def test_a_paused_reader_gets_everything_on_resume(
    wire: Connect, spreadq_daemon: Daemon
) -> None:
    member, watcher = await member_and_watcher(wire, spreadq_daemon)
    spreadq_daemon.faults.pause("member")
    for i in range(10):
        await watcher.send(Multicast(("g",), b"%d" % i))
    await watcher.receive_many(10)
    spreadq_daemon.faults.resume("member")
    got = await member.receive_many(10)
    assert [m.data for m in got] == [b"%d" % i for i in range(10)]  # type: ignore[union-attr]


@pytest.mark.spreadq_daemon(max_session_messages=50)
async def test_a_client_that_stops_reading_is_dropped(
    wire: Connect, spreadq_daemon: Daemon
) -> None:
    member, watcher = await member_and_watcher(wire, spreadq_daemon)
    payload = b"x" * 1024
    dropped = anyio.Event()

    async def watch() -> None:
        while True:
            message = await watcher.receive()
            if isinstance(message, RegularMembership):
                assert message.changed_member == member.private_group
                dropped.set()
                return

    with LIMIT(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch)
            sent = 0
            while not dropped.is_set():
                await watcher.send(
                    Multicast(("g",), payload, ServiceType.SELF_DISCARD | ServiceType.AGREED)
                )
                sent += 1
                if sent % 64 == 0:
                    await anyio.lowlevel.checkpoint()  # let the daemon and the watcher run
            assert sent < 100_000


# --- faults ---------------------------------------------------------------------------------


async def test_kill_closes_the_socket_and_members_see_a_disconnect(
    wire: Connect, spreadq_daemon: Daemon
) -> None:
    member, watcher = await member_and_watcher(wire, spreadq_daemon)
    assert spreadq_daemon.faults.sessions() == ("#watcher#localhost", "#member#localhost")
    spreadq_daemon.faults.kill("member")
    await expect_disconnect_of(watcher, member.private_group)
    assert await member.closed_by_daemon() == []
    with pytest.raises(LookupError):
        spreadq_daemon.faults.kill("member")


@pytest.mark.spreadq_daemon(daemons=("d1", "d2"))
async def test_partition_and_merge_over_sockets(wire: Connect, spreadq_daemon: Daemon) -> None:
    addresses = spreadq_daemon.addresses
    assert list(addresses) == ["d1", "d2"]
    assert addresses["d1"] != addresses["d2"]
    a = await wire(addresses["d1"], "a")
    b = await wire(addresses["d2"], "b")
    assert (a.private_group, b.private_group) == ("#a#d1", "#b#d2")
    await a.send(Join("g"))
    await a.receive()
    await b.send(Join("g"))
    await b.receive()
    joined = await a.receive()
    assert isinstance(joined, RegularMembership)
    assert joined.members == ("#a#d1", "#b#d2")

    spreadq_daemon.faults.partition([["d1"], ["d2"]])
    assert spreadq_daemon.faults.components() == (("d1",), ("d2",))
    for client, proc in ((a, "d1"), (b, "d2")):
        trans, reg = await client.receive_many(2)
        assert trans == TransitionalMembership("g", joined.group_id)
        assert isinstance(reg, RegularMembership)
        assert reg.cause is Cause.NETWORK
        assert reg.members == (client.private_group,)
        assert reg.group_id.proc_id == daemon_proc_id(proc)
        assert reg.group_id.index == 1
    await a.send(Multicast(("g", "#b#d2"), b"only-a"))
    assert await a.receive() == DataMessage(
        "#a#d1", ("g", "#b#d2"), ServiceType.AGREED, 0, b"only-a"
    )

    spreadq_daemon.faults.merge()
    for client, local in ((a, 1), (b, 0)):
        reg = await client.receive()  # no TRANS on a pure merge
        assert isinstance(reg, RegularMembership)
        assert reg.cause is Cause.NETWORK
        assert reg.members == ("#a#d1", "#b#d2")
        assert reg.vs_sets == (("#b#d2",), ("#a#d1",))  # ordered by old ring id
        assert reg.local_vs_set == local
    await a.send(Multicast(("g",), b"both"))
    for client in (a, b):
        got = await client.receive()
        assert isinstance(got, DataMessage)
        assert got.data == b"both"


async def test_input_sent_before_a_reset_is_still_delivered(
    wire: Connect, spreadq_daemon: Daemon
) -> None:
    # A client that closes with unread data makes its kernel send an RST; what the daemon
    # already holds must still be delivered, then the disconnect.
    member, watcher = await member_and_watcher(wire, spreadq_daemon)
    await watcher.send(Multicast(("g",), b"never read"))
    assert isinstance(await watcher.receive(), DataMessage)
    burst = [Multicast(("g",), b"%d" % i, ServiceType.AGREED) for i in range(200)]
    await member.send(*burst)
    await member.aclose()
    got = [await watcher.receive() for _ in range(201)]
    assert [m.data for m in got[:200]] == [b"%d" % i for i in range(200)]  # type: ignore[union-attr]
    assert isinstance(got[200], RegularMembership)
    assert got[200].cause is Cause.DISCONNECT


# --- one session's failure stays in that session ------------------------------------------


@pytest.mark.spreadq_daemon(max_session_messages=10)
async def test_input_after_a_drop_is_discarded(wire: Connect, spreadq_daemon: Daemon) -> None:
    # One write holds more messages to the member's own group than its queue may hold,
    # then more commands: the engine drops it midway, the rest must go nowhere.
    member, watcher = await member_and_watcher(wire, spreadq_daemon)
    spreadq_daemon.faults.pause("member")
    burst = [Multicast(("g",), b"%d" % i, ServiceType.AGREED) for i in range(11)]
    await member.send(*burst, Join("other"), Leave("g"), Multicast(("g",), b"late"))
    got = [await watcher.receive() for _ in range(11)]
    assert [m.data for m in got[:10]] == [b"%d" % i for i in range(10)]  # type: ignore[union-attr]
    assert isinstance(got[10], DataMessage)
    await expect_disconnect_of(watcher, member.private_group)
    await member.closed_by_daemon()
    assert spreadq_daemon.faults.sessions() == (watcher.private_group,)
    await watcher.send(Multicast(("g",), b"marker"))
    marker = await watcher.receive()  # nothing of "late" or "other" reached anyone
    assert isinstance(marker, DataMessage)
    assert marker.data == b"marker"
    async with await WireClient.connect(spreadq_daemon.address, "after"):
        pass


async def test_an_unexpected_error_drops_only_that_session(
    wire: Connect, spreadq_daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = spreadq_daemon.engine
    join = engine.join

    def failing_join(session_id: int, group: str) -> None:
        if group == "boom":
            raise RuntimeError("engine bug\nsecond line")
        join(session_id, group)

    monkeypatch.setattr(engine, "join", failing_join)
    member, watcher = await member_and_watcher(wire, spreadq_daemon)
    with capture_logs() as logs:
        await member.send(Join("boom"))
        await expect_disconnect_of(watcher, member.private_group)
    failed = [entry for entry in logs if entry["event"] == "session_failed"]
    assert len(failed) == 1, logs
    assert failed[0]["log_level"] == "error"
    assert failed[0]["error"] == "RuntimeError: engine bug second line"
    await watcher.send(Multicast(("g",), b"still up"))
    got = await watcher.receive()
    assert isinstance(got, DataMessage)
    assert got.data == b"still up"


# --- memory: one copy of a message, however many receivers ------------------------------


@pytest.mark.spreadq_daemon(max_session_messages=100)
async def test_a_large_body_is_held_once_not_copied_into_its_encoding(
    wire: Connect, spreadq_daemon: Daemon
) -> None:
    member, watcher = await member_and_watcher(wire, spreadq_daemon)
    spreadq_daemon.faults.pause(watcher.private_group)
    body = bytes(range(256)) * 40
    await member.send(Multicast(("g",), body), Multicast(("g",), b"small"))
    assert [m.data for m in await member.receive_many(2)] == [body, b"small"]  # type: ignore[union-attr]
    watcher_id = spreadq_daemon.engine.find_session("watcher").id
    large, small = spreadq_daemon.engine.take(watcher_id)
    assert isinstance(large.message, DataMessage)
    head, shared = large.wire
    assert shared is large.message.data  # the body is the message's own bytes object
    assert head + shared == encode_daemon_message(large.message)
    assert isinstance(small.message, DataMessage)
    assert small.wire == (encode_daemon_message(small.message),)


@pytest.mark.spreadq_daemon(max_session_messages=100)
async def test_queued_messages_are_not_copied_per_receiver_when_written(
    wire: Connect, spreadq_daemon: Daemon
) -> None:
    # Four receivers that stop reading while 50 messages of 135 kB wait for each: the
    # socket takes part, the rest must stay the queued messages' shared bytes, not a
    # joined copy per receiver (4 x 6.7 MB).
    receivers = [await wire(spreadq_daemon.address, f"r{i}") for i in range(4)]
    sender = await wire(spreadq_daemon.address, "sender")
    for receiver in receivers:
        await receiver.send(Join("g"))
        await receiver.receive()  # its own join
    for i, receiver in enumerate(receivers):
        await receiver.receive_many(len(receivers) - 1 - i)  # the later joins
        spreadq_daemon.faults.pause(receiver.private_group)
    body = bytes(135_000 - 48 - 32)
    await sender.send(*[Multicast(("g",), body) for _ in range(50)])
    await sender.send(Multicast((sender.private_group,), b"marker"))
    assert await sender.receive() == DataMessage(
        sender.private_group, (sender.private_group,), ServiceType.AGREED, 0, b"marker"
    )
    assert [spreadq_daemon.faults.queued(r.private_group) for r in receivers] == [50] * 4
    tracemalloc.start()
    try:
        for receiver in receivers:
            spreadq_daemon.faults.resume(receiver.private_group)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak:,} bytes allocated to write queued messages"


def test_partial_writes_keep_the_unwritten_rest_in_order() -> None:
    from spreadq.daemon.sessions import _write_buffers

    parts = [bytes([i]) * size for i, size in enumerate([1, 70_000, 3, 200_000, 5] * 3)]
    sent_side, received_side = socket.socketpair()
    with sent_side, received_side:
        sent_side.setblocking(False)
        received_side.setblocking(False)
        received = bytearray()
        rest: list[bytes | memoryview] | None = list(parts)
        rounds = 0
        while rest is not None:
            rest = _write_buffers(sent_side, rest)
            rounds += 1
            with contextlib.suppress(BlockingIOError):
                while chunk := received_side.recv(1 << 20):
                    received += chunk
        assert rounds > 1  # the socket did fill up in between
        assert received == b"".join(parts)


async def test_a_client_that_never_says_hello_is_closed_quietly(
    spreadq_daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "HANDSHAKE_TIMEOUT", 0.05)
    with capture_logs() as logs, LIMIT(5):
        async with await anyio.connect_tcp(spreadq_daemon.host, spreadq_daemon.port) as stream:
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await stream.receive()
    assert [entry for entry in logs if entry["log_level"] == "error"] == []
