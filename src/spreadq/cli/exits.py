"""The ``spreadq`` command's exit statuses, the same for every subcommand.

=====  ==============================================================================
``0``  done: the command did what it was asked (a worker drained and left)
``1``  failed: a job failed or timed out, a benchmark or the demo went wrong
``2``  usage: a bad option, argument, payload or app (``MODULE:APP``), or settings
``3``  unreachable: no daemon at the address (or it refused the session, or it was
       lost for good: ``--connect-timeout``, ``SPREADQ_RECONNECT_MAX_ATTEMPTS``)
``130`` interrupted by Ctrl-C before the command could finish cleanly
=====  ==============================================================================
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import typer

from spreadq.errors import ConfigurationError, ConnectError, ConnectionLost

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "epilog",
    "shared_exits",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNREACHABLE: Final = 3
EXIT_INTERRUPTED: Final = 130


def epilog(ok: str, failed: str | None = None, *, interrupted: bool = True) -> str:
    """The ``Exit status`` paragraph of a command's ``--help``.

    Args:
        ok: what status 0 means for this command.
        failed: what status 1 means for it; None when it never exits 1.
        interrupted: whether Ctrl-C ends it with 130 (a worker drains instead).
    """
    parts = [f"{EXIT_OK} {ok}"]
    if failed is not None:
        parts.append(f"{EXIT_FAILED} {failed}")
    parts.append(f"{EXIT_USAGE} bad usage or configuration")
    parts.append(f"{EXIT_UNREACHABLE} no daemon reached (or it refused or was lost)")
    if interrupted:
        parts.append(f"{EXIT_INTERRUPTED} interrupted")
    return "Exit status: " + "; ".join(parts) + "."


@contextmanager
def shared_exits() -> Iterator[None]:
    """Turn the errors every command meets into one ``error:`` line and its status:
    bad settings or app, 2; no daemon reached (or it was lost for good), 3.

    Raises:
        typer.Exit: with :data:`EXIT_USAGE` or :data:`EXIT_UNREACHABLE`.
    """
    try:
        yield
    except ConfigurationError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except (ConnectError, ConnectionLost) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_UNREACHABLE) from None
