"""``least_loaded``: the eligible member with the fewest outstanding jobs of this view.

The load of a member is the number of jobs assigned to it at slots of the current view
that no ACK has completed yet. Loads start at zero at every view, so every member of a
view counts the same jobs and the same ACKs, even right after a partition merge where
the sides' earlier histories differ. Ties go to the member listed first (Spread's
order), so with no ACKs at all the rule behaves like ``round_robin``.

Worked example: members ``a, b, c``; jobs j1, j2, j3 go to a, b, c (all tied at 0, then
1); an ACK from b completes j2; j4 goes to b (load 0), j5 to a (a, b, c at 1, 1, 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spreadq.queue.jobs import Job
from spreadq.queue.rules.base import RuleState

__all__ = ["LeastLoaded", "least_loaded_owners"]


def least_loaded_owners(members: tuple[str, ...], loads: list[int], count: int) -> list[str]:
    """The owners of ``count`` slots in a row, each to the least-loaded member (ties by
    list order) with ``loads`` (one a member, in ``members``' order; updated here)."""
    owners: list[str] = []
    least, at = min, loads.index
    for _ in range(count):
        i = at(least(loads))
        loads[i] += 1
        owners.append(members[i])
    return owners


@dataclass(frozen=True, slots=True)
class LeastLoaded:
    """The first member with the smallest ``state.load``."""

    name: str = "least_loaded"

    def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
        """Return the least-loaded member; ties by list order."""
        return min(members, key=state.load)

    def owner_without_job(self, members: tuple[str, ...], state: RuleState) -> str:
        """The same: the job plays no part."""
        return min(members, key=state.load)

    def load_owners(self, members: tuple[str, ...], state: RuleState, count: int) -> Sequence[str]:
        """The owners of ``count`` slots in a row, as :meth:`owner_without_job` would
        give them one by one."""
        loads: list[int] = list(map(state.load, members))
        return least_loaded_owners(members, loads, count)
