"""The embedded daemon's listeners: TCP per virtual daemon, Unix sockets, their files.

A TCP listener binds loopback unless a host is given; any other address is logged as a
warning, because Spread's NULL authentication admits whoever reaches the port. A Unix
socket is made mode ``0o600`` unless told otherwise; a socket file on which a live
daemon accepts is never taken over, and only the file this daemon made is removed at
the end.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Final, cast

import anyio
import anyio.abc

from spreadq.daemon.listening import Listening
from spreadq.daemon.sessions import Sessions
from spreadq.errors import AddressInUse
from spreadq.logs import get_logger

__all__ = [
    "DEFAULT_SOCKET_MODE",
    "NOT_LOOPBACK_RISK",
    "listen",
    "remove_socket",
    "run_listeners",
    "warn_if_exposed",
]

log = get_logger("spreadq.daemon.server")

DEFAULT_SOCKET_MODE: Final = 0o600
"""Permission bits of the daemon's Unix sockets: only the user running it may connect."""
NOT_LOOPBACK_RISK: Final = (
    "Spread's NULL authentication lets anyone who can reach this port join any group "
    "and send anything"
)
"""Why listening on an address other than loopback is worth a warning."""


async def listen(
    daemon: str,
    host: str,
    port: int,
    unix_path: str | None,
    *,
    spread_unix: bool,
    mode: int,
    owned: list[tuple[str, tuple[int, int]]],
) -> tuple[list[anyio.abc.SocketListener], Listening]:
    try:
        tcp = await anyio.create_tcp_listener(local_host=host, local_port=port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise AddressInUse(
                f"{port}@{host}", "the port is already in use (another Spread daemon?)"
            ) from error
        raise
    listeners = [cast(anyio.abc.SocketListener, listener) for listener in tcp.listeners]
    bound = tcp.listeners[0].extra(anyio.abc.SocketAttribute.local_port)
    if spread_unix:
        unix_path = f"/tmp/{bound}"  # Spread's own socket is named after the port
    if unix_path is not None:
        try:
            claim_socket_path(unix_path)
            unix = await anyio.create_unix_listener(unix_path, mode=mode)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await tcp.aclose()
            raise
        listeners.append(unix)
        made = os.stat(unix_path)
        owned.append((unix_path, (made.st_dev, made.st_ino)))
    return listeners, Listening(daemon, host, bound, unix_path)


def claim_socket_path(path: str) -> None:
    """Make way for a Unix socket at ``path``: remove a stale one, refuse a live one."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(found.st_mode):
        raise AddressInUse(path, "the path exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)  # a Unix connect never waits: it is accepted or refused
        code = probe.connect_ex(path)
    if code in (0, errno.EAGAIN, errno.EINPROGRESS):
        raise AddressInUse(path, "a daemon is listening on this socket")
    if code == errno.ECONNREFUSED:  # a socket file left behind: nobody listens on it
        log.info("stale_socket_removed", path=path)
        remove_socket(path, (found.st_dev, found.st_ino))
    elif code != errno.ENOENT:
        raise OSError(code, f"cannot tell whether a daemon listens on {path}", path)


def warn_if_exposed(host: str, listeners: Sequence[anyio.abc.SocketListener]) -> list[str]:
    exposed: list[str] = []
    for listener in listeners:
        local = listener.extra(anyio.abc.SocketAttribute.local_address)
        if isinstance(local, tuple) and not ipaddress.ip_address(local[0]).is_loopback:
            exposed.append(str(local[0]))
    if exposed:
        log.warning(
            "daemon_not_loopback",
            host=host,
            addresses=exposed,
            risk=NOT_LOOPBACK_RISK,
        )
    return exposed


async def run_listeners(
    stopper: anyio.CancelScope,
    listeners: Sequence[tuple[str, anyio.abc.SocketListener]],
    server: Sessions,
) -> None:
    raw = [listener.extra(anyio.abc.SocketAttribute.raw_socket) for _, listener in listeners]
    try:
        with stopper:
            async with anyio.create_task_group() as tasks:
                for (daemon, _), sock in zip(listeners, raw, strict=True):
                    tasks.start_soon(server.serve_listener, daemon, sock)
    finally:
        for sock in raw:  # refuse new clients at once after stop()
            sock.close()


def remove_socket(path: str, identity: tuple[int, int]) -> None:
    """Remove the socket file at ``path`` only if it is still the file ``identity`` names."""
    with contextlib.suppress(FileNotFoundError):
        found = os.stat(path)
        if (found.st_dev, found.st_ino) == identity:
            Path(path).unlink()
