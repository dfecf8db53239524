"""spreadq.connect() against a real Spread daemon (``SPREADQ_SPREAD_DAEMON``).

The scenarios of the interop issue: connect; join and see yourself; two clients see each
other's join and leave with identical member lists and group ids; a client process
killed with SIGKILL is seen as a disconnect; two senders' AGREED traffic arrives in the
same order at two receivers; a multi-group multicast is delivered once; an oversize
message raises MessageTooLarge and the daemon stays up. Each test uses its own group
names, so the tests share one daemon per module.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import anyio
import pytest
from real_daemon import RealDaemon

from spreadq.client import Connection, connect
from spreadq.errors import ConnectRejected, MessageTooLarge
from spreadq.wire.constants import SAFE_MESSAGE_LIMIT, Cause, RejectCode, ServiceType
from spreadq.wire.events import DaemonMessage, DataMessage, RegularMembership, SelfLeave

pytestmark = pytest.mark.interop

WAIT = 10.0


async def next_membership(conn: Connection, group: str) -> RegularMembership:
    """The next regular membership of ``group``, skipping everything else."""
    while True:
        event = await conn.receive()
        if isinstance(event, RegularMembership) and event.group == group:
            return event


async def data_messages(conn: Connection, count: int) -> list[DataMessage]:
    """The next ``count`` data messages, skipping membership events."""
    found: list[DataMessage] = []
    while len(found) < count:
        event = await conn.receive()
        if isinstance(event, DataMessage):
            found.append(event)
    return found


@pytest.mark.parametrize("via", ["tcp", "unix", "localhost"])
async def test_connect(real_daemon: RealDaemon, via: str) -> None:
    address = {
        "tcp": real_daemon.tcp_address,
        "unix": real_daemon.unix_address,
        "localhost": f"{real_daemon.port}@localhost",
    }[via]
    with anyio.fail_after(WAIT):
        async with connect(address, name=f"c-{via[:4]}") as conn:
            assert conn.private_group == f"#c-{via[:4]}#localhost"
            assert conn.daemon_version == (5, 0, 1)
        async with connect(address) as chosen:  # the daemon picks a name
            assert chosen.private_group.startswith("#r")
            assert chosen.private_group.endswith("#localhost")


async def test_a_taken_name_is_rejected(real_daemon: RealDaemon) -> None:
    with anyio.fail_after(WAIT):
        async with connect(real_daemon.tcp_address, name="taken"):
            with pytest.raises(ConnectRejected) as info:
                async with connect(real_daemon.tcp_address, name="taken"):
                    pass  # pragma: no cover
    assert info.value.code is RejectCode.REJECT_NOT_UNIQUE


async def test_join_and_see_yourself(real_daemon: RealDaemon) -> None:
    with anyio.fail_after(WAIT):
        async with connect(real_daemon.tcp_address, name="self") as conn:
            await conn.join("i-self")
            view = await next_membership(conn, "i-self")
            assert view.members == ("#self#localhost",)
            assert view.cause is Cause.JOIN
            assert view.changed_member == "#self#localhost"
            assert view.group_id.index == 1
            await conn.leave("i-self")
            assert await conn.receive() == SelfLeave("i-self")


async def test_two_clients_see_each_others_join_and_leave(real_daemon: RealDaemon) -> None:
    group = "i-pair"
    with anyio.fail_after(WAIT):
        async with (
            connect(real_daemon.tcp_address, name="alice") as alice,
            connect(real_daemon.unix_address, name="bob") as bob,
        ):
            await alice.join(group)
            first = await next_membership(alice, group)
            await bob.join(group)
            seen_by_alice = await next_membership(alice, group)
            seen_by_bob = await next_membership(bob, group)
            assert seen_by_alice == seen_by_bob  # same list, same order, same gid
            assert seen_by_alice.members == ("#alice#localhost", "#bob#localhost")
            assert seen_by_alice.changed_member == "#bob#localhost"
            assert seen_by_alice.group_id.index == first.group_id.index + 1
            await bob.leave(group)
            after_leave = await next_membership(alice, group)
            assert after_leave.cause is Cause.LEAVE
            assert after_leave.members == ("#alice#localhost",)
            assert after_leave.changed_member == "#bob#localhost"
            assert await bob.receive() == SelfLeave(group)


VICTIM = """
import sys
import anyio
from spreadq.client import connect

async def main() -> None:
    async with connect(sys.argv[1], name="victim") as conn:
        await conn.join(sys.argv[2])
        await conn.receive()
        print(conn.private_group, flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


async def test_a_client_killed_with_sigkill_is_seen_as_a_disconnect(
    real_daemon: RealDaemon,
) -> None:
    group = "i-kill"
    with anyio.fail_after(WAIT * 2):
        async with connect(real_daemon.tcp_address, name="watcher") as watcher:
            await watcher.join(group)
            await next_membership(watcher, group)
            async with await anyio.open_process(
                [sys.executable, "-c", VICTIM, real_daemon.tcp_address, group],
                stdout=subprocess.PIPE,
            ) as victim:
                assert victim.stdout is not None
                output = b""  # unconfigured structlog may print lines before the name
                while b"#victim#localhost\n" not in output:
                    chunk = await victim.stdout.receive()
                    output += chunk
                joined = await next_membership(watcher, group)
                assert joined.members == ("#victim#localhost", "#watcher#localhost")
                victim.kill()  # SIGKILL: no disconnect message is ever sent
                await victim.wait()
            gone = await next_membership(watcher, group)
            assert gone.cause is Cause.DISCONNECT
            assert gone.changed_member == "#victim#localhost"
            assert gone.members == ("#watcher#localhost",)


async def test_agreed_traffic_from_two_senders_arrives_in_one_order(
    real_daemon: RealDaemon,
) -> None:
    group, count = "i-order", 300
    address = real_daemon.tcp_address
    with anyio.fail_after(WAIT * 2):
        async with (
            connect(address, name="r1") as r1,
            connect(address, name="r2") as r2,
            connect(address, name="s1", membership=False) as s1,
            connect(address, name="s2", membership=False) as s2,
        ):
            for receiver in (r1, r2):
                await receiver.join(group)
            await next_membership(r1, group)
            await next_membership(r2, group)
            await next_membership(r1, group)  # r2's join, as r1 sees it
            received: dict[str, list[DataMessage]] = {}

            async def receive(name: str, conn: Connection) -> None:
                received[name] = await data_messages(conn, 2 * count)

            async def send(conn: Connection, tag: bytes) -> None:
                for i in range(count):
                    await conn.multicast(group, tag + i.to_bytes(4, "big"))
                    if i % 10 == 0:
                        await anyio.lowlevel.checkpoint()  # interleave the senders

            async with anyio.create_task_group() as tg:
                tg.start_soon(receive, "r1", r1)
                tg.start_soon(receive, "r2", r2)
                tg.start_soon(send, s1, b"A")
                tg.start_soon(send, s2, b"B")
    order_1 = [message.data for message in received["r1"]]
    order_2 = [message.data for message in received["r2"]]
    assert order_1 == order_2
    for tag in (b"A", b"B"):  # all of each sender's messages, in its order
        mine = [data for data in order_1 if data.startswith(tag)]
        assert mine == [tag + i.to_bytes(4, "big") for i in range(count)]
    assert {message.service for message in received["r1"]} == {ServiceType.AGREED}


async def test_a_multi_group_multicast_is_delivered_once(real_daemon: RealDaemon) -> None:
    groups: Sequence[str] = ("i-multi-a", "i-multi-b")
    with anyio.fail_after(WAIT):
        async with (
            connect(real_daemon.tcp_address, name="member") as member,
            connect(real_daemon.tcp_address, name="sender", membership=False) as sender,
        ):
            for group in groups:
                await member.join(group)
                await next_membership(member, group)
            await sender.multicast(groups, b"to both", mess_type=7)
            await sender.multicast([*groups, member.private_group], b"and to me")
            await sender.multicast(groups[0], b"end")
            events: list[DaemonMessage] = []
            while not (isinstance(event := await member.receive(), DataMessage)) or (
                event.data != b"end"
            ):
                events.append(event)
            assert events == [
                DataMessage("#sender#localhost", tuple(groups), ServiceType.AGREED, 7, b"to both"),
                DataMessage(
                    "#sender#localhost",
                    (*groups, member.private_group),
                    ServiceType.AGREED,
                    0,
                    b"and to me",
                ),
            ]


async def test_an_oversize_message_is_refused_and_the_daemon_stays_up(
    real_daemon: RealDaemon,
) -> None:
    group = "i-size"
    largest = SAFE_MESSAGE_LIMIT - 48 - 32
    with anyio.fail_after(WAIT):
        async with connect(real_daemon.tcp_address, name="big") as conn:
            await conn.join(group)
            await next_membership(conn, group)
            with pytest.raises(MessageTooLarge):
                await conn.multicast(group, bytes(largest + 1))
            await conn.multicast(group, bytes(largest))
            await conn.multicast(group, b"still here", self_discard=False)
            got = await data_messages(conn, 2)
            assert [len(message.data) for message in got] == [largest, len(b"still here")]
    assert real_daemon.alive


async def test_self_discard_and_membership_flag(real_daemon: RealDaemon) -> None:
    group = "i-flags"
    with anyio.fail_after(WAIT):
        async with (
            connect(real_daemon.tcp_address, name="quiet", membership=False) as quiet,
            connect(real_daemon.tcp_address, name="loud") as loud,
        ):
            await quiet.join(group)
            await loud.join(group)
            await next_membership(loud, group)
            await quiet.multicast(group, b"not to myself", self_discard=True)
            # loud sends only once it has the first: two senders' messages are ordered
            # as the daemon reads them, and it may read the second socket first
            (first,) = await data_messages(loud, 1)
            assert first.service == ServiceType.AGREED | ServiceType.SELF_DISCARD
            assert first.data == b"not to myself"
            await loud.multicast(group, b"end")
            # no membership events for a membership=False connection, and not its own
            assert await quiet.receive() == DataMessage(
                "#loud#localhost", (group,), ServiceType.AGREED, 0, b"end"
            )
            assert [message.data for message in await data_messages(loud, 1)] == [b"end"]
