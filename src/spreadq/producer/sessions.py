"""A producer's session with the daemon, kept across reconnections.

:class:`SessionKeeper` connects (joining the FEEDBACK group for a member producer),
tells the core a session opened, and runs the session's parts (the sender and the
reader) until one of them loses the connection. Then it tells the core the session
is lost (every consumer's witness with it, so the core queues everything again) and
reconnects as a worker does (:mod:`spreadq.session.reconnect`). The first connect
error goes to ``Producer.__aenter__``; on giving up, the producer is shut down with
the last loss. It publishes ``SessionLost`` and ``SessionRegained`` to the producer's
event bus.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
from structlog.stdlib import BoundLogger

from spreadq.client import Connection, connect
from spreadq.errors import CloseReason, ConnectError, ConnectionLost
from spreadq.observe import EventBus, SessionRegained
from spreadq.observe import SessionLost as SessionEnded
from spreadq.producer.inputs import Input, SessionLost, SessionOpened
from spreadq.session.reconnect import Backoff, Reconnect
from spreadq.settings import Settings

__all__ = ["SessionKeeper"]


class SessionKeeper:
    """Keeps one producer's session.

    Args:
        parts: what runs in each session, each until the connection is lost (the
            sender, and the reader of a member producer's session).
        apply: feeds an input to the producer's core and carries out its effects.
        shutdown: closes the producer with the last loss, on giving up.
        spread: the daemon address; name: the private name (None: the daemon's choice).
        member: join the FEEDBACK group ``feedback_group``.
        work_group: the queue's WORK group (named in the session events).
        settings: the reconnect backoff and attempts.
        events: the producer's event bus.
        log: the producer's bound logger.
    """

    def __init__(
        self,
        parts: tuple[
            Callable[[Connection], Awaitable[None]], Callable[[Connection], Awaitable[None]]
        ],
        *,
        apply: Callable[[Input], object],
        shutdown: Callable[[ConnectionLost], None],
        spread: str | None,
        name: str | None,
        member: bool,
        work_group: str,
        feedback_group: str,
        settings: Settings,
        events: EventBus,
        log: BoundLogger,
    ) -> None:
        self._parts = parts
        self._apply = apply
        self._shutdown = shutdown
        self._spread = spread
        self._name = name
        self._member = member
        self._work = work_group
        self._feedback = feedback_group
        self._settings = settings
        self._events = events
        self._log = log
        self._lost_at: float | None = None  # when the last session was lost
        self.conn: Connection | None = None
        """The open session's connection (None between sessions)."""

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Keep a session: the first connect error is raised to ``__aenter__``; after
        that, reconnect as a worker does (:mod:`spreadq.session.reconnect`), and on
        giving up fail everything pending with the last loss.

        Raises:
            ConnectError: the first connection failed.
            ConnectionLost: the first session ended before it was open.
        """
        reconnect = Reconnect(
            Backoff.from_settings(self._settings),
            address=self._spread,
            log=self._log,
            event_prefix="producer",
            stop=anyio.Event(),  # never set: closing cancels this task instead
        )
        started = False
        try:
            async for _ in reconnect:
                try:
                    async with connect(
                        self._spread, name=self._name, membership=self._member
                    ) as conn:
                        if self._member:
                            await conn.join(self._feedback)
                        self.conn = conn
                        self._apply(SessionOpened(conn.private_group))
                        self._log.info("producer_connected", member=conn.private_group)
                        self._regained(conn.private_group)
                        if not started:
                            task_status.started()
                            started = True
                        reconnect.joined()
                        error = await self._run_session(conn)
                    # raised outside the connection's block: connect() must not see it
                    raise error or ConnectionLost(CloseReason.EOF, "the session ended")
                except (ConnectError, ConnectionLost) as exc:
                    if not started:
                        raise
                    if self.conn is not None and isinstance(exc, ConnectionLost):
                        self._lost(self.conn.private_group, exc)
                    self.conn = None
                    # the session is gone, and with it every consumer's witness: queue
                    # everything again
                    self._apply(SessionLost())
                    if isinstance(exc, ConnectionLost):
                        self._log.warning("producer_disconnected", reason=exc.reason.value)
                    reconnect.failed(exc)
        except (ConnectError, ConnectionLost) as error:
            if not started:
                raise
            lost = (
                error
                if isinstance(error, ConnectionLost)
                else ConnectionLost(CloseReason.EOF, str(error))
            )
            self._shutdown(lost)

    def _lost(self, member: str, error: ConnectionLost) -> None:
        self._lost_at = time.monotonic()
        if SessionEnded in self._events.routes:
            self._events.publish(SessionEnded(self._work, member, "producer", error.reason.name))

    def _regained(self, member: str) -> None:
        lost_at, self._lost_at = self._lost_at, None
        if lost_at is not None and SessionRegained in self._events.routes:
            down = time.monotonic() - lost_at
            self._events.publish(SessionRegained(self._work, member, "producer", down))

    async def _run_session(self, conn: Connection) -> ConnectionLost | None:
        lost: list[ConnectionLost] = []

        async def guard(part: Callable[[Connection], Any], scope: anyio.CancelScope) -> None:
            try:
                await part(conn)
            except ConnectionLost as error:
                lost.append(error)
            scope.cancel()

        async with anyio.create_task_group() as session:
            session.start_soon(guard, self._parts[0], session.cancel_scope)
            session.start_soon(guard, self._parts[1], session.cancel_scope)
        return lost[0] if lost else None
