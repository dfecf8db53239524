"""``fill_first``: the first member with room owns the job; the next takes the overflow.

The members are tried in the view's order (Spread's, the same on every replica): a job
goes to the first whose load, the jobs assigned to it in this view that no ACK has
completed yet, is below ``room`` (512 by default), unless it has said it is busy (see
"Slow handlers"). When no member has room, the job goes to the least-loaded one, ties
by list order, as under ``least_loaded``.

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

Slow handlers. The load counts what a member holds, not what it has started, so on
loads alone a member that runs ``concurrency`` slow jobs at a time would keep taking jobs
until it held ``room`` of them, queued behind its busy handlers, while the others stood
idle. A worker whose own jobs have waited ``busy_after`` (20 ms by default) for a free
slot therefore says it is busy: it announces a capacity of 0 in a HELLO, and once none
of its jobs waits, its capacity again (``Settings.busy_after``). A member whose latest
HELLO in this view said 0 has no room, so the next jobs go down the list while it
catches up. What it was given before is queued behind its slots, so as it becomes busy
it also gives back the jobs its slots would reach late (a RELEASE, dealt by every replica
at its place in the order to the members that have not said they are busy:
docs/design/replicated-table.md#release). In ``tests/integration/test_failover.py``,
3,000 jobs of 4 ms with 400 unfinished at a time took 1.07-1.19 s so on a real
daemon, against 1.53-1.92 s with busy announcements alone and 1.03-1.09 s under
``round_robin`` in the same sitting (3.3 s on loads alone, in an earlier one).

Worked example (``room = 2``). A view lists ``#a#h, #b#h, #c#h``; loads start at 0,
and after j4 an ACK from ``a`` completes j1 and j2::

    job     j1   j2   j3   j4   (ACK)   j5   j6   j7   j8   j9
    owner   a    a    b    b            a    a    c    c    a

j3 finds ``a`` full and goes to ``b``; after the ACK ``a`` has room again. j7 finds
``a`` and ``b`` full and goes to ``c``; j9 finds all three full (2 each) and goes to the
least loaded, the first listed of the tie. At failover the loads count the jobs
reassigned in that round, so a departed member's backlog fills the first candidate up
to ``room`` and then the next.

Worked example, busy members (``room = 512``, each member announced capacity 4)::

    event   j1   HELLO a: 0   j2   j3   HELLO b: 0   j4   HELLO a: 4   j5
    owner   a                 b    b                 c                 a

``a`` says it is busy after j1, so j2 and j3 go to ``b``; once ``b`` says so too, j4
goes to ``c``; ``a``'s capacity again gives it j5. A view forgets every HELLO: each
member announces its capacity after each view (0 while still busy).
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
    """The first member (list order) with room: its ``state.load`` below :attr:`room`
    and a capacity it announced that is not 0 (busy); when none has room, the
    least-loaded member (ties by list order)."""

    name: str = "fill_first"
    room: int = 512
    """Unacknowledged jobs a member may hold before the next member gets work."""

    def __post_init__(self) -> None:
        if self.room < 1:
            raise ValueError(f"fill_first's room must be at least 1, not {self.room}")

    def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
        """The first member with room: the job plays no part."""
        return self.owner_without_job(members, state)

    def room_left(self, state: RuleState, member: str) -> int:
        """How many of the next slots ``member`` may take before the next member gets
        one: what its load leaves of :attr:`room`, none while it announces capacity 0."""
        if state.capacity(member) == 0:
            return 0
        return max(0, self.room - state.load(member))

    def owner_without_job(self, members: tuple[str, ...], state: RuleState) -> str:
        """The first member with room left (:meth:`room_left`), else the least loaded."""
        for member in members:
            if self.room_left(state, member):
                return member
        return min(members, key=state.load)

    def load_owners(self, members: tuple[str, ...], state: RuleState, count: int) -> Sequence[str]:
        """The owners of ``count`` slots in a row, as :meth:`owner_without_job` would
        give them one by one: each member in list order up to the room it has left, then
        (none has any) the least loaded, slot by slot."""
        loads: list[int] = list(map(state.load, members))
        owners: list[str] = []
        left = count
        for i, member in enumerate(members):
            take = min(self.room_left(state, member), left)
            if take:
                owners += [member] * take
                loads[i] += take
                left -= take
                if not left:
                    return owners
        return owners + least_loaded_owners(members, loads, left)

    def jobs_before(self, members: tuple[str, ...], state: RuleState, member: str) -> int:
        """The room the members listed before ``member`` have left: the next jobs fill
        them first."""
        before = 0
        for other in members:
            if other == member:
                return before
            before += self.room_left(state, other)
        return before
