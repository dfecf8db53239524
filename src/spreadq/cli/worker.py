"""``spreadq worker MODULE:APP``: import an :class:`~spreadq.App` and run it as a worker."""

from __future__ import annotations

import importlib
import math
import os
import sys
from typing import TYPE_CHECKING, Annotated

import anyio
import typer

from spreadq.cli.exits import EXIT_FAILED, epilog, shared_exits
from spreadq.errors import ConfigurationError, ForcedStop, LifespanError
from spreadq.eventloop import use_uvloop
from spreadq.settings import _NONE_WORDS

if TYPE_CHECKING:
    from spreadq.worker.app import App

__all__ = ["load_app", "number_or_none", "register"]


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


def number_or_none(
    text: str,
    option: str,
    kind: type[float] | type[int],
    *,
    low: float,
    high: float | None = None,
) -> float | int | None:
    """``text`` as a number of ``kind`` in ``[low, high]``, or None for ``none`` or ``off``
    (any case), the words :class:`~spreadq.Settings` reads from a ``SPREADQ_*`` variable.

    Raises:
        typer.BadParameter: anything else (exit status 2, naming ``option``).
    """
    word = text.strip()
    if word.lower() in _NONE_WORDS:
        return None
    try:
        number = kind(word)
    except ValueError:
        what = "a number of seconds" if kind is float else "a whole number"
        raise typer.BadParameter(f"{text!r} is not {what} or none", param_hint=option) from None
    if not low <= number <= (math.inf if high is None else high):  # NaN is in no range
        bound = f"at least {low}" if high is None else f"from {low} to {high}"
        raise typer.BadParameter(f"{text!r}: it must be {bound}, or none", param_hint=option)
    return number


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
        str | None,
        typer.Option(
            "--connect-timeout",
            "-t",
            metavar="SECONDS|none",
            envvar="SPREADQ_CONNECT_TIMEOUT",
            help="Give up (exit 3) after this many seconds without reaching the daemon, "
            "or never (none); default: the app's settings (never).",
        ),
    ] = None,
    metrics_port: Annotated[
        str | None,
        typer.Option(
            "--metrics-port",
            metavar="PORT|none",
            envvar="SPREADQ_METRICS_PORT",
            help="Serve /metrics on this port (with the spreadq-prometheus plugin), or "
            "not at all (none); default: the app's settings (none).",
        ),
    ] = None,
) -> None:
    """Run a worker for the App at MODULE:APP until SIGTERM or Ctrl-C (which drain).

    Logs at info on stderr: each session joined, each failed connect, the handlers' ctx.log.
    """
    changes: dict[str, object] = {}
    if concurrency is not None:
        changes["concurrency"] = concurrency
    if connect_timeout is not None:
        changes["connect_timeout"] = number_or_none(
            connect_timeout, "--connect-timeout", float, low=0.001
        )
    if metrics_port is not None:
        changes["metrics_port"] = number_or_none(
            metrics_port, "--metrics-port", int, low=0, high=65_535
        )
    with shared_exits():
        app = load_app(target)
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
