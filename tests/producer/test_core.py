"""ProducerCore: the jobs a producer holds, its consumers and trust, with no daemon.

Worked examples first (batching, skipping settled jobs, requeueing, fire-and-forget,
held and dropped FEEDBACK envelopes), then a hypothesis state machine that drives one
core with random puts, sends, ACKs, VIEWs, FEEDBACK changes, forged envelopes and lost
sessions, and checks after every step that

* every put is settled exactly once (at the latest when the producer closes);
* no message is cleared while some consumer has more of ours unread than its window;
* a lost session requeues every unsettled job;
* an ACK from a sender that is not a consumer settles nothing and changes no count.
"""

from __future__ import annotations

from typing import Any

import pytest
from core_driver import ME, PID, Driver
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from spreadq.errors import CloseReason, ConnectionLost, LocalProtocolError, MessageTooLarge
from spreadq.producer.core import BATCH_BURST, MAX_HELD_ACKS
from spreadq.producer.effects import Dropped, Ready, Settle
from spreadq.producer.inputs import (
    Cleared,
    Closed,
    GiveUp,
    Put,
    Resending,
    Sent,
    SessionLost,
    SessionOpened,
)
from spreadq.producer.jobs import UNSENT, Batch
from spreadq.queue.envelope import MAX_ENVELOPE_SIZE, JobSpec
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.queue.witnesses import Trust

# -- from put() to the wire --------------------------------------------------------------


def test_batches_stop_at_the_limit_the_codec_and_the_size_cap() -> None:
    d = Driver.make(batch_max_jobs=3)
    for _ in range(4):
        d.put()
    assert d.ready == 2  # the first job, then a full batch
    d.put(codec="raw")
    batch = d.core.next_batch()
    assert batch is not None
    assert [job.spec.seq for job in batch.jobs] == [0, 1, 2]
    assert d.core.unsent == 5  # in hand counts as unsent
    d.apply(SessionLost())  # (a member core puts the batch in hand back)
    d = Driver.make(batch_max_jobs=10)
    for _ in range(2):
        d.put()
    d.put(codec="raw")
    batch = d.core.next_batch()
    assert batch is not None
    assert [job.spec.seq for job in batch.jobs] == [0, 1]  # raw is another codec
    big = MAX_ENVELOPE_SIZE // 2
    d = Driver.make(batch_max_jobs=10)
    for _ in range(3):
        d.put(b"x" * big)
    batch = d.core.next_batch()
    assert batch is not None
    assert (len(batch.jobs), batch.fragmented) == (1, False)
    d = Driver.make()
    d.put(b"x" * MAX_ENVELOPE_SIZE)
    batch = d.core.next_batch()
    assert batch is not None
    assert (len(batch.jobs), batch.fragmented) == (1, True)


@given(st.integers(1, 6), st.lists(st.booleans(), max_size=40), st.booleans())
def test_put_job_is_the_put_input_without_its_effects(
    batch_max_jobs: int, puts: list[bool], member: bool
) -> None:
    # put() admits through put_job(); the sans-IO input Put must do exactly the same.
    # Each step puts a job (True) or sends the next batch (False).
    by_input = Driver.make(batch_max_jobs=batch_max_jobs, member=member)
    direct = Driver.make(batch_max_jobs=batch_max_jobs, member=member)
    in_hand: dict[int, Batch[Any]] = {}
    for put in puts:
        if put:
            seq = by_input.core.next_seq
            effects = by_input.core.apply(Put(JobSpec(seq, "k", b"x"), "json", seq), 0.0)
            ready = direct.core.put_job(JobSpec(seq, "k", b"x"), "json", seq, 0.0)
            assert effects in ([], [Ready()])
            assert ready is (effects == [Ready()])
        else:
            for d in (by_input, direct):  # a batch not cleared stays in hand
                batch = in_hand.pop(id(d), None) or d.core.next_batch()
                if batch is None:
                    continue
                if d.core.clear_to_send(batch):
                    d.apply(Cleared(batch, True, False))
                    d.apply(Sent(batch.jobs, 1))
                else:
                    in_hand[id(d)] = batch
        a, b = by_input.core, direct.core
        assert (a.next_seq, a.put, a.held, a.unsent) == (b.next_seq, b.put, b.held, b.unsent)
        assert a.room() is b.room()
        assert a.flow_state(waiting_puts=0, waiting_send=False) == b.flow_state(
            waiting_puts=0, waiting_send=False
        )


def test_one_batch_is_in_hand_at_a_time() -> None:
    d = Driver.make()
    d.put()
    d.put(codec="raw")
    assert d.core.next_batch() is not None
    with pytest.raises(LocalProtocolError, match="in hand"):
        d.core.next_batch()
    d.apply(SessionLost())  # gives it back
    batch = d.core.next_batch()
    assert batch is not None
    assert [job.spec.seq for job in batch.jobs] == [0]


def test_the_batching_delay_waits_for_company_unless_flushing_or_full() -> None:
    d = Driver.make(batch_max_jobs=2, batch_max_delay=0.5)
    assert d.core.send_delay(0.0) is None
    d.now = 1.0
    d.put()
    assert d.core.send_delay(1.2) == pytest.approx(0.3)
    assert d.core.send_delay(1.2, flushing=True) == 0.0
    assert d.core.send_delay(2.0) == 0.0
    d.put()
    assert d.core.send_delay(1.0) == 0.0  # a full batch goes at once


def test_an_idle_producer_sends_at_once_and_a_fast_one_waits_for_the_message_rate() -> None:
    d = Driver.make(batch_max_rate=100.0)  # a message per 10 ms, BATCH_BURST back to back
    d.consumers("#c#d")
    for _ in range(BATCH_BURST):  # after a quiet spell: one job a message, none waits
        d.put()
        assert d.core.send_delay(d.now) == 0.0
        assert d.send() is not None
        d.now += 0.001
    d.put()
    assert d.core.send_delay(d.now) == pytest.approx(0.006)  # the fifth waits for 10 ms
    assert d.core.send_delay(d.now, flushing=True) == 0.0
    d.put()  # company meanwhile: both go in the next message
    d.now = 0.010
    assert d.core.send_delay(d.now) == 0.0
    assert d.send() == [BATCH_BURST, BATCH_BURST + 1]
    d.now = 1.0  # quiet again: the next jobs go at once
    d.put()
    assert d.core.send_delay(d.now) == 0.0


def test_the_message_rate_never_holds_a_full_batch() -> None:
    d = Driver.make(batch_max_rate=1.0, batch_max_jobs=3)
    d.consumers("#c#d")
    for _ in range(BATCH_BURST):
        d.put()
        d.send()
    d.put()
    d.put()
    assert d.core.send_delay(d.now) == pytest.approx(1.0)
    d.put()  # batch_max_jobs
    assert d.core.send_delay(d.now) == 0.0
    d.send()
    big = b"x" * (MAX_ENVELOPE_SIZE // 2)
    d.put(big)
    assert (d.core.send_delay(d.now) or 0.0) > 0.0
    d.put(big)  # the two pass the size cap: waiting cannot add to the batch
    assert d.core.send_delay(d.now) == 0.0
    assert d.send() is not None
    d.put(codec="json")
    assert (d.core.send_delay(d.now) or 0.0) > 0.0
    d.put(codec="msgpack")  # another codec behind the head: its batch is complete
    assert d.core.send_delay(d.now) == 0.0


def test_without_a_message_rate_only_the_write_packs_jobs() -> None:
    d = Driver.make(batch_max_rate=None)
    d.consumers("#c#d")
    for _ in range(3 * BATCH_BURST):
        d.put()
        assert d.core.send_delay(d.now) == 0.0
        d.send()


def test_settled_jobs_are_skipped_and_pending_ones_kept_until_their_outcome() -> None:
    d = Driver.make()
    d.consumers("#c#d")
    for _ in range(3):
        d.put()
    d.succeed("#c#d", 0)  # settled before it was ever sent
    assert d.core.flow_state().admitted == 2  # and its admission ended with it
    epoch_sent = d.send()
    assert epoch_sent == [1, 2]
    assert (d.core.unsent, d.core.held) == (0, 2)
    outcomes = (
        (JobRef(bytes(16), 1), Outcome.success(b"9")),  # another producer's
        (JobRef(PID, 1), Outcome.success(b"1")),
        (JobRef(PID, 2), Outcome.failure("E", "bad", 2)),
    )
    d.ack("#c#d", outcomes=outcomes)
    assert (d.core.succeeded, d.core.failed, d.core.held) == (2, 1, 0)
    assert d.core.flow_state().in_flight == 0
    assert sorted(d.settled) == [0, 1, 2]
    failed = d.settled[2]
    assert isinstance(failed, Outcome)
    assert not failed.ok


def test_a_job_settled_while_in_hand_is_not_sent() -> None:
    d = Driver.make()
    d.consumers("#c#d")
    d.put()
    d.put()
    batch = d.core.next_batch()
    assert batch is not None
    d.succeed("#c#d", 0)
    assert d.finish(batch) == [1]
    assert (d.core.sent, d.core.messages) == (1, 1)
    assert d.core.flow_state().in_flight == 1


def test_lost_and_interrupted_jobs_go_back_in_order_ahead_of_new_work() -> None:
    d = Driver.make(batch_max_jobs=10)
    d.consumers("#a#d")
    for _ in range(3):
        d.put()
    assert d.send() == [0, 1, 2]
    d.consumers("#a#d", "#b#d")
    d.put()
    assert d.send() == [3]  # held by a and b
    d.leave("#a#d")  # jobs 0-2 lost their only witness
    assert d.requeued == [[0, 1, 2]]
    d.put()
    batch = d.core.next_batch()  # 0, 1, 2 and the new 4 in hand when the session ends
    assert batch is not None
    d.apply(SessionLost())
    assert d.requeued[1:] == [[3], [0, 1, 2, 4]]  # all b held, then what was in hand
    assert d.core.queued() == (0, 1, 2, 3, 4)  # in put order
    assert d.core.resent == 8
    assert d.core.unsent == d.core.held == 5
    assert d.core.expected_back == 2
    assert d.consumer_sets[-1] == ()
    d.apply(SessionOpened(ME))
    d.apply(Resending())
    assert d.core.expected_back == 0
    batch = d.core.next_batch()
    assert batch is not None
    assert [job.spec.seq for job in batch.jobs] == [0, 1, 2, 3, 4]
    assert all(job.epoch == UNSENT for job in batch.jobs)
    error = ConnectionLost(CloseReason.CLOSED_LOCALLY, "closed")
    effects = d.apply(Closed(error))
    assert len(effects) == 5
    assert all(d.settled[seq] is error for seq in range(5))
    assert (d.core.unsent, d.core.held) == (0, 0)


def test_a_fire_and_forget_core_forgets_what_it_wrote() -> None:
    d = Driver.make(member=False)
    d.put()
    assert d.core.held == 1
    assert d.send() == [0]
    assert d.core.held == 0
    assert d.settled == {}  # nobody reports its outcome
    d.put()
    batch = d.core.next_batch()
    assert batch is not None
    error = MessageTooLarge(10**10, MAX_ENVELOPE_SIZE, "job")
    d.apply(GiveUp(batch.jobs[0], error))
    assert d.settled == {1: error}
    assert d.core.failed == 1


def test_fragments_count_the_job_in_flight_with_the_last_one() -> None:
    d = Driver.make()
    d.consumers("#c#d")
    d.put(b"x" * MAX_ENVELOPE_SIZE)
    batch = d.core.next_batch()
    assert batch is not None
    assert batch.fragmented
    d.apply(Cleared(batch, final=False))
    state = d.core.flow_state()
    assert (state.last_mseq, state.in_flight, state.admitted) == (1, 0, 1)
    d.apply(Cleared(batch, final=True))
    state = d.core.flow_state()
    assert (state.last_mseq, state.in_flight, state.admitted) == (2, 1, 0)


# -- trust -------------------------------------------------------------------------------


def test_an_ack_from_a_non_member_is_held_and_settles_nothing() -> None:
    d = Driver.make()
    d.consumers("#c#d")
    d.put()
    d.send()
    assert d.succeed("#evil#d", 0) == []
    d.consumers("#c#d", "#d#d")
    assert d.settled == {}
    d.apply(SessionLost())
    assert d.dropped == [Dropped("#evil#d", "ack", "the session ended")]
    assert d.settled == {}


def test_a_view_counts_only_from_the_feedback_member_it_lists_first() -> None:
    d = Driver.make()
    d.join("#a#d", "#b#d")
    assert d.view("#a#d", "#b#d", sender="#b#d") == [Dropped("#b#d", "view", Trust.NOT_FIRST.value)]
    assert d.view("#x#d", sender="#x#d") == [Dropped("#x#d", "view", Trust.NOT_A_MEMBER.value)]
    nobody: tuple[str, ...] = d.core.consumers
    assert nobody == ()
    d.view("#a#d", "#b#d")
    assert d.core.consumers == ("#a#d", "#b#d")


def test_an_ack_that_overtakes_its_view_is_held_and_settles_first() -> None:
    d = Driver.make()
    d.consumers("#a#d")
    d.put()
    d.send()
    d.join("#b#d")  # a recovered worker: in FEEDBACK, in no VIEW yet
    assert d.succeed("#b#d", 0) == []  # held
    assert d.settled == {}
    d.leave("#a#d")  # job 0's only witness leaves ... but the held ACK settles it
    assert d.settled == {}
    assert d.requeued == [[0]]
    effects = d.view("#b#d")
    assert next(type(e) for e in effects) is Settle
    assert list(d.settled) == [0]


def test_held_acks_are_dropped_when_their_sender_leaves_or_the_session_ends() -> None:
    d = Driver.make()
    d.join("#b#d", "#c#d")
    d.succeed("#b#d", 0)
    d.succeed("#c#d", 0)
    d.leave("#b#d")
    assert d.dropped == [Dropped("#b#d", "ack", "left FEEDBACK")]
    d.apply(SessionLost())
    assert d.dropped[1:] == [Dropped("#c#d", "ack", "the session ended")]


def test_at_most_max_held_acks_are_held() -> None:
    d = Driver.make()
    d.join("#b#d")
    for _ in range(MAX_HELD_ACKS):
        assert d.ack("#b#d") == []
    assert d.ack("#b#d") == [Dropped("#b#d", "ack", Trust.UNLISTED.value)]


# -- properties --------------------------------------------------------------------------

POOL = ("#a#d", "#b#d", "#c#d")


class ProducerMachine(RuleBasedStateMachine):
    """One member core under random inputs, with a model of what each consumer read."""

    def __init__(self) -> None:
        super().__init__()
        self.d = Driver.make(window=6, max_in_flight=12, max_backlog=5, batch_max_jobs=3)
        self.puts: set[int] = set()
        self.read: dict[str, int] = {}  # what each live consumer really read of ours
        self.waiting: Batch[Any] | None = None  # a batch in hand, not cleared yet
        self.seen_sets = 0

    @property
    def core(self) -> Any:
        return self.d.core

    def _track_consumers(self) -> None:
        """A consumer the core learns of starts at the last mseq sent (as the gate
        assumes: it never sees messages ordered before it joined)."""
        for consumers in self.d.consumer_sets[self.seen_sets :]:
            self.read = {c: self.read.get(c, self.core.last_mseq) for c in consumers}
        self.seen_sets = len(self.d.consumer_sets)

    def _unsettled(self) -> set[int]:
        return self.puts - set(self.d.settled)

    @rule()
    def put(self) -> None:
        if self.core.room():
            self.puts.add(self.d.put())

    @rule()
    def send(self) -> None:
        batch = self.waiting or self.core.next_batch()
        self.waiting = None
        if batch is None:
            return
        if not self.core.clear_to_send(batch):
            self.waiting = batch
            return
        self.d.apply(Cleared(batch))
        share = self.core.share
        for consumer in self.core.consumers:
            assert self.core.last_mseq - self.read[consumer] <= share
        live = tuple(job for job in batch.jobs if not job.settled)
        self.d.apply(Sent(live, 1 if live else 0))

    @rule(data=st.data())
    def consumer_acks(self, data: st.DataObject) -> None:
        if not self.core.consumers:
            return
        sender = data.draw(st.sampled_from(self.core.consumers))
        position = data.draw(st.integers(self.read[sender], self.core.last_mseq))
        self.read[sender] = position
        sent = sorted(seq for seq in self._unsettled() if seq < self.core.next_seq)
        done = data.draw(st.lists(st.sampled_from(sent), unique=True) if sent else st.just([]))
        outcomes = tuple((JobRef(PID, seq), Outcome.success(b"1")) for seq in done)
        backlog = data.draw(st.integers(0, 7))
        self.d.ack(sender, ((PID, position),), backlog, outcomes)
        assert set(done) <= set(self.d.settled)

    @rule(members=st.lists(st.sampled_from(POOL), unique=True, max_size=3))
    def view(self, members: list[str]) -> None:
        self.d.consumers(*members)
        self._track_consumers()

    @rule(member=st.sampled_from(POOL))
    def leave(self, member: str) -> None:
        self.d.leave(member)
        self._track_consumers()

    @rule(data=st.data(), member=st.booleans())
    def forged_ack(self, data: st.DataObject, member: bool) -> None:
        """An ACK from a sender that is no consumer: a stranger, or a FEEDBACK member
        (another producer) that no VIEW lists; it names every job we hold."""
        sender = "#peer#d" if member else "#evil#d"
        if member:
            self.d.join(sender)
            self._track_consumers()
        before = (self.core.flow_state(), self.core.held, self.core.unsent, dict(self.d.settled))
        outcomes = tuple((JobRef(PID, seq), Outcome.success(b"1")) for seq in self._unsettled())
        position = data.draw(st.integers(0, self.core.last_mseq + 5))
        effects = self.d.ack(sender, ((PID, position),), 0, outcomes)
        assert not any(isinstance(effect, Settle) for effect in effects)
        after = (self.core.flow_state(), self.core.held, self.core.unsent, dict(self.d.settled))
        assert after == before
        if member:
            self.d.leave(sender)  # its held ACK goes with it
            self._track_consumers()

    @precondition(lambda self: self.core.sessions < 4)
    @rule()
    def session_lost(self) -> None:
        self.waiting = None
        self.d.apply(SessionLost())
        self.d.feedback = [ME]
        self._track_consumers()
        assert self.core.queued() == tuple(sorted(self._unsettled()))
        self.d.apply(SessionOpened(ME))
        self.d.apply(Resending())

    @invariant()
    def the_queue_is_in_put_order(self) -> None:
        queued = self.core.queued()
        assert list(queued) == sorted(queued)

    @invariant()
    def accounts_add_up(self) -> None:
        state = self.core.flow_state()
        assert self.core.held == len(self._unsettled())
        assert state.admitted + state.in_flight <= 12
        assert state.admitted >= 0
        assert state.in_flight >= 0

    def teardown(self) -> None:
        self.d.apply(Closed(ConnectionLost(CloseReason.CLOSED_LOCALLY, "closed")))
        assert set(self.d.settled) == self.puts  # each exactly once (the driver checks)


TestProducerMachine = ProducerMachine.TestCase
