"""Scenarios every Spread daemon must pass, run against the embedded and a real daemon.

A behaviour in which the two daemons differ makes one of these tests fail. Every wait is
bounded; "nothing happens" is checked by a marker message sent afterwards, which must be
the very next thing to arrive.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest
from spread_targets import DAEMON_NAME, SESSION_LIMIT, Target

import spreadq
from spreadq.client import Connection
from spreadq.daemon.engine import daemon_proc_id
from spreadq.errors import ConnectRejected, InvalidName, MessageTooLarge
from spreadq.testing import WireClient
from spreadq.wire.constants import Cause, RejectCode, ServiceType
from spreadq.wire.events import (
    DaemonMessage,
    DataMessage,
    GroupId,
    Join,
    RegularMembership,
    SelfLeave,
)

WAIT = 10.0
"""Seconds any one expected event may take."""


async def next_event(conn: Connection) -> DaemonMessage:
    with anyio.fail_after(WAIT):
        return await conn.receive()


async def next_view(conn: Connection, cause: Cause | None = None) -> RegularMembership:
    event = await next_event(conn)
    assert isinstance(event, RegularMembership), event
    if cause is not None:
        assert event.cause is cause, event
    return event


async def next_data(conn: Connection) -> DataMessage:
    event = await next_event(conn)
    assert isinstance(event, DataMessage), event
    return event


async def nothing_happened(conn: Connection) -> None:
    """Send a marker to ourselves; it must be the next event."""
    marker = b"marker"
    await conn.multicast(conn.private_group, marker)
    event = await next_data(conn)
    assert event.data == marker


def private(name: str) -> str:
    return f"#{name}#{DAEMON_NAME}"


# --- sessions ---------------------------------------------------------------------------


async def test_connect(spread_daemon: Target, unique: Iterator[str]) -> None:
    name = next(unique)
    async with spreadq.connect(spread_daemon.address, name) as conn:
        assert conn.private_group == private(name)
        assert conn.daemon_version[0] >= 4


async def test_daemon_chosen_name(spread_daemon: Target) -> None:
    async with spreadq.connect(spread_daemon.address) as conn:
        name = conn.private_group.split("#")[1]
        assert name.startswith("r")
        assert len(name) <= 9
        assert conn.private_group.endswith(f"#{DAEMON_NAME}")


async def test_duplicate_name_is_rejected(spread_daemon: Target, unique: Iterator[str]) -> None:
    name = next(unique)
    async with spreadq.connect(spread_daemon.address, name):
        with pytest.raises(ConnectRejected) as caught:
            async with spreadq.connect(spread_daemon.address, name):
                pass
    assert caught.value.code is RejectCode.REJECT_NOT_UNIQUE


@pytest.mark.parametrize(
    ("hello", "reply"),
    [
        pytest.param(bytes([5, 0, 1, 1, 3]) + b"a b", b"\xfb", id="space"),
        pytest.param(bytes([5, 0, 1, 1, 11]) + b"abcdefghijk", b"\xfb", id="11-bytes"),
        pytest.param(bytes([3, 0, 0, 1, 4]) + b"carl", b"\xf9", id="version-3.0.0"),
    ],
)
async def test_illegal_hellos_are_rejected(
    spread_daemon: Target, hello: bytes, reply: bytes
) -> None:
    with pytest.raises(InvalidName):
        spreadq.connect(spread_daemon.address, "a b")
    with anyio.fail_after(WAIT):
        async with await anyio.connect_tcp(spread_daemon.host, spread_daemon.port) as stream:
            await stream.send(hello)
            assert await stream.receive() == reply


# --- membership -------------------------------------------------------------------------


async def test_join_and_see_yourself(spread_daemon: Target, unique: Iterator[str]) -> None:
    name, group = next(unique), next(unique)
    async with spreadq.connect(spread_daemon.address, name) as conn:
        await conn.join(group)
        view = await next_view(conn, Cause.JOIN)
        assert view.group == group
        assert view.members == (private(name),)
        assert view.vs_sets == ((private(name),),)
        assert view.changed_member == private(name)
        assert view.group_id.proc_id == daemon_proc_id(DAEMON_NAME)
        assert view.group_id.index == 1


async def test_two_clients_see_each_other_join_and_leave(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    # names chosen so that byte order differs from connection order
    first, second, group = "z" + next(unique), "A" + next(unique), next(unique)
    async with (
        spreadq.connect(spread_daemon.address, first) as a,
        spreadq.connect(spread_daemon.address, second) as b,
    ):
        await a.join(group)
        own = await next_view(a, Cause.JOIN)
        await b.join(group)
        seen_a, seen_b = await next_view(a, Cause.JOIN), await next_view(b, Cause.JOIN)
        assert seen_a == seen_b
        assert seen_a.members == (private(second), private(first))  # byte order
        assert seen_a.changed_member == private(second)
        assert seen_a.group_id == GroupId(own.group_id.proc_id, own.group_id.time, 2)
        await b.leave(group)
        assert await next_event(b) == SelfLeave(group)
        left = await next_view(a, Cause.LEAVE)
        assert left.members == (private(first),)
        assert left.changed_member == private(second)
        assert left.group_id.index == 3
        await nothing_happened(b)  # the leaver hears nothing more of the group


async def test_join_twice_and_leave_a_foreign_group_do_nothing(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    group, other = next(unique), next(unique)
    async with spreadq.connect(spread_daemon.address, next(unique)) as conn:
        await conn.join(group)
        await next_view(conn)
        await conn.join(group)
        await conn.leave(other)
        await nothing_happened(conn)


async def test_group_ids_count_and_repeat_after_the_group_empties(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    group = next(unique)
    async with (
        spreadq.connect(spread_daemon.address, next(unique)) as a,
        spreadq.connect(spread_daemon.address, next(unique)) as b,
    ):
        await a.join(group)
        first = (await next_view(a)).group_id
        await b.join(group)
        assert (await next_view(a)).group_id.index == 2
        await next_view(b)
        await b.leave(group)
        await next_event(b)
        assert (await next_view(a)).group_id.index == 3
        await a.leave(group)
        await next_event(a)
        await a.join(group)
        assert (await next_view(a)).group_id == first  # docs/design/membership.md#group-ids-repeat


async def test_a_killed_client_is_a_disconnect(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    victim, group = next(unique), next(unique)
    script = (
        "import sys, anyio, spreadq\n"
        "async def main():\n"
        "    async with spreadq.connect(sys.argv[1], sys.argv[2]) as conn:\n"
        "        await conn.join(sys.argv[3])\n"
        "        await conn.flush()\n"
        "        await anyio.sleep_forever()\n"
        "anyio.run(main)\n"
    )
    async with spreadq.connect(spread_daemon.address, next(unique)) as watcher:
        await watcher.join(group)
        await next_view(watcher)
        process = await anyio.open_process(
            [sys.executable, "-c", script, spread_daemon.address, victim, group]
        )
        async with process:
            joined = await next_view(watcher, Cause.JOIN)
            assert joined.changed_member == private(victim)
            process.kill()  # SIGKILL: no goodbye
            gone = await next_view(watcher, Cause.DISCONNECT)
        assert gone.changed_member == private(victim)
        assert gone.members == (watcher.private_group,)


async def test_a_client_closing_its_socket_is_a_disconnect(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    group = next(unique)
    async with spreadq.connect(spread_daemon.address, next(unique)) as watcher:
        await watcher.join(group)
        await next_view(watcher)
        client = await WireClient.connect(spread_daemon.address, next(unique), wait_limit=WAIT)
        await client.send(Join(group))
        await next_view(watcher, Cause.JOIN)
        await client.aclose()
        assert (await next_view(watcher, Cause.DISCONNECT)).changed_member == client.private_group


async def test_membership_flag_off_gets_data_only(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    group = next(unique)
    async with spreadq.connect(spread_daemon.address, next(unique), membership=False) as quiet:
        await quiet.join(group)
        await quiet.multicast(group, b"data")
        assert (await next_data(quiet)).data == b"data"
        await quiet.leave(group)
        await nothing_happened(quiet)


# --- data -------------------------------------------------------------------------------


async def test_agreed_traffic_arrives_in_one_order(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    group, count = next(unique), 200
    async with (
        spreadq.connect(spread_daemon.address, next(unique)) as r1,
        spreadq.connect(spread_daemon.address, next(unique)) as r2,
        spreadq.connect(spread_daemon.address, next(unique)) as s1,
        spreadq.connect(spread_daemon.address, next(unique)) as s2,
    ):
        await r1.join(group)
        await next_view(r1)
        await r2.join(group)
        await next_view(r1)
        await next_view(r2)

        async def send(conn: Connection, tag: bytes) -> None:
            for i in range(count):
                await conn.multicast(group, tag + b"%d" % i)
                if i % 20 == 0:
                    await anyio.lowlevel.checkpoint()

        async def collect(conn: Connection, into: list[bytes]) -> None:
            while len(into) < 2 * count:
                into.append((await next_data(conn)).data)

        seen1: list[bytes] = []
        seen2: list[bytes] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(collect, r1, seen1)
            tasks.start_soon(collect, r2, seen2)
            tasks.start_soon(send, s1, b"a")
            tasks.start_soon(send, s2, b"b")
        assert seen1 == seen2
        assert sorted(seen1) == sorted(
            [b"a%d" % i for i in range(count)] + [b"b%d" % i for i in range(count)]
        )
        assert [m for m in seen1 if m.startswith(b"a")] == [b"a%d" % i for i in range(count)]


async def test_a_multi_group_multicast_is_delivered_once(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    g1, g2, nobody = next(unique), next(unique), next(unique)
    async with (
        spreadq.connect(spread_daemon.address, next(unique)) as member,
        spreadq.connect(spread_daemon.address, next(unique)) as sender,
    ):
        await member.join(g1)
        await next_view(member)
        await member.join(g2)
        await next_view(member)
        groups = (g1, g2, member.private_group, nobody)
        await sender.multicast(groups, b"once", ServiceType.SAFE, mess_type=0x1234)
        got = await next_data(member)
        assert got == DataMessage(sender.private_group, groups, ServiceType.SAFE, 0x1234, b"once")
        await nothing_happened(member)
        await nothing_happened(sender)  # an open group: the sender is not a member


async def test_self_delivery_and_self_discard(spread_daemon: Target, unique: Iterator[str]) -> None:
    group = next(unique)
    async with spreadq.connect(spread_daemon.address, next(unique)) as conn:
        await conn.join(group)
        await next_view(conn)
        await conn.multicast(group, b"dropped", self_discard=True)
        await conn.multicast(group, b"kept", mess_type=-1)
        got = await next_data(conn)
        assert (got.data, got.mess_type, got.service) == (b"kept", -1, ServiceType.AGREED)


async def test_unknown_group_and_no_member_deliver_nothing(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    async with spreadq.connect(spread_daemon.address, next(unique)) as conn:
        await conn.multicast(next(unique), b"lost")
        await nothing_happened(conn)


async def test_a_big_endian_hint_passes_through(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    group = next(unique)
    async with spreadq.connect(spread_daemon.address, next(unique)) as member:
        await member.join(group)
        await next_view(member)
        client = await WireClient.connect(spread_daemon.address, next(unique), wait_limit=WAIT)
        async with client:
            sender = client.private_group.encode().ljust(32, b"\0")
            header = struct.pack(">I32siIi", 0x10, sender, 1, 0x00010200, 2)
            await client.send_raw(header + group.encode().ljust(32, b"\0") + b"be")
            got = await next_data(member)
        assert (got.data, got.mess_type, got.endian_mismatch) == (b"be", 0x0102, True)


# --- limits -----------------------------------------------------------------------------


async def test_an_oversize_message_is_refused_and_the_daemon_stays_up(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    group = next(unique)
    async with spreadq.connect(spread_daemon.address, next(unique)) as conn:
        await conn.join(group)
        await next_view(conn)
        with pytest.raises(MessageTooLarge):
            await conn.multicast(group, bytes(140_000 - 48 - 32 + 1))
        biggest = bytes(range(256)) * 500 + bytes(140_000 - 48 - 32 - 128_000)
        await conn.multicast(group, biggest)
        assert (await next_data(conn)).data == biggest
    async with spreadq.connect(spread_daemon.address, next(unique)):
        pass


async def test_a_malformed_header_drops_the_client(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    group = next(unique)
    async with spreadq.connect(spread_daemon.address, next(unique)) as watcher:
        await watcher.join(group)
        await next_view(watcher)
        client = await WireClient.connect(spread_daemon.address, next(unique), wait_limit=WAIT)
        async with client:
            await client.send(Join(group))
            await next_view(watcher, Cause.JOIN)
            sender = client.private_group.encode().ljust(32, b"\0")
            agreed_and_safe = struct.pack("<I32siIi", 0x80000030 | 0x80, sender, 1, 0x80000080, 0)
            await client.send_raw(agreed_and_safe + group.encode().ljust(32, b"\0"))
            gone = await next_view(watcher, Cause.DISCONNECT)
            assert gone.changed_member == client.private_group
            unread = await client.closed_by_daemon()
            assert [type(m) for m in unread] == [RegularMembership]  # only its own join


async def test_a_reader_that_stops_is_dropped_past_the_session_limit(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    group = next(unique)
    async with spreadq.connect(spread_daemon.address, next(unique)) as watcher:
        await watcher.join(group)
        await next_view(watcher)
        slow = await WireClient.connect(spread_daemon.address, next(unique), wait_limit=WAIT)
        async with slow:
            await slow.send(Join(group))
            await slow.receive()  # its own join; from now on it reads nothing
            await next_view(watcher, Cause.JOIN)
            payload = bytes(1024)
            sent = 0
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tasks:

                    async def flood() -> None:
                        nonlocal sent
                        while True:
                            await watcher.multicast(group, payload, self_discard=True)
                            sent += 1
                            if sent % 32 == 0:
                                await watcher.flush()

                    tasks.start_soon(flood)
                    gone = await next_view(watcher, Cause.DISCONNECT)
                    tasks.cancel_scope.cancel()
            assert gone.changed_member == slow.private_group
            assert sent > SESSION_LIMIT


async def test_disconnect_walks_the_groups_in_name_order(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    tag = next(unique)
    groups = [f"zz{tag}", f"Ab{tag}", f"m{tag}"]
    async with spreadq.connect(spread_daemon.address, next(unique)) as watcher:
        client = await WireClient.connect(spread_daemon.address, next(unique), wait_limit=WAIT)
        for group in groups:
            await watcher.join(group)
            await next_view(watcher)
            await client.send(Join(group))
            await next_view(watcher)
        await client.disconnect()
        seen = [await next_view(watcher, Cause.DISCONNECT) for _ in groups]
        assert [view.group for view in seen] == sorted(groups)
        assert {view.changed_member for view in seen} == {client.private_group}


async def test_members_are_listed_in_byte_order(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    tag, group = next(unique)[1:], next(unique)
    names = [f"aa{tag}", f"__{tag}", f"W7{tag}", f"AA{tag}", f"99{tag}"]
    async with spreadq.connect(spread_daemon.address, next(unique)) as watcher:
        await watcher.join(group)
        await next_view(watcher)
        clients = [
            await WireClient.connect(spread_daemon.address, name, wait_limit=WAIT) for name in names
        ]
        for client in clients:
            await client.send(Join(group))
            view = await next_view(watcher)
        members = [private(name) for name in names] + [watcher.private_group]
        assert list(view.members) == sorted(members, key=lambda m: m.encode())
        for client in clients:
            await client.aclose()


async def test_a_joiner_gets_exactly_the_traffic_after_its_join(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    group = next(unique)
    async with (
        spreadq.connect(spread_daemon.address, next(unique)) as watcher,
        spreadq.connect(spread_daemon.address, next(unique)) as joiner,
        spreadq.connect(spread_daemon.address, next(unique)) as sender,
    ):
        await watcher.join(group)
        await next_view(watcher)
        count = 300

        async def send() -> None:
            for i in range(count):
                await sender.multicast(group, b"%d" % i)
                if i == 100:
                    await joiner.join(group)
                if i % 10 == 0:
                    await anyio.lowlevel.checkpoint()

        watched: list[DaemonMessage] = []
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(send)
            while len(watched) < count + 1:
                watched.append(await next_event(watcher))
        position = next(i for i, m in enumerate(watched) if isinstance(m, RegularMembership))
        after = [m.data for m in watched[position + 1 :] if isinstance(m, DataMessage)]
        own = await next_view(joiner, Cause.JOIN)
        assert own == watched[position]
        got = [(await next_data(joiner)).data for _ in after]
        assert got == after


async def test_an_old_client_skips_the_auth_exchange(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    name = next(unique)
    expected = bytes([1, 5, 0, 1, len(private(name))]) + private(name).encode()
    with anyio.fail_after(WAIT):
        async with await anyio.connect_tcp(spread_daemon.host, spread_daemon.port) as stream:
            await stream.send(bytes([3, 15, 0, 1, len(name)]) + name.encode())
            received = b""
            while len(received) < len(expected):
                received += await stream.receive()
    assert received == expected


async def test_more_than_100_groups_drops_the_sender(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    group = next(unique)
    async with spreadq.connect(spread_daemon.address, next(unique)) as watcher:
        await watcher.join(group)
        await next_view(watcher)
        client = await WireClient.connect(spread_daemon.address, next(unique), wait_limit=WAIT)
        async with client:
            await client.send(Join(group))
            await next_view(watcher, Cause.JOIN)
            sender = client.private_group.encode().ljust(32, b"\0")
            head = struct.pack("<I32siIi", 0x80000090, sender, 101, 0x80000080, 0)
            await client.send_raw(head + group.encode().ljust(32, b"\0") * 101)
            gone = await next_view(watcher, Cause.DISCONNECT)
            assert gone.changed_member == client.private_group


async def test_the_bytes_of_a_join_a_multicast_and_a_leave(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    """Byte for byte what libspread would send and receive (docs/design/spread-protocol.md)."""
    name, group = next(unique), next(unique)
    me = private(name).encode()

    def pad(raw: bytes) -> bytes:
        return raw.ljust(32, b"\0")

    async def read_exactly(stream: anyio.abc.ByteStream, size: int) -> bytes:
        data = b""
        while len(data) < size:
            data += await stream.receive(size - len(data))
        return data

    with anyio.fail_after(WAIT):
        async with await anyio.connect_tcp(spread_daemon.host, spread_daemon.port) as stream:
            await stream.send(bytes([5, 0, 1, 1, len(name)]) + name.encode())
            assert await read_exactly(stream, 6) == b"\x05NULL "
            await stream.send(b"NULL".ljust(90, b"\0"))
            assert await read_exactly(stream, 5 + len(me)) == bytes([1, 5, 0, 1, len(me)]) + me

            join = struct.pack("<I32siIi", 0x80010080, me, 1, 0x80000080, 0) + pad(group.encode())
            await stream.send(join)
            reg = await read_exactly(stream, 48 + 32 + 56)
            time_field = reg[48 + 32 + 4 : 48 + 32 + 8]
            expected = struct.pack("<I32siIi", 0x80001180, group.encode(), 1, 0x80000080, 56)
            expected += pad(me) + struct.pack("<i", daemon_proc_id(DAEMON_NAME)) + time_field
            expected += struct.pack("<iII", 1, 1, 0) + struct.pack("<I", 1) + pad(me)
            assert reg == expected

            safe = struct.pack("<I32siIi", 0x800000A0, me, 1, 0x80000180, 5)
            await stream.send(safe + pad(group.encode()) + b"hello")
            assert await read_exactly(stream, 48 + 32 + 5) == safe + pad(group.encode()) + b"hello"

            leave = struct.pack("<I32siIi", 0x80020080, me, 1, 0x80000080, 0) + pad(group.encode())
            await stream.send(leave)
            self_leave = struct.pack("<I32siIi", 0x80000280, group.encode(), 0, 0x80000080, 0)
            assert await read_exactly(stream, 48) == self_leave


@pytest.mark.parametrize("group", ["#hash", "with space"])
async def test_any_group_name_can_be_joined(
    spread_daemon: Target, unique: Iterator[str], group: str
) -> None:
    """The daemon accepts group names no client library would send
    (docs/design/spread-protocol.md#names).

    A ``#`` group can be joined, but multicasts to it are routed as to a private group
    and go nowhere.
    """
    client = await WireClient.connect(spread_daemon.address, next(unique), wait_limit=WAIT)
    async with client:
        me = client.private_group.encode().ljust(32, b"\0")
        name = group.encode().ljust(32, b"\0")
        await client.send_raw(struct.pack("<I32siIi", 0x80010080, me, 1, 0x80000080, 0) + name)
        view = await client.receive()
        assert isinstance(view, RegularMembership)
        assert view.group == group
        multicast = struct.pack("<I32siIi", 0x80000090, me, 1, 0x80000080, 1) + name + b"x"
        await client.send_raw(multicast)
        if group.startswith("#"):
            await client.send_raw(
                struct.pack("<I32siIi", 0x80000090, me, 1, 0x80000080, 1) + me + b"m"
            )
            marker = await client.receive()
            assert isinstance(marker, DataMessage)
            assert marker.data == b"m"  # the message to "#hash" went nowhere
        else:
            got = await client.receive()
            assert isinstance(got, DataMessage)
            assert got.data == b"x"
