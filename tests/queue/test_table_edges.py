"""Edges of the replicated table that the scenarios and the simulation pass by.

Each test pins one behaviour that a mutant of ``queue/table.py`` changed without any
other test noticing (docs/mutation.md, docs/mutation-table-survivors.md): unknown refs,
what a replica shows of a duplicate it has answered, the ACK deadline such an answer
sets, a duplicate cancelled while it waits for its first job, a cancelled job's share
of ``least_loaded``'s counts, what ``outstanding()`` shows, the transitional flag, the
refs of RAW slots, a fragmented job's one slot, jobs answered without a run by a member
that took them over, ACKs of other jobs, late reports of our own handlers, the ACK
budget's edge, the ``Idle`` input, the options a table is made with and its
defaults, and what a view change reports.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_table import INC, PID, A, B, C, Cluster, D, of_type, ref, runs
from test_table_cancel import cancel
from test_table_dedupe import PID2, put, reported

from spreadq.errors import ConfigurationError, LocalProtocolError, PluginError
from spreadq.queue.effects import (
    AnnounceDrain,
    CancelJob,
    Effect,
    JobRejected,
    RunJob,
    SendAck,
    SendNotice,
    ViewChanged,
)
from spreadq.queue.envelope import (
    MESS_TYPE,
    Ack,
    Cancel,
    Drain,
    Hello,
    JobSpec,
    encode,
    encode_batch,
    encode_fragments,
    outcome_size,
)
from spreadq.queue.inputs import (
    Idle,
    JobFinished,
    JobsFinished,
    JobStarted,
    MessageDelivered,
    Producers,
    StartDraining,
    Tick,
    TurnEnded,
)
from spreadq.queue.jobs import PLAIN_SUCCESS, Job, JobRef, Outcome, OutcomeHistory, Status
from spreadq.queue.periodic import TickLedger
from spreadq.queue.rules import RuleState
from spreadq.queue.table import OutstandingTable
from spreadq.queue.view import ChangeCause, LeftGroup, Transitional, ViewInstalled
from spreadq.queue.windows import AckCadence


def test_an_unknown_job_has_no_owner() -> None:
    cluster = Cluster()
    cluster.join(A)
    assert cluster.tables[A].owner_of(ref(42)) is None
    cluster.send(1)
    assert cluster.tables[A].owner_of(ref(1)) == A


def slow_acks() -> Cluster:
    """Three replicas whose ACKs fall due by time alone (10 s), not by count."""
    cluster = Cluster(ack_every=1000, ack_every_seconds=10.0)
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
    cluster = Cluster("least_loaded", ack_every=1000, ack_every_seconds=10.0)
    for name in (A, B):
        cluster.join(name)
    first = cluster.send(0, 1, 2)  # A, B, then a tie: A
    assert (runs(first[A]), runs(first[B])) == ([0, 2], [1])
    cancel(cluster, 0)
    cancel(cluster, 2)  # A counts none now, B one
    nxt = cluster.send(3)
    assert runs(nxt[A]) == [3]  # had the cancels kept A's two: B


def test_an_unknown_job_is_no_duplicate() -> None:
    cluster = Cluster()
    cluster.join(A)
    assert cluster.tables[A].duplicate_of(ref(42)) is None


def test_a_record_shows_its_failover_its_start_and_a_resent_copy() -> None:
    cluster = Cluster()
    for name in (A, B, C):
        cluster.join(name)
    cluster.send(0, 1, 2)  # A, B, C
    cluster.feed((A,), JobStarted(ref(0)))
    cluster.view((A, B), ChangeCause.DISCONNECT, C)  # job 2 fails over to A
    cluster.send(1)  # re-sent while outstanding: it moves to slot 0, A
    records = {
        j.ref.seq: (j.view, j.slot, j.failover, j.started, j.duplicate)
        for j in cluster.tables[A].outstanding()
    }
    assert records == {  # view 4, and the failover's counter in its origin, 0
        0: (3, 0, False, True, False),
        2: (4, 0, True, False, False),
        1: (4, 0, False, False, True),
    }


def test_transitional_holds_from_a_transitional_membership_to_the_next_view() -> None:
    cluster = Cluster()
    alone = cluster.table(A)
    alone.apply(Transitional(cluster.gid), 0.0)  # before any view: nothing to end
    assert alone.transitional is False
    cluster.join(A)
    cluster.join(B)
    table = cluster.tables[A]
    seen = [table.transitional]
    cluster.feed((A, B), Transitional(cluster.gid))
    seen.append(table.transitional)
    cluster.view((A,), ChangeCause.NETWORK, vs={A: (A,)})
    seen.append(table.transitional)
    assert seen == [False, True, False]


def test_leaving_cancels_only_the_runs_we_have_going() -> None:
    cluster = Cluster(ack_every=1000, ack_every_seconds=10.0)
    cluster.join(A)
    cluster.join(B)
    cluster.send(0, 1, 2, 3)  # A owns 0 and 2, B 1 and 3
    table = cluster.tables[A]
    table.apply(JobStarted(ref(0)), 0.0)
    table.apply(JobFinished(ref(2), Outcome.success(b"r2")), 0.0)
    assert of_type(table.apply(LeftGroup(), 0.0), CancelJob) == [CancelJob(ref(0), running=True)]


def raw(sender: str) -> MessageDelivered:
    return MessageDelivered(sender, 17, b"raw")


def test_raw_refs_number_each_senders_slots_from_zero_and_differ_by_sender_and_view() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    odd = "#\udc80#h"  # a name that is no UTF-8 text still gets its refs
    for sender in ("#p#h", "#p#h", "#q#h", "#p#h", odd):
        cluster.feed(cluster.members, raw(sender))
    refs = [j.ref for j in cluster.tables[A].outstanding()]
    assert [r.seq for r in refs] == [0, 1, 0, 2, 0]
    assert len({r.producer_id for r in refs}) == 3
    assert refs[0].producer_id == refs[1].producer_id == refs[3].producer_id
    cluster.join(C)  # a new view numbers anew, under other ids
    cluster.feed(cluster.members, raw("#p#h"))
    new = cluster.tables[A].outstanding()[-1].ref
    assert new.seq == 0
    assert new.producer_id not in {r.producer_id for r in refs}
    assert {cluster.tables[n].owner_of(new) for n in (A, B, C)} == {A}  # every replica agrees


def test_a_raw_ref_is_the_same_in_every_spreadq_version() -> None:
    # replicas of two versions (a rolling upgrade) must derive the same ref, or an ACK
    # from one would not complete the job at the other: the derivation is pinned
    cluster = Cluster()
    cluster.join(A)  # group id (1, 100, 1)
    cluster.feed(cluster.members, raw("#p#h"))
    (job,) = cluster.tables[A].outstanding()
    assert job.ref == JobRef(bytes.fromhex("f02eddb552f4bcf3d98be4196ec6abfe"), 0)


def test_each_fragment_counts_as_a_message_read_and_the_job_once_in_the_stats() -> None:
    cluster = Cluster(ack_every=2)
    cluster.join(A)
    table = cluster.tables[A]
    parts = encode_fragments(PID, 1, "json", JobSpec(60, "big", b"z" * 500), max_size=200)
    assert len(parts) >= 4

    def read(part: bytes) -> list[Effect]:
        return cluster.feed((A,), MessageDelivered("#p#h", MESS_TYPE, part))[A]

    assert read(parts[0]) == []  # one message read: its position waits for company
    assert table.next_deadline() == 0.05
    # the job is not read yet, but the producer's window counts its fragments
    (send,) = of_type(read(parts[1]), SendAck)
    assert send.envelope.positions == ((PID, 2),)
    for part in parts[2:-1]:
        assert of_type(read(part), RunJob) == []
    (run,) = of_type(read(parts[-1]), RunJob)  # a job is read with its last fragment
    assert (run.ref.seq, run.mess_type) == (60, MESS_TYPE)
    assert table.stats.jobs == 1


BAD = b"SQ\x02\x01\x03\x00" + b"from a newer version"  # three slots: A, B, C


def b_answers_without_a_run(cluster: Cluster, kind: str) -> JobRef:
    """Give B, at time 0, a slot it reports without running; return that slot's ref."""
    if kind == "remembered":  # a re-sent copy of a job completed before
        put(cluster, (0, None))  # slot 0 -> A
        cluster.ack(A, 0)
        put(cluster, (0, None))  # slot 1 -> B, which remembers its outcome
        return ref(0)
    if kind == "refused tick":  # a TICK whose key names no view: refused everywhere
        put(cluster, (0, None), (1, "periodic:report:11"))  # slots 0, 1 -> A, B
        return ref(1)
    cluster.feed(cluster.members, MessageDelivered("#p#h", MESS_TYPE, BAD))
    return cluster.tables[A].outstanding()[1].ref  # slot 1 -> B: unreadable


@pytest.mark.parametrize("kind", ["remembered", "refused tick", "unreadable"])
def test_a_job_answered_without_a_run_by_whoever_takes_it_over(kind: str) -> None:
    cluster = slow_acks()
    job = b_answers_without_a_run(cluster, kind)
    cluster.now = 10.0
    for name in (A, C):  # their ACKs by time go out: nothing of theirs pending after
        cluster.tables[name].apply(Tick(), 10.0)
        assert cluster.tables[name].next_deadline() is None
    cluster.now = 12.0
    effects = cluster.view((A, C), ChangeCause.DISCONNECT, B)  # B dies before it reported
    (owner,) = [n for n in (A, C) if cluster.tables[n].owner_of(job) == n]
    table = cluster.tables[owner]
    assert finished(cluster, owner, job)
    assert not of_type(effects[owner], RunJob)
    assert table.next_deadline() == 22.0  # the answer waits for an ACK by time, from now
    (outcome,) = reported(table.apply(Tick(), 22.0)).values()
    if kind == "remembered":
        assert outcome == Outcome.success(b"r0")
        return
    expected = {"refused tick": "StaleTick", "unreadable": "EnvelopeError"}[kind]
    assert (outcome.status, outcome.error_type) == (Status.FAILED, expected)
    if kind == "unreadable":  # the new owner logs the rejection as the first one did
        reason = outcome.error_message
        (rejected,) = of_type(effects[owner], JobRejected)
        assert (rejected.ref, rejected.sender, rejected.reason, rejected.count) == (
            job,
            "#p#h",
            reason,
            1,  # one slot: the job's own
        )


def test_an_unreadable_envelope_is_rejected_naming_its_first_slot() -> None:
    cluster = slow_acks()
    effects = cluster.feed(cluster.members, MessageDelivered("#p#h", MESS_TYPE, BAD))
    refs = [j.ref for j in cluster.tables[A].outstanding()]
    for name, job in zip((A, B, C), refs, strict=True):
        (rejected,) = of_type(effects[name], JobRejected)
        assert (rejected.ref, rejected.sender, rejected.count) == (job, "#p#h", 1)
        assert rejected.reason.startswith("EnvelopeError: a sealed envelope (version 2)")


def test_an_ack_of_another_job_leaves_a_waiting_duplicate_waiting() -> None:
    cluster = slow_acks()
    put(cluster, (0, "k"), (1, None))  # A runs 0, B runs 1
    put(cluster, (5, "k"), pid=PID2)  # slot 2 -> C: waits for job 0
    dup = JobRef(PID2, 5)
    cluster.ack(B, 1)
    assert not finished(cluster, C, dup)
    cluster.ack(A, 0)
    assert finished(cluster, C, dup)


def test_an_ack_cancels_only_our_own_runs_and_clears_our_backlog() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    cluster.send(0, 1)  # A 0, B 1
    effects = cluster.ack(B, 1)
    assert of_type(effects[A], CancelJob) == []  # B's job: nothing of ours to stop
    assert cluster.tables[A].backlog == 1
    effects = cluster.ack(B, 0)  # A's queued job, completed by a run elsewhere
    assert of_type(effects[A], CancelJob) == [CancelJob(ref(0), running=False)]
    assert cluster.tables[A].backlog == 0


def test_a_view_change_after_a_waiting_duplicate_was_cancelled_answers_nothing() -> None:
    cluster = slow_acks()
    put(cluster, (0, "k"))  # A runs 0
    put(cluster, (5, "k"), pid=PID2)  # slot 1 -> B: waits for job 0
    dup = JobRef(PID2, 5)
    cancelled = MessageDelivered("#prod#h", MESS_TYPE, encode(Cancel(dup)))
    cluster.feed(cluster.members, cancelled)
    cluster.now = 10.0
    effects = cluster.join(D)
    assert all(dup not in reported(effects[n]) for n in (A, B, C, D))
    assert cluster.tables[B].owner_of(dup) is None


def test_late_reports_of_our_handlers_change_nothing() -> None:
    cluster = Cluster(ack_every=1000, ack_every_seconds=10.0)
    cluster.join(A)
    cluster.join(B)
    cluster.send(0, 1)  # A 0, B 1
    table = cluster.tables[A]
    assert table.apply(JobStarted(ref(1)), 0.0) == []  # not ours
    assert table.apply(JobStarted(ref(42)), 0.0) == []  # completed and gone
    assert table.apply(JobFinished(ref(42), Outcome.success(b"late")), 0.0) == []
    assert [j.started for j in table.outstanding()] == [False, False]
    table.apply(JobFinished(ref(0), Outcome.success(b"first")), 1.0)
    table.apply(JobFinished(ref(0), Outcome.failure("Late", "a second report")), 2.0)
    (send,) = of_type(table.apply(Tick(), 10.0), SendAck)
    assert send.envelope.outcomes == ((ref(0), Outcome.success(b"first")),)


def test_a_result_of_exactly_the_budget_fits_and_a_byte_more_fails_naming_its_size() -> None:
    budget = AckCadence(1, 1.0).outcome_budget  # the table's cadence has these defaults
    cluster = Cluster(ack_every=1)
    cluster.join(A)
    cluster.send(0, 1)
    table = cluster.tables[A]
    size = budget - outcome_size(Outcome.success(b"", attempts=2))
    fits = Outcome.success(b"x" * size, attempts=2)
    assert outcome_size(fits) == budget
    (send,) = of_type(table.apply(JobFinished(ref(0), fits), 1.0), SendAck)
    assert send.envelope.outcomes == ((ref(0), fits),)
    over = Outcome.success(b"x" * (size + 1), attempts=2)
    (send,) = of_type(table.apply(JobFinished(ref(1), over), 2.0), SendAck)
    ((_, outcome),) = send.envelope.outcomes
    assert (outcome.error_type, outcome.attempts) == ("MessageTooLarge", 2)
    assert f"a result of {size + 1} bytes" in outcome.error_message


def test_idle_acks_an_outcome_at_once_and_otherwise_never_sends() -> None:
    cluster = Cluster(ack_every=1000, ack_every_seconds=10.0, ack_idle_gap=0.5)
    alone = cluster.table(A)
    assert alone.apply(Idle(True), 0.0) == []  # no view yet
    cluster.join(A)
    table = cluster.tables[A]
    assert table.apply(Idle(True), 0.0) == []  # nothing to report
    cluster.send(0)
    assert table.apply(Idle(False), 0.0) == []
    assert table.apply(JobFinished(ref(0), Outcome.success(b"r0")), 1.0) == []  # busy
    (send,) = of_type(table.apply(Idle(True), 1.0), SendAck)  # idle: at once
    assert send.envelope.outcomes == ((ref(0), Outcome.success(b"r0")),)
    cluster.send(1)  # read at 1.0: an ACK falls due by time at 11.0
    assert table.apply(Idle(False), 11.0) == []  # busy again: the Tick sends it
    assert of_type(table.apply(Tick(), 11.0), SendAck)


@pytest.mark.parametrize("notices", [True, False])
def test_an_idle_table_leaves_the_outcomes_a_notice_carries_to_the_cadence(
    notices: bool,
) -> None:
    cluster = Cluster(ack_every=1000, ack_every_seconds=10.0, ack_idle_gap=0.5, notices=notices)
    cluster.join(A)
    table = cluster.tables[A]
    table.apply(Idle(True), 0.0)

    def put(mseq: int, seq: int, now: float, *, notify: bool) -> None:
        data = encode_batch(PID, mseq, "json", [JobSpec(seq, "work", b"1")], notify=notify)
        (run,) = of_type(table.apply(MessageDelivered("#p#h", MESS_TYPE, data), now), RunJob)
        assert run.job.notify is notify

    put(1, 0, 0.0, notify=True)
    acks = of_type(table.apply(JobFinished(ref(0), Outcome.success(b"r0")), 1.0), SendAck)
    if notices:  # its producer has it from the NOTICE: the ACK waits for the cadence
        assert acks == []
        (notice,) = of_type(table.apply(TurnEnded(), 1.0), SendNotice)
        assert (notice.to, notice.envelope.outcomes) == (
            "#p#h",
            ((ref(0), Outcome.success(b"r0")),),
        )
        assert table.next_deadline() == 10.0
        (acks,) = [of_type(table.apply(Tick(), 10.0), SendAck)]
    (send,) = acks
    assert send.envelope.outcomes == ((ref(0), Outcome.success(b"r0")),)
    put(2, 1, 10.5, notify=False)  # this one asks for no NOTICE: its outcome is ACKed at once
    (send,) = of_type(table.apply(JobFinished(ref(1), Outcome.success(b"r1")), 11.0), SendAck)
    assert [r for r, _ in send.envelope.outcomes] == [ref(1)]
    put(3, 2, 11.5, notify=True)  # a result too big for an ACK goes in no NOTICE either
    huge = Outcome.success(b"x" * (table.outcome_budget + 1))
    (send,) = of_type(table.apply(JobFinished(ref(2), huge), 12.0), SendAck)
    ((_, outcome),) = send.envelope.outcomes
    assert outcome.error_type == "MessageTooLarge"
    assert not table.notices_pending


def test_a_draining_table_acks_what_is_waiting_and_each_outcome_at_once() -> None:
    cluster = Cluster(ack_every=1000, ack_every_seconds=60.0)
    cluster.join(A)
    table = cluster.tables[A]
    cluster.send(0)
    cluster.send(1)
    assert table.apply(JobFinished(ref(0), Outcome.success(b"r0")), 1.0) == []  # waits
    effects = table.apply(StartDraining(), 1.0)
    (send,) = of_type(effects, SendAck)  # what waited goes with the DRAIN
    assert send.envelope.outcomes == ((ref(0), Outcome.success(b"r0")),)
    (send,) = of_type(table.apply(JobFinished(ref(1), Outcome.success(b"r1")), 2.0), SendAck)
    assert send.envelope.outcomes == ((ref(1), Outcome.success(b"r1")),)


def test_a_duplicate_waiting_for_a_first_job_that_is_cancelled_gets_its_outcome() -> None:
    cluster = slow_acks()
    put(cluster, (0, "k"))  # A runs 0
    put(cluster, (5, "k"), pid=PID2)  # slot 1 -> B: waits for job 0
    dup = JobRef(PID2, 5)
    cancel(cluster, 0)  # by its producer: job 0 completes, cancelled, everywhere
    assert finished(cluster, B, dup)
    cluster.now = 10.0
    assert reported(cluster.tables[B].apply(Tick(), 10.0)) == {dup: Outcome.cancelled()}


def test_a_rule_that_returns_a_stranger_is_refused_naming_it() -> None:
    class Stranger:
        name = "stranger"

        def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
            return "#nobody#h"

    table = OutstandingTable(A, rule=Stranger(), incarnation=INC)
    table.apply(ViewInstalled((A,), (1, 1, 1), ChangeCause.JOIN, A), 0.0)
    with pytest.raises(PluginError, match="rule returned '#nobody#h', not one of"):
        table.apply(raw("#p#h"), 0.0)


def test_a_run_carries_its_message_type_and_says_whether_it_is_a_resent_copy_or_a_failover() -> (
    None
):
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)

    def flags(effects: list[Effect]) -> list[tuple[int, int, bool, bool]]:
        return [(r.ref.seq, r.mess_type, r.failover, r.duplicate) for r in of_type(effects, RunJob)]

    first = cluster.send(0, 1)  # A 0, B 1
    assert flags(first[A]) == [(0, MESS_TYPE, False, False)]
    keyed = put(cluster, (7, None), (8, "k"))  # a batch with dedupe keys: A 7, B 8
    assert flags(keyed[B]) == [(8, MESS_TYPE, False, False)]
    again = cluster.send(2, 0)  # slots 2, 3 -> A, B: job 0 re-sent moves to B
    assert flags(again[B]) == [(0, MESS_TYPE, False, True)]
    left = cluster.view((A,), ChangeCause.DISCONNECT, B)  # B's jobs fail over to A
    assert flags(left[A]) == [
        (1, MESS_TYPE, True, False),
        (8, MESS_TYPE, True, False),
        (0, MESS_TYPE, True, True),
    ]


def test_a_fragmented_job_with_a_dedupe_key_is_a_duplicate_like_any_job() -> None:
    cluster = slow_acks()
    put(cluster, (0, "d"))  # slot 0 -> A
    spec = JobSpec(61, "big", b"z" * 300, dedupe_key="d")
    parts = encode_fragments(PID, cluster.mseq + 1, "json", spec, max_size=200)
    for part in parts:
        effects = cluster.feed(cluster.members, MessageDelivered("#p#h", MESS_TYPE, part))
    assert all(not of_type(effects[n], RunJob) for n in (A, B, C))  # slot 1 -> B: not run
    assert {cluster.tables[n].duplicate_of(ref(61)) for n in (A, B, C)} == {ref(0)}


def drain(cluster: Cluster, name: str) -> None:
    cluster.feed(cluster.members, MessageDelivered(name, MESS_TYPE, encode(Drain(INC))))


@pytest.mark.parametrize(
    ("rule", "draining", "owner"),
    [
        ("round_robin", (), B),  # holders B, C; index 0 -> B
        ("key_affinity", (), B),  # a job without a key: the same, through the job
        ("round_robin", (B,), C),  # a draining holder takes it only if all holders drain
        ("round_robin", (B, C), B),
    ],
)
def test_a_straddling_job_whose_slot_falls_to_a_newcomer_goes_to_a_holder_not_draining(
    rule: str, draining: tuple[str, ...], owner: str
) -> None:
    cluster = Cluster(rule)
    cluster.join(B)
    cluster.join(C)
    parts = encode_fragments(PID, 1, "json", JobSpec(60, "big", b"z" * 300), max_size=200)
    cluster.feed((B, C), MessageDelivered("#p#h", MESS_TYPE, parts[0]))
    cluster.join(A)  # members (A, B, C): slot 0 -> A (the first eligible), who lacks the head
    for name in draining:
        drain(cluster, name)
    for part in parts[1:]:
        effects = cluster.feed((A, B, C), MessageDelivered("#p#h", MESS_TYPE, part))
    assert [(r.ref.seq, r.failover) for r in of_type(effects[owner], RunJob)] == [(60, True)]
    assert {cluster.tables[n].owner_of(ref(60)) for n in (B, C)} == {owner}
    assert [(j.owner, j.failover) for j in cluster.tables[owner].outstanding()] == [(owner, True)]


def test_a_straddling_job_whose_slot_falls_to_a_holder_is_no_failover() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    parts = encode_fragments(PID, 1, "json", JobSpec(60, "big", b"z" * 300), max_size=200)
    cluster.feed((A, B), MessageDelivered("#p#h", MESS_TYPE, parts[0]))
    cluster.join(C)  # slot 0 -> A, who holds it
    for part in parts[1:]:
        effects = cluster.feed((A, B, C), MessageDelivered("#p#h", MESS_TYPE, part))
    assert [(r.ref.seq, r.failover) for r in of_type(effects[A], RunJob)] == [(60, False)]
    assert [(j.owner, j.failover) for j in cluster.tables[B].outstanding()] == [(A, False)]


def test_every_copy_of_a_completed_job_resent_while_outstanding_is_answered_from_memory() -> None:
    cluster = slow_acks()
    cluster.send(0)  # slot 0 -> A
    cluster.ack(A, 0)
    for owner in (B, C):  # slots 1, 2: each copy moves on, still remembered
        effects = cluster.send(0)
        assert all(not of_type(effects[n], RunJob) for n in (A, B, C))
        assert finished(cluster, owner, ref(0))


def test_a_job_resent_in_its_view_no_longer_counts_for_its_old_owner() -> None:
    cluster = Cluster("least_loaded", ack_every=1000, ack_every_seconds=10.0)
    cluster.join(A)
    cluster.join(B)
    cluster.send(0)  # A
    cluster.send(0)  # re-sent: B (A has one); A has none after
    cluster.send(1)  # A
    cluster.send(2)  # a tie: A (had the first copy kept counting for A: B)
    assert cluster.owners(A) == {0: B, 1: A, 2: A}


def test_a_job_started_here_and_resent_twice_elsewhere_keeps_its_run() -> None:
    cluster = slow_acks()
    cluster.send(0)  # slot 0 -> A
    cluster.feed((A,), JobStarted(ref(0)))
    for owner in (B, C):  # slots 1, 2: it moves on twice; A's run goes on
        effects = cluster.send(0)
        assert of_type(effects[A], CancelJob) == []
        assert cluster.tables[A].owner_of(ref(0)) == owner
    assert cluster.tables[A].backlog == 0
    done = cluster.ack(A, 0)  # A's run finished first: it completes the job everywhere
    assert of_type(done[C], CancelJob) == [CancelJob(ref(0), running=False)]


def test_a_queued_run_that_moved_away_leaves_the_backlog() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    cluster.send(0)  # slot 0 -> A, not started
    assert cluster.tables[A].backlog == 1
    cluster.send(0)  # slot 1 -> B: A drops its queued run
    assert cluster.tables[A].backlog == 0


def test_a_job_we_finished_and_that_is_resent_back_to_us_is_not_run_again() -> None:
    cluster = slow_acks()
    cluster.send(0)  # slot 0 -> A
    cluster.feed((A,), JobFinished(ref(0), Outcome.success(b"r0")))  # not ACKed yet
    effects = cluster.send(1, 2, 0)  # slots 1, 2, 3 -> B, C, A: job 0 back to A
    assert runs(effects[A]) == []
    assert [(n, finished(cluster, n, ref(0))) for n in (A, B, C)] == [
        (A, True),
        (B, False),
        (C, False),
    ]


@pytest.mark.parametrize(
    ("mess_type", "data"),
    [
        (MESS_TYPE, b"SQ\x02\x01\x01\x00" + b"from a newer version"),  # one slot: A's
        (17, b"raw"),  # a RAW message: one slot, A's
    ],
)
def test_a_slot_we_do_not_own_is_read_for_the_ack_cadence(mess_type: int, data: bytes) -> None:
    cluster = Cluster(ack_every=1000, ack_every_seconds=10.0)
    cluster.join(A)
    cluster.join(B)
    cluster.now = 1.0
    cluster.feed(cluster.members, MessageDelivered("#p#h", mess_type, data))
    assert cluster.tables[B].next_deadline() == 11.0  # B read a slot at 1.0: ACK it


def test_a_rule_sees_an_unreadable_slot_as_an_invalid_job_holding_the_message() -> None:
    seen: list[tuple[str, str | None, str, bytes, bytes, str | None]] = []

    class Recording:
        name = "recording"

        def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
            fields = (job.kind, job.key, job.codec, bytes(job.payload), bytes(job.header_block))
            seen.append((*fields, job.error))
            return members[0]

    table = OutstandingTable(A, rule=Recording(), incarnation=INC)
    table.apply(ViewInstalled((A,), (1, 1, 1), ChangeCause.JOIN, A), 0.0)
    (rejected,) = of_type(table.apply(MessageDelivered("#p#h", MESS_TYPE, BAD), 0.0), JobRejected)
    assert seen == [("invalid", None, "", BAD, b"", rejected.reason)] * 3


def test_a_raw_message_counts_one_job_for_the_ack_cadence() -> None:
    cluster = Cluster(ack_every=2)
    cluster.join(A)
    first = cluster.feed((A,), raw("#p#h"))
    assert of_type(first[A], SendAck) == []  # one job read: the ACK is due after two
    second = cluster.feed((A,), raw("#p#h"))
    assert len(of_type(second[A], SendAck)) == 1


def test_a_rule_sees_the_capacities_members_announced_and_no_strangers() -> None:
    seen: list[tuple[int | None, int | None]] = []

    class Recording:
        name = "recording"

        def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
            seen.append((state.capacity(A), state.capacity("#ghost#h")))
            return members[0]

    table = OutstandingTable(A, rule=Recording(), incarnation=INC)
    table.apply(ViewInstalled((A,), (1, 1, 1), ChangeCause.JOIN, A), 0.0)
    for sender, capacity in ((A, 4), ("#ghost#h", 9)):
        table.apply(MessageDelivered(sender, MESS_TYPE, encode(Hello(INC, capacity))), 0.0)
    table.apply(raw("#p#h"), 0.0)
    assert seen == [(4, None)]


@pytest.mark.parametrize(
    ("window", "producers", "after"),
    [(600, 10, 20), (600, 4, 50), (600, 1, None), (600, 0, None), (None, 10, None)],
)
def test_a_window_split_among_producers_makes_an_ack_due_before_a_share_is_read(
    window: int | None, producers: int, after: int | None
) -> None:
    cluster = Cluster(ack_every=200, ack_every_seconds=60.0, window=window)
    cluster.join(A)
    cluster.join(B)  # two members: each message's job is A's or B's, none finishes
    table = cluster.tables[A]
    assert table.apply(Producers(producers), 0.0) == []
    acks = []
    for seq in range(1, 200):
        acks += of_type(cluster.send(seq)[A], SendAck)
        if acks:
            break
    if after is None:  # a third of a share is not below ``ack_every``: only it counts
        assert acks == []
    else:
        assert seq == after  # a third of window // producers messages
        assert acks[0].envelope.positions == ((PID, after),)


def test_a_table_made_with_the_defaults_acks_after_200_messages_or_50_ms() -> None:
    cluster = Cluster()  # every option left to its default
    cluster.join(A)
    table = cluster.tables[A]
    assert table.dedupe_size == 10_000
    assert of_type(cluster.send(*range(256))[A], SendAck) == []  # 256 jobs, one message
    assert table.next_deadline() == 0.05
    for seq in range(256, 454):  # 198 messages more
        assert of_type(cluster.send(seq)[A], SendAck) == []
    (send,) = of_type(cluster.send(454)[A], SendAck)  # the 200th message read
    assert send.envelope.positions == ((PID, 200),)
    table.apply(JobFinished(ref(0), Outcome.success(b"r0")), 5.5)
    (send,) = of_type(table.apply(Tick(), 5.6), SendAck)
    assert send.envelope.positions == ()  # read more than 5 s ago: dropped


def test_the_options_a_table_is_made_with_are_the_ones_it_uses() -> None:
    with pytest.raises(ConfigurationError, match="an incarnation is 16 bytes, not 5"):
        OutstandingTable(A, rule=Cluster().rule, incarnation=b"short")
    ledger, history = TickLedger(), OutcomeHistory()
    cluster = Cluster(ticks=ledger, history=history, position_horizon=1.0)
    effects = cluster.join(A)[A]
    table = cluster.tables[A]
    assert table.ticks is ledger
    assert table.view is not None
    assert table.view.ordinal == 1  # views count from 1
    assert of_type(effects, AnnounceDrain) == []  # not draining until told
    cluster.send(0)  # read at 0
    (send,) = of_type(table.apply(JobFinished(ref(0), Outcome.success(b"r0")), 1.5), SendAck)
    assert send.envelope.positions == ()  # read more than 1 s ago: dropped
    cluster.feed((A,), MessageDelivered(A, MESS_TYPE, encode(send.envelope)))
    assert history.get(ref(0)) == Outcome.success(b"r0")  # the history given is the one kept


def test_a_history_of_a_few_bytes_forgets_at_once() -> None:
    cluster = Cluster(history_bytes=3)
    cluster.join(A)
    cluster.send(0, 1)
    cluster.ack(A, 0)
    cluster.ack(A, 1)  # 2 result bytes each: each outcome fills a generation
    table = cluster.tables[A]
    assert (table.remembers(ref(0)), table.remembers(ref(1))) == (None, Outcome.success(b"r1"))


def test_a_view_without_us_is_refused_naming_us() -> None:
    table = OutstandingTable(A, rule=Cluster().rule, incarnation=INC)
    with pytest.raises(LocalProtocolError, match="a view of the WORK group without us"):
        table.apply(ViewInstalled((B,), (1, 1, 1), ChangeCause.JOIN, B), 0.0)


def test_views_count_one_by_one_and_each_failover_is_counted() -> None:
    cluster = Cluster()
    for name in (A, B, C, D):
        cluster.join(name)
    cluster.send(0, 1, 2, 3)  # A, B, C, D
    table = cluster.tables[A]
    cluster.view((A, B, C), ChangeCause.DISCONNECT, D)  # job 3 reassigned: to A
    cluster.view((A, B), ChangeCause.DISCONNECT, C)  # job 2 reassigned: to A
    assert table.view is not None
    assert table.view.ordinal == 6
    assert cluster.owners(A) == {0: A, 1: B, 2: A, 3: A}
    assert table.stats.reassigned == 2


def test_a_member_that_joined_after_a_head_forgets_the_job_after_further_views() -> None:
    cluster = Cluster()
    cluster.join(A)
    parts = encode_fragments(PID, 1, "json", JobSpec(72, "big", b"x" * 300), max_size=200)
    cluster.feed((A,), MessageDelivered("#p#h", MESS_TYPE, parts[0]))
    cluster.join(C)  # C misses the head: the view C joined in is its job's origin
    cluster.join(D)
    cluster.join(B)  # two more views before the job completes
    for part in parts[1:]:
        cluster.feed(cluster.members, MessageDelivered("#p#h", MESS_TYPE, part))
    assert [j.held for j in cluster.tables[C].outstanding()] == [False]
    cluster.view((B, C, D), ChangeCause.DISCONNECT, A)  # the only holder is gone
    assert cluster.tables[C].outstanding() == []


def test_a_view_change_reports_the_view_its_cause_and_what_moved() -> None:
    cluster = Cluster(max_failovers=0)
    for name in (A, B, C):
        cluster.join(name)
    cluster.send(0, 1, 2)  # A, B, C
    table = cluster.tables[A]
    effects = cluster.view((A, B), ChangeCause.DISCONNECT, C)[A]
    (change,) = of_type(effects, ViewChanged)
    assert (change.view, change.cause) == (table.view, ChangeCause.DISCONNECT)
    assert (change.reassigned, change.taken_over, change.orphaned) == ((ref(2),), (ref(2),), ())
    assert change.given_up == (ref(2),)  # past max_failovers=0 at once
    cluster.view((A,), ChangeCause.DISCONNECT, B)
    assert table.stats.given_up == 2  # job 2 then job 1


def test_a_view_change_is_reported_before_the_runs_it_causes() -> None:
    cluster = Cluster()
    for name in (A, B, C):
        cluster.join(name)
    cluster.send(*range(6))  # C owns 2 and 5
    effects = cluster.view((A, B), ChangeCause.DISCONNECT, C)
    for name in (A, B):
        assert isinstance(effects[name][0], ViewChanged)
    assert any(isinstance(e, RunJob) for name in (A, B) for e in effects[name][1:])


def test_the_idle_ack_gap_is_shared_by_the_members_of_the_view() -> None:
    # every member reads every ACK: with n members, each waits n gaps between idle ACKs
    cluster = Cluster(ack_every=1000, ack_every_seconds=10.0, ack_idle_gap=0.5)
    cluster.join(A)
    table = cluster.tables[A]
    table.apply(Idle(True), 0.0)
    cluster.send(0)  # alone: A owns every job
    assert of_type(table.apply(JobFinished(ref(0), Outcome.success()), 1.0), SendAck)
    cluster.send(1)
    assert of_type(table.apply(JobFinished(ref(1), Outcome.success()), 1.5), SendAck)
    cluster.join(B)  # two members: A waits 1.0 between idle ACKs now
    cluster.send(2)  # slot 0 of the new view: A's
    assert of_type(table.apply(JobFinished(ref(2), Outcome.success()), 2.0), SendAck) == []
    assert table.next_deadline() == 2.5
    assert of_type(table.apply(Tick(), 2.5), SendAck)


def test_a_table_made_with_the_defaults_remembers_100_000_outcomes_a_generation() -> None:
    # outcomes ACKed for jobs this table never saw go to its history all the same; with
    # the default history_size a generation holds 100,000, so after 200,000 outcomes the
    # first generation is forgotten whole (with one more a generation, job 0 would stay)
    cluster = Cluster()
    cluster.join(A)
    table = cluster.tables[A]
    per_ack = 5_000
    for first in range(0, 200_000, per_ack):
        done = tuple((ref(seq), PLAIN_SUCCESS) for seq in range(first, first + per_ack))
        table.apply(MessageDelivered(A, MESS_TYPE, encode(Ack(INC, done))), 0.0)
    assert table.remembers(ref(0)) is None
    assert table.remembers(ref(99_999)) is None
    assert table.remembers(ref(100_000)) == PLAIN_SUCCESS
    assert table.remembers(ref(199_999)) == PLAIN_SUCCESS


@given(
    outcomes=st.lists(st.sampled_from([b"r", b"", b"x" * 40]), min_size=1, max_size=12),
    every=st.integers(1, 6),
    repeat=st.integers(0, 2),
)
def test_jobs_finished_together_report_what_they_would_one_by_one(
    outcomes: list[bytes], every: int, repeat: int
) -> None:
    # the same jobs finished one by one or as one JobsFinished: the same outcomes go out,
    # in the same order; only where one ACK ends and the next begins may differ
    reported: list[list[tuple[JobRef, Outcome]]] = []
    for together in (False, True):
        cluster = Cluster(ack_every=every, ack_every_seconds=10.0)
        cluster.join(A)
        table = cluster.tables[A]
        for seq in range(len(outcomes)):
            cluster.send(seq)
        finished = [JobFinished(ref(n), Outcome.success(r)) for n, r in enumerate(outcomes)]
        finished += finished[:repeat]  # a repeat is reported once
        effects: list[Effect] = []
        if together:
            effects += table.apply(JobsFinished(finished), 1.0)
        else:
            for one in finished:
                effects += table.apply(one, 1.0)
        effects += table.apply(Tick(), 11.0)
        acks = [list(send.envelope.outcomes) for send in of_type(effects, SendAck)]
        reported.append([pair for ack in acks for pair in ack])
        if together:
            assert len(acks) <= 2  # at most one for the batch, one for the Tick
    alone, together_ = reported
    assert together_ == alone
    assert [r for r, _ in alone] == [ref(n) for n in range(len(outcomes))]
