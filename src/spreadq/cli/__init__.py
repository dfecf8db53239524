"""The ``spreadq`` command: a thin shell over the library, one module per subcommand.

The root options (``--log-level``, ``--log-format``) are accepted before or after the
subcommand, and read ``SPREADQ_LOG_LEVEL`` / ``SPREADQ_LOG_FORMAT``; logging goes to
stderr (:func:`spreadq.logs.configure_logging`). Every option of every subcommand has an
environment variable, shown in ``--help``; ``-h`` is ``--help``. Exit statuses are in
:mod:`spreadq.cli.exits`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final

import typer
from typer.core import TyperGroup

from spreadq.__about__ import __version__
from spreadq.cli import bench, daemon, demo, put, result, top, worker
from spreadq.logs import LOG_FORMATS, LogFormat, configure_logging

__all__ = [
    "CONTEXT_SETTINGS",
    "DEFAULT_LOG_LEVELS",
    "LogFormatChoice",
    "LogLevelChoice",
    "app",
    "hoist_root_options",
    "main",
]

CONTEXT_SETTINGS: Final[dict[str, Any]] = {"help_option_names": ["-h", "--help"]}

DEFAULT_LOG_LEVELS: Final[Mapping[str, str]] = {
    "worker": "info",
    "daemon": "info",
    "put": "warning",
    "bench": "warning",
    "demo": "warning",
    "top": "warning",
    "result": "warning",
}
"""The log level of each subcommand when neither ``--log-level`` nor
``SPREADQ_LOG_LEVEL`` is given: long-running services say what they do; one-shot
commands and the demo's screen show warnings only."""

_ROOT_OPTIONS: Final = frozenset({"--log-level", "-l", "--log-format"})


def hoist_root_options(args: Sequence[str]) -> list[str]:
    """Move ``--log-level``/``-l``/``--log-format`` (with their values) to the front of
    ``args``, so that they may follow the subcommand; nothing after ``--`` moves."""
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest.extend(args[index:])
            break
        if arg.split("=", 1)[0] in _ROOT_OPTIONS:
            width = 1 if "=" in arg else 2
            front.extend(args[index : index + width])
            index += width
            continue
        rest.append(arg)
        index += 1
    return front + rest


class _RootGroup(TyperGroup):
    """The root command: root options may come after the subcommand."""

    # ``ctx`` is Typer's vendored click Context, whose module is private.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_root_options(args))


app = typer.Typer(
    name="spreadq",
    cls=_RootGroup,
    help="A brokerless work queue on Spread group communication.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings=CONTEXT_SETTINGS,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"spreadq {__version__}")
        raise typer.Exit()


class LogLevelChoice(enum.StrEnum):
    """``--log-level`` values (``spreadq.logs.LOG_LEVELS``)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class LogFormatChoice(enum.StrEnum):
    """``--log-format`` values (``spreadq.logs.LOG_FORMATS``)."""

    CONSOLE = "console"
    JSON = "json"


_FORMATS: Final[dict[str, LogFormat]] = {fmt: fmt for fmt in LOG_FORMATS}


@app.callback()
def root(
    ctx: typer.Context,
    log_level: Annotated[
        LogLevelChoice | None,
        typer.Option(
            "--log-level",
            "-l",
            envvar="SPREADQ_LOG_LEVEL",
            case_sensitive=False,
            help="The lowest level logged (default: info for worker and daemon, "
            "warning for the others).",
        ),
    ] = None,
    log_format: Annotated[
        LogFormatChoice | None,
        typer.Option(
            "--log-format",
            envvar="SPREADQ_LOG_FORMAT",
            case_sensitive=False,
            help="Log lines for people or for machines "
            "(default: console when stderr is a terminal, else json).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """spreadq: consumers join a Spread group and agree on who runs each job.

    Logs go to stderr; --log-level and --log-format may also follow the subcommand.
    """
    if log_level is None:
        level = DEFAULT_LOG_LEVELS.get(ctx.invoked_subcommand or "", "warning")
    else:
        level = log_level.value
    ctx.obj = {"log_level": level}
    configure_logging(level, None if log_format is None else _FORMATS[log_format.value])


daemon.register(app)
demo.register(app)
worker.register(app)
put.register(app)
result.register(app)
bench.register(app)
top.register(app)


def main() -> None:
    """Run the command line."""
    app()
