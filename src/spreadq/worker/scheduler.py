"""Scheduler: which of the jobs we own start now, sans-IO.

Theory of operation. The table tells a worker which jobs it owns; the scheduler decides
when each of them starts. It holds no tasks and reads no clock (the time is passed in):
the worker's loop offers it jobs, asks :meth:`Scheduler.next` for the next one to start
while it answers, and reports each started job's end with :meth:`Scheduler.ended`.

* **Slots.** At most ``limit`` jobs run at once (``settings.concurrency``); a job
  counts from the moment :meth:`~Scheduler.next` hands it out until :meth:`~Scheduler.ended`.
* **Failover first.** Jobs taken over from a departed member (``failover=True``) start
  before our own queued jobs, in the order they were offered: they have waited longest.
* **Priorities.** Among our own ready jobs, a higher ``priority`` starts first, and
  jobs of one priority start in the order they became ready. Priority is owner-local:
  it orders this worker's own ready jobs, not the queue (a job of priority 100 owned
  by a busy member waits while another member runs priority -100 jobs). Jobs of
  priority 0 (nearly all) stay in one deque; the others go to a heap each side of 0.
* **Key order.** With ``ordered_keys`` (a rule that keeps key order), the jobs of one
  key run one at a time, in the order they were offered, whatever their priorities:
  the first offered holds the key, the next ones wait aside in its lane, and when the
  holder ends (or is dropped) its successor enters the ready jobs at the head of its
  priority (it has waited longer than any job there).
* **Delays.** A job with a start time ahead (the ``not_before`` header) waits outside
  the slots (:meth:`~Scheduler.defer`) until :meth:`~Scheduler.due` passes that time;
  it is offered then (at the tail of its priority).
* **Giving back.** :meth:`~Scheduler.give_back` takes plain ready jobs out of the queue
  (no key, priority 0, not taken over) beyond the first few, for a busy worker to give
  back to its queue's other members.
* **Cancellation.** :meth:`~Scheduler.cancel` of a job not started marks it dropped:
  it is skipped when its turn comes, and hands its key on at once (a dropped job in a
  lane is passed over). :meth:`~Scheduler.drop_all`
  forgets every job not started; started jobs keep their slot and key until they end.

Worked example (limit 1, ordered keys)::

    offer(a1 key=a); offer(a2 key=a); offer(b1 key=b); offer(t1, failover)
    next() -> t1            (taken over: first)
    ended(t1); next() -> a1 (holds key a; a2 waits in its lane)
    ended(a1); next() -> a2 (a1's successor, at the head)
    ended(a2); next() -> b1

and with priorities (limit 1, no keys)::

    offer(x, priority=0); offer(y, priority=5); offer(z, priority=5); offer(w, priority=-1)
    next() -> y; ended(y); next() -> z; ended(z); next() -> x; ended(x); next() -> w

This is the worker's hot path: for a job of priority 0 and no ordered key, one deque
append and pop and one dict entry, nothing else allocated.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

from spreadq.queue.jobs import JobRef

__all__ = ["Schedulable", "Scheduler"]


class Schedulable(Protocol):
    """What the scheduler reads of a job it holds."""

    @property
    def ref(self) -> JobRef:
        """The job's reference."""
        ...

    @property
    def key(self) -> str | None:
        """The job's ordering key (None: none)."""
        ...


T = TypeVar("T", bound=Schedulable)


class Scheduler(Generic[T]):
    """The ready, taken-over and delayed jobs of one worker session, and its slots.

    Args:
        limit: how many jobs may run at once (at least 1).
        ordered_keys: run the jobs of one key one at a time, in the order offered.
    """

    __slots__ = (
        "_above",
        "_below",
        "_delayed",
        "_dropped",
        "_front",
        "_lanes",
        "_limit",
        "_ordered",
        "_queued_holders",
        "_ready",
        "_running",
        "_sequence",
        "_taken_over",
    )

    def __init__(self, limit: int, *, ordered_keys: bool = False) -> None:
        self._limit = limit
        self._ordered = ordered_keys
        self._ready: deque[T] = deque()  # own jobs of priority 0
        self._above: list[tuple[int, int, T]] = []  # a heap of (-priority, order, job), > 0
        self._below: list[tuple[int, int, T]] = []  # the same for priorities < 0
        self._taken_over: deque[T] = deque()
        self._delayed: list[tuple[float, int, T, int]] = []  # a heap by start time
        self._sequence = itertools.count()  # offer order, for ties in the heaps
        self._front = itertools.count(-1, -1)  # a key's successor goes ahead of its level
        self._running: dict[JobRef, str | None] = {}  # started, until ended: its held key
        self._dropped: set[JobRef] = set()  # cancelled before they started
        # a held key -> the jobs waiting for it, in offer order (failover, priority)
        self._lanes: dict[str, deque[tuple[T, bool, int]]] = {}
        self._queued_holders: dict[JobRef, str] = {}  # holds its key, not started yet

    # -- state -------------------------------------------------------------------------

    @property
    def running(self) -> int:
        """How many jobs are started and not yet ended."""
        return len(self._running)

    @property
    def queued(self) -> int:
        """How many jobs wait for a slot (ready or taken over; not delayed ones, nor
        those waiting for their key)."""
        return len(self._ready) + len(self._taken_over) + len(self._above) + len(self._below)

    @property
    def limit(self) -> int:
        """How many jobs may run at once."""
        return self._limit

    def is_running(self, ref: JobRef) -> bool:
        """Whether ``ref`` is started and not yet ended."""
        return ref in self._running

    def next_due(self) -> float | None:
        """The earliest start time of a delayed job, or None when none waits."""
        return self._delayed[0][0] if self._delayed else None

    # -- inputs ------------------------------------------------------------------------

    def offer(self, job: T, *, failover: bool = False, priority: int = 0) -> None:
        """A job we own, to start when a slot (and its key) is free; ``failover`` jobs
        go before the others, then higher ``priority`` before lower."""
        if priority or (self._ordered and job.key is not None):
            self._offer(job, failover, priority)
        else:  # the common case, kept short
            (self._taken_over if failover else self._ready).append(job)

    def _offer(self, job: T, failover: bool, priority: int) -> None:
        if self._ordered:
            key = job.key
            if key is not None:
                lane = self._lanes.get(key)
                if lane is not None:  # the key is held: wait for it, in offer order
                    lane.append((job, failover, priority))
                    return
                self._lanes[key] = deque()  # this job holds the key from now on
                self._queued_holders[job.ref] = key
        if failover:
            self._taken_over.append(job)
        elif not priority:
            self._ready.append(job)
        else:
            heapq.heappush(
                self._above if priority > 0 else self._below,
                (-priority, next(self._sequence), job),
            )

    def defer(self, job: T, at: float, *, priority: int = 0) -> None:
        """A job that may start only at ``at`` (in the caller's time base): it waits
        outside the slots until :meth:`due` reaches that time."""
        heapq.heappush(self._delayed, (at, next(self._sequence), job, priority))

    def due(self, now: float) -> None:
        """Offer every delayed job whose time has come (``at <= now``)."""
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            _, _, job, priority = heapq.heappop(delayed)
            self.offer(job, priority=priority)

    def next(self) -> T | None:
        """The next job to start now, counted running from here on; None when no slot
        is free or nothing can start (call again until None)."""
        taken_over, ready, running = self._taken_over, self._ready, self._running
        above, below = self._above, self._below
        while len(running) < self._limit:
            if taken_over:
                job = taken_over.popleft()
            elif above:
                job = heapq.heappop(above)[2]
            elif ready:
                job = ready.popleft()
            elif below:
                job = heapq.heappop(below)[2]
            else:
                return None
            ref = job.ref
            if ref in self._dropped:
                self._dropped.discard(ref)
                # a key it holds was handed on at cancel(), unless it was delayed then
                held = self._queued_holders.pop(ref, None) if self._ordered else None
                if held is not None:
                    self._release_key(held)
                continue
            key = job.key if self._ordered else None
            if key is not None:
                del self._queued_holders[ref]
            running[ref] = key
            return job
        return None

    def take_all(self) -> list[T]:
        """Every job :meth:`next` would give now, in its order, each counted running.

        With only plain ready jobs queued (no failover, priority or key, none cancelled)
        they are taken in one pass."""
        if self._taken_over or self._above or self._below or self._dropped or self._ordered:
            taken: list[T] = []
            while (job := self.next()) is not None:
                taken.append(job)
            return taken
        ready, running = self._ready, self._running
        room = self._limit - len(running)
        if room >= len(ready):
            taken = list(ready)
            ready.clear()
        else:
            taken = [ready.popleft() for _ in range(max(room, 0))]
        for job in taken:
            running[job.ref] = None
        return taken

    def ended(self, ref: JobRef) -> bool:
        """A started job ended (or was abandoned): free its slot and its key. Returns
        whether ``ref`` was running."""
        try:
            key = self._running.pop(ref)
        except KeyError:
            return False
        if key is not None:
            self._release_key(key)
        return True

    def ended_all(self, refs: Iterable[JobRef]) -> None:
        """:meth:`ended` for each of ``refs``."""
        running = self._running
        for ref in refs:
            key = running.pop(ref, None)
            if key is not None:
                self._release_key(key)

    def cancel(self, ref: JobRef) -> bool:
        """Cancel a job: True when it runs (the caller stops it; it ends as usual),
        else it is dropped when its turn comes, and False."""
        if ref in self._running:
            return True
        self._dropped.add(ref)
        key = self._queued_holders.pop(ref, None)
        if key is not None:
            self._release_key(key)
        return False

    def give_back(self, keep: int) -> list[T]:
        """Take out the plain ready jobs (priority 0, no key, not taken over) after the
        first ``keep`` of them, and return them in the order they were offered; a job
        cancelled while it waited goes too, silently. Jobs with a key stay (their owner
        keeps the key's jobs together), and so do the others.

        A worker that cannot keep up gives these back to its queue's other members
        (:class:`~spreadq.queue.envelope.Release`)."""
        ready, dropped = self._ready, self._dropped
        if len(ready) <= keep:
            return []
        stay: deque[T] = deque()
        given: list[T] = []
        plain = 0
        for job in ready:
            if job.ref in dropped:
                dropped.discard(job.ref)
            elif job.key is not None:
                stay.append(job)
            elif plain < keep:
                plain += 1
                stay.append(job)
            else:
                given.append(job)
        self._ready = stay
        return given

    def drop_all(self) -> None:
        """Forget every job not started (ready, taken over, delayed, waiting for a key);
        running jobs keep their slots and keys until they end."""
        self._ready.clear()
        self._above.clear()
        self._below.clear()
        self._taken_over.clear()
        self._delayed.clear()
        self._lanes = {key: deque() for key in self._running.values() if key is not None}
        self._queued_holders.clear()
        self._dropped.clear()

    def _release_key(self, key: str) -> None:
        """The job holding ``key`` is done: the next one of that key goes first."""
        lane = self._lanes[key]
        dropped = self._dropped
        while lane and lane[0][0].ref in dropped:  # cancelled while it waited: passed over
            dropped.discard(lane.popleft()[0].ref)
        if not lane:
            del self._lanes[key]
            return
        successor, failover, priority = lane.popleft()  # it holds the key now
        self._queued_holders[successor.ref] = key
        if failover:
            self._taken_over.appendleft(successor)
        elif not priority:
            self._ready.appendleft(successor)
        else:
            heapq.heappush(
                self._above if priority > 0 else self._below,
                (-priority, next(self._front), successor),
            )
