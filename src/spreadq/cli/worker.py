"""``spreadq worker MODULE:APP``: import an :class:`~spreadq.App` and run it as a worker."""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Annotated

import anyio
import typer

from spreadq.errors import ConfigurationError, ForcedStop
from spreadq.eventloop import use_uvloop

if TYPE_CHECKING:
    from spreadq.app import App

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
    from spreadq.app import App

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
    target: Annotated[str, typer.Argument(metavar="MODULE:APP", help="Where the App is.")],
    spread: Annotated[
        str | None,
        typer.Option(help="Daemon address (PORT, PORT@HOST or unix:/path); default: the app's."),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Handlers run at once; default: the app's settings.")
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(min=0.0, help="Seconds a SIGTERM drain may take; default: 30."),
    ] = None,
) -> None:
    """Run a worker for the App at MODULE:APP until SIGTERM or Ctrl-C (which drain).

    Exit status: 0 drained and stopped, 2 bad target or settings, 130 (SIGINT) or 143
    (SIGTERM) when a second signal during the drain stopped it at once.
    """
    try:
        app = load_app(target)
        settings = app.settings
        if concurrency is not None:
            settings = settings.replace(concurrency=concurrency)
    except ConfigurationError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None

    async def run() -> None:
        if drain_timeout is None:
            await app.run(spread=spread, settings=settings)
        else:
            await app.run(spread=spread, settings=settings, drain_timeout=drain_timeout)

    try:
        anyio.run(run, backend_options={"use_uvloop": use_uvloop()})
    except ConfigurationError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except ForcedStop as error:  # logged as worker_forced_stop already
        raise typer.Exit(error.exit_code) from None


def register(app: typer.Typer) -> None:
    """Add the ``worker`` command to ``app``."""
    app.command()(worker)
