"""Outbox: the jobs one producer holds, from ``put()`` until it is done with them.

Theory of operation
-------------------
A job enters the outbox when ``put()`` admits it, and is *queued*. The producer's
batcher takes queued jobs *in hand* (a batch, or one job to be split into fragments)
and multicasts them; once on the wire they are *sent*. A member producer keeps every
job *pending* from ``put()`` until an ACK outcome settles its receipt; a
fire-and-forget producer forgets a job once it is written. A pending job goes back to
the queue, ahead of new work and in its original order, when every consumer that held
it has left or the session ended (it is re-sent with the same seq, a new mseq).

A job can be settled while still queued or in hand (a re-sent job whose first copy's
outcome arrives): it is then skipped, never sent again.

No I/O happens here: the producer's tasks call the outbox and do the waiting and the
multicasting. The outbox counts what :class:`~spreadq.producer.ProducerStatistics`
reports.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from spreadq.errors import JobFailed
from spreadq.queue.envelope import MAX_ENVELOPE_SIZE, JobSpec, batch_size
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.receipt import Receipt
from spreadq.routes import Route, Routes

__all__ = ["UNSENT", "HeldJob", "Outbox"]

UNSENT: Final = -1
"""The epoch of a job that is queued (not on the wire)."""


@dataclass(slots=True, eq=False)
class HeldJob:
    """A job the producer holds until its outcome is known (member) or it is sent."""

    spec: JobSpec
    codec: str
    route: Route
    receipt: Receipt[Any]
    at: float
    """When it was queued (monotonic seconds), for the batching delay."""
    counted: bool = False
    """Cleared once by the flow actor (counted as in flight)."""
    epoch: int = UNSENT
    """The witness epoch it was last sent in; :data:`UNSENT` while queued."""
    settled: bool = False


class Outbox:
    """The jobs of one producer: queued, in hand, pending; and the counters.

    Args:
        producer_id: the producer's id (ACK outcomes for other producers are skipped).
        routes: the producer's routes, to decode results with the codec an outcome names.
        member: keep jobs until their outcome (a member producer), or not.
        batch_max_jobs: the most jobs taken in hand at once.
    """

    __slots__ = (
        "_routes",
        "batch_max_jobs",
        "failed",
        "in_hand",
        "member",
        "messages",
        "pending",
        "producer_id",
        "put",
        "queue",
        "resent",
        "sent",
        "succeeded",
    )

    def __init__(
        self, producer_id: bytes, routes: Routes, *, member: bool, batch_max_jobs: int
    ) -> None:
        self.producer_id = producer_id
        self._routes = routes
        self.member = member
        self.batch_max_jobs = batch_max_jobs
        self.queue: deque[HeldJob] = deque()
        self.in_hand: list[HeldJob] = []
        self.pending: dict[int, HeldJob] = {}
        self.put = self.messages = self.sent = self.resent = 0
        self.succeeded = self.failed = 0

    @property
    def held(self) -> int:
        """Jobs held: pending (member), or queued (fire-and-forget)."""
        return len(self.pending) if self.member else len(self.queue)

    @property
    def unsent(self) -> int:
        """Jobs queued or in hand."""
        return len(self.queue) + len(self.in_hand)

    # -- from put() to the wire --------------------------------------------------------

    def add(self, job: HeldJob) -> bool:
        """Queue a new job; True when the batcher should wake (the queue was empty, or
        now holds a full batch)."""
        if self.member:
            self.pending[job.spec.seq] = job
        self.put += 1
        queue = self.queue
        queue.append(job)
        return len(queue) == 1 or len(queue) == self.batch_max_jobs

    def head(self) -> HeldJob | None:
        """The next job to send, dropping settled ones; None when the queue is empty."""
        queue = self.queue
        while queue and queue[0].settled:
            queue.popleft()
        return queue[0] if queue else None

    def take_one(self) -> HeldJob:
        """Take the head job in hand alone (to be fragmented)."""
        job = self.queue.popleft()
        self.in_hand = [job]
        return job

    def take_batch(self) -> list[HeldJob]:
        """Take in hand the head job and those after it that fit one batch: the same
        codec, at most ``batch_max_jobs``, under the message size cap."""
        queue = self.queue
        first = queue.popleft()
        codec = first.codec
        jobs = [first]
        size = batch_size(codec, (first.spec,))
        limit = self.batch_max_jobs
        while queue and len(jobs) < limit:
            job = queue[0]
            if job.settled:
                queue.popleft()
                continue
            if job.codec != codec:
                break
            size += job.spec.encoded_size
            if size > MAX_ENVELOPE_SIZE:
                break
            jobs.append(queue.popleft())
        self.in_hand = jobs
        return jobs

    def on_wire(self, jobs: list[HeldJob], epoch: int) -> None:
        """``jobs`` (those in hand that were still unsettled) are on the wire, sent
        while the consumers of ``epoch`` were present."""
        self.in_hand = []
        if not self.member:
            for job in jobs:
                job.settled = True
            return
        for job in jobs:
            job.epoch = epoch

    # -- sending again -------------------------------------------------------------------

    def requeue(self, jobs: list[HeldJob]) -> list[HeldJob]:
        """Queue ``jobs`` again, ahead of new work, in their original order; returns them."""
        if jobs:
            jobs.sort(key=lambda job: job.spec.seq)
            for job in jobs:
                job.epoch = UNSENT
            self.queue.extendleft(reversed(jobs))
            self.resent += len(jobs)
        return jobs

    def lost(self, epochs: Iterable[int]) -> list[HeldJob]:
        """Queue again the pending jobs sent in ``epochs`` (nobody holds them); returns
        them."""
        gone = set(epochs)
        return self.requeue([job for job in self.pending.values() if job.epoch in gone])

    def live_epochs(self) -> set[int]:
        """The epochs pending jobs were sent in."""
        return {job.epoch for job in self.pending.values()}

    def put_back(self) -> list[HeldJob]:
        """The session ended: what was in hand goes back to the queue. Returns the jobs
        re-queued to be re-sent (a member's); a fire-and-forget producer's just go back."""
        back = [job for job in self.in_hand if not job.settled]
        self.in_hand = []
        if self.member:
            return self.requeue(back)
        self.queue.extendleft(reversed(back))
        return []

    # -- outcomes ------------------------------------------------------------------------

    def on_outcomes(self, outcomes: Iterable[tuple[JobRef, Outcome]], now: float) -> int:
        """Settle the pending jobs an ACK reports; returns how many of them had been
        counted as in flight by the flow actor."""
        me = self.producer_id
        pending = self.pending
        counted = 0
        for ref, outcome in outcomes:
            if ref.producer_id != me:
                continue
            job = pending.pop(ref.seq, None)
            if job is None:
                continue
            counted += job.counted
            self.settle(job, outcome, now)
        return counted

    def settle(self, job: HeldJob, outcome: Outcome | BaseException, now: float) -> None:
        """Resolve ``job``'s receipt with ``outcome``, or fail it with an exception."""
        job.settled = True
        if isinstance(outcome, BaseException):
            self.pending.pop(job.spec.seq, None)
            self.failed += 1
            job.receipt._fail(outcome)
        elif outcome.ok:
            self.succeeded += 1
            decode = self._routes.result_decoder(job.route, job.codec, outcome)
            job.receipt._succeed(outcome.result, now, decode)
        else:
            self.failed += 1
            job.receipt._fail(
                JobFailed(outcome.error_type, outcome.error_message, outcome.attempts)
            )

    def fail_all(self, error: BaseException) -> int:
        """Fail every pending receipt with ``error`` and forget every job; returns how
        many receipts it failed."""
        failed = 0
        for job in self.pending.values():
            if not job.receipt.done:
                job.receipt._fail(error)
                failed += 1
        self.pending.clear()
        self.queue.clear()
        self.in_hand = []
        return failed
