"""CANCEL and RESULT in the replicated table: decided at their place in the order.

Each replica is fed the same messages in the same order (``Cluster`` from
``test_table``); the tests check that every replica decides alike, and what the owner
does about its own run.
"""

from __future__ import annotations

from test_table import A, B, C, Cluster, of_type, ref, runs
from test_table_dedupe import put, reported

from spreadq.queue.effects import (
    AnswerResult,
    CancelJob,
    CancelRefused,
    CancelTaken,
    Effect,
    SendAck,
    ViewChanged,
)
from spreadq.queue.envelope import (
    MESS_TYPE,
    Cancel,
    ResultAnswer,
    ResultQuery,
    ResultState,
    encode,
)
from spreadq.queue.inputs import JobFinished, JobStarted, MessageDelivered
from spreadq.queue.jobs import Outcome, Status
from spreadq.queue.view import ChangeCause

PRODUCER = "#prod#h"  # the sender Cluster.send uses


def cancel(
    cluster: Cluster, seq: int, sender: str = PRODUCER, to: tuple[str, ...] | None = None
) -> dict[str, list[Effect]]:
    data = encode(Cancel(ref(seq)))
    return cluster.feed(to or cluster.members, MessageDelivered(sender, MESS_TYPE, data))


def query(
    cluster: Cluster, seq: int, index: int, sender: str = "#asker#h"
) -> dict[str, list[Effect]]:
    data = encode(ResultQuery(5, ref(seq), index))
    return cluster.feed(cluster.members, MessageDelivered(sender, MESS_TYPE, data))


def three() -> Cluster:
    cluster = Cluster(ack_every=1000, ack_every_seconds=10.0)
    for name in (A, B, C):
        cluster.join(name)
    return cluster


def test_a_cancel_before_the_start_drops_the_job_everywhere_and_it_never_runs() -> None:
    cluster = three()
    effects = cluster.send(0, 1, 2)  # A owns 0
    assert runs(effects[A]) == [0]
    effects = cancel(cluster, 0)
    for name in (A, B, C):
        assert of_type(effects[name], CancelTaken) == [CancelTaken(ref(0), PRODUCER)]
        assert 0 not in cluster.owners(name)
        assert cluster.tables[name].remembers(ref(0)) == Outcome.cancelled()
    assert of_type(effects[A], CancelJob) == [CancelJob(ref(0), running=False)]
    assert of_type(effects[B], CancelJob) == []
    # A leaves: its jobs fail over, and the cancelled one is not among them
    effects = cluster.view((B, C), ChangeCause.LEAVE, A)
    reassigned = [e.reassigned for e in of_type(effects[B], ViewChanged)]
    assert reassigned == [()]  # A owned only job 0
    assert all(0 not in runs(e) for e in effects.values())


def test_a_cancel_while_running_stops_the_owners_handler() -> None:
    cluster = three()
    cluster.send(0, 1, 2)
    cluster.feed((A,), JobStarted(ref(0)))
    effects = cancel(cluster, 0)
    assert of_type(effects[A], CancelJob) == [CancelJob(ref(0), running=True)]
    assert cluster.tables[A].backlog == 0


def test_an_ack_ordered_before_the_cancel_keeps_the_real_outcome() -> None:
    cluster = three()
    cluster.send(0, 1, 2)
    cluster.ack(A, 0)
    effects = cancel(cluster, 0)
    assert effects == {A: [], B: [], C: []}  # a no-op everywhere
    for name in (A, B, C):
        assert cluster.tables[name].remembers(ref(0)) == Outcome.success(b"r0")
        assert cluster.tables[name].stats.unknown_cancels == 1


def test_a_cancel_ordered_before_the_ack_wins_and_the_late_ack_does_not_undo_it() -> None:
    cluster = three()
    cluster.send(0, 1, 2)
    cluster.feed((A,), JobStarted(ref(0)))
    cluster.feed((A,), JobFinished(ref(0), Outcome.success(b"late")))  # its ACK not yet out
    effects = cancel(cluster, 0)
    assert of_type(effects[A], CancelJob) == []  # nothing left to stop
    cluster.ack(A, 0)  # the finished run's ACK, ordered after the CANCEL
    for name in (A, B, C):
        assert cluster.tables[name].remembers(ref(0)) == Outcome.cancelled()
        assert cluster.tables[name].stats.cancelled == 1


def test_a_cancel_from_another_sender_is_refused_by_every_replica() -> None:
    cluster = three()
    cluster.send(0, 1, 2)
    effects = cancel(cluster, 1, sender="#intruder#h")
    for name in (A, B, C):
        (refused,) = of_type(effects[name], CancelRefused)
        assert (refused.ref, refused.sender) == (ref(1), "#intruder#h")
        assert PRODUCER in refused.reason
        assert cluster.owners(name)[1] == B
        assert cluster.tables[name].stats.refused_cancels == 1
    assert of_type(effects[B], CancelJob) == []


def test_a_resent_copy_of_a_cancelled_job_is_answered_cancelled_not_run() -> None:
    cluster = Cluster(ack_every=1)
    for name in (A, B):
        cluster.join(name)
    cluster.send(0, 1)
    cancel(cluster, 0)
    effects = cluster.send(0)  # slot 2 -> A, which remembers it cancelled
    assert runs(effects[A]) == []
    (ack,) = of_type(effects[A], SendAck)
    assert (ref(0), Outcome.cancelled()) in ack.envelope.outcomes


def test_a_result_query_is_answered_by_the_indexed_member_only() -> None:
    cluster = three()
    cluster.send(0, 1)
    cluster.ack(B, 1)
    members = cluster.members
    for index, name in enumerate(members):
        effects = query(cluster, 1, index)
        answers = {n: of_type(e, AnswerResult) for n, e in effects.items()}
        assert [n for n, a in answers.items() if a] == [name]
        (answer,) = answers[name]
        assert answer.to == "#asker#h"
        assert answer.answer == ResultAnswer(
            5, ref(1), ResultState.KNOWN, 3, Outcome.success(b"r1")
        )
    effects = query(cluster, 0, 0)
    (answer,) = of_type(effects[members[0]], AnswerResult)
    assert (answer.answer.state, answer.answer.outcome) == (ResultState.PENDING, None)
    effects = query(cluster, 99, 2)
    (answer,) = of_type(effects[members[2]], AnswerResult)
    assert answer.answer.state is ResultState.UNKNOWN
    assert query(cluster, 1, 3) == {A: [], B: [], C: []}  # past the view: nobody answers


def test_a_newcomer_that_does_not_remember_answers_unknown() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.send(0)
    cluster.ack(A, 0)
    cluster.join(C)
    (answer,) = of_type(query(cluster, 0, cluster.members.index(C))[C], AnswerResult)
    assert answer.answer.state is ResultState.UNKNOWN
    (answer,) = of_type(query(cluster, 0, cluster.members.index(A))[A], AnswerResult)
    assert answer.answer.outcome is not None
    assert answer.answer.outcome.status is Status.OK


def test_a_duplicate_waiting_for_a_cancelled_first_job_is_answered_cancelled() -> None:
    cluster = Cluster(ack_every=1)
    for name in (A, B, C):
        cluster.join(name)
    put(cluster, (0, "k"))  # A runs 0
    waits = put(cluster, (1, "k"))
    assert reported(waits[B]) == {}  # B owns the duplicate: it waits for job 0
    effects = cancel(cluster, 0)  # job 0 never completes now: cancelled everywhere
    assert reported(effects[B]) == {ref(1): Outcome.cancelled()}
