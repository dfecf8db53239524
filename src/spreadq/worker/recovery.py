"""Recovered outcomes: what a worker's handlers reached that no delivered ACK confirmed.

Theory of operation. A worker that loses its daemon loses its session, and with it the
ACKs it had not sent yet: the other workers take those jobs over, and a producer
re-sends what it never saw settled. So each session remembers the outcomes its handlers
reach until an ACK naming them is delivered (:meth:`Recovery.keep`); when the session
is lost, the runtime takes them (:meth:`Recovery.unconfirmed`) into the outcome
history and hands them to the next session, which announces them in ACKs
(:meth:`Recovery.announcement`): every replica remembers what an ACK reports, so a
re-sent copy is answered from memory by whoever owns it, instead of running again.

The first announcement goes between the WORK and FEEDBACK joins (Spread keeps a
sender's order, so every replica and producer reads it before counting us back). A
member that joins later has not seen it, so it goes again at every join for
``announce_for`` seconds (``2 * settings.reconnect_backoff_max``: the time the other
workers and the producer take to come back, and the producer to re-send). Pure: the
time and the table's "still outstanding?" question are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import compress

from spreadq.queue.envelope import ack_overhead, outcome_chunks
from spreadq.queue.jobs import JobRef, Outcome

__all__ = ["Recovery", "ack_chunks"]

Reached = tuple[JobRef, Outcome]


def ack_chunks(outcomes: Sequence[Reached]) -> list[tuple[Reached, ...]]:
    """``outcomes`` cut, in order, into as few groups as fit one ACK envelope each."""
    return outcome_chunks(outcomes, ack_overhead(0))


class Recovery:
    """One session's recovered outcomes (announced) and its own unconfirmed ones (kept).

    Args:
        recovered: what earlier sessions reached and never saw confirmed.
        announce_for: seconds after the first announcement during which each join
            announces them again.
        keep_at_least: how many kept outcomes may pile up before the confirmed ones are
            swept out (amortised; the sweep then waits for twice what stayed).
    """

    __slots__ = ("_announce_for", "_finished", "_limit", "_minimum", "_recovered", "_until")

    def __init__(
        self, recovered: Sequence[Reached], *, announce_for: float, keep_at_least: int
    ) -> None:
        self._recovered = tuple(recovered)
        self._announce_for = announce_for
        self._until = math.inf  # announced again at joins until then
        self._finished: dict[JobRef, Outcome] = {}  # ours, while still outstanding
        self._minimum = self._limit = keep_at_least

    @property
    def recovered(self) -> tuple[Reached, ...]:
        """The outcomes earlier sessions reached."""
        return self._recovered

    def announcement(self, now: float) -> list[tuple[Reached, ...]]:
        """The recovered outcomes to announce now, one group per ACK (none: nothing to
        announce); the first call starts the ``announce_for`` period."""
        if not self._recovered:
            return []
        if self._until == math.inf:
            self._until = now + self._announce_for
        return ack_chunks(self._recovered)

    def again_at_join(self, now: float) -> bool:
        """Whether a member joining now must hear the recovered outcomes again."""
        return bool(self._recovered) and now < self._until

    def keep(self, ref: JobRef, outcome: Outcome, outstanding: Callable[[JobRef], bool]) -> None:
        """Remember an outcome we reached until an ACK for it is delivered (the table's
        ``outstanding`` tells: a C function such as ``outstanding_refs.__contains__``
        keeps the periodic sweep cheap)."""
        self.keep_all(((ref, outcome),), outstanding)

    def keep_all(self, reached: Sequence[Reached], outstanding: Callable[[JobRef], bool]) -> None:
        """:meth:`keep` for each of ``reached``, in order, sweeping at most once."""
        finished = self._finished
        finished.update(reached)
        if len(finished) > self._limit:  # amortised: the confirmed go
            self._finished = kept = dict(compress(finished.items(), map(outstanding, finished)))
            self._limit = max(self._minimum, 2 * len(kept))

    def unconfirmed(self, now: float, outstanding: Callable[[JobRef], bool]) -> list[Reached]:
        """The outcomes our handlers reached whose ACK we never saw delivered, in the
        order reached, after the recovered ones still being announced: what a lost
        session would otherwise lose."""
        mine = [(ref, outcome) for ref, outcome in self._finished.items() if outstanding(ref)]
        if now >= self._until:
            return mine  # announced long enough
        return [*self._recovered, *mine]
