"""``spreadq worker MODULE:APP``: import an :class:`~spreadq.App` and run it as a worker."""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Annotated

import anyio
import typer

from spreadq.cli.exits import EXIT_FAILED, epilog, shared_exits
from spreadq.errors import ConfigurationError, ForcedStop, LifespanError
from spreadq.eventloop import use_uvloop

if TYPE_CHECKING:
    from spreadq.worker.app import App

__all__ = ["load_app", "register"]


def load_app(target: str) -> App:
    """Import ``module:attribute`` (dots allowed in both) and return the :class:`App` there.

    The current directory is importable, as for ``python -m``.

    Raises:
        ConfigurationError: ``target`` is not ``module:attribute``, the module or the
            attribute does not exist, or it is not an ``App``.
    """
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise ConfigurationError(f"worker target {target!r} must read MODULE:APP, e.g. jobs:app")
    from spreadq.worker.app import App

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: object = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            raise ConfigurationError(f"cannot import module {module_name!r}: {error}") from error
        raise
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigurationError(f"module {module_name!r} has no {attribute!r}") from None
    if not isinstance(found, App):
        raise ConfigurationError(
            f"{target} is a {type(found).__name__}, not a spreadq.App: point at the App object"
        )
    return found


def worker(
    target: Annotated[
        str,
        typer.Argument(metavar="MODULE:APP", envvar="SPREADQ_APP", help="Where the App is."),
    ],
    spread: Annotated[
        str | None,
        typer.Option(
            "--spread",
            "-s",
            envvar="SPREADQ_SPREAD",
            help="Daemon address (PORT, PORT@HOST or unix:/path); default: the app's.",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            "-c",
            min=1,
            envvar="SPREADQ_CONCURRENCY",
            help="Handlers run at once; default: the app's settings.",
        ),
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(
            "--drain-timeout",
            "-d",
            min=0.0,
            envvar="SPREADQ_DRAIN_TIMEOUT",
            help="Seconds a SIGTERM drain may take; default: 30.",
        ),
    ] = None,
    connect_timeout: Annotated[
        float | None,
        typer.Option(
            "--connect-timeout",
            "-t",
            min=0.001,
            envvar="SPREADQ_CONNECT_TIMEOUT",
            help="Give up (exit 3) after this many seconds without reaching the daemon; "
            "default: the app's settings (never).",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65_535,
            envvar="SPREADQ_METRICS_PORT",
            help="Serve /metrics on this port (with the spreadq-prometheus plugin); "
            "default: the app's settings (none).",
        ),
    ] = None,
) -> None:
    """Run a worker for the App at MODULE:APP until SIGTERM or Ctrl-C (which drain).

    Logs at info on stderr: each session joined, each failed connect, the handlers' ctx.log.
    """
    with shared_exits():
        app = load_app(target)
        changes: dict[str, object] = {}
        if concurrency is not None:
            changes["concurrency"] = concurrency
        if connect_timeout is not None:
            changes["connect_timeout"] = connect_timeout
        if metrics_port is not None:
            changes["metrics_port"] = metrics_port
        settings = app.settings.replace(**changes) if changes else app.settings

    async def run() -> None:
        if drain_timeout is None:
            await app.run(spread=spread, settings=settings)
        else:
            await app.run(spread=spread, settings=settings, drain_timeout=drain_timeout)

    try:
        with shared_exits():
            anyio.run(run, backend_options={"use_uvloop": use_uvloop()})
    except ForcedStop as error:  # logged as worker_forced_stop already
        raise typer.Exit(error.exit_code) from None
    except LifespanError as error:
        typer.echo(f"error: {error} ({error.__cause__!r})", err=True)
        raise typer.Exit(EXIT_FAILED) from None


def register(app: typer.Typer) -> None:
    """Add the ``worker`` command to ``app``."""
    app.command(
        epilog=epilog(
            "the worker drained and left (SIGTERM, Ctrl-C)",
            "the app's lifespan failed to start or to shut down",
            interrupted=False,
        )
        + " A second signal during the drain stops it at once: 130 after SIGINT, 143 after"
        " SIGTERM.",
    )(worker)
