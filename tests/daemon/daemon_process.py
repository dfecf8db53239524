"""``spreadq daemon`` in its own process, and raw Spread clients as scripts, for e2e tests.

* :func:`daemon_process` starts ``python -m spreadq daemon`` with the given arguments,
  waits for its banner, keeps reading its stderr (so that it never blocks on a full
  pipe) and kills it if the block ends with it still running.
* :data:`RAW_CLIENT` is a client written with nothing but :mod:`socket` and
  :mod:`struct`, as a misbehaving program would be: it connects with the NULL method,
  joins groups and sends whatever it is told, without ever reading.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc

__all__ = ["RAW_CLIENT", "DaemonProcess", "daemon_process", "run_script"]

WAIT = 20.0
"""Seconds the daemon may take to start or stop, and a client script to finish."""

RAW_CLIENT = r"""
import socket, struct, sys

def pad(name):
    return name.encode().ljust(32, b"\0")

def connect(port, name):
    sock = socket.create_connection(("127.0.0.1", port))
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
"""
"""Helpers every raw client script starts with (prepend it to the script's own code)."""


@dataclass
class DaemonProcess:
    """A running ``spreadq daemon`` process: its TCP address and what it wrote to stderr."""

    process: anyio.abc.Process
    address: str
    banner: str
    stderr: bytearray = field(default_factory=bytearray)

    @property
    def port(self) -> int:
        return int(self.address.split("@")[0])

    def output(self) -> str:
        return self.banner + self.stderr.decode(errors="replace")


async def _drain(process: anyio.abc.Process, into: bytearray) -> None:
    assert process.stderr is not None
    try:
        async for chunk in process.stderr:
            into += chunk
    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
        pass


@asynccontextmanager
async def daemon_process(*args: str) -> AsyncIterator[DaemonProcess]:
    """``python -m spreadq daemon --port 0 ARGS...`` for the duration of the block."""
    process = await anyio.open_process(
        [sys.executable, "-m", "spreadq", "daemon", "--port", "0", *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        banner = b""
        with anyio.fail_after(WAIT):
            while b"listening on " not in banner or not banner.endswith(b"\n"):
                banner += await process.stderr.receive()
        text = banner.decode()
        address = text.split("listening on ")[1].split()[0]
        running = DaemonProcess(process, address, text)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_drain, process, running.stderr)
            yield running
            tasks.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
        await process.aclose()


async def run_script(script: str, *args: str) -> tuple[int, str]:
    """Run ``python -c script ARGS...`` to its end; its exit code and its output."""
    with anyio.fail_after(WAIT):
        completed = await anyio.run_process(
            [sys.executable, "-c", script, *args], check=False, stderr=subprocess.STDOUT
        )
    return completed.returncode, completed.stdout.decode(errors="replace")
