"""The outstanding jobs of one replica's table: an entry a job, or a block a batch.

Theory of operation
-------------------
:class:`~spreadq.queue.table.OutstandingTable` keeps its outstanding jobs in an
:class:`Outstanding`. Most jobs are another member's: every member reads every job and
owns few of them. So when a batch of new jobs (seqs in a row, above every seq of that
producer the store has held) is given its owners in one call by a slot rule (or a
message rule), the jobs other members own enter as the batch's :class:`_Block`: one
value holding what each of their entries would (all the rest are an entry's
defaults), and a byte a job saying whether it is still outstanding. Only our own jobs
get an :class:`_Entry` each, in a dict by ref. Blocks are kept per producer in seq
order, so a job's block is found by bisection, and an ACK's run
(:class:`~spreadq.queue.jobs.OutcomeRun`: every n-th job of a producer) completes the
block's jobs it names with one slice assignment (:meth:`Outstanding.complete_runs`):
a job another member owns costs its replicas nothing one by one, from the batch that
brings it to the ACK that completes it. The first time the table needs more than a
job's presence (a view change, a re-sent copy, a CANCEL, a question about the job),
the block's jobs still outstanding become entries (:meth:`Outstanding.unblock`).

Every entry and block carries its *arrival*: a counter at insertion, shifted left by
16 bits, plus the job's index in its batch for a block's jobs (a batch has at most
65,535). Where the table walks the jobs in delivery order (failover reassigns them in
their original order, :meth:`Outstanding.listing`), the order is the arrival's; the
dict alone keeps the order of insertion, which a block's jobs turned into entries
later would break. Nothing else in the table can tell a block's job from an entry
(docs/design/replicated-table.md#blocks).

This module holds no rule and decides nothing: the table says who owns what, and asks
the store to remember it.
"""

from __future__ import annotations

import itertools
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, ItemsView, Iterable, KeysView, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import attrgetter, itemgetter

from spreadq.queue.envelope import BatchJobs
from spreadq.queue.jobs import Job, JobRef, Outcome, OutcomeRun

__all__ = ["Outstanding", "OutstandingJob", "owner_counts", "sole_owner"]


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
    arrival: int = 0  # where it came in the delivery order (module docstring)


class _Block:
    """The jobs of one batch that other members own, entered in the table as one value.

    It holds what every such job's :class:`_Entry` would (all the rest are the entry's
    defaults): the batch, its sender and mess_type, the origin, the owner of each of the
    batch's slots from ``first`` on, and the view they were assigned in; and which of
    them are still outstanding (``live``: a byte a job, 1 while outstanding here as part
    of the block; 0 for our own jobs, entries of their own, and for completed ones).
    The batch's seqs are ``low`` and up, in a row. Their loads are counted only when
    ``counts`` (a load rule gave the owners): then each job completed here is released
    for its owner through :attr:`Outstanding.release`, and an entry made of one counts
    for its owner as a job entered alone would.
    """

    __slots__ = (
        "arrival",
        "counts",
        "first",
        "jobs",
        "left",
        "live",
        "low",
        "mess_type",
        "origin",
        "owners",
        "sender",
        "view",
    )

    def __init__(
        self,
        jobs: BatchJobs,
        sender: str,
        mess_type: int,
        origin: _Origin,
        owners: Sequence[str],
        first: int,
        view: int,
        counts: bool = False,
    ) -> None:
        self.jobs = jobs
        self.sender = sender
        self.mess_type = mess_type
        self.origin = origin
        self.owners = owners
        self.first = first  # the slot of the batch's first job
        self.view = view
        self.counts = counts
        self.low = jobs.seqs[0] if jobs.seqs else 0  # the seq of the batch's first job
        self.live = bytearray()
        self.left = 0  # how many of live are 1
        self.arrival = 0

    def entry(self, index: int) -> _Entry:
        """The entry of the block's job ``index``, as it would have entered alone."""
        return self.entries((index,))[0]

    def entries(self, indexes: Iterable[int]) -> list[_Entry]:
        """:meth:`entry` for each of ``indexes`` (the jobs of a batch we own enter so).
        No index, no ref built."""
        indexes = list(indexes)
        if not indexes:
            return []
        jobs, refs, owners, first, arrival = (
            self.jobs,
            self.jobs.refs_at(indexes),
            self.owners,
            self.first,
            self.arrival,
        )
        sender, mess_type, origin, view, counts = (
            self.sender,
            self.mess_type,
            self.origin,
            self.view,
            self.counts,
        )
        made: list[_Entry] = []
        for index, ref in zip(indexes, refs, strict=True):
            owner = owners[index]
            entry = _Entry(
                ref,
                None,
                jobs,
                index,
                sender,
                mess_type,
                origin,
                owner,
                first + index,
                view,
                True,
                owner if counts else None,
            )
            entry.arrival = arrival + index
            made.append(entry)
        return made


def sole_owner(owners: Sequence[str]) -> str | None:
    """The member that is every one of ``owners``, as under ``fill_first`` and
    ``sticky`` nearly always; None when there are several (or none)."""
    first = owners[0] if owners else None
    if first is not None and owners.count(first) == len(owners):
        return first
    return None


def owner_counts(owners: Sequence[str]) -> Iterable[tuple[str, int]]:
    """How many of ``owners`` each member is, in first-seen order; at once when one
    member owns them all (:func:`sole_owner`)."""
    whole = sole_owner(owners)
    if whole is not None:
        return ((whole, len(owners)),)
    return Counter(owners).items()


def _ignore_release(owner: str, count: int) -> None:
    """No table listens: blocks that count loads release them nowhere."""


_producer_id = itemgetter(0)
_LIVE = b"\x01"  # a block's job still outstanding, in :attr:`_Block.live`
_NOT_YET = (False, False, False, False)  # a block's job: no failover, not started ...
_ARRIVAL_STEP = 1 << 16  # room for a batch's indices between two arrivals
_arrival = attrgetter("arrival")
_entry_ref = attrgetter("ref")


class Outstanding:
    """The outstanding jobs: an :class:`_Entry` each in :attr:`entries`, or their
    batch's :class:`_Block` for the jobs of other members that entered together.

    ``ref in store``, ``store.get(ref)``, ``store.pop(ref)``, ``store[ref] = entry``,
    ``del store[ref]`` and ``len(store)`` see both; the table's hot paths that handle
    only our own jobs read :attr:`entries` (a dict) directly.
    """

    __slots__ = (
        "_blocks",
        "_high",
        "_lows",
        "_out_of_order",
        "arrivals",
        "entries",
        "in_blocks",
        "release",
    )

    def __init__(self) -> None:
        self.entries: dict[JobRef, _Entry] = {}
        """The jobs held one by one (every job we own among them), by ref."""
        self._blocks: dict[bytes, list[_Block]] = {}  # a producer's blocks, in seq order
        self._lows: dict[bytes, list[int]] = {}  # ... and the seq each begins at
        self._high: dict[bytes, int] = {}  # the greatest seq of each producer ever held
        self.in_blocks = 0
        """How many jobs are outstanding in blocks."""
        self._out_of_order = False  # entries of a block came after later ones
        self.arrivals = itertools.count(0, _ARRIVAL_STEP)
        """The arrival of the next entry or block entered (``next(store.arrivals)``)."""
        self.release: Callable[[str, int], None] = _ignore_release
        """Called with an owner and a count when jobs of a block that ``counts`` loads
        complete (the table's current :meth:`~spreadq.queue.rules.SlotState.released`)."""

    # -- what is there ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.entries) + self.in_blocks

    def __contains__(self, ref: JobRef) -> bool:
        return ref in self.entries or (self.in_blocks > 0 and self._find(ref) is not None)

    def _find(self, ref: JobRef) -> tuple[_Block, int] | None:
        """The block that holds outstanding job ``ref``, and its index there."""
        lows = self._lows.get(ref[0])
        if not lows:
            return None
        seq = ref[1]
        at = bisect_right(lows, seq) - 1
        if at < 0:
            return None
        block = self._blocks[ref[0]][at]
        index = seq - block.low
        if index < len(block.live) and block.live[index]:
            return block, index
        return None

    def get(self, ref: JobRef) -> _Entry | _Block | None:
        """The entry of ``ref``, or the block that holds it, or None."""
        entry = self.entries.get(ref)
        if entry is not None or not self.in_blocks:
            return entry
        found = self._find(ref)
        return None if found is None else found[0]

    def keys(self) -> KeysView[JobRef]:
        """The refs of the jobs held one by one (every job we own among them)."""
        return self.entries.keys()

    def items(self) -> ItemsView[JobRef, _Entry]:
        """The jobs held one by one, with their entries."""
        return self.entries.items()

    def is_new(self, producer_id: bytes, seqs: Sequence[int]) -> bool:
        """Whether ``seqs`` (one batch's, of ``producer_id``) are in a row above every seq
        of that producer held so far: then none of those jobs is outstanding, and they
        may enter as a block."""
        low = seqs[0]
        if low <= self._high.get(producer_id, -1):
            return False
        return list(seqs) == list(range(low, low + len(seqs)))

    # -- entering and leaving ------------------------------------------------------------

    def __setitem__(self, ref: JobRef, entry: _Entry) -> None:
        """Hold ``entry`` for ``ref``, last in the delivery order."""
        entry.arrival = next(self.arrivals)
        self.entries[ref] = entry
        self.held_up_to(*ref)

    def held_up_to(self, producer_id: bytes, seq: int) -> None:
        """Note that a job of ``producer_id`` with ``seq`` entered (:meth:`is_new` asks):
        what a caller that enters entries into :attr:`entries` itself (each with
        ``next(store.arrivals)``) must say, once for the greatest seq."""
        if seq > self._high.get(producer_id, -1):
            self._high[producer_id] = seq

    def __delitem__(self, ref: JobRef) -> None:
        if self.pop(ref) is None:
            raise KeyError(ref)

    def pop(self, ref: JobRef) -> _Entry | _Block | None:
        """Remove outstanding job ``ref``; its entry, or the block that held it, or None."""
        entry = self.entries.pop(ref, None)
        if entry is not None or not self.in_blocks:
            return entry
        found = self._find(ref)
        if found is None:
            return None
        block, index = found
        self._clear(block, index)
        return block

    def pop_all(self, refs: Sequence[JobRef]) -> list[_Entry | _Block | None]:
        """:meth:`pop` each of ``refs``, in order."""
        popped: list[_Entry | _Block | None] = list(map(self.entries.pop, refs, repeat(None)))
        if self.in_blocks and None in popped:
            for at in [i for i, entry in enumerate(popped) if entry is None]:
                popped[at] = self.pop(refs[at])
        return popped

    def _clear(self, block: _Block, index: int) -> None:
        if block.counts:
            self.release(block.owners[index], 1)
        block.live[index] = 0
        block.left -= 1
        self.in_blocks -= 1
        if not block.left:
            self._drop(block)

    def _drop(self, block: _Block) -> None:
        """Forget ``block`` (its jobs are completed, or entries now)."""
        self.in_blocks -= block.left
        block.left = 0
        producer_id = block.jobs.producer_id
        lows, blocks = self._lows[producer_id], self._blocks[producer_id]
        at = bisect_right(lows, block.low) - 1
        del lows[at], blocks[at]
        if not lows:
            del self._lows[producer_id], self._blocks[producer_id]

    def enter_block(self, block: _Block, me: str) -> list[_Entry]:
        """Enter the jobs of ``block``, new to the table (:meth:`is_new` said so): other
        members' as the block, ours (``me``) as entries, which are returned in order."""
        jobs, owners = block.jobs, block.owners
        seqs = jobs.seqs
        count = len(seqs)
        producer_id = jobs.producer_id
        block.arrival = next(self.arrivals)
        self._high[producer_id] = seqs[-1]
        whole = sole_owner(owners)  # usually one member's
        if whole is None:
            ours: Iterable[int] = compress(itertools.count(), map(me.__eq__, owners))
        else:
            ours = range(count) if whole == me else ()
        mine = block.entries(ours)
        if mine:
            self.entries.update(zip(map(_entry_ref, mine), mine, strict=True))
        left = count - len(mine)
        if left:
            if whole is None:
                block.live = bytearray(map(me.__ne__, owners))
            else:  # all of them others'
                block.live = bytearray(_LIVE) * count
            block.left = left
            self.in_blocks += left
            self._blocks.setdefault(producer_id, []).append(block)
            self._lows.setdefault(producer_id, []).append(block.low)
        return mine

    def complete_runs(self, runs: Iterable[OutcomeRun]) -> list[JobRef]:
        """Complete the jobs of an ACK's ``runs`` that blocks hold; return the refs of
        the others (entries, and jobs not outstanding), in order, for :meth:`pop_all`.

        A run whose every job in a block is outstanding there completes with a slice
        of each block's ``live`` a block; one none of whose jobs is in a block goes to
        the entries whole; one of each is taken job by job."""
        others: list[JobRef] = []
        for run in runs:
            lows = self._lows.get(run.producer_id) if self.in_blocks else None
            if not lows or run.first > self._high[run.producer_id]:
                others += run.refs()
                continue
            blocks = self._blocks[run.producer_id]
            first, stride, last = run.first, run.stride, run.last
            slices: list[tuple[_Block, slice, int]] = []
            live = held = 0
            for block in blocks[max(0, bisect_right(lows, first) - 1) :]:
                low = block.low
                if low > last:
                    break
                high = low + len(block.live) - 1
                if high < first:
                    continue
                start = first if low <= first else first + -(-(low - first) // stride) * stride
                if start > high:
                    continue
                end = min(last, high)
                end -= (end - start) % stride
                part = slice(start - low, end - low + 1, stride)
                count = (end - start) // stride + 1
                found = block.live[part].count(1)
                slices.append((block, part, count))
                live += found
                held += count
            if live == 0:
                others += run.refs()
            elif live == held == run.count:  # all of it outstanding in blocks: at once
                for block, part, count in slices:
                    if block.counts:
                        for owner, done in owner_counts(block.owners[part]):
                            self.release(owner, done)
                    block.live[part] = bytes(count)
                    block.left -= count
                    self.in_blocks -= count
                    if not block.left:
                        self._drop(block)
            else:  # some in blocks, some not: one by one
                for ref in run.refs():
                    found_at = self._find(ref)
                    if found_at is None:
                        others.append(ref)
                    else:
                        self._clear(*found_at)
        return others

    # -- a block's jobs as entries -------------------------------------------------------

    def entry(self, ref: JobRef) -> _Entry | None:
        """The entry of outstanding job ``ref`` (its block's jobs become entries)."""
        entry = self.entries.get(ref)
        if entry is None and self.in_blocks:
            found = self._find(ref)
            if found is not None:
                self.unblock(found[0])
                entry = self.entries[ref]
        return entry

    def unblock(self, block: _Block) -> None:
        """Turn the jobs of ``block`` still outstanding into entries."""
        entries, live = self.entries, block.live
        for index in compress(range(len(live)), live):
            entry = block.entry(index)
            entries[entry.ref] = entry
        self._drop(block)
        self._out_of_order = True

    def unblocked(self) -> dict[JobRef, _Entry]:
        """The outstanding jobs as entries in delivery order, every block turned into
        entries first (for a walk that looks at each job)."""
        blocks = [block for kept in self._blocks.values() for block in kept]
        for block in blocks:
            self.unblock(block)
        entries = self.entries
        if self._out_of_order:  # the order of insertion is not the order of delivery
            self._out_of_order = False
            ordered = sorted(entries.values(), key=_arrival)
            entries.clear()
            entries.update(zip(map(_entry_ref, ordered), ordered, strict=True))
        return entries

    # -- questions -------------------------------------------------------------------------

    def owner_of(self, ref: JobRef) -> str | None:
        """The owner of outstanding job ``ref``, or ``None`` (unknown, orphaned or not
        held)."""
        entry = self.entries.get(ref)
        if entry is not None:
            return entry.owner
        found = self._find(ref) if self.in_blocks else None
        return None if found is None else found[0].owners[found[1]]

    def listing(self, given_up: Callable[[_Entry], bool]) -> list[OutstandingJob]:
        """Every outstanding job, in delivery order (``given_up`` says whether an
        entry's job was given up)."""
        rows: list[tuple[int, OutstandingJob]] = []
        add = rows.append
        for block in (block for kept in self._blocks.values() for block in kept):
            refs, owners = block.jobs.refs, block.owners
            for i in compress(range(len(block.live)), block.live):
                job = OutstandingJob(
                    refs[i],
                    owners[i],
                    True,
                    block.view,
                    block.first + i,
                    False,
                    False,
                    False,
                    False,
                )
                add((block.arrival + i, job))
        for e in self.entries.values():
            duplicate = e.duplicate or e.remembered is not None
            job = OutstandingJob(
                e.ref,
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
            add((e.arrival, job))
        rows.sort(key=itemgetter(0))
        return [job for _, job in rows]

    def per_producer(self) -> dict[bytes, int]:
        """How many jobs of each producer id are outstanding (every owner's)."""
        counts = Counter(map(_producer_id, self.entries))
        for producer_id, blocks in self._blocks.items():
            counts[producer_id] += sum(block.left for block in blocks)
        return dict(counts)
