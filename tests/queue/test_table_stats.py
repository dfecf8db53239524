"""The table's counters (``OutstandingTable.stats``): each counts every event it names.

One replica's counters are compared whole after each step of a scenario in which every
counted event happens more than once, so a counter that is set instead of added to, or
that counts the wrong event, shows.
"""

from __future__ import annotations

import dataclasses

from test_table import PID, A, B, C, Cluster, of_type, ref
from test_table_cancel import cancel, query
from test_table_dedupe import put

from spreadq.queue.effects import AnnounceView
from spreadq.queue.envelope import MESS_TYPE, Ack, Ledger, encode
from spreadq.queue.inputs import JobFinished, JobStarted, MessageDelivered
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.queue.table import OutstandingTable, TableStats
from spreadq.queue.view import ChangeCause


def stats(table: OutstandingTable, **changed: int) -> TableStats:
    """What ``table.stats`` must be: ``changed`` and zeros."""
    return dataclasses.replace(TableStats(), **changed)


def test_every_counter_counts_each_event() -> None:
    cluster = Cluster(ack_every=1000, ack_every_seconds=100.0)
    for name in (A, B, C):
        cluster.join(name)
    a = cluster.tables[A]
    assert a.stats == stats(a, views=3)

    cluster.send(0, 1, 2, 3)  # A owns 0 and 3, B 1, C 2
    cluster.send(4, 5)  # slots 4, 5: B, C
    assert a.stats == stats(a, views=3, jobs=6)

    for data in (b"one", b"two"):  # RAW messages: one job each
        cluster.feed(cluster.members, MessageDelivered("#cprog#h", 17, data))
    assert a.stats == stats(a, views=3, jobs=6, raw_jobs=2)

    for junk in (b"SQ\x01\x01\x00\x00\x00", b"SQ\x01\x02\x00\x00\x00\x01"):  # no slot
        cluster.feed(cluster.members, MessageDelivered("#bad#h", MESS_TYPE, junk))
    base = {"views": 3, "jobs": 6, "raw_jobs": 2, "bad_envelopes": 2, "ignored_messages": 2}
    assert a.stats == stats(a, **base)

    cluster.ack(B, 1, 4)  # B's two jobs
    cluster.ack(C, 2)
    base["completed"] = 3
    assert a.stats == stats(a, **base)

    cluster.ack(B, 1, 4)  # again: both unknown now
    cluster.ack("#stranger#h", 5)  # from a non-member: stale
    cluster.ack("#stranger#h", 0)
    base |= {"unknown_acks": 2, "stale_acks": 2}
    assert a.stats == stats(a, **base)

    cancel(cluster, 0)  # A's job, from its producer: cancelled
    cancel(cluster, 3)
    cancel(cluster, 5, sender="#other#h")  # not its sender: refused
    cancel(cluster, 5, sender="#other#h")
    cancel(cluster, 99)  # never delivered
    cancel(cluster, 98)
    base |= {"cancelled": 2, "refused_cancels": 2, "unknown_cancels": 2}
    assert a.stats == stats(a, **base)

    query(cluster, 1, index=0)  # A is members[0]: A answers
    query(cluster, 2, index=0)
    query(cluster, 1, index=1)  # B's to answer
    base["results_answered"] = 2
    assert a.stats == stats(a, **base)


def test_failover_counters_count_each_job() -> None:
    cluster = Cluster(max_failovers=0)
    for name in (A, B, C):
        cluster.join(name)
    a = cluster.tables[A]
    cluster.send(*range(6))  # C owns 2 and 5
    cluster.view((A, B), ChangeCause.DISCONNECT, C)
    # both of C's jobs reassigned, once each: past max_failovers=0, so given up
    assert (a.stats.views, a.stats.reassigned, a.stats.given_up, a.stats.orphaned) == (4, 2, 2, 0)


def test_an_ack_of_our_own_run_counts_as_completed_once() -> None:
    cluster = Cluster(ack_every=1)
    for name in (A, B):
        cluster.join(name)
    a = cluster.tables[A]
    cluster.send(0, 2)  # A owns both
    for seq in (0, 2):
        a.apply(JobStarted(ref(seq)), 0.0)
        a.apply(JobFinished(ref(seq), Outcome.success()), 0.0)
    outcomes = tuple((JobRef(PID, seq), Outcome.success()) for seq in (0, 2))
    data = encode(Ack(cluster.tables[A].incarnation, outcomes))
    cluster.feed((A, B), MessageDelivered(A, MESS_TYPE, data))
    assert (a.stats.completed, a.stats.unknown_acks) == (2, 0)
    assert a.outstanding() == []


def test_resent_and_deduplicated_jobs_are_counted_each_time() -> None:
    cluster = Cluster(ack_every=1000, ack_every_seconds=100.0)
    for name in (A, B):
        cluster.join(name)
    a = cluster.tables[A]
    cluster.send(0)
    cluster.send(0)  # re-sent copies of an outstanding job
    cluster.send(0)
    put(cluster, (1, "k"), (2, "k"), (3, "k"))  # 2 and 3 are duplicates of 1
    assert (a.stats.jobs, a.stats.duplicates, a.stats.deduplicated) == (6, 2, 2)
    cluster.join(C)  # cuts the memory (it holds "k")
    put(cluster, (4, "k"))
    cluster.join("#d#h")
    assert (a.stats.views, a.stats.dedupe_cuts) == (4, 2)


def test_outstanding_per_producer_counts_what_outstanding_lists() -> None:
    cluster = Cluster(ack_every=1000, ack_every_seconds=100.0)
    for name in (A, B, C):
        cluster.join(name)
    cluster.send(0, 1, 2, 3, 4)
    put(cluster, (7, None), (8, None), pid=b"\x02" * 16)
    cluster.ack(B, 1, 4)
    a = cluster.tables[A]
    counted: dict[bytes, int] = {}
    for job in a.outstanding():
        counted[job.ref.producer_id] = counted.get(job.ref.producer_id, 0) + 1
    assert a.outstanding_per_producer() == counted == {PID: 3, b"\x02" * 16: 2}


def test_messages_before_the_first_view_are_ignored_each_counted() -> None:
    cluster = Cluster()
    table = cluster.table(A)
    for data in (b"one", b"two"):
        assert table.apply(MessageDelivered("#p#h", 17, data), 0.0) == []
    assert table.stats == stats(table, ignored_messages=2)


def test_messages_the_table_has_no_use_for_are_ignored_each_counted() -> None:
    cluster = Cluster()
    (announce,) = of_type(cluster.join(A)[A], AnnounceView)  # a VIEW is for producers
    cluster.join(B)
    table = cluster.tables[A]
    forged = Ledger(cluster.gid, (A, B), (("report", 99),))  # a LEDGER from a non-member
    for sender, data in [(A, encode(announce.envelope)), ("#ghost#h", encode(forged))] * 2:
        cluster.feed(cluster.members, MessageDelivered(sender, MESS_TYPE, data))
    assert table.stats == stats(table, views=2, ignored_messages=4)
