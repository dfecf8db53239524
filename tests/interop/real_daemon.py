"""Run a real Spread daemon (the binary named by ``SPREADQ_SPREAD_DAEMON``) on loopback.

Used by the interop suite and by ``benchmarks/bench_flood.py``. The daemon gets a
generated one-daemon config in a temporary directory: name ``localhost``, segment
``127.0.0.255:PORT`` with host ``127.0.0.1``, daemon and client listeners pinned to
loopback, ``SocketPortReuse`` on. Its output goes through a pseudo-terminal (so the C
library flushes each line) to a reader thread; :func:`start_real_daemon` returns once the
daemon prints that its membership has formed, the point from which it serves joins.
"""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ENV_VAR", "RealDaemon", "daemon_binary", "free_port", "start_real_daemon"]

ENV_VAR = "SPREADQ_SPREAD_DAEMON"
READY_LINE = "Membership id is"
READY_WITHIN = 15.0

CONFIG = """\
Spread_Segment 127.0.0.255:{port} {{
    localhost 127.0.0.1 {{
        D 127.0.0.1
        C 127.0.0.1
    }}
}}
SocketPortReuse = ON
RuntimeDir = {runtime}
DaemonUser = {user}
DaemonGroup = {group}
DebugFlags = {{ PRINT EXIT }}
EventPriority = INFO
MaxSessionMessages = {limit}
"""


def daemon_binary() -> str | None:
    """The path in ``SPREADQ_SPREAD_DAEMON``, or ``None`` when it is not set."""
    return os.environ.get(ENV_VAR) or None


def free_port() -> int:
    """A port whose TCP port and UDP ports ``p`` and ``p + 1`` are free on loopback."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port >= 65535 or os.path.exists(f"/tmp/{port}"):
            continue
        try:
            for udp_port in (port, port + 1):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", udp_port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free loopback port for a Spread daemon")


@dataclass
class RealDaemon:
    """A running Spread daemon and how to reach it."""

    process: subprocess.Popen[bytes]
    port: int
    config: Path
    output: list[str] = field(default_factory=list)

    @property
    def tcp_address(self) -> str:
        return f"{self.port}@127.0.0.1"

    @property
    def unix_address(self) -> str:
        return str(self.port)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return "".join(self.output)


@contextlib.contextmanager
def start_real_daemon(
    binary: str, workdir: Path, *, max_session_messages: int = 1000
) -> Iterator[RealDaemon]:
    """Start ``binary`` on a free loopback port; stop it and remove its socket on exit.

    ``max_session_messages`` is the daemon's ``MaxSessionMessages`` (Spread's default is
    1000): the queue length past which it drops a client that does not read.

    Raises:
        RuntimeError: the daemon exited or did not form its membership in time.
    """
    port = free_port()
    runtime = workdir / f"spread-{port}"
    runtime.mkdir(parents=True, exist_ok=True)
    config = runtime / "spread.conf"
    user = group = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    config.write_text(
        CONFIG.format(
            port=port, runtime=runtime, user=user, group=group, limit=max_session_messages
        )
    )
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [binary, "-n", "localhost", "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    daemon = RealDaemon(process, port, config)
    ready = threading.Event()

    def pump() -> None:
        with open(controller, "rb", buffering=0) as source:
            pending = b""
            while True:
                try:
                    chunk = source.read(4096)
                except OSError:  # EIO once the daemon has exited
                    break
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    text = line.decode("utf-8", "replace") + "\n"
                    daemon.output.append(text)
                    if READY_LINE in text:
                        ready.set()
        ready.set()

    reader = threading.Thread(target=pump, name=f"spread-{port}-output", daemon=True)
    reader.start()
    try:
        if not ready.wait(READY_WITHIN) or not daemon.alive:
            raise RuntimeError(f"the Spread daemon did not start:\n{daemon.log()}")
        yield daemon
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        reader.join(5)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"/tmp/{port}")
