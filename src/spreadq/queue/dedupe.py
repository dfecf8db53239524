"""The dedupe memory a replica of the queue table keeps, and its duplicates waiting.

Theory of operation
-------------------
The memory holds the dedupe keys of the last ``size`` keyed jobs, each with the ref of
the first job that carried it, in delivery order (oldest evicted first). Looking a key
up either remembers it with the job's ref, or names the first job when another job
carried it already: the job is then a *duplicate* of that first job. The memory is a
function of the stream since the last *cut* (a view with a member that did not come
with us), so every replica of a view decides each keyed job alike; what else a replica
remembers never enters it.

A duplicate we own whose first job is still outstanding waits for the first job's ACK;
:attr:`DedupeMemory.waiting` keeps those (first job -> our duplicates of it). What a
duplicate is answered with, and when, is the table's business
(:class:`~spreadq.queue.table.OutstandingTable`; docs/design/dedupe.md): this module
only keeps the keys and the waiting lists.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection

from spreadq.queue.jobs import JobRef

__all__ = ["DedupeMemory"]


class DedupeMemory:
    """The last ``size`` dedupe keys with the first job of each, and our duplicates
    waiting for their first job (``size`` 0 remembers no key).

    Raises nothing: every input is a key and a ref the envelope already checked.
    """

    __slots__ = ("_keys", "size", "waiting")

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: OrderedDict[str, JobRef] = OrderedDict()
        self.waiting: dict[JobRef, list[JobRef]] = {}
        """first job -> our duplicates of it that wait for its outcome"""

    def remember(self, key: str, ref: JobRef) -> JobRef | None:
        """Look ``key`` up for job ``ref``: the first job that carried it when that is
        another job (``ref`` is then its duplicate), else None (``key`` is remembered
        with ``ref`` when it was not yet, evicting the oldest key past ``size``)."""
        memory = self._keys
        first = memory.get(key)
        if first is None:
            if self.size > 0:
                memory[key] = ref
                if len(memory) > self.size:
                    memory.popitem(last=False)
        elif first != ref:
            return first
        return None

    def cut(self, came: frozenset[str], members: Collection[str]) -> bool:
        """A view of ``members`` is installed, of which ``came`` came with us: forget
        every key when someone there does not share our memory. True if it did."""
        if self._keys and not came.issuperset(members):
            self._keys.clear()  # the cut: someone here does not share our memory
            return True
        return False

    def keys(self) -> dict[str, JobRef]:
        """The remembered keys and the first job of each, oldest first."""
        return dict(self._keys)

    def wait(self, first: JobRef, duplicate: JobRef) -> None:
        """Our ``duplicate`` waits for the outcome of ``first`` (still outstanding)."""
        waiting = self.waiting.setdefault(first, [])
        if duplicate not in waiting:
            waiting.append(duplicate)

    def take_waiting(self) -> dict[JobRef, list[JobRef]]:
        """Every waiting list, which this memory then forgets (a view change: the table
        asks again for each)."""
        waiting, self.waiting = self.waiting, {}
        return waiting
