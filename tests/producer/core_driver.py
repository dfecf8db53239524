"""A test driver for :class:`~spreadq.producer.core.ProducerCore`: feeds it inputs the
way the producer facade does and records the effects it returns (no daemon, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spreadq.producer.core import ProducerCore
from spreadq.producer.effects import (
    ConsumersSet,
    Dropped,
    Effect,
    Ready,
    Requeued,
    Resolve,
    Settle,
)
from spreadq.producer.inputs import (
    AckReceived,
    Cleared,
    FeedbackMembership,
    Input,
    NoticeReceived,
    Put,
    Sent,
    SessionOpened,
    ViewReceived,
)
from spreadq.producer.jobs import Batch
from spreadq.queue.envelope import Ack, JobSpec, Notice
from spreadq.queue.jobs import JobRef, Outcome, OutcomeRecord, outcome_of
from spreadq.queue.view import View

PID = bytes(range(16))
ME = "#me#d"


@dataclass
class Driver:
    """One core, its FEEDBACK group as the test makes it, and what the core said."""

    core: ProducerCore
    feedback: list[str] = field(default_factory=lambda: [ME])
    settled: dict[int, OutcomeRecord | BaseException] = field(default_factory=dict)
    resolved: dict[int, Outcome] = field(default_factory=dict)  # early, from NOTICEs
    dropped: list[Dropped] = field(default_factory=list)
    requeued: list[list[int]] = field(default_factory=list)
    consumer_sets: list[tuple[str, ...]] = field(default_factory=list)
    ready: int = 0
    now: float = 0.0
    views: int = 0

    @classmethod
    def make(cls, **options: Any) -> Driver:
        driver = cls(ProducerCore(PID, **options))
        driver.apply(SessionOpened(ME))
        return driver

    def apply(self, event: Input) -> list[Effect]:
        effects = self.core.apply(event, self.now)
        for effect in effects:
            match effect:
                case Settle(job=job, outcome=outcome):
                    seq = job.spec.seq
                    assert seq not in self.settled, f"job {seq} settled twice"
                    assert job.tag == seq  # the tag comes back untouched
                    self.settled[seq] = outcome
                case Resolve(job=job, outcome=outcome):
                    seq = job.spec.seq
                    assert seq not in self.settled, f"job {seq} resolved after it settled"
                    assert seq not in self.resolved, f"job {seq} resolved twice"
                    self.resolved[seq] = outcome_of(outcome)  # a decoded NOTICE's record
                case Dropped():
                    self.dropped.append(effect)
                case Requeued(jobs=jobs):
                    self.requeued.append([job.spec.seq for job in jobs])
                case ConsumersSet(consumers=consumers):
                    self.consumer_sets.append(consumers)
                case Ready():
                    self.ready += 1
        return effects

    # -- local inputs ------------------------------------------------------------------

    def put(self, payload: bytes = b"{}", codec: str = "json") -> int:
        seq = self.core.next_seq
        self.apply(Put(JobSpec(seq, "k", payload), codec, seq))
        return seq

    def send(self) -> list[int] | None:
        """Take the next batch and send it if the core clears it: the seqs sent, or
        None when nothing is queued. A batch not cleared stays in hand. The message is
        booked at ``now`` against the core's ``batch_max_rate``."""
        batch = self.core.next_batch(self.now)
        if batch is None:
            return None
        assert self.core.clear_to_send(batch), self.core.blocked()
        return self.finish(batch)

    def finish(self, batch: Batch[Any]) -> list[int]:
        self.apply(Cleared(batch))
        live = tuple(job for job in batch.jobs if not job.settled)
        self.apply(Sent(live, 1 if live else 0))
        return [job.spec.seq for job in live]

    # -- the FEEDBACK group ------------------------------------------------------------

    def members(self, *members: str) -> None:
        """The FEEDBACK group is now us and ``members``."""
        self.feedback = [ME, *members]
        self.apply(FeedbackMembership(tuple(self.feedback)))

    def join(self, *members: str) -> None:
        self.members(*[m for m in self.feedback if m != ME], *members)

    def leave(self, *members: str) -> None:
        self.members(*[m for m in self.feedback if m != ME and m not in members])

    def view(self, *members: str, sender: str | None = None) -> list[Effect]:
        """A VIEW listing ``members``, from its first member unless ``sender`` says."""
        self.views += 1
        view = View(tuple(members), (1, 1, self.views), self.views)
        first = sender if sender is not None else (members[0] if members else ME)
        return self.apply(ViewReceived(first, view))

    def consumers(self, *members: str) -> None:
        """``members`` join FEEDBACK (if they had not) and announce themselves."""
        self.join(*[m for m in members if m not in self.feedback])
        self.view(*members)

    def ack(
        self,
        sender: str,
        positions: tuple[tuple[bytes, int], ...] = (),
        backlog: int = 0,
        outcomes: tuple[tuple[JobRef, Outcome], ...] = (),
    ) -> list[Effect]:
        return self.apply(AckReceived(sender, Ack(bytes(16), outcomes, positions, backlog)))

    def notice(self, sender: str, *seqs: int, producer_id: bytes = PID) -> list[Effect]:
        """A NOTICE from ``sender``: jobs ``seqs`` succeeded with ``b"1"``."""
        outcomes = tuple((JobRef(producer_id, seq), Outcome.success(b"1")) for seq in seqs)
        return self.apply(NoticeReceived(sender, Notice(outcomes)))

    def read(self, sender: str, mseq: int, backlog: int = 0) -> list[Effect]:
        """``sender`` reports having read our messages up to ``mseq``."""
        return self.ack(sender, ((PID, mseq),), backlog)

    def succeed(self, sender: str, *seqs: int) -> list[Effect]:
        outcomes = tuple((JobRef(PID, seq), Outcome.success(b"1")) for seq in seqs)
        return self.ack(sender, outcomes=outcomes)
