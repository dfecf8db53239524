"""Run a real Spread daemon (the binary named by ``SPREADQ_SPREAD_DAEMON``) on loopback.

Used by the interop suite and by ``benchmarks/bench_flood.py``. The daemon gets a
generated one-daemon config in a temporary directory: name ``localhost``, segment
``127.0.0.255:PORT`` with host ``127.0.0.1``, daemon and client listeners pinned to
loopback, ``SocketPortReuse`` on. Its output goes through a pseudo-terminal (so the C
library flushes each line) to a reader thread; :func:`start_real_daemon` returns once the
daemon prints that its membership has formed, the point from which it serves joins.

:func:`start_real_daemons` runs several daemons, one per loopback host (each must be
assigned to an interface, e.g. ``ip addr add 127.0.0.2/32 dev lo``), in one segment
``127.255.255.255:PORT``; it returns once every daemon prints a membership of them all.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ENV_VAR",
    "RealDaemon",
    "daemon_binary",
    "free_port",
    "host_assigned",
    "start_real_daemon",
    "start_real_daemons",
]

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

# several daemons, one per host, in one segment (broadcast address of 127/8)
MULTI_CONFIG = """\
Spread_Segment 127.255.255.255:{port} {{
{hosts}}}
SocketPortReuse = ON
RuntimeDir = {runtime}
DaemonUser = {user}
DaemonGroup = {group}
DebugFlags = {{ PRINT EXIT }}
EventPriority = INFO
"""
MULTI_HOST = """\
    {name} {host} {{
        D {host}
        C {host}
    }}
"""
SEGMENT_LINE = re.compile(r"^\t(\d+)\t\[")


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
    name: str = "localhost"
    host: str = "127.0.0.1"
    ready: threading.Event = field(default_factory=threading.Event, repr=False)
    reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def tcp_address(self) -> str:
        return f"{self.port}@{self.host}"

    @property
    def unix_address(self) -> str:
        return str(self.port)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return "".join(self.output)


def _user_and_group() -> tuple[str, str]:
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
    return user, user


def _launch(binary: str, config: Path, name: str, host: str, port: int, peers: int) -> RealDaemon:
    """Start daemon ``name`` of ``config``; a reader thread keeps its output and sets
    ``daemon.ready`` once it prints a membership of ``peers`` daemons (for one daemon:
    its first membership), or exits."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [binary, "-n", name, "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    daemon = RealDaemon(process, port, config, name=name, host=host)
    ready = daemon.ready

    def pump() -> None:
        # after "Membership id is" the daemon prints its configuration, whose segment
        # line reads "\t<number of daemons in the membership>\t[<segment address>]"
        formed = False
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
                        formed = True
                        if peers == 1:
                            ready.set()
                    elif formed and (match := SEGMENT_LINE.match(text)):
                        formed = False
                        if int(match.group(1)) >= peers:
                            ready.set()
        ready.set()

    reader = threading.Thread(target=pump, name=f"spread-{name}-{port}-output", daemon=True)
    reader.start()
    daemon.reader = reader
    return daemon


def _stop(daemon: RealDaemon) -> None:
    process = daemon.process
    if process.poll() is None:
        # a SIGSTOPped daemon would not act on SIGTERM
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if daemon.reader is not None:
        daemon.reader.join(5)


@contextlib.contextmanager
def _running(daemons: list[RealDaemon], port: int) -> Iterator[list[RealDaemon]]:
    try:
        for daemon in daemons:
            if not daemon.ready.wait(READY_WITHIN) or not daemon.alive:
                logs = "\n".join(f"--- {d.name}\n{d.log()}" for d in daemons)
                raise RuntimeError(f"the Spread daemon did not start:\n{logs}")
        yield daemons
    finally:
        for daemon in daemons:
            _stop(daemon)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"/tmp/{port}")


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
    user, group = _user_and_group()
    config.write_text(
        CONFIG.format(
            port=port, runtime=runtime, user=user, group=group, limit=max_session_messages
        )
    )
    daemon = _launch(binary, config, "localhost", "127.0.0.1", port, 1)
    with _running([daemon], port) as daemons:
        yield daemons[0]


def host_assigned(host: str) -> bool:
    """Whether ``ip -o addr show`` lists ``host`` (Spread serves only on the addresses
    of its interfaces, although Linux lets a socket bind any of 127/8)."""
    try:
        shown = subprocess.run(
            ["ip", "-o", "addr", "show"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return f"inet {host}/" in shown


@contextlib.contextmanager
def start_real_daemons(
    binary: str, workdir: Path, names_and_hosts: Sequence[tuple[str, str]]
) -> Iterator[list[RealDaemon]]:
    """Start one daemon per ``(name, host)`` in one segment on a free port (every host
    must be assigned to an interface); return once each has a membership of them all.
    Clients reach them over TCP (``RealDaemon.tcp_address``): they share the port, so
    the Unix socket is not usable. All are stopped (and continued first) on exit.

    Raises:
        RuntimeError: a daemon exited or the daemons did not merge in time.
    """
    port = free_port()
    runtime = workdir / f"spread-{port}"
    runtime.mkdir(parents=True, exist_ok=True)
    config = runtime / "spread.conf"
    user, group = _user_and_group()
    hosts = "".join(MULTI_HOST.format(name=name, host=host) for name, host in names_and_hosts)
    config.write_text(
        MULTI_CONFIG.format(port=port, hosts=hosts, runtime=runtime, user=user, group=group)
    )
    daemons: list[RealDaemon] = []
    try:
        for name, host in names_and_hosts:
            daemons.append(_launch(binary, config, name, host, port, len(names_and_hosts)))
    except BaseException:
        for daemon in daemons:
            _stop(daemon)
        raise
    with _running(daemons, port) as running:
        yield running
