"""NoticeQueue: the outcomes a worker sends straight to their producers, and when, sans-IO.

Theory of operation. A job whose producer keeps up asks for a NOTICE of its outcome
(``Job.notify``): its owner sends the outcome to that producer's private group as well
as reporting it in an ACK, so the receipt resolves without waiting for the ACK cadence
(docs/cancel-and-results.md#outcome-notices). The
:class:`~spreadq.queue.table.OutstandingTable` decides *which* outcomes: those it reports
in its ACK cadence, of jobs that ask, that fit an ACK (one that does not is reported as
a failure, by the ACK alone). This queue decides *when*:

* the outcomes reached since the last NOTICEs wait here, grouped by producer;
* they go when the worker's loop ends a turn (:meth:`take`), as long as NOTICEs have
  gone at most once per ``interval`` on average, with one to spare (a
  :class:`~spreadq.queue.pace.Pace` of burst two: each take that hands some out books
  an interval, and a take may hand out once the last interval booked has begun).
  What ends while the takes run ahead waits for the next one, at :meth:`deadline`;
* an outcome an ACK has taken is never sent again in a NOTICE (:meth:`reported`): the
  ACK went to that producer too.

One to spare is what keeps a worker of paced messages from waking twice for each: with
a strict gap (nothing until ``interval`` after the last take), messages a little further
apart than ``interval`` but jittering around it made a turn find the gap not yet over,
the held outcomes went at an alarm of their own (on uvloop, up to a millisecond late),
and the next message's found the gap running again from there. One replica paced at a
read every 1.9 ms (28-job messages, and the other members' ACKs between them) armed 772
notice alarms for 1,072 messages so; now 4, and on
the real daemon at 23,000 jobs/s the round trip's p50 fell from 3.6 to 3.0 ms. Over any
stretch of time ``T`` a queue hands out at most ``T / interval + 2`` NOTICE rounds.

Worked example (interval 2 ms)::

    add(p, j1); take(0.000) -> [(p, [j1])]      books 0.000-0.002
    add(p, j2); take(0.001) -> [(p, [j2])]      the one to spare: books 0.002-0.004
    add(p, j3); take(0.0015) -> []              held back; deadline() == 0.002
    add(q, k1); take(0.002) -> [(p, [j3]), (q, [k1])]   books 0.004-0.006
    add(p, j4); reported([j4], everything=True); take(0.009) -> []   the ACK took it
"""

from __future__ import annotations

from collections.abc import Sequence

from spreadq.queue.jobs import JobRef, Outcome
from spreadq.queue.pace import Pace

__all__ = ["NoticeQueue"]

Reached = tuple[JobRef, Outcome]
"""An outcome with its job's ref."""


class NoticeQueue:
    """The outcomes waiting for a NOTICE to their producers.

    Args:
        interval: seconds a take that hands out NOTICEs books, on average (0: every
            take hands out what waits).
    """

    __slots__ = ("_pace", "_pending")

    def __init__(self, interval: float = 0.0) -> None:
        self._pending: dict[str, list[Reached]] = {}
        self._pace = Pace(interval, burst=2)

    @property
    def interval(self) -> float:
        """Seconds a take that hands out NOTICEs books, on average."""
        return self._pace.interval

    @property
    def pending(self) -> bool:
        """True when an outcome waits."""
        return bool(self._pending)

    def add(self, producer: str, reached: Reached) -> None:
        """Queue ``reached`` for a NOTICE to ``producer`` (its private group)."""
        waiting = self._pending.get(producer)
        if waiting is None:
            self._pending[producer] = [reached]
        else:
            waiting.append(reached)

    def reported(self, outcomes: Sequence[Reached], *, everything: bool) -> None:
        """An ACK took ``outcomes``: none of them goes in a NOTICE now. ``everything``:
        it took every outcome reported so far, so nothing waits here any more."""
        if everything:
            self._pending.clear()
            return
        taken = {ref for ref, _ in outcomes}
        for producer, waiting in list(self._pending.items()):
            kept = [reached for reached in waiting if reached[0] not in taken]
            if kept:
                self._pending[producer] = kept
            else:
                del self._pending[producer]

    def deadline(self) -> float | None:
        """When outcomes held back may go (None: none waits)."""
        return self._pace.due if self._pending else None

    def take(self, now: float) -> list[tuple[str, list[Reached]]]:
        """The NOTICEs to send at ``now``: each producer's waiting outcomes, in the order
        reached; none while the takes so far are ahead of one per interval by more
        than one."""
        pace = self._pace
        if not self._pending or pace.wait(now):
            return []
        out = list(self._pending.items())
        self._pending = {}
        pace.book(now)
        return out

    def clear(self) -> None:
        """Forget what waits (we left the group)."""
        self._pending.clear()
