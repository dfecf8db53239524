"""Edges of the replicated table that the scenarios and the simulation pass by.

Each test pins one behaviour that a mutant of ``queue/table.py`` changed without any
other test noticing (docs/mutation.md): unknown refs, what a replica shows of a
duplicate it has answered, the ACK deadline such an answer sets, a duplicate cancelled
while it waits for its first job, and a cancelled job's share of ``least_loaded``'s
counts.
"""

from __future__ import annotations

from test_table import A, B, C, Cluster, of_type, ref, runs
from test_table_cancel import cancel
from test_table_dedupe import PID2, put, reported

from spreadq.queue.effects import RunJob
from spreadq.queue.envelope import MESS_TYPE, Cancel, encode
from spreadq.queue.inputs import MessageDelivered, Tick
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.queue.view import ChangeCause


def test_an_unknown_job_has_no_owner() -> None:
    cluster = Cluster()
    cluster.join(A)
    assert cluster.tables[A].owner_of(ref(42)) is None
    cluster.send(1)
    assert cluster.tables[A].owner_of(ref(1)) == A


def slow_acks() -> Cluster:
    """Three replicas whose ACKs fall due by time alone (10 s), not by count."""
    cluster = Cluster(ack_every_jobs=1000, ack_every_seconds=10.0)
    for name in (A, B, C):
        cluster.join(name)
    return cluster


def finished(cluster: Cluster, name: str, job: JobRef) -> bool:
    (record,) = [j for j in cluster.tables[name].outstanding() if j.ref == job]
    return record.finished


def test_a_duplicate_answered_at_once_is_finished() -> None:
    cluster = slow_acks()
    put(cluster, (0, "k"))  # slot 0 -> A
    cluster.ack(A, 0)
    put(cluster, (1, None), (2, "k"))  # slots 1, 2 -> B, C; 2 is a duplicate of 0
    assert finished(cluster, C, ref(2))  # answered from the history, never run


def test_a_duplicate_taken_over_is_answered_and_its_ack_falls_due_from_then() -> None:
    cluster = slow_acks()
    put(cluster, (0, "k"))  # slot 0 -> A
    cluster.ack(A, 0)
    put(cluster, (1, "k"))  # slot 1 -> B: a duplicate of 0, answered by B
    cluster.now = 10.0
    for name in (A, C):  # their ACKs by time go out: nothing of theirs pending after
        assert cluster.tables[name].apply(Tick(), 10.0)
        assert cluster.tables[name].next_deadline() is None
    cluster.now = 12.0
    cluster.view((A, C), ChangeCause.DISCONNECT, B)  # B dies before it reported
    (owner,) = [n for n in (A, C) if cluster.tables[n].owner_of(ref(1)) == n]
    table = cluster.tables[owner]
    assert finished(cluster, owner, ref(1))
    assert table.next_deadline() == 22.0  # the answer waits for an ACK by time, from now
    assert reported(table.apply(Tick(), 22.0)) == {ref(1): Outcome.success(b"r0")}


def test_a_waiting_duplicate_is_finished_once_its_first_completes() -> None:
    cluster = slow_acks()
    put(cluster, (0, "k"))  # A runs 0
    put(cluster, (5, "k"), pid=PID2)  # slot 1 -> B: waits for job 0
    dup = JobRef(PID2, 5)
    assert not finished(cluster, B, dup)
    cluster.ack(A, 0)
    assert finished(cluster, B, dup)  # answered with job 0's outcome, not run


def test_a_duplicate_cancelled_while_it_waits_is_not_answered() -> None:
    cluster = slow_acks()
    put(cluster, (0, "k"))  # A runs 0
    put(cluster, (5, "k"), pid=PID2)  # slot 1 -> B: waits for job 0
    dup = JobRef(PID2, 5)
    cancelled = MessageDelivered("#prod#h", MESS_TYPE, encode(Cancel(dup)))
    cluster.feed(cluster.members, cancelled)  # by its producer: taken everywhere
    assert all(dup not in [j.ref for j in cluster.tables[n].outstanding()] for n in (A, B, C))
    done = cluster.ack(A, 0)  # the first completes: nothing left to answer
    assert all(dup not in reported(done[n]) for n in (A, B, C))
    assert all(not of_type(done[n], RunJob) for n in (A, B, C))


def test_a_cancelled_job_no_longer_counts_for_least_loaded() -> None:
    cluster = Cluster("least_loaded", ack_every_jobs=1000, ack_every_seconds=10.0)
    for name in (A, B):
        cluster.join(name)
    first = cluster.send(0, 1, 2)  # A, B, then a tie: A
    assert (runs(first[A]), runs(first[B])) == ([0, 2], [1])
    cancel(cluster, 0)
    cancel(cluster, 2)  # A counts none now, B one
    nxt = cluster.send(3)
    assert runs(nxt[A]) == [3]  # had the cancels kept A's two: B
