"""Reconnecting: one backoff policy and one loop, for any role that keeps a session.

Theory of operation. A role that must stay connected (a worker; a producer) runs its
session inside ``async for`` over :class:`Reconnect`, which yields once per try::

    reconnect = Reconnect(Backoff.from_settings(settings), address=address, log=log,
                          event_prefix="worker", stop=stop_requested)
    async for _ in reconnect:
        try:
            async with connect(address, name=name) as conn:
                ...                                  # reconnect.joined() once joined
        except (ConnectionLost, ConnectError) as error:
            reconnect.failed(error)                  # raises what retrying cannot mend
            continue
        break                                        # the session ended well

The connection stays in the caller's own ``async with`` (an iterator that yielded from
inside it would run the connection's task group across the caller's code). After a
failure the next step waits (the delay starts at ``reconnect_backoff_initial``, doubles
up to ``reconnect_backoff_max``, and starts over once a session has joined) and logs
``<prefix>_reconnecting`` at warning naming the address, the error, the delay and the
attempt; :class:`Backoff` decides, without a clock of its own, when to give up:
after ``reconnect_max_attempts`` tries in a row that brought no session back, or
``connect_timeout`` seconds without a session (from the start, or from the loss of
one). Giving up logs ``<prefix>_gave_up`` at error and raises the last
:class:`~spreadq.errors.ConnectionLost` (from the connect error that ended the tries),
or the connect error when no session was ever lost. A refusal that retrying cannot
mend (:class:`~spreadq.errors.ConnectRejected` with a code other than
:data:`RETRIED_REJECTS`) is raised at once. Setting ``stop`` ends the loop, also in
the middle of a wait.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import anyio
import structlog

from spreadq.errors import ConnectError, ConnectionLost, ConnectRejected
from spreadq.settings import Settings
from spreadq.wire.constants import RejectCode

__all__ = ["RETRIED_REJECTS", "Backoff", "Reconnect", "describe_address", "is_retried"]

RETRIED_REJECTS: Final = frozenset({RejectCode.REJECT_NOT_UNIQUE, RejectCode.REJECT_QUOTA})
"""Reject codes a reconnecting client retries: its old session may still hold its name,
and the daemon may be full for a moment. Other rejects cannot mend by retrying."""


def is_retried(error: ConnectionLost | ConnectError) -> bool:
    """Whether retrying may mend ``error``: anything but a refusal with a code outside
    :data:`RETRIED_REJECTS`."""
    return not isinstance(error, ConnectRejected) or error.code in RETRIED_REJECTS


def describe_address(address: str | None) -> str:
    """A daemon address for the logs (None: the default port)."""
    return "4803 (the default)" if address is None else address


class Backoff:
    """When to try again, and when to give up; time is passed in.

    Args:
        initial: the first delay, in seconds.
        maximum: the longest delay; each failure doubles the delay up to it.
        max_attempts: how many tries in a row may fail before giving up (None: no limit).
        timeout: how many seconds without a session before giving up (None: no limit).
    """

    __slots__ = (
        "_attempts",
        "_delay",
        "_initial",
        "_max_attempts",
        "_maximum",
        "_since",
        "_timeout",
    )

    def __init__(
        self,
        *,
        initial: float,
        maximum: float,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> None:
        self._initial = initial
        self._maximum = maximum
        self._max_attempts = max_attempts
        self._timeout = timeout
        self._delay = initial
        self._attempts = 0  # tries since a session last joined
        self._since: float | None = None  # no session since (None: joined)

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        """The policy ``settings.reconnect_*`` and ``connect_timeout`` describe."""
        return cls(
            initial=settings.reconnect_backoff_initial,
            maximum=settings.reconnect_backoff_max,
            max_attempts=settings.reconnect_max_attempts,
            timeout=settings.connect_timeout,
        )

    @property
    def attempts(self) -> int:
        """Tries again since a session last joined."""
        return self._attempts

    def start(self, now: float) -> None:
        """The first try starts at ``now``: the timeout counts from here."""
        self._since = now

    def unreachable_for(self, now: float) -> float:
        """Seconds without a session; a session lost just now starts the count."""
        if self._since is None:
            self._since = now
        return now - self._since

    def next_delay(self, now: float) -> float | None:
        """A try failed at ``now``: the delay before the next one (counting it as an
        attempt), or None to give up."""
        unreachable = self.unreachable_for(now)
        left = math.inf if self._timeout is None else self._timeout - unreachable
        limit = self._max_attempts
        if (limit is not None and self._attempts >= limit) or left <= 0:
            return None
        self._attempts += 1
        delay = min(self._delay, left)
        self._delay = min(self._delay * 2, self._maximum)
        return delay

    def joined(self) -> None:
        """A session joined: the next loss starts over with the first delay."""
        self._delay = self._initial
        self._attempts = 0
        self._since = None


class Reconnect:
    """The reconnect loop: ``async for`` over it yields once per try (see the module).

    Args:
        backoff: the policy.
        address: the daemon address (for the logs).
        log: where ``<event_prefix>_reconnecting`` and ``<event_prefix>_gave_up`` go.
        event_prefix: the role, first in those event names (``"worker"``).
        stop: set to end the loop (a wait for the next try ends at once).
        clock: the current time in seconds (the event loop's by default).
    """

    def __init__(
        self,
        backoff: Backoff,
        *,
        address: str | None,
        log: structlog.stdlib.BoundLogger,
        event_prefix: str,
        stop: anyio.Event,
        clock: Callable[[], float] = anyio.current_time,
    ) -> None:
        self._backoff = backoff
        self._address = describe_address(address)
        self._log = log
        self._reconnecting = f"{event_prefix}_reconnecting"
        self._gave_up = f"{event_prefix}_gave_up"
        self._stop = stop
        self._clock = clock
        self._started = False
        self._failure: ConnectionLost | ConnectError | None = None
        self._lost: ConnectionLost | None = None  # the last session lost

    @property
    def backoff(self) -> Backoff:
        """The policy (its attempts so far)."""
        return self._backoff

    def __aiter__(self) -> Reconnect:
        return self

    async def __anext__(self) -> int:
        """Wait for the next try and return its number (0 for the first).

        Raises:
            StopAsyncIteration: the last try ended without a failure, or ``stop`` is set.
            ConnectionLost: giving up, after a session was lost.
            ConnectError: giving up, when no session was ever lost.
        """
        if not self._started:
            self._started = True
            self._backoff.start(self._clock())
            return 0
        error, self._failure = self._failure, None
        if error is None or self._stop.is_set():
            raise StopAsyncIteration
        backoff = self._backoff
        now = self._clock()
        unreachable = backoff.unreachable_for(now)
        delay = backoff.next_delay(now)
        if delay is None:
            self._log.error(
                self._gave_up,
                address=self._address,
                attempts=backoff.attempts,
                seconds=round(unreachable, 3),
                error=str(error),
            )
            if self._lost is not None and self._lost is not error:
                raise self._lost from error
            raise error
        self._log.warning(
            self._reconnecting,
            address=self._address,
            error=str(error),
            delay=round(delay, 3),
            attempt=backoff.attempts,
        )
        with anyio.move_on_after(delay):
            await self._stop.wait()
        if self._stop.is_set():
            raise StopAsyncIteration
        return backoff.attempts

    def failed(self, error: ConnectionLost | ConnectError) -> None:
        """The current try failed with ``error``: the next step waits, or gives up.

        Raises:
            ConnectRejected: ``error`` itself, when retrying cannot mend it.
        """
        if not is_retried(error):
            raise error
        if isinstance(error, ConnectionLost):
            self._lost = error
        self._failure = error

    def joined(self) -> None:
        """The current session joined: the next loss starts the backoff over."""
        self._backoff.joined()
