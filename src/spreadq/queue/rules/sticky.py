"""``sticky``: the jobs of one message go to one member, the next message's to the next.

Under ``round_robin`` the jobs a producer packs into one message go to every member in
turn, so each message wakes every worker with work to do, and each of them runs its
share, reports it and sends its producer an outcome notice. ``sticky`` keeps a message's
jobs together instead, the way Kafka's sticky partitioner keeps a batch of records in
one partition: the ``m``-th message that takes job slots after a view goes to member
``m mod n``, and the others only count its slots. A message of more than ``run`` jobs
(32 by default) is cut into as few parts as keep each at most ``run`` jobs, of sizes
that differ by one at most, and part ``i`` goes to member ``m + i mod n``: a burst
packed into one message is still shared out, and evenly.

Worked example (``run = 2``). A view lists ``#a#h, #b#h, #c#h``; then a batch of two jobs,
a RAW message, a batch of three and a batch of one are delivered::

    message m   0         1     2               3
    job         j1   j2   raw   j3   j4   j5    j6
    owner       a    a    b     c    c    a     a

Message 2 has three jobs, more than ``run``: two parts, ``j3 j4`` for member
``2 mod 3 = c`` and ``j5`` for the next, ``a``. Message 3 goes to ``3 mod 3 = a``.
Messages count from 0 again after every regular membership, and a draining member is
skipped as in ``round_robin``. At failover there are no messages: the jobs reassigned
from one origin view go to the candidates in runs of ``run``, in their original order.

What it trades: one worker starts a small message's jobs one after the other where
``round_robin`` would start them on several workers at once, so it suits short jobs
put faster than one at a time (``docs/concepts.md#ownership``). Another ``run`` takes a
rule object with a name of its own: ``App(rule=Sticky(name="sticky8", run=8))``, the
same on every worker of the queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spreadq.queue.jobs import Job
from spreadq.queue.rules.base import RuleState

__all__ = ["Sticky"]


@dataclass(frozen=True, slots=True)
class Sticky:
    """Member ``(message + part) mod n`` of the eligible members, for a job in part
    ``part`` of the ``message``-th message of the view."""

    name: str = "sticky"
    run: int = 32
    """The most jobs of one message that go to one member."""

    def __post_init__(self) -> None:
        if self.run < 1:
            raise ValueError(f"sticky's run must be at least 1, not {self.run}")

    def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
        """The owner of the job at ``state.index``: the job plays no part."""
        return self.owner_without_job(members, state)

    def owner_without_job(self, members: tuple[str, ...], state: RuleState) -> str:
        """``members[(state.message + part) % n]``, where ``part`` is the part of its
        message that the job at ``state.index`` falls in."""
        place = state.index - state.message_first
        return members[(state.message + self.part(place, state.message_slots)) % len(members)]

    def message_owners(self, members: tuple[str, ...], message: int, count: int) -> Sequence[str]:
        """The owners of the ``count`` jobs of the ``message``-th message, in slot order."""
        n = len(members)
        if count <= self.run:
            return (members[message % n],) * count
        owners: list[str] = []
        for part, size in enumerate(self.sizes(count)):
            owners += (members[(message + part) % n],) * size
        return owners

    def sizes(self, count: int) -> list[int]:
        """The sizes of the parts a message of ``count`` jobs is cut into: as few as
        keep each at most ``run``, the longer ones first, none longer than another by
        more than one."""
        parts, base, extra = self._cut(count)
        return [base + 1] * extra + [base] * (parts - extra)

    def part(self, place: int, count: int) -> int:
        """The part of a message of ``count`` jobs that its job at ``place`` falls in
        (``count`` 0: a failover round, runs of ``run`` jobs)."""
        if count <= self.run:
            return place // self.run if count == 0 else 0
        _, base, extra = self._cut(count)
        longer = extra * (base + 1)  # the jobs of the parts one job longer
        return place // (base + 1) if place < longer else extra + (place - longer) // base

    def _cut(self, count: int) -> tuple[int, int, int]:
        """How :meth:`sizes` cuts ``count`` jobs: the parts, the shorter parts' size,
        and how many parts are one job longer."""
        parts = -(-count // self.run)
        base, extra = divmod(count, parts) if parts else (0, 0)
        return parts, base, extra
