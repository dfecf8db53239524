"""The outstanding jobs of one replica's table: an entry a job, or a block a batch.

Theory of operation
-------------------
:class:`~spreadq.queue.table.OutstandingTable` keeps its outstanding jobs in an
:class:`Outstanding`, a dict from each job's ref to what the table knows of it. Most
jobs are another member's: every member reads every job and owns few of them. So when
a batch is new to the table and a slot rule (or a message rule) gives it its owners in
one call, the jobs other members own enter as the batch's :class:`_Block`, one shared
value holding what each of their entries would (all the rest are an entry's defaults);
only our own jobs get an :class:`_Entry` each. An ACK that completes a block's job only
removes its key. The first time the table needs more than a job's presence (a view
change, a re-sent copy, a CANCEL, a question about the job), the block's jobs still
outstanding become entries in place (:meth:`Outstanding.unblock`), keeping their
order; nothing else in the table can tell the difference
(docs/design/replicated-table.md#blocks).

This module holds no rule and decides nothing: the table says who owns what, and asks
the store to remember it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import itemgetter
from typing import cast

from spreadq.queue.envelope import BatchJobs
from spreadq.queue.jobs import Job, JobRef, Outcome

__all__ = ["Outstanding", "OutstandingJob"]


@dataclass(frozen=True, slots=True)
class OutstandingJob:
    """One outstanding job as this replica sees it (for tests, ``spreadq top``, metrics).

    ``view`` and ``slot`` say where it was last assigned (the view's ordinal, and the slot
    number or, for a failover, the failover counter); ``owner`` is ``None`` for a job
    this replica does not hold or that was orphaned. ``failovers`` counts the times its
    owner left it; ``given_up`` is true once that passed ``max_failovers``.
    """

    ref: JobRef
    owner: str | None
    held: bool
    view: int
    slot: int
    failover: bool
    started: bool
    finished: bool
    duplicate: bool
    failovers: int = 0
    given_up: bool = False


class _Origin:
    """A view jobs were delivered in, and which of its members still hold them."""

    __slots__ = ("holders", "serial")

    def __init__(self, serial: int, holders: frozenset[str]) -> None:
        self.serial = serial
        self.holders = holders


@dataclass(slots=True, eq=False)
class _Entry:
    ref: JobRef
    job: Job | None  # None until needed: then built from ``source[index]``
    source: Sequence[Job] | None
    index: int
    sender: str
    mess_type: int
    origin: _Origin
    owner: str | None
    slot: int
    view: int
    held: bool
    counted: str | None = None  # who this job counts for in least_loaded's loads
    failover: bool = False
    duplicate: bool = False
    orphaned: bool = False
    remembered: Outcome | None = None  # a re-sent job's outcome from the history
    dedupe_of: JobRef | None = None  # the first job with this job's dedupe key
    refused: str | None = None  # a periodic TICK the ledger refused: why
    failovers: int = 0  # reassigned because its owner left, this many times
    run_sent: bool = False
    started: bool = False
    finished: bool = False


class _Block:
    """The jobs of one batch that other members own, entered in the table as one value.

    It holds what every such job's :class:`_Entry` would (all the rest are the entry's
    defaults): the batch, its sender and mess_type, the origin, the owner of each of the
    batch's slots from ``first`` on, and the view they were assigned in. No loads are
    counted for them: nothing to release when they complete.
    """

    __slots__ = ("first", "jobs", "mess_type", "origin", "owners", "sender", "view")

    def __init__(
        self,
        jobs: BatchJobs,
        sender: str,
        mess_type: int,
        origin: _Origin,
        owners: Sequence[str],
        first: int,
        view: int,
    ) -> None:
        self.jobs = jobs
        self.sender = sender
        self.mess_type = mess_type
        self.origin = origin
        self.owners = owners
        self.first = first  # the slot of the batch's first job
        self.view = view


_producer_id = itemgetter(0)


class Outstanding(dict[JobRef, "_Entry | _Block"]):
    """The outstanding jobs by ref: an :class:`_Entry` each, or their batch's
    :class:`_Block` for the jobs of other members that entered together.

    A dict, so the table's hot paths (an ACK popping the jobs it completes, a lookup by
    ref) run at a dict's speed; what a block stands for is read here.
    """

    __slots__ = ()

    def enter_block(self, block: _Block, me: str) -> list[_Entry] | None:
        """Enter the jobs of ``block``, new to the table: other members' as the block,
        ours (``me``) as entries, which are returned in order. None, and nothing
        entered, when a ref comes twice (the second copy is a re-sent job: the batch
        must go job by job)."""
        jobs, first, owners = block.jobs, block.first, block.owners
        refs = jobs.refs
        size = len(self)
        self.update(zip(refs, repeat(block)))
        if len(self) - size != len(refs):
            for ref in refs:
                self.pop(ref, None)
            return None
        sender, mess_type, origin, view = block.sender, block.mess_type, block.origin, block.view
        mine: list[_Entry] = []
        for index in compress(itertools.count(), map(me.__eq__, owners)):
            ref, slot = refs[index], first + index
            entry = _Entry(ref, None, jobs, index, sender, mess_type, origin, me, slot, view, True)
            self[ref] = entry
            mine.append(entry)
        return mine

    def unblock(self, block: _Block) -> None:
        """Turn the jobs of ``block`` still outstanding into entries, in place."""
        jobs, sender, mess_type, origin = block.jobs, block.sender, block.mess_type, block.origin
        first, view = block.first, block.view
        for index, (ref, owner) in enumerate(zip(jobs.refs, block.owners, strict=True)):
            if self.get(ref) is block:
                slot = first + index
                self[ref] = _Entry(
                    ref, None, jobs, index, sender, mess_type, origin, owner, slot, view, True
                )

    def unblocked(self) -> dict[JobRef, _Entry]:
        """The outstanding jobs, every block turned into entries first (for a walk that
        looks at each job)."""
        for block in dict.fromkeys(e for e in self.values() if isinstance(e, _Block)):
            self.unblock(block)
        return cast("dict[JobRef, _Entry]", self)

    def entry(self, ref: JobRef) -> _Entry | None:
        """The entry of outstanding job ``ref`` (its block's jobs become entries)."""
        entry = self.get(ref)
        if isinstance(entry, _Block):
            self.unblock(entry)
            entry = self[ref]
        assert not isinstance(entry, _Block)
        return entry

    def owner_of(self, ref: JobRef) -> str | None:
        """The owner of outstanding job ``ref``, or ``None`` (unknown, orphaned or not
        held)."""
        entry = self.get(ref)
        if isinstance(entry, _Block):
            return entry.owners[entry.jobs.refs.index(ref)]
        return None if entry is None else entry.owner

    def listing(self, given_up: Callable[[_Entry], bool]) -> list[OutstandingJob]:
        """Every outstanding job, in delivery order (``given_up`` says whether an
        entry's job was given up)."""
        jobs: list[OutstandingJob] = []
        add = jobs.append
        indices: dict[_Block, dict[JobRef, int]] = {}  # a block's jobs by ref
        for ref, e in self.items():
            if isinstance(e, _Block):
                at = indices.get(e)
                if at is None:
                    at = indices[e] = {r: i for i, r in enumerate(e.jobs.refs)}
                i = at[ref]
                owner, slot = e.owners[i], e.first + i
                add(OutstandingJob(ref, owner, True, e.view, slot, False, False, False, False))
                continue
            duplicate = e.duplicate or e.remembered is not None
            add(
                OutstandingJob(
                    ref,
                    e.owner,
                    e.held,
                    e.view,
                    e.slot,
                    e.failover,
                    e.started,
                    e.finished,
                    duplicate,
                    e.failovers,
                    given_up(e),
                )
            )
        return jobs

    def per_producer(self) -> dict[bytes, int]:
        """How many jobs of each producer id are outstanding (every owner's)."""
        return dict(Counter(map(_producer_id, self)))
