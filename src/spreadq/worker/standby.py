"""Standby: a worker the rule gives no work for a while reads the queue in batches.

Theory of operation. Every member of a queue reads every message, its own jobs or not.
Under a rule that concentrates work (``fill_first``) most members get none of it while
the load is light: they only count the jobs and keep their payloads for a failover.
Reading each message as it lands wakes such a member once a message for no job of its
own, and on a machine with few cores those wakes compete for a CPU with the member
that owns the job. So a member whose rule can say how many of the next jobs go to
others first (:meth:`~spreadq.queue.table.OutstandingTable.jobs_before_mine`) *stands
by*: it leaves its socket unread between two reads (the kernel and the daemon hold what
comes meanwhile) and reads it all at once, for at most ``settings.standby_interval``
seconds, and for at most half the time the queue's recent job rate needs to use up
those jobs. A member with work of its own, in a view change or draining, or under a
rule that cannot say (``round_robin``, ``sticky``, ``least_loaded``, ``key_affinity``),
never stands by.

What it costs: a burst faster than the recent rate can spill jobs to a member standing
by, which reads them up to one interval late; and a member standing by sees a view
change, and starts taking over a departed member's jobs, up to one interval later.
``docs/deployment.md#standby`` has the figures.

This module only decides how long to rest; the connection rests
(:meth:`~spreadq.actors.connection.SpreadConnection.pace_reads`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

__all__ = ["MIN_REST", "RATE_HALF_LIFE", "Standby"]

MIN_REST: Final = 0.001
"""A rest shorter than this (seconds) is not worth a pause of the socket: read now."""
RATE_HALF_LIFE: Final = 0.05
"""Seconds over which the recent job rate forgets half of what it saw."""


class Standby:
    """How long a member may leave its socket unread, from what it asks before each read.

    Args:
        interval: the longest rest, seconds (> 0).
        clock: monotonic seconds.
    """

    __slots__ = ("_at", "_clock", "_interval", "_rate", "_seen")

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._at = clock()
        self._seen = 0
        self._rate = 0.0  # jobs a second delivered to the queue lately (every member's)

    @property
    def rate(self) -> float:
        """The recent job rate it estimates (jobs a second)."""
        return self._rate

    def wait(self, jobs_before: int, seen: int, *, busy: bool) -> float:
        """Seconds to leave the socket unread before the next read (0: read now).

        Args:
            jobs_before: at least how many of the next jobs go to other members.
            seen: jobs delivered to the queue so far, every member's (a count that only
                grows).
            busy: we have jobs of our own, or must read at once for another reason.
        """
        now = self._clock()
        elapsed = now - self._at
        if elapsed > 0:
            weight = 0.5 ** (elapsed / RATE_HALF_LIFE)
            self._rate = weight * self._rate + (1 - weight) * (seen - self._seen) / elapsed
            self._at, self._seen = now, seen
        if busy or jobs_before <= 0:
            return 0.0
        rest = self._interval
        if self._rate > 0:
            rest = min(rest, jobs_before / self._rate / 2)
        return rest if rest >= MIN_REST else 0.0
