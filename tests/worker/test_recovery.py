"""Recovered outcomes: ACK-sized chunks, the announcement period, the kept outcomes."""

from __future__ import annotations

from spreadq.queue.envelope import MAX_ENVELOPE_SIZE, Ack, encode
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.worker.recovery import Recovery, ack_chunks

PID = b"p" * 16


def reached(count: int, size: int = 0) -> list[tuple[JobRef, Outcome]]:
    return [(JobRef(PID, seq), Outcome.success(b"x" * size)) for seq in range(count)]


def test_chunks_keep_the_order_and_each_fits_one_ack() -> None:
    outcomes = reached(40, size=MAX_ENVELOPE_SIZE // 10)
    chunks = ack_chunks(outcomes)
    assert len(chunks) > 1
    assert [item for chunk in chunks for item in chunk] == outcomes
    for chunk in chunks:
        assert len(encode(Ack(PID, chunk))) <= MAX_ENVELOPE_SIZE
    assert ack_chunks([]) == []
    assert ack_chunks(reached(3)) == [tuple(reached(3))]


def test_the_announcement_period_starts_at_the_first_announcement() -> None:
    recovery = Recovery(reached(2), announce_for=10.0, keep_at_least=4)
    assert recovery.again_at_join(0.0)  # not announced yet: the period has not begun
    assert recovery.announcement(5.0) == [tuple(reached(2))]
    assert recovery.again_at_join(14.9)
    assert not recovery.again_at_join(15.0)
    assert recovery.announcement(20.0) == [tuple(reached(2))]  # the period stays
    assert not recovery.again_at_join(16.0)
    nothing = Recovery((), announce_for=10.0, keep_at_least=4)
    assert nothing.announcement(0.0) == []
    assert not nothing.again_at_join(0.0)


def test_unconfirmed_are_the_recovered_while_announced_then_our_own_outstanding() -> None:
    old = reached(1)
    recovery = Recovery(old, announce_for=10.0, keep_at_least=4)
    recovery.announcement(0.0)
    mine = [(JobRef(b"q" * 16, seq), Outcome.success()) for seq in range(3)]
    confirmed = {mine[1][0]}
    for ref, outcome in mine:
        recovery.keep(ref, outcome, lambda r: r not in confirmed)
    outstanding = [mine[0], mine[2]]
    assert recovery.unconfirmed(5.0, lambda r: r not in confirmed) == [*old, *outstanding]
    assert recovery.unconfirmed(10.0, lambda r: r not in confirmed) == outstanding


def test_kept_outcomes_are_swept_once_past_the_limit() -> None:
    recovery = Recovery((), announce_for=1.0, keep_at_least=2)
    confirmed: set[JobRef] = set()
    outcomes = reached(5)
    for ref, outcome in outcomes:
        recovery.keep(ref, outcome, lambda r: r not in confirmed)
        confirmed.add(ref)  # confirmed right after
    # the last sweep (at the fifth) kept only the one not yet confirmed then
    assert recovery.unconfirmed(2.0, lambda r: True) == outcomes[-1:]


def test_outcomes_kept_at_once_are_kept_as_one_by_one() -> None:
    one_by_one = Recovery((), announce_for=1.0, keep_at_least=3)
    at_once = Recovery((), announce_for=1.0, keep_at_least=3)
    confirmed: set[JobRef] = set()
    outcomes = reached(12)
    for start in range(0, 12, 4):  # a turn's outcomes, then the ACK of the first two
        group = outcomes[start : start + 4]
        for ref, outcome in group:
            one_by_one.keep(ref, outcome, lambda r: r not in confirmed)
        at_once.keep_all(group, lambda r: r not in confirmed)
        confirmed.update(ref for ref, _ in group[:2])
    still = [item for item in outcomes if item[0] not in confirmed]
    assert at_once.unconfirmed(5.0, lambda r: r not in confirmed) == still
    assert one_by_one.unconfirmed(5.0, lambda r: r not in confirmed) == still
    assert len(at_once._finished) < len(outcomes)  # swept on the way
