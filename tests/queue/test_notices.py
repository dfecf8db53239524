"""Outcome NOTICEs, decided by the queue core: which outcomes go to their producers
straight away, and when (:class:`~spreadq.queue.notices.NoticeQueue` and the table).

* the queue hands out what waits at a take, as long as its takes stay within one per
  ``interval`` with one to spare, and holds back only when handing out would break that;
  an outcome an ACK took is never handed out (properties over random sequences);
* the table notices the outcomes of the jobs that ask, at :class:`TurnEnded`, one
  SendNotice per producer; those that end within the interval go at the :class:`Tick`
  that ends it (its deadline says when); an ACK that reports an outcome first keeps it
  out of every NOTICE, also when the ACK has no room for all that wait (the rest go in
  as many NOTICEs as they need).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from test_table import INC, PID, A, Cluster, of_type, ref

from spreadq.queue.effects import Effect, SendAck, SendNotice
from spreadq.queue.envelope import MAX_ENVELOPE_SIZE, MESS_TYPE, JobSpec, encode, encode_batch
from spreadq.queue.inputs import JobFinished, JobsFinished, MessageDelivered, Tick, TurnEnded
from spreadq.queue.jobs import Outcome
from spreadq.queue.notices import NoticeQueue
from spreadq.queue.table import OutstandingTable

P1, P2 = "#p1#h", "#p2#h"


def reached(seq: int) -> JobFinished:
    return JobFinished(ref(seq), Outcome.success(str(seq).encode()))


# --- the queue alone -------------------------------------------------------------------


def test_the_worked_example() -> None:
    notices = NoticeQueue(interval=0.002)
    notices.add(P1, reached(1))
    assert notices.take(0.000) == [(P1, [reached(1)])]  # books 0.000-0.002
    notices.add(P1, reached(2))
    assert notices.take(0.001) == [(P1, [reached(2)])]  # the one to spare
    notices.add(P1, reached(3))
    assert notices.take(0.0015) == []  # held back
    assert notices.deadline() == 0.002
    notices.add(P2, reached(4))
    assert notices.take(0.002) == [(P1, [reached(3)]), (P2, [reached(4)])]
    assert notices.deadline() is None
    notices.add(P1, reached(5))
    notices.reported([reached(5)], everything=True)
    assert notices.take(0.009) == []
    assert not notices.pending


def test_messages_a_little_slower_than_the_interval_never_wait_for_an_alarm() -> None:
    # a paced producer's messages 2.1-2.9 ms apart, each ending jobs in its turn: with a
    # strict 2 ms gap, a turn 1.9 ms after the last take held its outcomes back, they went
    # at an alarm (late), and the next turn found the gap running again from there
    notices = NoticeQueue(interval=0.002)
    now = 0.0
    for gap in [0.0021, 0.0029, 0.0019, 0.0023, 0.0021, 0.0027, 0.0019] * 20:
        now += gap
        notices.add(P1, reached(1))
        assert notices.take(now) == [(P1, [reached(1)])]


def test_an_ack_that_took_some_leaves_the_others_waiting() -> None:
    notices = NoticeQueue()
    for seq in range(4):
        notices.add(P1 if seq % 2 else P2, reached(seq))
    notices.reported([reached(0), reached(1), reached(2)], everything=False)
    assert notices.take(1.0) == [(P1, [reached(3)])]


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from([P1, P2])),
        st.tuples(st.just("ack"), st.integers(0, 3)),
        st.tuples(st.just("take"), st.floats(0.0, 0.01)),
    ),
    max_size=40,
)


def within_rate(takes: list[float], interval: float) -> bool:
    """Whether ``takes`` (times, in order) hand out at most one round per ``interval``
    on average with one to spare: between any two, ``j - i <= (t_j - t_i) / interval + 1``."""
    return (
        all(
            j - i <= (takes[j] - takes[i] + 1e-12) / interval + 1
            for i in range(len(takes))
            for j in range(i + 1, len(takes))
        )
        if interval
        else True
    )


@given(operations, st.sampled_from([0.0, 0.002, 0.005]))
def test_each_outcome_goes_once_in_order_unless_an_ack_took_it_first(
    script: list[tuple[str, object]], interval: float
) -> None:
    notices = NoticeQueue(interval)
    now, seq = 0.0, 0
    takes: list[float] = []  # when outcomes were handed out
    waiting: list[tuple[str, int]] = []  # (producer, seq) a model of what waits
    handed: list[int] = []
    for op, arg in script:
        if op == "add":
            assert isinstance(arg, str)
            notices.add(arg, reached(seq))
            waiting.append((arg, seq))
            seq += 1
        elif op == "ack":  # an ACK takes the oldest few outcomes reported
            assert isinstance(arg, int)
            taken = [s for _, s in waiting[:arg]]
            notices.reported([reached(s) for s in taken], everything=arg >= len(waiting))
            waiting = waiting[arg:]
        else:
            assert isinstance(arg, float)
            now += arg
            out = notices.take(now)
            if out:
                takes.append(now)
                assert within_rate(takes, interval)
                assert sorted(s for _, rs in out for r, _ in rs for s in [r.seq]) == sorted(
                    s for _, s in waiting
                )
                for producer, outcomes in out:
                    seqs = [r.seq for r, _ in outcomes]
                    assert seqs == [s for p, s in waiting if p == producer]  # in order
                    handed += seqs
                waiting = []
            else:  # held back only when handing out now would break the rate
                assert not waiting or not within_rate([*takes, now], interval)
        assert notices.pending is bool(waiting)
    assert len(handed) == len(set(handed))  # never twice


# --- in the table ----------------------------------------------------------------------


def owned_table(**options: object) -> OutstandingTable:
    """A table alone in its view (it owns every job), noticing."""
    cluster = Cluster(
        "round_robin", notices=True, ack_every=1000, ack_every_seconds=10.0, **options
    )
    cluster.join(A)
    return cluster.tables[A]


def put(table: OutstandingTable, sender: str, mseq: int, seqs: range, now: float) -> None:
    specs = [JobSpec(seq, "work", b"1") for seq in seqs]
    data = encode_batch(PID, mseq, "json", specs, notify=True)
    table.apply(MessageDelivered(sender, MESS_TYPE, data), now)


def finish(table: OutstandingTable, seqs: range, now: float) -> list[Effect]:
    return list(table.apply(JobsFinished([reached(seq) for seq in seqs]), now))


def test_a_turn_that_ends_jobs_sends_one_notice_per_producer() -> None:
    table = owned_table(notice_interval=0.002)
    put(table, P1, 1, range(0, 2), 0.0)
    put(table, P2, 2, range(2, 3), 0.0)
    assert of_type(finish(table, range(3), 1.0), SendNotice) == []  # not before the turn ends
    assert table.notices_pending
    notices = of_type(table.apply(TurnEnded(), 1.0), SendNotice)
    assert [(n.to, [r.seq for r, _ in n.envelope.outcomes]) for n in notices] == [
        (P1, [0, 1]),
        (P2, [2]),
    ]
    assert table.apply(TurnEnded(), 1.0) == []  # nothing waits


def test_outcomes_within_the_interval_go_at_the_tick_that_ends_it() -> None:
    table = owned_table(notice_interval=0.5)
    put(table, P1, 1, range(4), 0.0)
    finish(table, range(1), 1.0)
    assert len(of_type(table.apply(TurnEnded(), 1.0), SendNotice)) == 1  # books 1.0-1.5
    finish(table, range(1, 2), 1.1)
    assert len(of_type(table.apply(TurnEnded(), 1.1), SendNotice)) == 1  # the one to spare
    finish(table, range(2, 4), 1.2)
    assert table.apply(TurnEnded(), 1.2) == []
    assert table.next_deadline() == 1.5
    assert table.apply(Tick(), 1.4) == []
    (notice,) = of_type(table.apply(Tick(), 1.5), SendNotice)
    assert [r.seq for r, _ in notice.envelope.outcomes] == [2, 3]


def test_an_outcome_an_ack_reported_goes_in_no_notice() -> None:
    table = owned_table(notice_interval=0.5)
    put(table, P1, 1, range(2), 0.0)
    finish(table, range(1), 1.0)
    table.apply(TurnEnded(), 1.0)
    finish(table, range(1, 2), 1.1)  # no turn ends before the Tick ...
    (ack,) = of_type(table.apply(Tick(), 11.1), SendAck)  # ... and the cadence's ACK comes first
    assert [r.seq for r, _ in ack.envelope.outcomes] == [0, 1]
    assert not table.notices_pending
    assert table.apply(Tick(), 11.6) == []


def test_an_ack_without_room_for_all_leaves_the_rest_to_the_notices() -> None:
    table = owned_table(notice_interval=0.5)
    big = Outcome.success(b"x" * (table.outcome_budget // 3))  # three fill an ACK
    put(table, P1, 1, range(8), 0.0)
    table.apply(JobsFinished([JobFinished(ref(0), big)]), 1.0)
    (first,) = of_type(table.apply(TurnEnded(), 1.0), SendNotice)
    assert [r.seq for r, _ in first.envelope.outcomes] == [0]
    rest = table.apply(JobsFinished([JobFinished(ref(seq), big) for seq in range(1, 8)]), 1.6)
    (ack,) = of_type(rest, SendAck)  # the outcomes fill an ACK: it goes at once
    assert [r.seq for r, _ in ack.envelope.outcomes] == [0, 1, 2]
    notices = of_type(table.apply(TurnEnded(), 1.6), SendNotice)
    assert len(notices) == 2  # five outcomes of a third of an ACK do not fit one NOTICE
    assert [r.seq for notice in notices for r, _ in notice.envelope.outcomes] == [3, 4, 5, 6, 7]
    assert all(len(encode(notice.envelope)) <= MAX_ENVELOPE_SIZE for notice in notices)


def test_without_notices_nothing_waits() -> None:
    table = OutstandingTable(A, rule=Cluster().rule, incarnation=INC, notices=False)
    assert not table.notices_pending
    assert table.apply(TurnEnded(), 0.0) == []
