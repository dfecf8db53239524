"""The embedded daemon: :func:`serve` runs it in an ``async with`` block,
:func:`run_forever` as a process.

:func:`serve` binds one TCP listener per virtual daemon, plus Unix sockets when asked
(:mod:`spreadq.daemon.listeners`), and serves each client in a task of its own
(:mod:`spreadq.daemon.sessions`) until its context ends. The protocol logic is the
sans-IO :class:`~spreadq.daemon.engine.Engine`; this module wires it to sockets.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import MappingProxyType

import anyio
import anyio.abc

from spreadq.daemon.engine import Engine
from spreadq.daemon.faults import Faults
from spreadq.daemon.listeners import (
    DEFAULT_SOCKET_MODE,
    NOT_LOOPBACK_RISK,
    listen,
    remove_socket,
    run_listeners,
    warn_if_exposed,
)
from spreadq.daemon.listening import Listening
from spreadq.daemon.sessions import (
    DAEMON_VERSION,
    HANDSHAKE_TIMEOUT,
    JOIN_BELOW,
    READ_SIZE,
    SHARED_BODY_SIZE,
    TURN_EVENTS,
    Sessions,
    encode_for_queue,
)
from spreadq.errors import ConfigurationError
from spreadq.logs import get_logger
from spreadq.wire.constants import (
    DEFAULT_MAX_SESSION_MESSAGES,
    MAX_SESSIONS,
)

__all__ = [
    "DAEMON_VERSION",
    "DEFAULT_SOCKET_MODE",
    "HANDSHAKE_TIMEOUT",
    "JOIN_BELOW",
    "NOT_LOOPBACK_RISK",
    "READ_SIZE",
    "SHARED_BODY_SIZE",
    "TURN_EVENTS",
    "Daemon",
    "Listening",
    "run_forever",
    "serve",
]

log = get_logger(__name__)


class Daemon:
    """A running embedded daemon: where it listens, its faults, and how to stop it.

    Yielded by :func:`serve`; do not build one yourself.
    """

    def __init__(
        self,
        server: Sessions,
        listening: Sequence[Listening],
        stop: Callable[[], None],
        exposed: Sequence[str] = (),
    ) -> None:
        self._server = server
        self._listening = tuple(listening)
        self._stop = stop
        self._exposed = tuple(exposed)
        self.faults: Faults = Faults(server)
        """Fault injection (kill, pause, partition, merge)."""

    @property
    def name(self) -> str:
        """The (first) daemon's name, the suffix of its private groups."""
        return self._listening[0].daemon

    @property
    def daemons(self) -> tuple[str, ...]:
        """Every virtual daemon, in configuration order."""
        return tuple(item.daemon for item in self._listening)

    @property
    def host(self) -> str:
        """The host the (first) daemon listens on."""
        return self._listening[0].host

    @property
    def port(self) -> int:
        """The (first) daemon's TCP port."""
        return self._listening[0].port

    @property
    def address(self) -> str:
        """``"PORT@HOST"`` of the (first) daemon, for ``spreadq.connect``."""
        return self._listening[0].address

    @property
    def unix_path(self) -> str | None:
        """The (first) daemon's Unix socket path, if it has one."""
        return self._listening[0].unix_path

    @property
    def exposed(self) -> tuple[str, ...]:
        """The bound addresses that are not loopback (anyone who reaches them may join)."""
        return self._exposed

    @property
    def listening(self) -> tuple[Listening, ...]:
        """Where every virtual daemon listens, in configuration order."""
        return self._listening

    @property
    def addresses(self) -> Mapping[str, str]:
        """``"PORT@HOST"`` of each virtual daemon, by name."""
        return MappingProxyType({item.daemon: item.address for item in self._listening})

    @property
    def engine(self) -> Engine:
        """The daemon's engine (read its state; change it only through ``faults``)."""
        return self._server.engine

    def stop(self) -> None:
        """Stop the daemon: close the listeners and every session."""
        self._stop()

    async def aclose(self) -> None:
        """Stop the daemon (the same as :meth:`stop`, awaitable)."""
        self._stop()
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"<Daemon {self.name!r} at {self.address}>"


@asynccontextmanager
async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    unix_path: str | os.PathLike[str] | None = None,
    *,
    name: str = "localhost",
    max_session_messages: int = DEFAULT_MAX_SESSION_MESSAGES,
    daemons: Sequence[str] | None = None,
    unix: bool = False,
    unix_mode: int = DEFAULT_SOCKET_MODE,
    max_sessions: int = MAX_SESSIONS,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Daemon]:
    """Run an embedded Spread-compatible daemon for the duration of the context.

    It listens on ``host`` (loopback by default) at ``port`` (0 picks a free port) and
    speaks the Spread 4/5 client protocol, so ``spreadq.connect(daemon.address)``, the
    C library and the Java client can use it.

    Args:
        host: the address to listen on.
        port: the TCP port; 0 picks a free one. With several ``daemons``, daemon ``i``
            listens on ``port + i`` (each on a free port when ``port`` is 0).
        unix_path: also listen on this Unix socket (the first daemon). A stale socket
            file (nobody accepts on it) is replaced; a live one raises ``AddressInUse``
            and is left alone. The file is removed at the end if it is still ours.
        name: the daemon's name, the suffix of private groups (``#alice#localhost``).
        max_session_messages: a client with more messages queued is dropped.
        daemons: names of several virtual daemons in one process (overrides ``name``);
            ``daemon.faults`` can partition and merge them.
        unix: also listen on Spread's own Unix socket ``/tmp/<port>`` (each daemon).
        unix_mode: the permission bits of the Unix sockets (default ``0o600``: only
            this user may connect; ``0o666`` lets every local user in).
        max_sessions: sessions per daemon before ``REJECT_QUOTA``.
        clock: the wall clock, in Unix seconds (ring ids use it).

    A host that is not a loopback address is logged as a ``daemon_not_loopback``
    warning: Spread's NULL authentication lets anyone who reaches the port join any
    group and send anything.

    Raises:
        ConfigurationError: bad daemon names, limits or socket mode.
        AddressInUse: the TCP port, or a Unix socket a live daemon accepts on, is taken.
        OSError: a port or path that cannot be bound for another reason.
    """
    names = tuple(daemons) if daemons else (name,)
    engine = Engine(
        daemons=names,
        start_time=int(clock()),
        max_session_messages=max_session_messages,
        max_sessions=max_sessions,
        encode=encode_for_queue,
    )
    if unix_path is not None and unix:
        raise ConfigurationError("give either unix_path or unix=True, not both")
    if not 0 <= unix_mode <= 0o777:
        raise ConfigurationError(f"unix_mode {unix_mode:#o} is not a permission mode")
    server = Sessions(engine, clock)
    listeners: list[tuple[str, anyio.abc.SocketListener]] = []
    listening: list[Listening] = []
    owned: list[tuple[str, tuple[int, int]]] = []  # Unix socket files this daemon made
    body_error: Exception | None = None
    try:
        for index, daemon in enumerate(names):
            wanted = port + index if port else 0
            path = os.fspath(unix_path) if unix_path is not None and index == 0 else None
            bound, where = await listen(
                daemon, host, wanted, path, spread_unix=unix, mode=unix_mode, owned=owned
            )
            listeners.extend((daemon, listener) for listener in bound)
            listening.append(where)
        exposed = warn_if_exposed(host, [listener for _, listener in listeners])
        async with anyio.create_task_group() as tasks:
            stopper = anyio.CancelScope()
            tasks.start_soon(run_listeners, stopper, listeners, server)
            log.info(
                "daemon_listening",
                daemons=names,
                addresses=[where.address for where in listening],
                unix=[where.unix_path for where in listening if where.unix_path],
            )
            try:
                yield Daemon(server, listening, stopper.cancel, exposed)
            except Exception as error:  # re-raised below, not wrapped in a group
                body_error = error
            finally:
                stopper.cancel()
        if body_error is not None:
            raise body_error
    finally:
        with anyio.CancelScope(shield=True):
            for _, listener in listeners:
                await listener.aclose()
        for path, identity in owned:
            remove_socket(path, identity)


async def run_forever(
    host: str = "127.0.0.1",
    port: int = 4803,
    unix_path: str | None = None,
    *,
    name: str = "localhost",
    max_session_messages: int = DEFAULT_MAX_SESSION_MESSAGES,
    daemons: Sequence[str] | None = None,
    unix: bool = False,
    unix_mode: int = DEFAULT_SOCKET_MODE,
    ready: Callable[[Daemon], object] | None = None,
) -> None:
    """Run the daemon until cancelled (what ``spreadq daemon`` calls).

    ``ready`` is called with the running daemon once it listens.

    Raises:
        ConfigurationError: bad daemon names, limits or socket mode.
        AddressInUse: the TCP port, or a Unix socket a live daemon accepts on, is taken.
        OSError: a port or path that cannot be bound for another reason.
    """
    async with serve(
        host,
        port,
        unix_path,
        name=name,
        max_session_messages=max_session_messages,
        daemons=daemons,
        unix=unix,
        unix_mode=unix_mode,
    ) as daemon:
        if ready is not None:
            ready(daemon)
        await anyio.sleep_forever()
