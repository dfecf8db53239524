"""``spreadq daemon``: run the embedded single-node Spread daemon."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import anyio
import typer

from spreadq.eventloop import use_uvloop

__all__ = ["register"]


def daemon(
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one.")] = 4803,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    unix: Annotated[Path | None, typer.Option(help="Also listen on this Unix socket.")] = None,
    spread_socket: Annotated[
        bool,
        typer.Option(
            "--spread-socket",
            help="Also listen on /tmp/PORT, the Unix socket Spread's clients use for 'PORT'.",
        ),
    ] = False,
    name: Annotated[str, typer.Option(help="The daemon's name in private groups.")] = "localhost",
    max_session_messages: Annotated[
        int, typer.Option(help="Messages queued for one client before it is dropped.")
    ] = 1000,
) -> None:
    """Run the embedded Spread-compatible daemon until SIGTERM or Ctrl-C."""
    from spreadq.daemon import serve

    async def run() -> None:
        async with serve(
            host=host,
            port=port,
            unix_path=str(unix) if unix is not None else None,
            unix=spread_socket,
            name=name,
            max_session_messages=max_session_messages,
        ) as running:
            typer.echo(f"spreadq daemon {name!r} listening on {running.address}", err=True)
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for received in signals:
                    typer.echo(f"spreadq daemon stopping on {received.name}", err=True)
                    return

    anyio.run(run, backend_options={"use_uvloop": use_uvloop()})


def register(app: typer.Typer) -> None:
    """Add the ``daemon`` command to ``app``."""
    app.command()(daemon)
