"""The ``spreadq`` command: a thin shell over the library, one module per subcommand."""

from __future__ import annotations

from typing import Annotated

import typer

from spreadq.__about__ import __version__
from spreadq.cli import bench, daemon, demo, put, worker
from spreadq.logs import configure_logging

__all__ = ["app", "main"]

app = typer.Typer(
    name="spreadq",
    help="A brokerless work queue on Spread group communication.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"spreadq {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "warning",
    log_json: Annotated[bool, typer.Option("--log-json", help="Log JSON lines.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """spreadq: consumers join a Spread group and agree on who runs each job."""
    configure_logging(log_level, "json" if log_json else None)


daemon.register(app)
demo.register(app)
worker.register(app)
put.register(app)
bench.register(app)


def main() -> None:
    """Run the command line."""
    app()
