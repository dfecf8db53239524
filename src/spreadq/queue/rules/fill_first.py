"""``fill_first``: the first member with room owns the job; the next takes the overflow.

The members are tried in the view's order (Spread's, the same on every replica): a job
goes to the first whose load, the jobs assigned to it in this view that no ACK has
completed yet, is below ``room`` (512 by default). When every member is full, the job
goes to the least-loaded one, ties by list order, as under ``least_loaded``.

Why. Every member reads every message, but under ``round_robin`` every message also
gives every member work: each one wakes up to run its share, report it and send an
outcome notice, and a job waits for its own owner to get a CPU among all the others.
``fill_first`` lets one member take a light load alone while the others only count
the jobs (following a job costs a small part of running it), and those others read the
queue in batches while the rule keeps them waiting (:mod:`spreadq.worker.standby`, via
:meth:`FillFirst.jobs_before`). As the load grows, the first member's unacknowledged
jobs reach ``room`` and the work spills down the list, so a flood still reaches every
member. ``docs/concepts.md#ownership`` compares the rules.

Loads count jobs until an ACK completes them, and a busy worker ACKs about every
``ack_every`` jobs (200 by default) or ``ack_interval``, an idle one at once. So
``room`` must stay above what a member holds between two ACKs plus what arrives while
one is on its way, or work spills while the first member keeps up: the default is over
twice ``ack_every``. A smaller ``room`` spreads work sooner; a rule object with a name
of its own takes another: ``App(rule=FillFirst(name="fill64", room=64))``, the same on
every worker of the queue.

What it is not for: handlers that take a while. The load counts what a member holds,
not what it has started, so a member that runs ``concurrency`` slow jobs at a time keeps
taking jobs until it holds ``room`` of them, queued behind its busy handlers, while the
others stand idle (in ``tests/integration/test_failover.py``, 3,000 jobs of 4 ms with
400 unfinished at a time took 3.3 s on one worker of four, against 1.1 s under
``round_robin``). Use it for short jobs, or give it a ``room`` near what one worker
finishes between two of its ACKs.

Worked example (``room = 2``). A view lists ``#a#h, #b#h, #c#h``; loads start at 0,
and after j4 an ACK from ``a`` completes j1 and j2::

    job     j1   j2   j3   j4   (ACK)   j5   j6   j7   j8   j9
    owner   a    a    b    b            a    a    c    c    a

j3 finds ``a`` full and goes to ``b``; after the ACK ``a`` has room again. j7 finds
``a`` and ``b`` full and goes to ``c``; j9 finds all three full (2 each) and goes to the
least loaded, the first listed of the tie. At failover the loads count the jobs
reassigned in that round, so a departed member's backlog fills the first candidate up
to ``room`` and then the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spreadq.queue.jobs import Job
from spreadq.queue.rules.base import RuleState
from spreadq.queue.rules.least_loaded import least_loaded_owners

__all__ = ["FillFirst"]


@dataclass(frozen=True, slots=True)
class FillFirst:
    """The first member (list order) whose ``state.load`` is below :attr:`room`; when
    none is, the least-loaded member (ties by list order)."""

    name: str = "fill_first"
    room: int = 512
    """Unacknowledged jobs a member may hold before the next member gets work."""

    def __post_init__(self) -> None:
        if self.room < 1:
            raise ValueError(f"fill_first's room must be at least 1, not {self.room}")

    def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
        """The first member with room: the job plays no part."""
        return self.owner_without_job(members, state)

    def owner_without_job(self, members: tuple[str, ...], state: RuleState) -> str:
        """The first member whose load is below :attr:`room`, else the least loaded."""
        load, room = state.load, self.room
        for member in members:
            if load(member) < room:
                return member
        return min(members, key=load)

    def load_owners(self, members: tuple[str, ...], state: RuleState, count: int) -> Sequence[str]:
        """The owners of ``count`` slots in a row, as :meth:`owner_without_job` would
        give them one by one: each member in list order up to its room, then (every
        member full) the least loaded, slot by slot."""
        loads: list[int] = list(map(state.load, members))
        owners: list[str] = []
        left, room = count, self.room
        for i, member in enumerate(members):
            take = min(room - loads[i], left)
            if take > 0:
                owners += [member] * take
                loads[i] += take
                left -= take
                if not left:
                    return owners
        return owners + least_loaded_owners(members, loads, left)

    def jobs_before(self, members: tuple[str, ...], state: RuleState, member: str) -> int:
        """The room left on the members listed before ``member``: the next jobs fill
        them first."""
        load, room = state.load, self.room
        before = 0
        for other in members:
            if other == member:
                return before
            before += max(0, room - load(other))
        return before
