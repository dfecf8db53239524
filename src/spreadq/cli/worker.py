"""``spreadq worker MODULE:APP``: import an :class:`~spreadq.App` and run it as a worker."""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import typer
from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from spreadq.cli.exits import EXIT_FAILED, epilog, shared_exits
from spreadq.errors import ConfigurationError, ForcedStop, LifespanError
from spreadq.eventloop import use_uvloop
from spreadq.settings import _OPTIONAL_NUMBERS, Settings, _none_for_word

if TYPE_CHECKING:
    from spreadq.worker.app import App

__all__ = ["load_app", "register", "setting_from_text"]


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


def setting_from_text(name: str, text: str, option: str) -> object:
    """``text`` read as :class:`~spreadq.Settings` reads ``SPREADQ_<NAME>``: ``none`` or
    ``off`` (any case) for a setting that may be None, else a value of the field's type
    within the field's own bounds.

    Raises:
        typer.BadParameter: a value the field refuses (exit status 2, naming ``option``
            and what the field expects).
    """
    may_be_none = name in _OPTIONAL_NUMBERS
    word = text.strip()
    value = _none_for_word(word) if may_be_none else word
    try:
        return _field_adapter(Settings.model_fields[name]).validate_python(value)
    except ValidationError as error:
        why = "; ".join(str(detail["msg"]) for detail in error.errors())
        or_none = ", or none" if may_be_none else ""
        raise typer.BadParameter(f"{text!r}: {why}{or_none}", param_hint=option) from None


def _field_adapter(field: FieldInfo) -> TypeAdapter[Any]:
    """A validator of one settings field alone: its type and constraints, and the
    model's refusal of infinities and NaN."""
    typed: Any = Annotated[field.annotation, field]
    model = ConfigDict(allow_inf_nan=Settings.model_config.get("allow_inf_nan", True))
    return TypeAdapter(typed, config=model)


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
        changes["connect_timeout"] = setting_from_text(
            "connect_timeout", connect_timeout, "--connect-timeout"
        )
    if metrics_port is not None:
        changes["metrics_port"] = setting_from_text("metrics_port", metrics_port, "--metrics-port")
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
