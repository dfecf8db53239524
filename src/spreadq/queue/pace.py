"""Pace: at most one thing per ``interval`` on average, a few back to back, sans-IO.

Both ends of the queue bound a kind of message they would otherwise send as fast as
their loops turn, because their readers pay for each one: a worker its NOTICEs
(:class:`~spreadq.queue.notices.NoticeQueue`), which their producer reads, and a
producer its short JOB messages (:class:`~spreadq.producer.core.ProducerCore`), which
every consumer reads. The rule is the
generic cell rate algorithm of ATM networks, a token bucket of ``burst``: each message
books an interval of ``interval`` seconds, starting where the last booking ends or now,
whichever is later, and a message may go once the interval booked ``burst - 1`` before
the last has begun. So an idle sender never waits, up to ``burst`` messages go back to
back, and over any stretch of time ``T`` at most ``T / interval + burst`` go.

Worked example (``interval = 0.001``, ``burst = 2``)::

    wait(0.0000) -> 0       book(0.0000)    books 0.000-0.001
    wait(0.0002) -> 0       book(0.0002)    the one to spare: books 0.001-0.002
    wait(0.0005) -> 0.0005                  the next may go at 0.001
    wait(0.0010) -> 0       book(0.0010)    books 0.002-0.003
    wait(0.0100) -> 0       book(0.0100)    idle meanwhile: books 0.010-0.011

Nothing here reads a clock; ``now`` is passed in.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["SLACK", "Pace"]

SLACK: Final = 1e-9
"""Seconds of wait that count as none (the bookings' sums round)."""


class Pace:
    """At most one message per ``interval`` seconds on average, ``burst`` back to back.

    Args:
        interval: the average gap (0: no bound; every message may go at once).
        burst: how many may go back to back after a quiet spell (at least 1).
    """

    __slots__ = ("_ahead", "_next", "interval")

    def __init__(self, interval: float, burst: int = 1) -> None:
        self.interval = interval
        self._ahead = (max(1, burst) - 1) * interval  # how far bookings may run ahead
        self._next = -math.inf  # the end of the last interval booked

    @property
    def due(self) -> float:
        """When the next message may go (in the past when it may go now)."""
        return self._next - self._ahead

    def wait(self, now: float) -> float:
        """Seconds until a message may go (0: now; a wait under :data:`SLACK` is none,
        so that rounding in the sums never has a sender wait for a timer)."""
        wait = self._next - self._ahead - now
        return wait if wait > SLACK else 0.0

    def book(self, now: float) -> None:
        """A message went at ``now`` (whether or not :meth:`wait` allowed it)."""
        self._next = max(self._next, now) + self.interval
