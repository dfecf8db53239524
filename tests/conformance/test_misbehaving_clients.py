"""Clients that misbehave must never stop a daemon from serving everybody else.

Each scenario runs a bad client (a separate process written with nothing but
:mod:`socket`, where it needs to act on its own) and checks that the daemon stays up and
answers a well-behaved client's round trip, a message to its own private group, within
:data:`ROUND_TRIP` seconds while the bad client is at it and after it is gone.
"""

from __future__ import annotations

import gc
import struct
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from spread_targets import Target

import spreadq
from spreadq.client import Connection
from spreadq.wire.constants import Cause
from spreadq.wire.events import DataMessage, RegularMembership

ROUND_TRIP = 0.05
"""Seconds a well-behaved client's round trip may take while a bad client is at work."""
WAIT = 10.0
"""Seconds anything else may take."""
ROUNDS = 20
"""Round trips measured while a bad client is at work."""

PRELUDE = r"""
import socket, struct, sys

def pad(name):
    return name.encode().ljust(32, b"\0")

def connect(host, port, name):
    sock = socket.create_connection((host, int(port)))
    sock.sendall(bytes([5, 0, 1, 1, len(name)]) + name.encode())
    got = b""
    while len(got) < 6:
        got += sock.recv(6 - len(got))
    sock.sendall(b"NULL".ljust(90, b"\0"))
    me = f"#{name}#localhost".encode()
    got = b""
    while len(got) < 5 + len(me):
        got += sock.recv(5 + len(me) - len(got))
    assert got[0] == 1, got
    return sock, me

def join(me, group):
    return struct.pack("<I32siIi", 0x80010080, me, 1, 0x80000080, 0) + pad(group)

def multicast(me, group, data):
    head = struct.pack("<I32siIi", 0x80000090, me, 1, 0x80000080, len(data))
    return head + pad(group) + data

host, port, name, group = sys.argv[1:5]
sock, me = connect(host, port, name)
"""

FLOOD_FOREVER = (
    PRELUDE
    + """
chunk = multicast(me, group, bytes(1024)) * 256
sock.sendall(chunk)
print("flooding", flush=True)
while True:  # never reads, never pauses
    sock.sendall(chunk)
"""
)
"""Multicasts 1 KB messages to a group it is not in, as fast as the daemon takes them."""

FLOOD_OWN_GROUP = (
    PRELUDE
    + """
flood = group + "f"  # a group of its own: the watcher of `group` is not flooded with it
chunk = multicast(me, flood, bytes(1024)) * 256
sock.sendall(join(me, group) + join(me, flood))
print("flooding", flush=True)
try:
    while True:  # its own messages come back; it never reads them
        sock.sendall(chunk)
except OSError:
    print("dropped", flush=True)
sys.stdin.read()
"""
)
"""Joins the watched group and a group of its own, and multicasts to its own group
without reading (its messages come back to it), until the daemon drops it. The watcher
sees the drop in the watched group, without reading the flood: a watcher in the flooded
group had to keep up with it, and on a loaded machine real Spread dropped the watcher too."""

JOIN_THOUSANDS = (
    PRELUDE
    + """
sock.sendall(b"".join(join(me, f"{name}.{i}") for i in range(5000)) + join(me, group))
print("joined", flush=True)
sys.stdin.read()  # holds 5,001 groups, reads nothing, until the test is done
"""
)
"""Joins 5,000 groups and then the watched group in one write, and never reads."""


JOIN = 0x00010000
AGREED = 0x00000010


def pad(name: str) -> bytes:
    return name.encode().ljust(32, b"\0")


def header(kind: int, sender: str, data_len: int) -> bytes:
    """A little-endian message header for one group."""
    return struct.pack("<I32siIi", 0x80000080 | kind, sender.encode(), 1, 0x80000080, data_len)


async def raw_session(target: Target, name: str) -> tuple[anyio.abc.SocketStream, str]:
    """A session opened by hand on a plain socket: the stream and its private group."""
    me = f"#{name}#localhost"
    with anyio.fail_after(WAIT):
        stream = await anyio.connect_tcp(target.host, target.port)
        try:
            await stream.send(bytes([5, 0, 1, 1, len(name)]) + name.encode())
            # the daemon sends the auth list's length and the list in separate writes:
            # read exactly their bytes, or the accept that follows is read short
            methods = await receive_exactly(stream, 1)
            assert await receive_exactly(stream, methods[0]) == b"NULL "
            await stream.send(b"NULL".ljust(90, b"\0"))
            accept = await receive_exactly(stream, 5 + len(me))
            assert accept == bytes([1, 5, 0, 1, len(me)]) + me.encode()
        except BaseException:
            await stream.aclose()
            raise
    return stream, me


async def receive_exactly(stream: anyio.abc.SocketStream, count: int) -> bytes:
    """``count`` bytes from ``stream``, however the peer's writes split them."""
    data = b""
    while len(data) < count:
        data += await stream.receive(count - len(data))
    return data


@pytest.fixture(autouse=True)
def frozen_heap() -> Iterator[None]:
    """Keep the test process's own heap out of the collector while the bounds are timed.

    The embedded daemon runs in the pytest process, whose heap is large: one full
    collection of it took 40-55 ms (measured on 2 cores), a pause no daemon-side change
    can avoid and one that would land inside a 50 ms round trip now and then. What the
    scenario allocates is still collected.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def round_trips(conn: Connection, rounds: int = ROUNDS) -> float:
    """Send ``rounds`` markers to ourselves, each back within ``ROUND_TRIP``; the slowest."""
    slowest = 0.0
    for i in range(rounds):
        marker = b"round %d" % i
        start = time.perf_counter()
        with anyio.fail_after(ROUND_TRIP):
            await conn.multicast(conn.private_group, marker)
            event = await conn.receive()
        slowest = max(slowest, time.perf_counter() - start)
        assert isinstance(event, DataMessage), event
        assert event.data == marker
    return slowest


async def next_view(conn: Connection) -> RegularMembership:
    with anyio.fail_after(WAIT):
        event = await conn.receive()
    assert isinstance(event, RegularMembership), event
    return event


async def until_disconnect(conn: Connection, member: str) -> None:
    """Read ``conn``'s traffic until ``member`` disconnects from the group."""
    with anyio.fail_after(WAIT):
        async for event in conn:
            if isinstance(event, RegularMembership) and event.cause is Cause.DISCONNECT:
                assert event.changed_member == member
                return


@asynccontextmanager
async def bad_client(
    script: str, target: Target, name: str, group: str, ready: bytes
) -> AsyncIterator[anyio.abc.Process]:
    """Run a bad client script until it prints ``ready``; kill it when the block ends."""
    process = await anyio.open_process(
        [sys.executable, "-c", script, target.host, str(target.port), name, group]
    )
    try:
        assert process.stdout is not None
        seen = b""
        with anyio.fail_after(WAIT):
            while ready not in seen:
                seen += await process.stdout.receive()
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()


@asynccontextmanager
async def well_behaved(target: Target) -> AsyncIterator[Connection]:
    """The well-behaved client, connected before the bad one starts.

    (Not a fixture: a connection's task group must be left by the task that entered it.)
    """
    async with spreadq.connect(target.address) as conn:
        await round_trips(conn, 1)
        yield conn


async def test_a_client_that_floods_without_pause_does_not_block_the_others(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    async with well_behaved(spread_daemon) as prober:
        async with bad_client(
            FLOOD_FOREVER, spread_daemon, next(unique), next(unique), b"flooding"
        ) as flooder:
            await round_trips(prober)
            assert flooder.returncode is None  # still flooding all along
        await round_trips(prober)


async def test_a_client_that_floods_its_own_group_without_reading_is_dropped_alone(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    async with well_behaved(spread_daemon) as prober:
        name, group = next(unique), next(unique)
        async with spreadq.connect(spread_daemon.address, next(unique)) as watcher:
            await watcher.join(group)
            await next_view(watcher)
            async with bad_client(FLOOD_OWN_GROUP, spread_daemon, name, group, b"flooding"):
                await round_trips(prober)
                await until_disconnect(watcher, f"#{name}#localhost")
        await round_trips(prober)


@pytest.mark.parametrize("cut", [20, 48 + 32 + 500], ids=["in-header", "in-body"])
async def test_a_client_that_disconnects_mid_message_is_a_disconnect(
    spread_daemon: Target, unique: Iterator[str], cut: int
) -> None:
    async with well_behaved(spread_daemon) as prober:
        name, group = next(unique), next(unique)
        async with spreadq.connect(spread_daemon.address, next(unique)) as watcher:
            await watcher.join(group)
            await next_view(watcher)
            stream, me = await raw_session(spread_daemon, name)
            async with stream:
                await stream.send(header(JOIN, me, 0) + pad(group))
                assert (await next_view(watcher)).changed_member == me
                message = header(AGREED, me, 1000) + pad(group) + bytes(1000)
                await stream.send(message[:cut])
                await round_trips(prober, 3)
            gone = await next_view(watcher)
            assert (gone.cause, gone.changed_member) == (Cause.DISCONNECT, me)
        await round_trips(prober)


async def test_a_client_that_joins_thousands_of_groups_does_not_block_the_others(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    if spread_daemon.kind == "real":
        # Measured 2026-12-04: with bounds of 120 s instead of 10 s and 50 ms, the watcher
        # still had not seen the 5,001st join; the embedded daemon is held to this, not it.
        pytest.skip("real Spread 5.0.1 did not finish one client's 5,001 joins in 120 s")
    async with well_behaved(spread_daemon) as prober:
        name, group = next(unique), next(unique)
        async with spreadq.connect(spread_daemon.address, next(unique)) as watcher:
            await watcher.join(group)
            await next_view(watcher)
            async with bad_client(JOIN_THOUSANDS, spread_daemon, name, group, b"joined") as joiner:
                await round_trips(prober)
                joined = await next_view(watcher)  # its 5,001st join: every other one is done
                assert joined.changed_member == f"#{name}#localhost"
                await round_trips(prober)
                assert joiner.stdin is not None
                await joiner.stdin.aclose()  # it exits, leaving 5,001 groups at once
                gone = await next_view(watcher)
                assert (gone.cause, gone.changed_member) == (Cause.DISCONNECT, f"#{name}#localhost")
            await round_trips(prober)


async def test_half_open_and_silent_sockets_do_not_block_the_others(
    spread_daemon: Target, unique: Iterator[str]
) -> None:
    if spread_daemon.kind == "real":
        # Measured 2026-12-04: with bounds of 120 s, the scenario passed in 25 s, one
        # second for each of the 25 silent sockets (the other 25 send half a hello).
        pytest.skip("real Spread 5.0.1 accepts nobody while it waits up to 1 s for a hello")
    async with well_behaved(spread_daemon) as prober:
        name, group = next(unique), next(unique)
        async with spreadq.connect(spread_daemon.address, next(unique)) as watcher:
            await watcher.join(group)
            await next_view(watcher)
            streams: list[anyio.abc.SocketStream] = []
            try:
                with anyio.fail_after(WAIT):
                    for i in range(50):  # connected, and then nothing or half a hello
                        stream = await anyio.connect_tcp(spread_daemon.host, spread_daemon.port)
                        streams.append(stream)
                        if i % 2:
                            await stream.send(bytes([5, 0, 1, 1, 8]) + b"half")
                await round_trips(prober)
                # A session that half-closes: it sends its FIN but could still read.
                stream, me = await raw_session(spread_daemon, name)
                streams.append(stream)
                with anyio.fail_after(WAIT):
                    await stream.send(header(JOIN, me, 0) + pad(group))
                    await next_view(watcher)
                    await stream.send_eof()
                gone = await next_view(watcher)
                assert (gone.cause, gone.changed_member) == (Cause.DISCONNECT, me)
                await round_trips(prober)
            finally:
                for stream in streams:
                    await stream.aclose()
        await round_trips(prober)
