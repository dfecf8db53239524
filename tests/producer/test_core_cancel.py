"""ProducerCore and cancel; Asks and results: sans-IO, no daemon.

* ``cancel_plan`` says withdraw (never sent), send (on the wire in this session) or wait
  (in hand, or queued again after a lost session);
* a CANCEL delivered on FEEDBACK settles the job cancelled only where the consumers'
  tables would take it: still pending, from the name the job was last sent under, and
  no held ACK ordered before it reports the job;
* an ACK with a cancelled outcome (a re-sent copy answered from memory) settles it too.
"""

from __future__ import annotations

from core_driver import ME, PID, Driver

from spreadq.producer.core import MAX_HELD_ACKS, CancelPlan
from spreadq.producer.effects import Dropped
from spreadq.producer.inputs import CancelDelivered, SessionLost, SessionOpened, Withdraw
from spreadq.producer.results import Ask, Asks
from spreadq.queue.envelope import ResultAnswer, ResultState
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.queue.witnesses import Trust

C = "#c#d"


def ref(seq: int) -> JobRef:
    return JobRef(PID, seq)


def seen(ask: Ask) -> tuple[int, bool, ResultAnswer | None, Outcome | None]:
    return ask.query_id, ask.recheck, ask.answer, ask.outcome


def test_a_job_never_sent_is_withdrawn_and_never_sent() -> None:
    d = Driver.make()
    seq = d.put()
    assert d.core.cancel_plan(seq) is CancelPlan.WITHDRAW
    d.apply(Withdraw(seq))
    assert d.settled == {seq: Outcome.cancelled()}
    assert d.core.cancel_plan(seq) is CancelPlan.DONE
    d.consumers(C)
    assert d.send() is None  # nothing left to send
    assert d.core.held == 0
    assert d.core.cancelled == 1


def test_a_job_in_hand_waits_and_a_sent_one_gets_a_cancel() -> None:
    d = Driver.make()
    d.consumers(C)
    seq = d.put()
    batch = d.core.next_batch()
    assert batch is not None
    assert d.core.cancel_plan(seq) is CancelPlan.WAIT
    assert d.apply(Withdraw(seq)) == []  # not withdrawn while in hand
    d.finish(batch)
    assert d.core.cancel_plan(seq) is CancelPlan.SEND


def test_after_a_lost_session_a_cancel_waits_for_the_job_to_be_sent_again() -> None:
    d = Driver.make()
    d.consumers(C)
    seq = d.put()
    d.send()
    d.apply(SessionLost())
    d.apply(SessionOpened("#me2#d"))
    assert d.core.cancel_plan(seq) is CancelPlan.WAIT  # the old copy came from #me#d
    assert d.apply(Withdraw(seq)) == []
    d.consumers(C)
    d.send()
    assert d.core.cancel_plan(seq) is CancelPlan.SEND


def test_a_delivered_cancel_from_the_sender_settles_the_job_and_frees_its_room() -> None:
    d = Driver.make(max_in_flight=1)
    d.consumers(C)
    seq = d.put()
    d.send()
    assert not d.core.room()
    d.apply(CancelDelivered(ME, ref(seq)))
    assert d.settled == {seq: Outcome.cancelled()}
    assert d.core.room()
    d.succeed(C, seq)  # the run's ACK, ordered after the CANCEL: changes nothing
    assert d.settled == {seq: Outcome.cancelled()}


def test_a_cancel_from_another_sender_or_for_another_producer_changes_nothing() -> None:
    d = Driver.make()
    d.consumers(C)
    seq = d.put()
    d.send()
    assert d.apply(CancelDelivered("#evil#d", ref(seq))) == [
        Dropped("#evil#d", "cancel", "it did not send the job")
    ]
    assert d.apply(CancelDelivered(ME, JobRef(b"\x05" * 16, seq))) == []
    assert d.settled == {}
    d.succeed(C, seq)
    assert d.settled == {seq: Outcome.success(b"1")}
    assert d.apply(CancelDelivered(ME, ref(seq))) == []  # after the outcome: a no-op


def test_a_held_ack_ordered_before_the_cancel_wins() -> None:
    d = Driver.make()
    d.consumers(C)
    seq = d.put()
    d.send()
    d.join("#new#d")  # a consumer in FEEDBACK that no VIEW lists yet: its ACK is held
    d.succeed("#new#d", seq)
    assert d.apply(CancelDelivered(ME, ref(seq))) == []
    d.consumers(C, "#new#d")
    assert d.settled == {seq: Outcome.success(b"1")}


def test_a_cancelled_outcome_in_an_ack_settles_the_job_cancelled() -> None:
    d = Driver.make()
    d.consumers(C)
    seq = d.put()
    d.send()
    d.ack(C, outcomes=((ref(seq), Outcome.cancelled()),))
    assert d.settled == {seq: Outcome.cancelled()}
    assert (d.core.cancelled, d.core.failed) == (1, 0)


def test_asks_match_answers_by_query_and_outcomes_by_ref() -> None:
    asks = Asks()
    assert not asks
    ask = asks.open(ref(1))
    assert asks
    first = asks.query(ask)
    stale = ResultAnswer(first, ref(1), ResultState.UNKNOWN, 2)
    second = asks.query(ask)
    assert not asks.on_answer(stale)  # an answer to an earlier query is ignored
    assert not asks.on_answer(ResultAnswer(second, ref(2), ResultState.UNKNOWN, 2))
    assert asks.on_answer(ResultAnswer(second, ref(1), ResultState.PENDING, 2))
    assert ask.answer is not None
    assert ask.answer.state is ResultState.PENDING
    asks.on_cancel(ref(1))
    assert ask.recheck
    third = asks.query(ask)
    assert seen(ask) == (third, False, None, None)
    asks.on_outcome(ref(2), Outcome.success(b"x"))
    assert seen(ask)[3] is None
    asks.on_outcome(ref(1), Outcome.success(b"y"))
    asks.on_outcome(ref(1), Outcome.success(b"z"))  # the first one counts
    assert ask.outcome == Outcome.success(b"y")
    asks.close(ask)
    assert not asks


def test_past_the_held_cap_an_ack_still_holds_our_outcomes_against_a_later_cancel() -> None:
    """Past MAX_HELD_ACKS whole ACKs, the outcomes of our pending jobs are held still:
    a CANCEL ordered after such an ACK must not settle the job the consumers saw end."""
    d = Driver.make()
    d.consumers(C)
    seq = d.put()
    d.send()
    d.join("#new#d")  # in FEEDBACK, in no VIEW yet: its ACKs are held
    for _ in range(MAX_HELD_ACKS):
        assert d.ack("#new#d") == []
    other = JobRef(b"\x05" * 16, 1)  # another producer's job: not ours to keep
    outcomes = ((other, Outcome.success()), (ref(seq), Outcome.success(b"2")))
    effects = d.ack("#new#d", backlog=7, outcomes=outcomes)
    assert effects == [Dropped("#new#d", "ack", Trust.UNLISTED.value)]  # the rest of it
    assert d.apply(CancelDelivered(ME, ref(seq))) == []  # the held outcome came first
    assert d.settled == {}
    d.consumers(C, "#new#d")
    assert d.settled == {seq: Outcome.success(b"2")}
    assert d.core._gate._backlog["#new#d"] == 7  # what it said of its backlog counts too


def test_past_the_held_cap_an_ack_without_our_pending_jobs_is_dropped_whole() -> None:
    d = Driver.make()
    d.consumers(C)
    seq = d.put()
    d.send()
    d.join("#new#d")
    for _ in range(MAX_HELD_ACKS):
        d.ack("#new#d")
    held = d.core._held_count
    d.ack("#new#d", outcomes=((JobRef(b"\x05" * 16, 1), Outcome.success()),))
    assert d.core._held_count == held
    # and one pending job keeps at most one more: a consumer repeating itself is cut off
    d.succeed("#new#d", seq)
    d.succeed("#new#d", seq)
    assert d.core._held_count == held + 1
    assert d.apply(CancelDelivered(ME, ref(seq))) == []
