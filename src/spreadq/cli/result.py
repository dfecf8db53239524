"""``spreadq result QUEUE JOB_ID``: print the outcome of a job from any process, while
the queue's consumers still remember it."""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
import typer

from spreadq.cli.exits import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    epilog,
)
from spreadq.errors import (
    ConnectError,
    ConnectionLost,
    JobCancelled,
    JobFailed,
    OutcomeUnknown,
    SpreadqError,
)
from spreadq.queue.jobs import JobRef

__all__ = ["register"]


def result(
    queue: Annotated[str, typer.Argument(envvar="SPREADQ_QUEUE", help="The queue name.")],
    job_id: Annotated[
        str,
        typer.Argument(
            metavar="JOB_ID", help="The job's id, as Receipt.job_id and Context.job.id give it."
        ),
    ],
    spread: Annotated[
        str | None,
        typer.Option(
            "--spread",
            "-s",
            envvar="SPREADQ_SPREAD",
            help="Daemon address (PORT, PORT@HOST or unix:/path); default: 4803.",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            "-t",
            min=0.001,
            envvar="SPREADQ_RESULT_TIMEOUT",
            help="Seconds to wait for the consumers' answer (and for a job still running).",
        ),
    ] = 5.0,
) -> None:
    """Print the result of job JOB_ID on QUEUE as JSON, if a consumer remembers it.

    Consumers remember the last Settings.completed_history outcomes each, in memory.
    """
    try:
        JobRef.parse(job_id)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    try:
        code = anyio.run(_result, queue, job_id, spread, timeout)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


async def _result(queue: str, job_id: str, spread: str | None, seconds: float) -> int:
    from spreadq.producer import Producer

    value: Any
    try:
        async with Producer(queue, spread, close_timeout=0.0) as producer:
            value = await producer.result(job_id, timeout=seconds)
    except JobCancelled as error:
        typer.echo(f"job cancelled: {error}", err=True)
        return EXIT_FAILED
    except JobFailed as error:
        typer.echo(f"job failed: {error}", err=True)
        return EXIT_FAILED
    except OutcomeUnknown as error:
        typer.echo(f"error: {error}", err=True)
        return EXIT_FAILED
    except (ConnectError, ConnectionLost) as error:
        typer.echo(f"error: {error}", err=True)
        return EXIT_UNREACHABLE
    except SpreadqError as error:
        typer.echo(f"error: {error}", err=True)
        return EXIT_USAGE
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    typer.echo(json.dumps(value))
    return EXIT_OK


def register(app: typer.Typer) -> None:
    """Add the ``result`` command to ``app``."""
    app.command(
        epilog=epilog(
            "the job succeeded (its result is printed as JSON)",
            "the job failed or was cancelled, or no consumer remembers it",
        )
    )(result)
