"""``round_robin``: the k-th job after a view belongs to member k mod n (the seed rule).

Worked example. A view lists ``#a#h, #b#h, #c#h`` (Spread's order). Then a batch of
two jobs, a RAW message and a batch of three jobs are delivered::

    slot k   0    1    2    3    4    5
    job      j1   j2   raw  j3   j4   j5
    owner    a    b    c    a    b    c

Slots count jobs, not messages, and start again at 0 after every regular membership.
If ``#b#h`` announces DRAIN after slot 2, the eligible list becomes ``a, c`` and slot 3
goes to ``[a, c][3 mod 2] = c``. At failover the same rule runs over the candidates
with ``state.index`` counting the jobs reassigned from one origin view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spreadq.queue.jobs import Job
from spreadq.queue.rules.base import RuleState

__all__ = ["RoundRobin"]


@dataclass(frozen=True, slots=True)
class RoundRobin:
    """Member ``index mod n`` of the eligible members."""

    name: str = "round_robin"

    def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
        """Return ``members[state.index % len(members)]``."""
        return members[state.index % len(members)]

    def owner_without_job(self, members: tuple[str, ...], state: RuleState) -> str:
        """The same: the job plays no part."""
        return members[state.index % len(members)]

    def owners(self, members: tuple[str, ...], first: int, count: int) -> Sequence[str]:
        """The owners of slots ``first`` .. ``first + count - 1``: the members repeated
        from ``first mod n``, cut to ``count``."""
        start = first % len(members)
        return (members * ((start + count) // len(members) + 1))[start : start + count]
