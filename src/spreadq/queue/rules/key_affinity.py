"""``key_affinity``: rendezvous (highest random weight) hashing on the job key.

Each eligible member gets the weight ``blake2b(member + NUL + key)`` (8 bytes, big
endian) and the heaviest member owns the job; ties, which need a 64-bit collision, go
to the smaller name. A member's weight for a key does not depend on who else is in the
view, so when a member leaves only the keys it owned move, and when one joins it takes
only the keys it now wins; jobs with the same key go to the same member and keep their
order. Jobs without a key fall back to ``round_robin``.

``hash()`` is never used: Python randomises ``str`` hashes per process, and every
replica must compute the same owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import blake2b

from spreadq.queue.jobs import Job
from spreadq.queue.rules.base import RuleState

__all__ = ["KeyAffinity", "weight"]


def weight(member: str, key: str) -> int:
    """The rendezvous weight of ``member`` for ``key``; the same in every process."""
    data = member.encode("utf-8", "surrogatepass") + b"\0" + key.encode("utf-8", "surrogatepass")
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class KeyAffinity:
    """The eligible member with the highest weight for the job's key."""

    name: str = "key_affinity"
    keeps_key_order: bool = True
    """Every job of a key goes to one member: workers run a key's jobs in order."""

    def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
        """Return the heaviest member for ``job.key``, or round robin without a key."""
        if job.key is None:
            return members[state.index % len(members)]
        suffix = b"\0" + job.key.encode("utf-8", "surrogatepass")
        best, best_weight = members[0], -1
        for member in members:
            data = member.encode("utf-8", "surrogatepass") + suffix
            heft = int.from_bytes(blake2b(data, digest_size=8).digest(), "big")
            if heft > best_weight or (heft == best_weight and member < best):
                best, best_weight = member, heft
        return best
