"""``spreadq top QUEUE``: a live view of a queue's consumers, read from FEEDBACK only.

``top`` connects under an observer's private name (:func:`spreadq.queue.protocol.observer_name`,
``~top`` and six random hex digits) and joins the queue's FEEDBACK group, never its WORK
group: joining WORK would make it a consumer that silently owns a share of the jobs.
Producers do not count an observer as a producer sharing the window, and the only
thing its join causes is the first consumer announcing the VIEW again, which ``top``
needs. It reads VIEW and STATS envelopes (:class:`~spreadq.observe.board.Board`) and
shows one row per consumer in the VIEW's order, and one per producer.

With a queue secret (``SPREADQ_SECRET``) it unseals what it reads; a message whose seal
does not verify is skipped.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
import typer
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from spreadq.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, epilog, shared_exits
from spreadq.client import Connection, connect
from spreadq.errors import EnvelopeError
from spreadq.observe.board import Board, TopSnapshot
from spreadq.queue.envelope import Stats, decode
from spreadq.queue.protocol import observer_name, queue_groups
from spreadq.queue.seal import Seal
from spreadq.queue.view import View
from spreadq.settings import Settings
from spreadq.wire.events import DataMessage, RegularMembership

__all__ = ["register", "render", "watch"]

_REFRESH = 0.5  # seconds between two screens


def top(
    queue: Annotated[str, typer.Argument(envvar="SPREADQ_QUEUE", help="The queue name.")],
    spread: Annotated[
        str | None,
        typer.Option(
            "--spread",
            "-s",
            envvar="SPREADQ_SPREAD",
            help="Daemon address (PORT, PORT@HOST or unix:/path); default: 4803.",
        ),
    ] = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            envvar="SPREADQ_TOP_ONCE",
            help="Print one screen, once every consumer has reported (or --wait passed).",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", envvar="SPREADQ_TOP_JSON", help="Print JSON instead of a table."),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            "-w",
            min=0.0,
            envvar="SPREADQ_TOP_WAIT",
            help="With --once: the most seconds to wait for every consumer's report.",
        ),
    ] = 5.0,
) -> None:
    """Show QUEUE's consumers and producers live, from what consumers report.

    Joins only the queue's feedback group, as an observer: watching never takes jobs.
    Ctrl-C leaves.
    """
    with shared_exits():
        settings = Settings.from_env()
        queue_groups(queue)  # a bad name is a usage error before connecting
        try:
            code = anyio.run(_top, queue, spread, once, as_json, wait, settings)
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
    raise typer.Exit(code)


PIPE_WIDTH = 160
"""Columns of the board when stdout is not a terminal."""


async def _top(
    queue: str, spread: str | None, once: bool, as_json: bool, wait: float, settings: Settings
) -> int:
    # a pipe or a file gets the whole table, not rich's 80 columns with cut headers
    console = Console() if sys.stdout.isatty() else Console(width=PIPE_WIDTH)
    if once:
        snapshot = await watch(queue, spread, settings=settings, wait=wait)
        if as_json:
            sys.stdout.write(snapshot.model_dump_json() + "\n")
        else:
            console.print(render(snapshot))
        return EXIT_OK if snapshot.view_id is not None else EXIT_FAILED
    board = _board(queue, settings)
    async with _observing(queue, spread) as conn:
        with Live(render(board.snapshot(time.monotonic())), console=console) as live:
            while True:
                with anyio.move_on_after(_REFRESH):
                    await _read(conn, board, _seal(settings))
                if as_json:
                    sys.stdout.write(board.snapshot(time.monotonic()).model_dump_json() + "\n")
                else:
                    live.update(render(board.snapshot(time.monotonic())))


def _board(queue: str, settings: Settings) -> Board:
    return Board(queue, window=settings.window)


def _seal(settings: Settings) -> Seal | None:
    secret = settings.secret
    return None if secret is None else Seal(secret.get_secret_value().encode("utf-8"))


@asynccontextmanager
async def _observing(queue: str, spread: str | None) -> AsyncIterator[Connection]:
    """Connect under an observer's name and join FEEDBACK only."""
    feedback = queue_groups(queue)[1]
    async with connect(spread, name=observer_name("top" + secrets.token_hex(3))) as conn:
        await conn.join(feedback)
        yield conn


async def _read(conn: Connection, board: Board, seal: Seal | None) -> None:
    """Feed the board what arrives, until cancelled."""
    while True:
        for event in await conn.receive_batch():
            _feed(board, event, seal)


def _feed(board: Board, event: object, seal: Seal | None) -> None:
    if isinstance(event, RegularMembership):
        board.on_feedback(event.members)
        return
    if not isinstance(event, DataMessage):
        return
    try:
        data = event.data if seal is None else seal.unseal(event.data, event.sender)
        message = decode(data)
    except EnvelopeError:
        return  # not ours to judge: a producer or a worker says so in its own log
    if type(message) is View:
        board.on_view(message, event.sender)
    elif type(message) is Stats:
        board.on_stats(message, event.sender, time.monotonic())


async def watch(
    queue: str,
    spread: str | None = None,
    *,
    settings: Settings | None = None,
    wait: float = 5.0,
) -> TopSnapshot:
    """Observe ``queue`` until every consumer of its VIEW has reported (at most ``wait``
    seconds) and return the board, joining only its FEEDBACK group.

    Raises:
        ConfigurationError: a bad queue name or daemon address.
        ConnectError: the daemon could not be reached or refused the session.
        ConnectionLost: the session ended.
    """
    settings = Settings.from_env() if settings is None else settings
    board = _board(queue, settings)
    seal = _seal(settings)
    async with _observing(queue, spread) as conn:
        with anyio.move_on_after(wait):
            while not board.complete():
                for event in await conn.receive_batch():
                    _feed(board, event, seal)
    return board.snapshot(time.monotonic())


_STATE_STYLE = {"running": "green", "draining": "yellow", "waiting": "cyan", "gone": "red"}


def render(snapshot: TopSnapshot) -> RenderableType:
    """The screen for ``snapshot``: a header line, the consumers' table, the producers'."""
    view = "no VIEW yet" if snapshot.view_id is None else f"view {snapshot.view_id}"
    if snapshot.group_id is not None:
        view += " (" + ".".join(str(part) for part in snapshot.group_id) + ")"
    header = Text.assemble(
        ("spreadq top ", "bold"),
        (snapshot.queue, "bold cyan"),
        f"  {view}  ",
        f"consumers: {sum(row.state in ('running', 'draining') for row in snapshot.consumers)}",
    )
    consumers = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    for name, justify in (
        ("member", "left"),
        ("state", "left"),
        ("owned", "right"),
        ("run", "right"),
        ("done", "right"),
        ("done/s", "right"),
        ("failed", "right"),
        ("oldest", "right"),
        ("failovers", "right"),
        ("takeover", "right"),
        ("view", "right"),
    ):
        consumers.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in snapshot.consumers:
        takeover = "-"
        if row.takeover_ms_avg is not None:
            takeover = f"{row.takeover_ms_avg:g}/{row.takeover_ms_max} ms"
        consumers.add_row(
            row.member,
            Text(row.state, style=_STATE_STYLE.get(row.state, "")),
            str(row.owned),
            str(row.running),
            str(row.done),
            "-" if row.done_per_s is None else f"{row.done_per_s:.1f}",
            str(row.failed),
            f"{row.oldest_s:.1f}s",
            str(row.failovers),
            takeover,
            str(row.view_id),
        )
    parts: list[RenderableType] = [header, consumers]
    if snapshot.producers:
        producers = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        producers.add_column("producer")
        producers.add_column("outstanding", justify="right")
        producers.add_column("read lag / window", justify="right")
        for producer in snapshot.producers:
            window = "?" if producer.window is None else str(producer.window)
            producers.add_row(
                producer.producer, str(producer.outstanding), f"{producer.lag} / {window}"
            )
        parts.append(producers)
    return Group(*parts)


def register(app: typer.Typer) -> None:
    """Add the ``top`` command to ``app``."""
    app.command(epilog=epilog("done (with --once: a VIEW was seen)", "--once saw no VIEW"))(top)
