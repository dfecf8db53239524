"""``spreadq daemon``: run the embedded single-node Spread daemon."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Final

import anyio
import typer

from spreadq.eventloop import use_uvloop

__all__ = ["EXIT_ADDRESS_IN_USE", "EXIT_CANNOT_LISTEN", "register"]

EXIT_CANNOT_LISTEN: Final = 1
"""Exit status when the daemon cannot listen for another reason (permissions, bad path)."""
EXIT_ADDRESS_IN_USE: Final = 3
"""Exit status when the TCP port or the Unix socket is already taken by a live daemon."""

EPILOG = (
    "Like a Spread daemon, it listens on TCP port PORT and on the Unix socket /tmp/PORT "
    "(the socket that Spread clients use for the address 'PORT'); --no-unix-socket turns "
    "the socket off. Spread's NULL authentication lets anyone who reaches the daemon join "
    "any group and send anything: keep --host on loopback unless the network is trusted."
    "\n\n"
    f"Exit status: 0 when stopped by SIGTERM or SIGINT; {EXIT_CANNOT_LISTEN} when it cannot "
    f"listen; 2 for bad options; {EXIT_ADDRESS_IN_USE} when the port or the Unix socket is "
    "already in use (another daemon)."
)


def _socket_mode(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an octal mode such as 0600") from None
    if not 0 <= mode <= 0o777:
        raise typer.BadParameter(f"{value!r} is not a permission mode (0000 to 0777)")
    return mode


def daemon(
    port: Annotated[
        int,
        typer.Option(
            "--port", "-p", envvar="SPREADQ_DAEMON_PORT", help="TCP port; 0 picks a free one."
        ),
    ] = 4803,
    host: Annotated[
        str,
        typer.Option(
            envvar="SPREADQ_DAEMON_HOST",
            help="Address to listen on (anything but loopback gets a warning).",
        ),
    ] = "127.0.0.1",
    unix_socket: Annotated[
        bool,
        typer.Option(
            "--unix-socket/--no-unix-socket",
            envvar="SPREADQ_DAEMON_UNIX_SOCKET",
            help="Also listen on the Unix socket /tmp/PORT (or --unix PATH).",
        ),
    ] = True,
    unix: Annotated[
        Path | None,
        typer.Option(
            envvar="SPREADQ_DAEMON_UNIX", help="Put the Unix socket at PATH instead of /tmp/PORT."
        ),
    ] = None,
    socket_mode: Annotated[
        str,
        typer.Option(
            envvar="SPREADQ_DAEMON_SOCKET_MODE",
            help="Permission bits of the Unix socket, in octal; 0666 lets every local user in.",
        ),
    ] = "0600",
    spread_socket: Annotated[
        bool,
        typer.Option(
            "--spread-socket", hidden=True, help="Accepted for compatibility: now the default."
        ),
    ] = False,
    name: Annotated[
        str, typer.Option(envvar="SPREADQ_DAEMON_NAME", help="The daemon's name in private groups.")
    ] = "localhost",
    max_session_messages: Annotated[
        int,
        typer.Option(
            envvar="SPREADQ_DAEMON_MAX_SESSION_MESSAGES",
            help="Messages queued for one client before it is dropped.",
        ),
    ] = 1000,
) -> None:
    """Run the embedded Spread-compatible daemon until SIGTERM or Ctrl-C."""
    from spreadq.daemon import serve
    from spreadq.daemon.server import NOT_LOOPBACK_RISK
    from spreadq.errors import AddressInUse

    del spread_socket  # the Unix socket /tmp/PORT is on unless --no-unix-socket
    mode = _socket_mode(socket_mode)
    if unix is not None and not unix_socket:
        raise typer.BadParameter("--unix PATH and --no-unix-socket contradict each other")

    async def run() -> None:
        async with serve(
            host=host,
            port=port,
            unix_path=str(unix) if unix is not None else None,
            unix=unix_socket and unix is None,
            unix_mode=mode,
            name=name,
            max_session_messages=max_session_messages,
        ) as running:
            if running.exposed:
                typer.echo(
                    f"spreadq daemon: warning: listening on {host}, beyond loopback: "
                    f"{NOT_LOOPBACK_RISK}.",
                    err=True,
                )
            where = running.address
            if running.unix_path is not None:
                where += f" and {running.unix_path}"
            typer.echo(f"spreadq daemon {name!r} listening on {where}", err=True)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for received in signals:
                    typer.echo(f"spreadq daemon stopping on {received.name}", err=True)
                    return

    try:
        anyio.run(run, backend_options={"use_uvloop": use_uvloop()})
    except AddressInUse as error:
        typer.echo(f"spreadq daemon: {error}", err=True)
        raise typer.Exit(EXIT_ADDRESS_IN_USE) from None
    except OSError as error:
        typer.echo(f"spreadq daemon: cannot listen: {error}", err=True)
        raise typer.Exit(EXIT_CANNOT_LISTEN) from None


def register(app: typer.Typer) -> None:
    """Add the ``daemon`` command to ``app``."""
    app.command(epilog=EPILOG)(daemon)
