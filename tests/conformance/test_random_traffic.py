"""Random joins, leaves and multicasts over sockets: one order of views and messages.

The same seeded traffic as the engine's simulation (``tests/daemon/interleaving.py``),
played by six clients on the embedded daemon and, with ``SPREADQ_SPREAD_DAEMON``, on a
real Spread. Clients act one after another without waiting for deliveries; each reads
everything it is sent. At the end every client sends a marker to a group all of them
joined first and never leave; once a client has every marker it has everything that
was ordered before them (each client's own traffic precedes its marker). Then every
member's views and messages are checked, interleaved, against an anchor's.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest
from spread_targets import Target

import spreadq
from spreadq.client import Connection
from spreadq.wire.events import DaemonMessage, DataMessage, RegularMembership

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))
from interleaving import check_one_order, random_traffic

WAIT = 20.0
CLIENTS = 6
STEPS = 150


async def join_and_see(conn: Connection, group: str, into: list[DaemonMessage]) -> None:
    """Join ``group`` and read up to our own join view (setup: nothing else is moving)."""
    await conn.join(group)
    while True:
        event = await conn.receive()
        into.append(event)
        if (
            isinstance(event, RegularMembership)
            and event.group == group
            and event.changed_member == conn.private_group
        ):
            return


async def read_until_markers(
    conn: Connection, sync: str, into: list[DaemonMessage], markers: int
) -> None:
    seen = 0
    while seen < markers:
        event = await conn.receive()
        into.append(event)
        if isinstance(event, DataMessage) and event.groups == (sync,):
            seen += event.data.startswith(b"end")


@pytest.mark.parametrize("seed", range(2))
async def test_random_traffic_keeps_one_order_at_every_member(
    spread_daemon: Target, unique: Iterator[str], seed: int
) -> None:
    prefix = next(unique)
    groups = [f"{prefix}g{i}" for i in range(3)]
    sync = f"{prefix}s"
    anchors = {groups[0]: [0, 1], groups[1]: [2], groups[2]: [3, 0]}
    setup, plan = random_traffic(random.Random(seed), CLIENTS, groups, anchors, STEPS)
    with anyio.fail_after(WAIT):
        async with AsyncExitStack() as stack:
            conns = [
                await stack.enter_async_context(
                    spreadq.connect(spread_daemon.address, next(unique))
                )
                for _ in range(CLIENTS)
            ]
            received: dict[str, list[DaemonMessage]] = {c.private_group: [] for c in conns}
            # setup, one join at a time: everyone joins sync, then the anchors their
            # groups; the members already there see each join
            inside: dict[str, list[Connection]] = {}
            for group, conn in [(sync, c) for c in conns] + [
                (step.groups[0], conns[step.client]) for step in setup
            ]:
                await join_and_see(conn, group, received[conn.private_group])
                for earlier in inside.setdefault(group, []):
                    received[earlier.private_group].append(await earlier.receive())
                inside[group].append(conn)
            async with anyio.create_task_group() as readers:
                for conn in conns:
                    readers.start_soon(
                        read_until_markers, conn, sync, received[conn.private_group], CLIENTS
                    )
                for step in plan:
                    conn = conns[step.client]
                    if step.kind == "join":
                        await conn.join(step.groups[0])
                    elif step.kind == "leave":
                        await conn.leave(step.groups[0])
                    else:
                        await conn.multicast(list(step.groups), step.data)
                for n, conn in enumerate(conns):
                    await conn.multicast(sync, b"end%d" % n)
    named = {g: [conns[c].private_group for c in cs] for g, cs in anchors.items()}
    named[sync] = [c.private_group for c in conns]
    assert check_one_order(received, named) > 20
