"""``spreadq put QUEUE KIND JSON``: put one job on a queue, and optionally wait for its result."""

from __future__ import annotations

import json
import sys
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
from spreadq.errors import ConnectError, ConnectionLost, JobFailed, SpreadqError

__all__ = ["register"]


def put(
    queue: Annotated[str, typer.Argument(envvar="SPREADQ_QUEUE", help="The queue name.")],
    kind: Annotated[str, typer.Argument(help="The handler kind.")],
    payload: Annotated[
        str, typer.Argument(metavar="JSON", help="The payload as JSON; '-' reads it from stdin.")
    ],
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            "-k",
            envvar="SPREADQ_PUT_KEY",
            help="The job key (routes it under key_affinity).",
        ),
    ] = None,
    spread: Annotated[
        str | None,
        typer.Option(
            "--spread",
            "-s",
            envvar="SPREADQ_SPREAD",
            help="Daemon address (PORT, PORT@HOST or unix:/path); default: 4803.",
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            "-w",
            envvar="SPREADQ_PUT_WAIT",
            help="Wait for the outcome and print the result as JSON.",
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            "-t",
            min=0.0,
            envvar="SPREADQ_PUT_TIMEOUT",
            help="Seconds to wait for a consumer (and the outcome).",
        ),
    ] = 30.0,
) -> None:
    """Put one job on QUEUE for handler KIND; with --wait, print its result.

    The job is held until a consumer is present (at most --timeout seconds).
    """
    text = sys.stdin.read() if payload == "-" else payload
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        typer.echo(f"error: the payload is not JSON: {error}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    try:
        code = anyio.run(_put, queue, kind, value, key, spread, wait, timeout)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


async def _put(
    queue: str,
    kind: str,
    value: Any,
    key: str | None,
    spread: str | None,
    wait: bool,
    seconds: float,
) -> int:
    from spreadq.producer import Producer

    try:
        async with Producer(queue, spread, close_timeout=0.0) as producer:
            receipt = await producer.put(kind, value, key=key)
            with anyio.move_on_after(seconds) as waiting:
                if wait:
                    result = await receipt
                else:
                    await producer.flush()
            if waiting.cancelled_caught:
                what = "outcome" if wait else "consumer"
                typer.echo(f"error: no {what} within {seconds:g} s", err=True)
                return EXIT_FAILED
    except JobFailed as error:
        typer.echo(f"job failed: {error}", err=True)
        return EXIT_FAILED
    except (ConnectError, ConnectionLost) as error:
        typer.echo(f"error: {error}", err=True)
        return EXIT_UNREACHABLE
    except SpreadqError as error:
        typer.echo(f"error: {error}", err=True)
        return EXIT_USAGE
    if wait:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"sent {kind!r} #{receipt.seq} to {queue!r} (job id {receipt.job_id})", err=True)
    return EXIT_OK


def register(app: typer.Typer) -> None:
    """Add the ``put`` command to ``app``."""
    app.command(
        epilog=epilog(
            "sent (with --wait: the job succeeded)", "the job failed, or --timeout passed"
        )
    )(put)
