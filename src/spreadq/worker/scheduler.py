"""Scheduler: which of the jobs we own start now, sans-IO.

Theory of operation. The table tells a worker which jobs it owns; the scheduler decides
when each of them starts. It holds no tasks and reads no clock (the time is passed in):
the worker's loop offers it jobs, asks :meth:`Scheduler.next` for the next one to start
while it answers, and reports each started job's end with :meth:`Scheduler.ended`.

* **Slots.** At most ``limit`` jobs run at once (``settings.concurrency``); a job
  counts from the moment :meth:`~Scheduler.next` hands it out until :meth:`~Scheduler.ended`.
* **Failover first.** Jobs taken over from a departed member (``failover=True``) start
  before our own queued jobs, in the order they were offered: they have waited longest.
* **Key order.** With ``ordered_keys`` (a rule that keeps key order), the jobs of one
  key run one at a time, in the order they were offered: a job whose key is held waits
  aside, and takes the key (at the head of the ready queue) when the holder ends.
* **Delays.** A job with a start time ahead (the ``not_before`` header) waits outside
  the slots (:meth:`~Scheduler.defer`) until :meth:`~Scheduler.due` passes that time;
  it then joins the ready queue at its tail.
* **Cancellation.** :meth:`~Scheduler.cancel` of a job not started marks it dropped:
  it is skipped (and gives up its key) when its turn comes. :meth:`~Scheduler.drop_all`
  forgets every job not started; started jobs keep their slot and key until they end.

Worked example (limit 1, ordered keys)::

    offer(a1 key=a); offer(a2 key=a); offer(b1 key=b); offer(t1, failover)
    next() -> t1            (taken over: first)
    ended(t1); next() -> a1 (holds key a)
    ended(a1); next() -> a2 (a1's successor, at the head)
    ended(a2); next() -> b1

This is the worker's hot path: one deque append and pop and one dict entry per job,
nothing else allocated.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
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
        "_delayed",
        "_dropped",
        "_key_holder",
        "_key_waiting",
        "_limit",
        "_ordered",
        "_ready",
        "_running",
        "_sequence",
        "_taken_over",
    )

    def __init__(self, limit: int, *, ordered_keys: bool = False) -> None:
        self._limit = limit
        self._ordered = ordered_keys
        self._ready: deque[T] = deque()
        self._taken_over: deque[T] = deque()
        self._delayed: list[tuple[float, int, T]] = []  # a heap by start time
        self._sequence = itertools.count()  # ties in _delayed go in offer order
        self._running: dict[JobRef, str | None] = {}  # started, until ended: its held key
        self._dropped: set[JobRef] = set()  # cancelled before they started
        self._key_holder: dict[str, JobRef] = {}
        self._key_waiting: dict[str, deque[T]] = {}

    # -- state -------------------------------------------------------------------------

    @property
    def running(self) -> int:
        """How many jobs are started and not yet ended."""
        return len(self._running)

    @property
    def queued(self) -> int:
        """How many jobs wait for a slot (ready or taken over; not delayed ones, nor
        those waiting for their key)."""
        return len(self._ready) + len(self._taken_over)

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

    def offer(self, job: T, *, failover: bool = False) -> None:
        """A job we own, to start when a slot (and its key) is free; ``failover`` jobs
        go before the others."""
        (self._taken_over if failover else self._ready).append(job)

    def defer(self, job: T, at: float) -> None:
        """A job that may start only at ``at`` (in the caller's time base): it waits
        outside the slots until :meth:`due` reaches that time."""
        heapq.heappush(self._delayed, (at, next(self._sequence), job))

    def due(self, now: float) -> None:
        """Move every delayed job whose time has come (``at <= now``) to the ready queue."""
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            self._ready.append(heapq.heappop(delayed)[2])

    def next(self) -> T | None:
        """The next job to start now, counted running from here on; None when no slot
        is free or nothing can start (call again until None)."""
        taken_over, ready, running = self._taken_over, self._ready, self._running
        while (taken_over or ready) and len(running) < self._limit:
            job = taken_over.popleft() if taken_over else ready.popleft()
            ref = job.ref
            key = job.key if self._ordered else None
            if ref in self._dropped:
                self._dropped.discard(ref)
                if key is not None and self._key_holder.get(key) == ref:
                    self._release_key(key)
                continue
            if key is not None:
                holder = self._key_holder.setdefault(key, ref)
                if holder != ref:
                    self._key_waiting.setdefault(key, deque()).append(job)
                    continue
            running[ref] = key
            return job
        return None

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

    def cancel(self, ref: JobRef) -> bool:
        """Cancel a job: True when it runs (the caller stops it; it ends as usual),
        else it is dropped when its turn comes, and False."""
        if ref in self._running:
            return True
        self._dropped.add(ref)
        return False

    def drop_all(self) -> None:
        """Forget every job not started (ready, taken over, delayed, waiting for a key);
        running jobs keep their slots and keys until they end."""
        self._ready.clear()
        self._taken_over.clear()
        self._delayed.clear()
        self._key_waiting.clear()
        self._key_holder = {key: ref for ref, key in self._running.items() if key is not None}
        self._dropped.clear()

    def _release_key(self, key: str) -> None:
        """The job holding ``key`` is done: the next one of that key goes first."""
        waiting = self._key_waiting.get(key)
        if not waiting:
            self._key_waiting.pop(key, None)
            del self._key_holder[key]
            return
        successor = waiting.popleft()
        if not waiting:
            del self._key_waiting[key]
        self._key_holder[key] = successor.ref
        self._ready.appendleft(successor)
