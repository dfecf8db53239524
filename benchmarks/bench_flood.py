"""Flood benchmark: one sender and one receiver through ``spreadq.connect()``.

The sender multicasts N messages (AGREED) to a group the receiver is in; the receiver
reports how far it has read every 200 messages on a control group, and the sender
keeps at most ``--window`` messages unacknowledged, so the daemon never queues 1000
messages for the receiver (it would drop it). The figure is messages per second from
the first send to the last acknowledgement.

Daemons: a real Spread daemon when ``SPREADQ_SPREAD_DAEMON`` names its binary (started
on a free loopback port), the embedded daemon (``spreadq.daemon.serve``) when it is
installed, or ``--address`` for a daemon that is already running. ``--processes`` runs
the receiver in its own process (the default runs both in one event loop). When the C
``spflooder`` sits next to the real daemon, its figure is printed as a baseline.

    .venv/bin/python benchmarks/bench_flood.py --count 50000 --sizes 100 1000
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc

from spreadq.client import Connection, connect
from spreadq.wire.events import DataMessage, RegularMembership

__all__ = ["main"]

GROUP = "flood"
CONTROL = "flood-ctl"
ACK_EVERY = 200
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "interop"))


async def receive(address: str, count: int) -> float:
    """Join, say ready, read ``count`` messages acknowledging progress; return seconds."""
    async with connect(address, name="flood-rx") as rx:
        await rx.join(GROUP)
        while not isinstance(await rx.receive(), RegularMembership):
            pass
        await rx.multicast(CONTROL, b"ready")
        seen = acked = 0
        started = 0.0
        while seen < count:
            for event in await rx.receive_batch():
                if type(event) is DataMessage:
                    if not seen:
                        started = time.perf_counter()
                    seen += 1
            if seen - acked >= ACK_EVERY or seen >= count:
                acked = seen
                await rx.multicast(CONTROL, b"ack" + seen.to_bytes(8, "big"))
        elapsed = time.perf_counter() - started
        await rx.flush()
        return elapsed


async def send(address: str, count: int, size: int, window: int, ready: anyio.Event) -> float:
    """Wait for the receiver, send ``count`` messages in a window; return seconds."""
    payload = b"x" * size
    async with connect(address, name="flood-tx") as tx:
        await tx.join(CONTROL)
        ready.set()
        while True:
            event = await tx.receive()
            if isinstance(event, DataMessage) and event.data == b"ready":
                break
        acked = 0
        started = time.perf_counter()
        for i in range(count):
            while i - acked >= window:
                acked = await next_ack(tx)
            await tx.multicast(GROUP, payload)
        while acked < count:
            acked = await next_ack(tx)
        return time.perf_counter() - started


async def next_ack(conn: Connection) -> int:
    """Wait for the receiver's next progress report."""
    while True:
        latest = 0
        for event in await conn.receive_batch():
            if type(event) is DataMessage and event.data.startswith(b"ack"):
                latest = max(latest, int.from_bytes(event.data[3:], "big"))
        if latest:
            return latest


async def run_once(address: str, count: int, size: int, window: int, processes: bool) -> float:
    ready = anyio.Event()
    result: dict[str, float] = {}
    async with anyio.create_task_group() as tg:

        async def sender() -> None:
            result["send"] = await send(address, count, size, window, ready)

        tg.start_soon(sender)
        await ready.wait()
        if processes:
            command = [sys.executable, __file__, "--role", "receiver", "--address", address]
            await anyio.run_process([*command, "--count", str(count)], stdout=None)
        else:
            result["receive"] = await receive(address, count)
    return count / result["send"]


@contextlib.contextmanager
def real_daemon() -> Iterator[str | None]:
    launcher = importlib.import_module("real_daemon")  # tests/interop/real_daemon.py
    binary = launcher.daemon_binary()
    if binary is None:
        yield None
        return
    with (
        tempfile.TemporaryDirectory() as tmp,
        launcher.start_real_daemon(binary, Path(tmp)) as daemon,
    ):
        yield str(daemon.tcp_address)


@asynccontextmanager
async def embedded_daemon() -> AsyncIterator[str | None]:
    try:
        from spreadq.daemon import serve
    except ImportError:
        yield None
        return
    async with serve() as daemon:
        yield str(daemon.address)


def c_baseline(address: str, count: int, size: int) -> float | None:
    """messages/s of Spread's own C flooder (one reader, one writer), if it is there."""
    binary = os.environ.get("SPREADQ_SPREAD_DAEMON")
    flooder = Path(binary).parent.parent / "bin" / "spflooder" if binary else None
    if flooder is None or not flooder.exists():
        return None
    common = ["-m", str(count), "-b", str(size), "-s", address, "-n", "2"]
    started = time.perf_counter()
    reader = subprocess.Popen(
        [str(flooder), "-u", "c-rx", "-ro", *common], stdout=subprocess.DEVNULL
    )
    writer = subprocess.Popen([str(flooder), "-u", "c-tx", *common], stdout=subprocess.DEVNULL)
    try:
        writer.wait(120)
        reader.wait(120)
    except subprocess.TimeoutExpired:
        writer.kill()
        reader.kill()
        return None
    return count / (time.perf_counter() - started)


async def bench(args: argparse.Namespace) -> None:
    targets: list[tuple[str, str]] = []
    if args.address:
        targets.append(("given", args.address))
    with real_daemon() as real:
        if real and not args.address:
            targets.append(("real Spread 5.0.1", real))
        async with embedded_daemon() as embedded:
            if embedded and not args.address:
                targets.append(("embedded", embedded))
            if not targets:
                raise SystemExit("no daemon: set SPREADQ_SPREAD_DAEMON or pass --address")
            mode = "two processes" if args.processes else "one event loop"
            for name, address in targets:
                for size in args.sizes:
                    rate = await run_once(address, args.count, size, args.window, args.processes)
                    print(
                        f"{name:>18} {size:>5} B  {args.count} msgs  {rate:>9,.0f} msg/s"
                        f"  {rate * size / 1e6:6.1f} MB/s  ({mode})",
                        flush=True,
                    )
                    if name.startswith("real") and args.c_baseline:
                        c_rate = c_baseline(address, args.count, size)
                        if c_rate is not None:
                            print(f"{'C spflooder':>18} {size:>5} B  {c_rate:>9,.0f} msg/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--window", type=int, default=600)
    parser.add_argument("--address")
    parser.add_argument("--processes", action="store_true")
    parser.add_argument("--c-baseline", action="store_true")
    parser.add_argument("--role", choices=["bench", "receiver"], default="bench")
    args = parser.parse_args()
    if args.role == "receiver":
        anyio.run(receive, args.address, args.count)
    else:
        anyio.run(bench, args)


if __name__ == "__main__":
    main()
