"""Daemon benchmark: one sender to four receivers, on the embedded daemon and a real one.

Every party is its own process: the daemon (the embedded one is started as users start
it, ``python -m spreadq daemon``), four receivers and one sender. Two client kinds:

* **python**: ``spreadq.connect`` clients. Each receiver reports how far it has read every
  200 messages on a control group; the sender keeps at most ``--window`` messages ahead
  of the slowest receiver (the daemons drop a client with 1000 messages queued). The
  figure is messages per second delivered to *each* receiver, from the first send to the
  last receiver's final report.
* **spflooder**: Spread's own C flooder (4 readers ``-ro`` and one writer, which paces
  itself on its own messages), when it sits next to ``SPREADQ_SPREAD_DAEMON``'s binary
  (``../bin/spflooder``). Here the C clients cost little, so the daemon is the
  bottleneck. The figure is messages per second per reader, wall clock.

    .venv/bin/python benchmarks/bench_daemon.py                   # embedded only
    SPREADQ_SPREAD_DAEMON=/work/spread/install/sbin/spread \\
        .venv/bin/python benchmarks/bench_daemon.py --count 20000 --size 100
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio

from spreadq.client import connect
from spreadq.wire.events import DataMessage, RegularMembership

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "interop"))

GROUP = "bench"
CONTROL = "bench-ctl"
ACK_EVERY = 200


# --- daemons ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(bytes([5, 0, 1, 0, 0]))
            if sock.recv(6) != b"\x05NULL ":
                return False
            sock.sendall(b"NULL".ljust(90, b"\0"))
            return sock.recv(1) == b"\x01"
    except OSError:
        return False


@contextlib.contextmanager
def embedded_daemon() -> Iterator[str]:
    """``python -m spreadq daemon`` on a free port, in its own process."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "spreadq", "daemon", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(500):  # bounded: 10 s
            if _accepts(port):
                break
            if process.poll() is not None:
                raise RuntimeError("the embedded daemon exited")
            time.sleep(0.02)
        else:
            raise RuntimeError("the embedded daemon did not start")
        yield f"{port}@127.0.0.1"
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def real_daemon(binary: str) -> Iterator[str]:
    """A real Spread daemon (tests/interop/real_daemon.py starts it)."""
    import real_daemon as launcher

    with (
        tempfile.TemporaryDirectory() as tmp,
        launcher.start_real_daemon(binary, Path(tmp)) as daemon,
    ):
        yield str(daemon.tcp_address)


# --- python clients ---------------------------------------------------------------------


async def receiver(address: str, index: int, count: int) -> None:
    """Join, read ``count`` messages, report progress on the control group."""
    async with connect(address, name=f"rx{index}") as rx:
        await rx.join(GROUP)
        await rx.join(CONTROL)  # after GROUP: once seen in CONTROL, it is in GROUP
        seen = acked = 0
        while seen < count:
            for event in await rx.receive_batch():
                if type(event) is DataMessage and event.groups[0] == GROUP:
                    seen += 1
            if seen - acked >= ACK_EVERY or (seen >= count and acked < count):
                acked = seen
                await rx.multicast(CONTROL, b"%d %d" % (index, seen), self_discard=True)
        await rx.flush()


async def sender(address: str, receivers: int, count: int, size: int, window: int) -> float:
    """Wait for the receivers, send in a window; return seconds until all have read all."""
    payload = b"x" * size
    async with connect(address, name="tx") as tx:
        await tx.join(CONTROL)
        while True:
            event = await tx.receive()
            if isinstance(event, RegularMembership) and len(event.members) == receivers + 1:
                break
        progress = [0] * receivers

        async def reports() -> None:
            for event in await tx.receive_batch():
                if type(event) is DataMessage:
                    index, seen = event.data.split()
                    progress[int(index)] = max(progress[int(index)], int(seen))

        started = time.perf_counter()
        for i in range(count):
            while i - min(progress) >= window:
                await reports()
            await tx.multicast(GROUP, payload)
        while min(progress) < count:
            await reports()
        return time.perf_counter() - started


def python_clients(address: str, receivers: int, count: int, size: int, window: int) -> float:
    command = [sys.executable, __file__, "--role", "receiver", "--address", address]
    processes = [
        subprocess.Popen([*command, "--index", str(i), "--count", str(count)])
        for i in range(receivers)
    ]
    try:
        seconds = anyio.run(sender, address, receivers, count, size, window)
        for process in processes:
            process.wait(60)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return count / seconds


# --- C clients --------------------------------------------------------------------------


def spflooder(binary: str | None, address: str, receivers: int, count: int, size: int) -> float:
    """Messages/s per reader with Spread's C flooder, or NaN when it is not there."""
    flooder = Path(binary).parent.parent / "bin" / "spflooder" if binary else None
    if flooder is None or not flooder.exists():
        return float("nan")
    common = ["-s", address, "-m", str(count), "-b", str(size)]
    readers = [
        subprocess.Popen([str(flooder), "-u", f"crx{i}", "-ro", *common], stdout=subprocess.DEVNULL)
        for i in range(receivers)
    ]
    try:
        time.sleep(0.5)  # let the readers join; no handle to wait on (not a measurement)
        started = time.perf_counter()
        subprocess.run([str(flooder), "-u", "ctx", *common], stdout=subprocess.DEVNULL, timeout=120)
        for reader in readers:
            reader.wait(120)
        return count / (time.perf_counter() - started)
    finally:
        for reader in readers:
            if reader.poll() is None:
                reader.kill()


# --- main -------------------------------------------------------------------------------


def bench(args: argparse.Namespace) -> None:
    binary = os.environ.get("SPREADQ_SPREAD_DAEMON")
    targets: list[tuple[str, contextlib.AbstractContextManager[str]]] = []
    if args.only in (None, "embedded"):
        targets.append(("embedded", embedded_daemon()))
    if binary and args.only in (None, "real"):
        targets.append(("real Spread", real_daemon(binary)))
    print(
        f"1 sender -> {args.receivers} receivers, {args.count} messages of {args.size} B"
        f" (messages/s delivered to each receiver)"
    )
    for name, daemon in targets:
        with daemon as address:
            if args.clients in ("python", "both"):
                rate = python_clients(address, args.receivers, args.count, args.size, args.window)
                print(f"  {name:>12}  python clients  {rate:>9,.0f} msg/s", flush=True)
            if args.clients in ("spflooder", "both"):
                rate = spflooder(binary, address, args.receivers, args.count, args.size)
                print(f"  {name:>12}  C spflooder     {rate:>9,.0f} msg/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--receivers", type=int, default=4)
    parser.add_argument("--window", type=int, default=600)
    parser.add_argument("--only", choices=["embedded", "real"])
    parser.add_argument("--clients", choices=["python", "spflooder", "both"], default="both")
    parser.add_argument("--role", choices=["receiver"], help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "receiver":
        anyio.run(receiver, args.address, args.index, args.count)
    else:
        bench(args)


if __name__ == "__main__":
    main()
