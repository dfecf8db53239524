"""ProducerCore and NOTICEs (outcomes a consumer sends straight to the producer):
sans-IO, no daemon.

* a trusted consumer's NOTICE resolves a pending job's receipt early; the job stays
  pending and in flight until an ACK settles it, and the ACK resolves nothing again
  (no Settle for it, in whatever form the ACK reports it: one by one or in runs);
* a NOTICE from a non-member is dropped, one from a consumer no VIEW lists yet is
  ignored; neither resolves anything;
* once a CANCEL is about to go for a job, only the order decides it: a NOTICE does not;
* a NOTICE never resolves another producer's job, an unknown one or a settled one.
"""

from __future__ import annotations

from core_driver import ME, PID, Driver

from spreadq.producer.inputs import AckReceived, CancelDelivered, CancelSending, NoticeReceived
from spreadq.queue import Ack, decode, encode
from spreadq.queue.envelope import AckOutcomes, Notice
from spreadq.queue.jobs import JobRef, Outcome, outcome_of
from spreadq.queue.witnesses import Trust

C = "#c#d"
OTHER = "#other#d"
OK2 = Outcome.success(b"\x00\xff", attempts=2, codec="raw")  # not UTF-8, another codec


def sent(d: Driver, n: int = 1) -> list[int]:
    seqs = [d.put() for _ in range(n)]
    assert d.send() == seqs
    return seqs


def test_a_notice_resolves_early_and_the_ack_settles_later() -> None:
    d = Driver.make(max_in_flight=1)
    d.consumers(C)
    (seq,) = sent(d)
    d.notice(C, seq)
    assert d.resolved == {seq: Outcome.success(b"1")}
    assert d.settled == {}  # still pending: flow control counts it in flight
    assert not d.core.room()
    assert d.core.cancel_plan(seq).name == "SEND"  # not done: the ACK decides
    d.succeed(C, seq)
    assert d.settled == {}  # settled without an effect: its receipt has its outcome
    assert d.core.room()
    assert d.core.cancel_plan(seq).name == "DONE"
    assert d.core.succeeded == 1


def test_an_ack_as_decoded_settles_with_its_records_unread() -> None:
    # a decoded ACK keeps each success as its record (bytes): the core settles and counts
    # with it as it is, and only a receipt still to resolve makes the facade read it
    d = Driver.make()
    d.consumers(C)
    noticed, plain = sent(d, 2)
    d.notice(C, noticed)
    outcomes = ((JobRef(PID, noticed), Outcome.success(b"1")), (JobRef(PID, plain), OK2))
    ack = decode(encode(Ack(bytes(16), outcomes)))
    assert isinstance(ack, Ack)
    d.apply(AckReceived(C, ack))
    assert list(d.settled) == [plain]  # the noticed job settles with no Settle
    assert all(isinstance(record, bytes) for record in d.settled.values())
    assert {seq: outcome_of(r) for seq, r in d.settled.items() if isinstance(r, bytes)} == {
        plain: OK2
    }
    assert d.core.succeeded == 2
    assert d.core.room()


def test_an_acks_runs_settle_the_noticed_jobs_quietly_and_build_the_others_records() -> None:
    # a round_robin consumer's ACK: every 2nd job, in runs (results of one length, and a
    # shared one); the jobs a NOTICE resolved settle without an effect, the others each
    # with its own record, and a failure counts as one whichever way it settles
    d = Driver.make()
    d.consumers(C)
    seqs = sent(d, 12)
    mine = seqs[::2]
    results = {seq: bytes([seq]) * 8 for seq in mine[:4]}  # a run with distinct results
    outcomes = [(JobRef(PID, seq), Outcome.success(result)) for seq, result in results.items()]
    outcomes.append((JobRef(PID, mine[4]), Outcome.failure("E", "boom")))
    outcomes.append((JobRef(PID, mine[5]), Outcome.failure("E", "boom")))
    noticed = [mine[0], mine[2], mine[4]]
    d.apply(NoticeReceived(C, Notice(tuple(o for o in outcomes if o[0].seq in noticed))))
    ack = decode(encode(Ack(bytes(16), tuple(outcomes))))
    assert isinstance(ack, Ack)
    assert isinstance(ack.outcomes, AckOutcomes)
    assert ack.outcomes.runs is not None
    assert any(run.count > 1 for run in ack.outcomes.runs)  # the runs path is taken
    d.apply(AckReceived(C, ack))
    assert sorted(d.settled) == [mine[1], mine[3], mine[5]]
    assert outcome_of(d.settled[mine[1]]) == Outcome.success(results[mine[1]])  # type: ignore[arg-type]
    assert outcome_of(d.settled[mine[3]]) == Outcome.success(results[mine[3]])  # type: ignore[arg-type]
    assert d.settled[mine[5]] == Outcome.failure("E", "boom")
    assert (d.core.succeeded, d.core.failed) == (4, 2)
    assert [seq for seq in seqs if d.core.cancel_plan(seq).name != "DONE"] == seqs[1::2]


def test_a_notice_in_runs_resolves_each_job_with_its_own_outcome() -> None:
    # a round_robin consumer's NOTICE as decoded: every 2nd job, one run of results of
    # one length and another of a shared result; the core reads the outcomes from the
    # runs, skipping another producer's, a settled and an already noticed job
    d = Driver.make()
    d.consumers(C)
    seqs = sent(d, 16)
    mine = seqs[::2]
    d.notice(C, mine[1])  # noticed before: resolved once only
    d.succeed(C, mine[7])  # settled before: never resolved
    stamps = [(JobRef(PID, seq), Outcome.success(bytes([seq]) * 8)) for seq in mine[:4]]
    shared = [(JobRef(PID, seq), OK2) for seq in mine[4:]]
    other = [(JobRef(b"O" * 16, seq), Outcome.success(b"x")) for seq in range(0, 8, 2)]
    notice = decode(encode(Notice((*stamps, *shared, *other))))
    assert isinstance(notice, Notice)
    assert isinstance(notice.outcomes, AckOutcomes)
    assert notice.outcomes.runs is not None  # the runs path is taken
    assert [run.count for run in notice.outcomes.runs] == [4, 4, 4]
    before = dict(d.resolved)
    d.apply(NoticeReceived(C, notice))
    fresh = {seq: outcome for seq, outcome in d.resolved.items() if seq not in before}
    expected = {ref.seq: outcome for ref, outcome in (*stamps, *shared)}
    del expected[mine[1]], expected[mine[7]]
    assert fresh == expected
    assert d.settled == {mine[7]: d.settled[mine[7]]}  # nothing settled by the NOTICE
    assert sorted(seq for seq in seqs if seq not in d.resolved) == sorted([*seqs[1::2], mine[7]])


def test_a_notice_from_a_non_member_is_dropped_and_resolves_nothing() -> None:
    d = Driver.make()
    d.consumers(C)
    (seq,) = sent(d)
    d.notice(OTHER, seq)
    assert d.resolved == {}
    assert [(x.sender, x.kind, x.reason) for x in d.dropped] == [
        (OTHER, "notice", Trust.NOT_A_MEMBER.value)
    ]


def test_a_notice_from_a_consumer_not_listed_yet_is_ignored_quietly() -> None:
    d = Driver.make()
    d.consumers(C)
    (seq,) = sent(d)
    d.join(OTHER)  # a FEEDBACK member no VIEW lists: its ACK would be held
    d.notice(OTHER, seq)
    assert d.resolved == {}
    assert d.dropped == []


def test_after_a_cancel_goes_out_only_the_order_decides() -> None:
    d = Driver.make()
    d.consumers(C)
    first, second = sent(d, 2)
    d.apply(CancelSending(first))
    d.notice(C, first, second)
    assert d.resolved == {second: Outcome.success(b"1")}  # not the job being cancelled
    d.apply(CancelDelivered(ME, JobRef(PID, first)))
    assert d.settled == {first: Outcome.cancelled()}


def test_a_notice_skips_other_producers_unknown_and_settled_jobs() -> None:
    d = Driver.make()
    d.consumers(C)
    first, second = sent(d, 2)
    d.succeed(C, first)
    d.notice(C, first, 99)  # settled, and never put
    d.notice(C, second, producer_id=bytes(16))  # another producer's seq
    assert d.resolved == {}
    d.notice(C, second)
    assert d.resolved == {second: Outcome.success(b"1")}
    d.notice(C, second)  # a second NOTICE for it: resolved once (the driver checks)
    assert len(d.resolved) == 1


def test_jobs_ask_for_notices_while_few_are_unconfirmed() -> None:
    d = Driver.make(max_in_flight=10, batch_max_jobs=2, notice_in_flight=3)
    d.consumers(C)
    d.put()
    batch = d.core.next_batch()
    assert batch is not None
    assert d.core.keeping_up()  # one job unconfirmed
    d.finish(batch)
    d.put()
    d.put()
    assert d.core.keeping_up()  # three, two of them queued: still few
    batch = d.core.next_batch()
    assert batch is not None
    assert len(batch.jobs) == 2  # more than the one consumer: asking anyway
    assert d.core.keeping_up()
    d.finish(batch)
    d.put()
    assert not d.core.keeping_up()  # four unconfirmed: the consumers fall behind
    d.succeed(C, 0, 1)
    assert d.core.keeping_up()  # the ACK settled two: two left


def test_a_producer_without_room_asks_for_no_notice() -> None:
    d = Driver.make(max_in_flight=2, notice_in_flight=100)
    d.consumers(C)
    d.put()
    d.put()
    assert not d.core.room()
    assert not d.core.keeping_up()


def test_a_fire_and_forget_producer_never_asks() -> None:
    d = Driver.make(member=False)
    d.put()
    assert d.core.next_batch() is not None
    assert not d.core.keeping_up()
