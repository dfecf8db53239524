"""The client's socket stream (``spreadq.client._LoopStream``): it keeps reading the
socket, hands over what it read without waiting, stops reading past a bound until the
taker catches up, and ends with the error anyio's streams use for each way a socket ends.

Each test connects to a plain listener on loopback (TCP, and a Unix socket where the
path differs) and plays the daemon with the raw peer stream.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest

from spreadq import client
from spreadq.client import TcpEndpoint, UnixEndpoint, _open_stream

WAIT = 5.0


@asynccontextmanager
async def pair(
    tmp_path: Path, kind: str = "tcp"
) -> AsyncIterator[tuple[anyio.abc.ByteStream, anyio.abc.SocketStream]]:
    """Our stream, and the listener's end of the same connection."""
    listener: anyio.abc.SocketListener
    if kind == "tcp":
        (tcp,) = (await anyio.create_tcp_listener(local_host="127.0.0.1")).listeners
        assert isinstance(tcp, anyio.abc.SocketListener)
        listener = tcp
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        endpoint: TcpEndpoint | UnixEndpoint = TcpEndpoint("127.0.0.1", port)
    else:
        path = str(tmp_path / "s.sock")
        listener = await anyio.create_unix_listener(path)
        endpoint = UnixEndpoint(path)
    async with listener:
        ours = await _open_stream(endpoint)
        peer = await listener.accept()
        try:
            yield ours, peer
        finally:
            await ours.aclose()
            await peer.aclose()


@pytest.mark.parametrize("kind", ["tcp", "unix"])
async def test_data_written_either_way_arrives_whole_and_in_order(
    tmp_path: Path, kind: str
) -> None:
    async with pair(tmp_path, kind) as (ours, peer):
        with anyio.fail_after(WAIT):
            await ours.send(b"hello ")
            await ours.send(b"daemon")
            got = b""
            while len(got) < 12:
                got += await peer.receive()
            assert got == b"hello daemon"
            await peer.send(b"x" * 10)
            assert await ours.receive(4) == b"xxxx"  # a chunk is split at max_bytes
            assert await ours.receive() == b"x" * 6


async def test_the_peer_closing_ends_the_stream_after_what_it_sent(tmp_path: Path) -> None:
    async with pair(tmp_path) as (ours, peer):
        with anyio.fail_after(WAIT):
            await peer.send(b"last")
            await peer.aclose()
            assert await ours.receive() == b"last"
            with pytest.raises(anyio.EndOfStream):
                await ours.receive()


async def test_after_our_close_receive_and_send_say_closed(tmp_path: Path) -> None:
    async with pair(tmp_path) as (ours, _):
        await ours.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await ours.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await ours.send(b"x")


async def test_a_receive_waiting_when_we_close_ends_closed(tmp_path: Path) -> None:
    async with pair(tmp_path) as (ours, _), anyio.create_task_group() as tg:
        ended: list[BaseException] = []

        async def read() -> None:
            try:
                await ours.receive()
            except anyio.ClosedResourceError as error:
                ended.append(error)

        tg.start_soon(read)
        await anyio.wait_all_tasks_blocked()
        await ours.aclose()
    assert len(ended) == 1


async def test_a_reset_socket_breaks_the_stream(tmp_path: Path) -> None:
    async with pair(tmp_path) as (ours, peer):
        raw = peer.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await peer.aclose()  # linger 0: an RST, not a FIN
        with anyio.fail_after(WAIT):
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(anyio.BrokenResourceError):
                await ours.receive()


async def test_reading_stops_past_the_bound_and_resumes_once_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "_READ_HIGH", 64 * 1024)
    monkeypatch.setattr(client, "_READ_LOW", 16 * 1024)
    async with pair(tmp_path) as (ours, peer):
        protocol = ours._protocol  # type: ignore[attr-defined]
        block = b"y" * 32 * 1024
        with anyio.fail_after(WAIT):
            while not protocol.reading_paused:  # we take nothing: it buffers, then stops
                await peer.send(block)
                await anyio.wait_all_tasks_blocked()
            assert protocol.buffered > 64 * 1024
            sent = protocol.buffered
            taken = 0
            while protocol.reading_paused:
                taken += len(await ours.receive())
            assert protocol.buffered <= 16 * 1024  # read again once down to the low mark
            assert taken >= sent - 16 * 1024


async def test_a_rest_leaves_the_socket_unread_and_loses_nothing(tmp_path: Path) -> None:
    async with pair(tmp_path) as (ours, peer):
        protocol = ours._protocol  # type: ignore[attr-defined]
        transport = ours._transport  # type: ignore[attr-defined]
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(ours.rest, 3600.0)  # type: ignore[attr-defined]
                await anyio.wait_all_tasks_blocked()
                assert not transport.is_reading()
                await peer.send(b"held by the kernel")
                await anyio.wait_all_tasks_blocked()
                assert not protocol.chunks  # nothing read while resting
                tasks.cancel_scope.cancel()  # the rest ends early: reading again
            assert transport.is_reading()
            got = b""
            while len(got) < 18:
                got += await ours.receive()
            assert got == b"held by the kernel"


async def test_a_rest_returns_at_once_while_read_data_waits(tmp_path: Path) -> None:
    async with pair(tmp_path) as (ours, peer):
        with anyio.fail_after(WAIT):
            await peer.send(b"ab")
            assert await ours.receive(1) == b"a"  # "b" stays buffered
            await ours.rest(3600.0)  # type: ignore[attr-defined]
            assert ours._transport.is_reading()  # type: ignore[attr-defined]
            assert await ours.receive() == b"b"
