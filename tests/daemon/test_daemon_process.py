"""``spreadq daemon`` as its own process, against client processes that misbehave.

A client that floods its own group without reading is dropped at the session limit, as
real Spread drops it; the daemon goes on serving everybody else and stops cleanly.
"""

from __future__ import annotations

import signal
import sys

import anyio
from daemon_process import RAW_CLIENT, WAIT, DaemonProcess, daemon_process, run_script

import spreadq
from spreadq.client import _READ_HIGH, Connection
from spreadq.wire.constants import Cause
from spreadq.wire.events import RegularMembership

FLOOD_THROUGH_THE_LIBRARY = """
import sys, anyio, spreadq
from spreadq.errors import ConnectionLost

async def main():
    try:
        async with spreadq.connect(sys.argv[1], "flooder") as conn:
            await conn.join("g")
            for _ in range(int(sys.argv[2])):
                await conn.multicast("g", bytes(1024))
            await conn.flush()
    except ConnectionLost:
        print("dropped")
    else:
        print("not dropped")

anyio.run(main)
"""


def _tcp_buffer_max(name: str, fallback: int) -> int:
    """The largest a TCP socket buffer may grow to here (Linux: the third field of
    ``/proc/sys/net/ipv4/<name>``)."""
    try:
        with open(f"/proc/sys/net/ipv4/{name}", encoding="ascii") as limits:
            return int(limits.read().split()[2])
    except (OSError, ValueError, IndexError):
        return fallback


def flood_messages() -> int:
    """How many 1 KiB messages the library flooder sends to its own group: half as many
    again as everything that can hold them short of the daemon's session limit. The
    flooder reads until its own buffers are full (the stream's ``_READ_HIGH`` and the
    connection's 16 event batches of up to 64 KiB reads), and while it reads the kernel
    grows its receive buffer, up to ``tcp_rmem``'s maximum (32 MiB on some machines);
    the daemon's send buffer holds up to ``tcp_wmem``'s maximum, and the daemon queues
    ``MaxSessionMessages`` (1,000) more before it drops the session. A fixed 20,000
    (20 MB) fitted in all that on a machine with a 32 MiB maximum, and the test failed
    once in many runs."""
    held = (
        _tcp_buffer_max("tcp_rmem", 6 * 1024 * 1024)
        + _tcp_buffer_max("tcp_wmem", 4 * 1024 * 1024)
        + _READ_HIGH
        + 16 * 64 * 1024
        + 1000 * 1024
    )
    return 3 * held // 2 // 1024


FLOOD_IN_ONE_WRITE = (
    RAW_CLIENT
    + """
sock, me = connect(int(sys.argv[1]), "flooder")
one = multicast(me, "g", bytes(100))
blob = join(me, "g") + one * (5 * 1024 * 1024 // len(one))
try:
    sock.sendall(blob)  # 5 MB, some 29,000 messages to its own group, in one write
except OSError:
    pass  # dropped before the daemon read it all
sys.stdin.read()  # nothing read from the daemon until the test is done
"""
)
"""More messages than the kernel's socket buffers and the session limit hold together."""


async def wait_for_disconnect(watcher: Connection, member: str) -> RegularMembership:
    """Read the group's traffic until ``member`` is seen to disconnect."""
    with anyio.fail_after(WAIT):
        while True:
            event = await watcher.receive()
            if isinstance(event, RegularMembership) and event.cause is Cause.DISCONNECT:
                assert event.changed_member == member
                return event


async def still_serves(daemon: DaemonProcess) -> None:
    assert daemon.process.returncode is None, daemon.output()
    with anyio.fail_after(WAIT):
        async with spreadq.connect(daemon.address, "after") as conn:
            await conn.join("after")
            view = await conn.receive()
            assert isinstance(view, RegularMembership)
            assert view.members == (conn.private_group,)


async def stops_cleanly(daemon: DaemonProcess) -> None:
    daemon.process.send_signal(signal.SIGTERM)
    with anyio.fail_after(WAIT):
        assert await daemon.process.wait() == 0, daemon.output()
    output = daemon.output()
    assert "Traceback" not in output
    assert "session_failed" not in output


async def test_a_client_flooding_its_own_group_is_dropped_and_the_daemon_stays_up() -> None:
    async with (
        daemon_process("--no-unix-socket") as daemon,
        spreadq.connect(daemon.address, "watcher") as watcher,
    ):
        await watcher.join("g")
        await watcher.receive()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait_for_disconnect, watcher, "#flooder#localhost")
            code, output = await run_script(
                FLOOD_THROUGH_THE_LIBRARY, daemon.address, str(flood_messages())
            )
        assert (code, output.strip().splitlines()[-1]) == (0, "dropped")
        await still_serves(daemon)
        await stops_cleanly(daemon)


async def test_five_megabytes_in_one_write_without_reading_drop_only_that_client() -> None:
    async with (
        daemon_process("--no-unix-socket") as daemon,
        spreadq.connect(daemon.address, "watcher") as watcher,
    ):
        await watcher.join("g")
        await watcher.receive()
        flooder = await anyio.open_process(
            [sys.executable, "-c", FLOOD_IN_ONE_WRITE, str(daemon.port)]
        )
        async with flooder:
            await wait_for_disconnect(watcher, "#flooder#localhost")
            assert flooder.stdin is not None
            await flooder.stdin.aclose()
            with anyio.fail_after(WAIT):
                assert await flooder.wait() == 0
        await still_serves(daemon)
        await stops_cleanly(daemon)
