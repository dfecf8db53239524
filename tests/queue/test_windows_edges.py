"""Edges of the flow-control windows: the documented defaults, every boundary of the ACK
cadence, and the gate's accounting (in flight, resends, peers, the slack cap).

Written from the survivors of ``scripts/mutate src/spreadq/queue/windows.py``
(docs/mutation.md).
"""

from __future__ import annotations

from spreadq.queue.envelope import ack_overhead, outcome_size
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.queue.windows import AckCadence, BlockReason, ProducerGate

ME = b"m" * 16
OTHER = b"o" * 16


def ref(n: int) -> JobRef:
    return JobRef(ME, n)


def test_the_documented_defaults() -> None:
    cadence = AckCadence()
    assert (cadence.every, cadence.every_seconds, cadence.position_horizon) == (
        200,
        0.05,
        5.0,
    )
    gate = ProducerGate(ME)
    assert (gate.window, gate.max_in_flight, gate.max_backlog) == (600, 10_000, 10_000)
    assert (gate.last_mseq, gate.in_flight, gate.blocked_reason()) == (
        0,
        0,
        BlockReason.NO_CONSUMERS,
    )


def test_due_exactly_at_the_interval_and_at_the_budget() -> None:
    cadence = AckCadence(every=100, every_seconds=1.0)
    cadence.on_read(10.0)
    assert not cadence.due(10.5)
    assert cadence.due(11.0)
    small = Outcome.success(b"x" * 10)
    budget = AckCadence(every=100, every_seconds=10.0)
    budget.max_bytes = ack_overhead(budget.max_positions) + outcome_size(small)
    budget.on_finished(ref(1), small, 0.0)
    assert budget.outcome_budget == outcome_size(small)
    assert budget.due(0.0)  # exactly one outcome's worth is waiting


def test_nothing_waits_before_the_first_outcome() -> None:
    cadence = AckCadence(every=100, every_seconds=10.0)
    cadence.max_bytes = ack_overhead(cadence.max_positions) + 1  # a budget of one byte
    cadence.on_read(0.0)
    assert not cadence.due(0.0)  # no outcome bytes yet


def test_a_read_without_mseq_records_position_zero() -> None:
    cadence = AckCadence()
    cadence.on_read(0.0, ME)
    assert cadence.take(0.0).positions == ((ME, 0),)


def test_a_position_read_exactly_at_the_horizon_is_kept() -> None:
    cadence = AckCadence(position_horizon=5.0)
    cadence.on_read(0.0, ME, 3)
    cadence.on_read(1.0, OTHER, 4)
    assert cadence.take(5.0).positions == ((OTHER, 4), (ME, 3))
    cadence.on_read(5.5, OTHER, 5)
    assert cadence.take(6.0000001).positions == ((OTHER, 5),)


def test_outcomes_that_exactly_fill_an_ack_all_go() -> None:
    outcome = Outcome.success(b"r" * 100)
    cadence = AckCadence(every=1000, every_seconds=10.0, max_positions=0)
    cadence.max_bytes = ack_overhead(0) + 3 * outcome_size(outcome)
    for n in range(3):
        cadence.on_finished(ref(n), outcome, 0.0)
    report = cadence.take(0.0)
    assert len(report.outcomes) == 3
    assert not cadence.pending
    # a fourth would not have fitted: it stays, and keeps the next ACK due
    for n in range(4):
        cadence.on_finished(ref(n), outcome, 1.0)
    assert len(cadence.take(1.0).outcomes) == 3
    assert cadence.due(1.0)
    assert len(cadence.take(1.0).outcomes) == 1
    assert not cadence.due(1.0)
    # the bytes were all given back: three more do not make an ACK due by size
    for n in range(2):
        cadence.on_finished(ref(n), outcome, 2.0)
    assert not cadence.due(2.0)


def test_clear_forgets_everything() -> None:
    cadence = AckCadence(every=2, every_seconds=10.0)
    cadence.on_read(0.0, ME, 1)
    cadence.on_finished(ref(1), Outcome.success(), 0.0)
    cadence.clear()
    assert (cadence.pending, cadence.deadline(), cadence.due(0.0)) == (False, None, False)
    cadence.on_read(1.0)
    assert not cadence.due(1.0)  # the count restarted from zero
    assert cadence.deadline() == 11.0
    report = cadence.take(1.0)
    assert report.positions == ()
    assert report.outcomes == ()


def test_a_departed_consumer_takes_its_backlog_along_and_the_others_keep_theirs() -> None:
    gate = ProducerGate(ME, max_backlog=10)
    gate.on_view(["a", "b"], 0)
    gate.on_ack("a", {OTHER: 1}, 50)
    gate.on_ack("b", {}, 0)
    assert gate.check(1) is BlockReason.BACKLOG
    gate.on_view(["a", "b"], 0)  # the same view again: a's backlog stays
    assert gate.check(1) is BlockReason.BACKLOG
    assert gate.active_producers == 2
    gate.on_view(["b"], 0)
    assert gate.check(1) is None
    assert gate.active_producers == 1


def test_a_peer_hint_of_zero_means_one() -> None:
    gate = ProducerGate(ME, window=100)
    gate.on_peers(0)
    assert gate.share == 100
    gate.on_peers(4)
    assert gate.share == 25


def test_jobs_in_flight_add_up_and_never_go_below_zero() -> None:
    gate = ProducerGate(ME, max_in_flight=6)
    gate.on_view(["a"], 0)
    gate.on_sent(2)
    gate.on_sent(3)
    assert (gate.in_flight, gate.last_mseq) == (5, 2)
    assert gate.check(3) is None  # one more job fits
    assert gate.check(3, 2) is BlockReason.IN_FLIGHT
    gate.on_confirmed(9)
    assert gate.in_flight == 0


def test_a_message_sent_again_keeps_its_first_ack_snapshot() -> None:
    gate = ProducerGate(ME, window=100)
    gate.on_view(["a"], 0)
    gate.on_sent(1)
    for _ in range(3):
        gate.on_ack("x", {}, 0)  # ACKs from others pile up after message 1
    gate.on_ack("a", {ME: 1}, 0)
    gate.on_sent(0, mseq=1)  # message 1 again (a resend): not a new snapshot
    assert gate.acks_unread("a") == 4
    assert gate.acks_unread("nobody") is None


def test_acks_after_a_position_never_sent() -> None:
    gate = ProducerGate(ME, window=1000)
    gate.on_view(["a", "b"], 0)
    gate.on_sent(1, mseq=1)
    gate.on_ack("x", {}, 0)
    gate.on_sent(1, mseq=3)  # mseq 2 was never sent by this gate
    gate.on_ack("x", {}, 0)
    gate.on_ack("x", {}, 0)
    gate.on_ack("a", {ME: 2}, 0)
    # since message 1, the last sent before 2: every ACK after it, a's own included
    assert gate.acks_unread("a") == 4


def test_the_slack_cap_leaves_room_for_one_more_message() -> None:
    gate = ProducerGate(ME, window=10)
    gate.on_view(["a"], 0)
    gate.on_sent(1)
    gate.on_ack("a", {ME: 1}, 0)
    for _ in range(50):
        gate.on_ack("x", {}, 0)
    assert gate.ack_slack == 9
    assert gate.check(2) is None  # 2 - 1 + 9 == 10: just within the share
    assert gate.check(3) is BlockReason.WINDOW


def test_after_clear_the_outcome_budget_starts_from_zero() -> None:
    outcome = Outcome.success(b"r" * 20)
    cadence = AckCadence(every=100, every_seconds=10.0, max_positions=0)
    cadence.max_bytes = ack_overhead(0) + outcome_size(outcome) + 1
    cadence.on_finished(ref(1), outcome, 0.0)
    cadence.clear()
    cadence.on_finished(ref(2), outcome, 1.0)
    assert not cadence.due(1.0)  # one byte below the budget


def test_may_send_one_job_by_default() -> None:
    gate = ProducerGate(ME, max_in_flight=3)
    gate.on_view(["a"], 0)
    gate.on_sent(2)
    assert gate.may_send(3)
    assert not gate.may_send(3, 2)
    assert gate.blocked_reason() is BlockReason.IN_FLIGHT
