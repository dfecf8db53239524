"""StatsReporter: at most one report per interval, the fields from counters and the
table, and a snapshot read from a real OutstandingTable."""

from __future__ import annotations

import pytest

from spreadq.observe import (
    Counters,
    JobStarted,
    JobSucceeded,
    JobTakenOver,
    StatsReporter,
    TableSnapshot,
)
from spreadq.queue import OutstandingTable
from spreadq.queue.envelope import (
    Drain,
    JobSpec,
    Stats,
    StatsState,
    decode,
    encode,
    encode_batch,
)
from spreadq.queue.inputs import MessageDelivered, StartDraining
from spreadq.queue.jobs import JobRef
from spreadq.queue.rules import RoundRobin
from spreadq.queue.view import ChangeCause, ViewInstalled

INCARNATION = b"i" * 16
P1, P2 = b"1" * 16, b"2" * 16


def reporter(counters: Counters, snapshot: TableSnapshot, interval: float = 1.0) -> StatsReporter:
    return StatsReporter(
        member="#w1#h",
        incarnation=INCARNATION,
        counters=counters,
        snapshot=lambda: snapshot,
        interval=interval,
    )


def test_one_report_per_interval() -> None:
    stats = reporter(Counters(lambda: 0.0), TableSnapshot(), interval=2.0)
    assert stats.report(10.0) is not None
    assert stats.next_deadline() == 12.0
    assert stats.report(11.9) is None
    assert stats.report(12.0) is not None
    assert stats.report(13.0) is None
    assert stats.report(20.0) is not None  # late: the next is an interval from now
    assert stats.next_deadline() == 22.0


def test_a_report_carries_counters_and_the_snapshot() -> None:
    now = 50.0
    counters = Counters(lambda: now)
    counters(JobStarted("q", JobRef(P1, 1), "a", 1))
    counters(JobStarted("q", JobRef(P1, 2), "a", 1))
    counters(JobSucceeded("q", JobRef(P1, 2), "a", 1, 0.1))
    counters(JobTakenOver("q", JobRef(P1, 1), "a", "#w1#h", "#w0#h", 0.0125))
    snapshot = TableSnapshot(
        draining=True,
        owned=7,
        group_id=(1, 2, 3),
        ordinal=4,
        outstanding={P1: 2, P2: 5},
        read={P2: 99},
    )
    data = reporter(counters, snapshot).report(now + 1.5)
    assert data is not None
    assert decode(data) == Stats(
        INCARNATION,
        "#w1#h",
        StatsState.DRAINING,
        owned=7,
        running=1,
        done=1,
        failed=0,
        oldest_ms=1500,
        failovers=1,
        takeover_ms_sum=12,
        takeover_ms_max=12,
        group_id=(1, 2, 3),
        ordinal=4,
        interval_ms=1000,
        producers=((P2, 5, 99), (P1, 2, 0)),  # the busiest producer first
    )


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        reporter(Counters(lambda: 0.0), TableSnapshot(), interval=0.0)


def test_a_snapshot_of_a_real_table() -> None:
    me, other = "#w1#h", "#w2#h"
    table = OutstandingTable(me, rule=RoundRobin(), incarnation=INCARNATION)
    assert TableSnapshot.of(table, me) == TableSnapshot()
    table.apply(ViewInstalled((me, other), (9, 8, 7), ChangeCause.JOIN, me), 0.0)
    jobs = [JobSpec(seq, "k", b"") for seq in range(3)]
    table.apply(MessageDelivered("#p#h", 0x5351, encode_batch(P1, 1, "json", jobs)), 0.0)
    table.apply(StartDraining(), 0.0)
    assert not TableSnapshot.of(table, me).draining  # until our DRAIN is delivered
    table.apply(MessageDelivered(me, 0x5351, encode(Drain(INCARNATION))), 0.0)
    snapshot = TableSnapshot.of(table, me, read={P1: 1})
    assert snapshot.owned == table.backlog == 2  # round robin: slots 0 and 2 of 3
    assert snapshot.draining
    assert snapshot.outstanding == {P1: 3}
    assert snapshot.group_id == (9, 8, 7)
    assert table.view is not None
    assert snapshot.ordinal == table.view.ordinal == 1
    assert snapshot.read == {P1: 1}
