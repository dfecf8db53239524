"""One conformance suite, two daemons: the embedded one always, a real Spread when given.

``SPREADQ_SPREAD_DAEMON`` names a Spread 4.x/5.x ``spread`` binary. When it is set, the
``spread_daemon`` fixture also runs every scenario against that daemon, started once per
test session on a free loopback port with a generated configuration. When it is not
set, the ``real`` half is skipped with a visible reason.

Both daemons are named ``localhost`` and drop a client once ``SESSION_LIMIT`` messages
are queued for it, so every scenario expects the same bytes from both.
"""

from __future__ import annotations

import grp
import itertools
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from spread_targets import CONFIG, DAEMON_NAME, ENV, SESSION_LIMIT, Target

from spreadq.testing.fixtures import daemon_in_background

_names = itertools.count()


@pytest.fixture
def unique() -> Iterator[str]:
    """Short names no other test uses (the real daemon lives for the whole session)."""
    return (f"c{next(_names)}" for _ in itertools.count())


def _free_port() -> int:
    """A port P whose TCP port and UDP ports P and P+1 are all free on loopback."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port > 65000:
            continue
        try:
            for udp_port in (port, port + 1):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", udp_port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port for a real Spread daemon")


def _handshake_once(port: int) -> bool:
    """Whether a full NULL-auth handshake with the daemon succeeds now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(bytes([5, 0, 1, 0, 0]))  # hello, no name: the daemon picks one
            if sock.recv(6) != b"\x05NULL ":
                return False
            sock.sendall(b"NULL".ljust(90, b"\0"))
            return sock.recv(1) == b"\x01"
    except OSError:
        return False


@pytest.fixture(scope="session")
def real_spread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A real Spread daemon for the whole session (skipped unless ``SPREADQ_SPREAD_DAEMON``)."""
    binary = os.environ.get(ENV)
    if not binary:
        pytest.skip(f"{ENV} is not set")
    runtime = tmp_path_factory.mktemp("spread")
    port = _free_port()
    config = runtime / "spread.conf"
    config.write_text(
        CONFIG.format(
            port=port,
            name=DAEMON_NAME,
            runtime=runtime,
            limit=SESSION_LIMIT,
            user=pwd.getpwuid(os.getuid()).pw_name,  # Spread switches to this user
            group=grp.getgrgid(os.getgid()).gr_name,
        )
    )
    log = (runtime / "spread.log").open("wb")
    process = subprocess.Popen(
        [binary, "-n", DAEMON_NAME, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        # Bounded readiness poll: up to 10 s in 20 ms steps.
        for _ in range(500):
            if process.poll() is not None:
                pytest.fail(f"{binary} exited with {process.returncode}; see {runtime}/spread.log")
            if _handshake_once(port):
                break
            time.sleep(0.02)
        else:
            pytest.fail(f"{binary} did not accept a session within 10 s")
        yield Target("real", "127.0.0.1", port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
        Path(f"/tmp/{port}").unlink(missing_ok=True)


@pytest.fixture(params=["embedded", "real"])
async def spread_daemon(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    """The daemon a scenario runs against: the embedded one, then the real one."""
    if request.param == "real":
        yield request.getfixturevalue("real_spread")
        return
    async with daemon_in_background(name=DAEMON_NAME, max_session_messages=SESSION_LIMIT) as daemon:
        yield Target("embedded", daemon.host, daemon.port, daemon)
