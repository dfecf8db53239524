"""The replicated table: targeted cases, then a seeded deterministic simulation.

The simulation (``queue_sim.py``) drives N replicas through a model of Spread's
delivery semantics and checks after every step:

1. **Agreement.** Two members of the same configuration that have passed through the
   same configurations (regular *and* transitional) since a job was delivered to them
   (for a fragmented job: since its first fragment) agree on its owner. This is the
   agreement virtual synchrony can give: members that moved together delivered the
   same messages in the same order. Across a partition merge it does *not* hold for
   jobs from before the merge: each side reassigned the other side's jobs among its own
   members, and after the merge each side keeps its own assignment, so such a job may
   have two owners and run twice (at least once). Nothing can do better without an
   exchange of messages, because neither side knows what the other delivered and
   completed while they were apart.
2. **New slots.** Every replica of a configuration gives each new job slot the same
   owner, whatever its own history (duplicates included); with ``round_robin`` it is
   ``eligible[k mod n]``, exactly the seed rule.
3. **Ownership.** Every outstanding job has at most one owner per replica, that owner is
   in the replica's current view, and a job the replica holds is never orphaned (a
   replica always holds what it could be asked to run).
4. **At most once, as the README says.** A handler starts a job that was started before
   only if, for every earlier run, that run's session was lost (its worker died or
   left) or a partition put the two runners on different sides while the job was
   outstanding (or pending), or one of the two runs was of a copy the producer
   re-sent. A replica is never told to run a job whose run it already has queued or
   running. Nothing else is excused.
5. **Liveness and bounded memory.** After healing every partition and letting every
   handler run, every job that some surviving replica held has been completed and every
   table is empty. A replica that is the oldest session of its configuration keeps no
   job that no member holds (nobody would ever ACK it) past a view change.
6. **Poison jobs.** Replicas that agree on a job's owner under (1) also agree on its
   failover count and on whether it was given up; a given-up job is never run again,
   and only a job whose count passed ``max_failovers`` (drawn per seed) is given up.
7. **Failover.** Jobs are reassigned in delivery order, never to a member that was
   draining while a holder that was not (the checking replica) could take them.
8. **Strangers.** No ACK from a non-member completes anything.

``SPREADQ_SIM_SEEDS=N`` runs N seeds instead of 30 and ``SPREADQ_SIM_STEPS=N`` N steps
each instead of 300; ``SPREADQ_SIM_LONG_STEPS`` sets the long run's steps (2000). A
failure names its seed, and ``Simulation(seed, rule=...)`` replays it exactly.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from queue_sim import Simulation
from test_table_sim_cancel import CancelSimulation

from spreadq.errors import ConfigurationError, LocalProtocolError, PluginError
from spreadq.queue.effects import (
    AnnounceDrain,
    AnnounceHello,
    AnnounceView,
    CancelJob,
    Effect,
    GiveUpJob,
    JobRejected,
    JobsCompleted,
    RunJob,
    SendAck,
    ViewChanged,
)
from spreadq.queue.envelope import (
    MESS_TYPE,
    Ack,
    BatchJobs,
    Drain,
    Hello,
    JobBatch,
    JobSpec,
    decode,
    encode,
    encode_batch,
    encode_fragments,
)
from spreadq.queue.inputs import (
    Busy,
    Input,
    JobFinished,
    JobsFinished,
    JobsStarted,
    JobStarted,
    MessageDelivered,
    StartDraining,
    Tick,
)
from spreadq.queue.jobs import Job, JobRef, Outcome, Status
from spreadq.queue.rules import (
    FillFirst,
    LeastLoaded,
    LoadRule,
    MessageRule,
    Rule,
    RuleState,
    SlotRule,
    Sticky,
    builtin_rules,
)
from spreadq.queue.rules.round_robin import RoundRobin
from spreadq.queue.table import OutstandingTable
from spreadq.queue.view import ChangeCause, LeftGroup, Transitional, ViewInstalled

PID = b"\x01" * 16
INC = b"\x09" * 16
A, B, C, D = "#a#h", "#b#h", "#c#h", "#d#h"
JOIN, LEAVE, DISCONNECT, NETWORK = (
    ChangeCause.JOIN,
    ChangeCause.LEAVE,
    ChangeCause.DISCONNECT,
    ChangeCause.NETWORK,
)


class Cluster:
    """Replicas fed the same events in the same order, by hand."""

    def __init__(self, rule: str | Rule = "round_robin", **options: object) -> None:
        self.rule = builtin_rules()[rule] if isinstance(rule, str) else rule
        self.options = options
        self.tables: dict[str, OutstandingTable] = {}
        self.members: tuple[str, ...] = ()
        self.gid = (1, 100, 0)
        self.mseq = 0
        self.now = 0.0

    def table(self, name: str) -> OutstandingTable:
        return OutstandingTable(name, rule=self.rule, incarnation=INC, **self.options)  # type: ignore[arg-type]

    def feed(self, names: tuple[str, ...], event: Input) -> dict[str, list[Effect]]:
        return {name: self.tables[name].apply(event, self.now) for name in names}

    def view(
        self,
        members: tuple[str, ...],
        cause: ChangeCause,
        changed: str | None = None,
        vs: dict[str, tuple[str, ...]] | None = None,
    ) -> dict[str, list[Effect]]:
        for name in members:
            if name not in self.tables:
                self.tables[name] = self.table(name)
        self.gid = (self.gid[0], self.gid[1], self.gid[2] + 1)
        self.members = members
        return {
            name: self.tables[name].apply(
                ViewInstalled(members, self.gid, cause, changed, vs[name] if vs else None),
                self.now,
            )
            for name in members
        }

    def join(self, name: str) -> dict[str, list[Effect]]:
        return self.view(tuple(sorted((*self.members, name))), JOIN, name)

    def send(
        self, *seqs: int, keys: list[str | None] | None = None, to: tuple[str, ...] | None = None
    ) -> dict[str, list[Effect]]:
        self.mseq += 1
        keyed = keys or [None] * len(seqs)
        pairs = zip(seqs, keyed, strict=True)
        specs = [JobSpec(seq, "work", b"p%d" % seq, key) for seq, key in pairs]
        data = encode_batch(PID, self.mseq, "json", specs)
        return self.feed(to or self.members, MessageDelivered("#prod#h", MESS_TYPE, data))

    def ack(
        self, sender: str, *done: int, to: tuple[str, ...] | None = None
    ) -> dict[str, list[Effect]]:
        outcomes = tuple((JobRef(PID, seq), Outcome.success(b"r%d" % seq)) for seq in done)
        data = encode(Ack(INC, outcomes))
        return self.feed(to or self.members, MessageDelivered(sender, MESS_TYPE, data))

    def owners(self, name: str) -> dict[int, str | None]:
        jobs = self.tables[name].outstanding()
        return {job.ref.seq: job.owner for job in jobs if job.ref.producer_id == PID}


E = TypeVar("E")


def runs(effects: list[Effect]) -> list[int]:
    return [e.ref.seq for e in effects if isinstance(e, RunJob)]


def of_type(effects: list[Effect], kind: type[E]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]


def ref(seq: int) -> JobRef:
    return JobRef(PID, seq)


# --- slots and the seed rule --------------------------------------------------------


def test_seed_scenario_k_mod_n_counting_jobs_not_messages() -> None:
    cluster = Cluster()
    for name in (A, B, C, D):
        cluster.join(name)
    first = cluster.send(*range(10))
    raw = cluster.feed(cluster.members, MessageDelivered("#cprog#h", 17, b"from C"))
    last = cluster.send(10, 11)
    members = (A, B, C, D)
    for name in members:
        assert runs(first[name]) == [k for k in range(10) if members[k % 4] == name]
        # slot 10 is the RAW job (C); jobs 10 and 11 take slots 11 and 12
        assert cluster.owners(name) == {k: members[k % 4] for k in range(10)} | {10: D, 11: A}
    assert runs(last[A]) == [11]
    assert runs(last[D]) == [10]
    (raw_run,) = of_type(raw[C], RunJob)
    assert (raw_run.job.kind, raw_run.job.codec, bytes(raw_run.job.payload)) == (
        "raw:17",
        "raw",
        b"from C",
    )
    assert (raw_run.sender, raw_run.mess_type) == ("#cprog#h", 17)
    # every replica derived the same ref for the RAW job
    raw_refs = {
        tuple(j.ref for j in cluster.tables[n].outstanding() if j.ref.producer_id != PID)
        for n in members
    }
    assert raw_refs == {(raw_run.ref,)}


def test_sticky_gives_each_message_to_the_next_member() -> None:
    # the rule's worked example through the table, with a DRAIN and an ACK between
    # messages (they take no slot, so they are no message of the rule's), a batch of
    # five (run 2: three runs) and a short batch that goes job by job
    cluster = Cluster()
    cluster.rule = Sticky(run=2)
    for name in (A, B, C):
        cluster.join(name)
    members = (A, B, C)
    first = cluster.send(0, 1)  # message 0: A
    cluster.feed(members, MessageDelivered("#cprog#h", 17, b"from C"))  # message 1: B
    cluster.ack(A, 0)
    cluster.send(2, 3, 4, 5, 6)  # message 2: runs C C, A A, B
    cluster.send(7)  # message 3: A
    assert runs(first[A]) == [0, 1]
    for name in members:
        assert cluster.owners(name) == {1: A, 2: C, 3: C, 4: A, 5: A, 6: B, 7: A}
        raw = [j for j in cluster.tables[name].outstanding() if j.ref.producer_id != PID]
        assert [j.owner for j in raw] == [B]


def test_a_replica_builds_only_the_jobs_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # docs/deployment.md#what-to-size: every consumer reads every job; it keeps refs and offsets,
    # and builds a Job for the slots it owns (and later for those it takes over), not for
    # the others
    built: list[int] = []
    build = BatchJobs._build_uniform  # what both jobs[i] and jobs.build(...) call here

    def counting(self: BatchJobs, indexes: Sequence[int], refs: Sequence[JobRef]) -> list[Job]:
        jobs = build(self, indexes, refs)
        built.extend(job.ref.seq for job in jobs)
        return jobs

    monkeypatch.setattr(BatchJobs, "_build_uniform", counting)
    cluster = Cluster()
    for name in (A, B, C, D):
        cluster.join(name)
    effects = cluster.send(*range(8), to=(B,))
    assert built == [1, 5]
    assert [
        (e.job.ref.seq, e.job.kind, bytes(e.job.payload)) for e in of_type(effects[B], RunJob)
    ] == [
        (1, "work", b"p1"),
        (5, "work", b"p5"),
    ]
    cluster.tables[B].apply(ViewInstalled((B, D), (1, 100, 9), DISCONNECT, A), 0.0)
    assert built == [1, 5, 0, 4]  # A's jobs, taken over: B now runs them


def test_slots_restart_after_every_view() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    cluster.send(1, 2, 3)  # slots 0, 1, 2 -> A, B, A
    cluster.join(C)
    cluster.send(4)  # slot 0 of the new view -> A
    assert cluster.owners(C) == {4: A}
    assert cluster.owners(A) == {1: A, 2: B, 3: A, 4: A}


# --- failover -------------------------------------------------------------------------


def test_disconnect_reassigns_in_original_order_over_who_came_with_us() -> None:
    cluster = Cluster()
    for name in (A, B, C):
        cluster.join(name)
    cluster.send(*range(9))  # A: 0 3 6, B: 1 4 7, C: 2 5 8
    effects = cluster.view((A, B), DISCONNECT, C)
    changed = of_type(effects[A], ViewChanged)[0]
    assert [r.seq for r in changed.reassigned] == [2, 5, 8]
    assert [r.seq for r in changed.taken_over] == [2, 8]
    assert runs(effects[A]) == [2, 8]
    assert runs(effects[B]) == [5]
    assert all(e.failover for e in effects[A] if isinstance(e, RunJob))
    assert cluster.owners(A) == cluster.owners(B)


def test_newcomers_get_only_new_work() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    cluster.send(*range(6))  # B owns 1 3 5
    cluster.join(D)
    effects = cluster.view((A, D), LEAVE, B)
    assert runs(effects[A]) == [1, 3, 5]
    assert runs(effects[D]) == []
    assert cluster.owners(D) == {}  # D never saw them
    cluster.send(6, 7)
    assert cluster.owners(D) == {6: A, 7: D}


def test_network_change_uses_our_vs_set() -> None:
    cluster = Cluster()
    for name in (A, B, C):
        cluster.join(name)
    cluster.send(*range(6))  # A 0 3, B 1 4, C 2 5
    cluster.feed((A, B, C), Transitional(cluster.gid))
    cluster.send(6, 7, 8, to=(A,))  # only A's side delivers these: slots 6, 7, 8 -> A B C
    side_a = cluster.view((A,), NETWORK, vs={A: (A,)})
    assert runs(side_a[A]) == [1, 2, 4, 5, 7, 8]
    cluster.members = (B, C)
    side_bc = cluster.view((B, C), NETWORK, vs={B: (B, C), C: (B, C)})
    assert runs(side_bc[B]) == [0]  # A's jobs 0, 3 go to B, C in order
    assert runs(side_bc[C]) == [3]


def test_a_partition_healed_before_it_settled_reassigns_what_the_other_side_missed() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    cluster.feed((A, B), Transitional(cluster.gid))
    cluster.send(0, 1, to=(A,))  # slot 1 -> B, but B is on the other side
    effects = cluster.view((A, B), NETWORK, vs={A: (A,), B: (B,)})
    assert runs(effects[A]) == [1]
    assert cluster.owners(A) == {0: A, 1: A}
    assert cluster.owners(B) == {}


# --- completion -----------------------------------------------------------------------


def test_an_ack_completes_everywhere_and_cancels_our_run() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    cluster.send(0, 1, 2)  # A owns 0 and 2
    cluster.feed((A,), JobStarted(ref(0)))
    effects = cluster.ack(B, 0, 2)
    assert [(e.ref.seq, e.running) for e in of_type(effects[A], CancelJob)] == [
        (0, True),
        (2, False),
    ]
    for name in (A, B):
        (done,) = of_type(effects[name], JobsCompleted)  # one effect for the ACK
        assert done.by == B
        assert [r.seq for r, _ in done.completed] == [0, 2]
        assert cluster.owners(name) == {1: B}
        assert cluster.tables[name].remembers(ref(0)) == Outcome.success(b"r0")


def test_acks_from_non_members_and_for_unknown_jobs_are_ignored() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    cluster.send(0, 1)
    effects = cluster.ack("#gone#h", 0)  # e.g. from an earlier lifetime of the group
    assert effects == {A: [], B: []}
    assert cluster.tables[A].stats.stale_acks == 1
    cluster.ack(B, 42)
    assert cluster.tables[A].stats.unknown_acks == 1
    assert cluster.owners(A) == {0: A, 1: B}
    assert cluster.tables[A].outstanding_count == 2  # every owner's, ours (0) and B's (1)
    cluster.ack(B, 43, 1, 43, 1)  # each time an ACK names a job not outstanding counts
    assert cluster.tables[A].stats.unknown_acks == 4
    assert cluster.owners(A) == {0: A}
    cluster.ack(B, 1)
    assert cluster.tables[A].outstanding_count == 1


def test_a_member_with_no_job_of_its_own_reports_its_position_on_the_longer_interval() -> None:
    cluster = Cluster(
        "fill_first", ack_every=1000, ack_every_seconds=0.05, ack_position_seconds=0.25
    )
    cluster.join(A)
    cluster.join(B)
    cluster.send(0, 1)  # fill_first: both A's, B only follows
    follower, owner = cluster.tables[B], cluster.tables[A]
    assert (follower.backlog, owner.backlog) == (0, 2)
    assert follower.next_deadline() == pytest.approx(0.25)
    assert follower.apply(Tick(), 0.2) == []
    (send,) = of_type(follower.apply(Tick(), 0.25), SendAck)
    assert send.envelope == Ack(INC, (), ((PID, 1),), 0)
    assert owner.next_deadline() == pytest.approx(0.05)  # it holds jobs: its backlog goes
    (send,) = of_type(owner.apply(Tick(), 0.05), SendAck)
    assert send.envelope.backlog == 2


def test_a_follower_builds_no_ref_for_a_batch_others_own_until_it_takes_it_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every member reads every batch: one that only counts it goes by the batch's
    producer and seqs, and builds the refs only when the jobs become its own."""
    cluster = Cluster("fill_first")
    cluster.join(A)
    cluster.join(B)
    real = decode
    batches: dict[str, list[BatchJobs]] = {A: [], B: []}
    effects: dict[str, list[Effect]] = {}
    for name in (A, B):

        def spy(data: bytes, name: str = name) -> object:
            message = real(data)
            if isinstance(message, JobBatch) and isinstance(message.jobs, BatchJobs):
                batches[name].append(message.jobs)
            return message

        monkeypatch.setattr("spreadq.queue.table.decode", spy)
        effects |= cluster.feed((name,), MessageDelivered("#prod#h", MESS_TYPE, _batch(0, 6)))
    ((owned,), (followed,)) = batches[A], batches[B]
    assert runs(effects[A]) == list(range(6))  # fill_first: A's
    assert runs(effects[B]) == []
    assert followed._refs is None  # B counted them without a ref
    assert (list(followed.seqs), followed.producer_id) == (list(range(6)), PID)
    assert owned.refs == [ref(seq) for seq in range(6)]
    taken = cluster.view((B,), DISCONNECT, A)[B]  # A is gone: B takes its jobs over
    assert runs(taken) == list(range(6))
    assert followed.refs == [ref(seq) for seq in range(6)]


def _batch(first: int, count: int) -> bytes:
    """A JOB BATCH of ``count`` jobs from ``PID``, seqs from ``first``."""
    specs = [JobSpec(seq, "work", b"p%d" % seq) for seq in range(first, first + count)]
    return encode_batch(PID, 1, "json", specs)


def test_our_finished_job_is_reported_in_an_ack_with_positions_and_backlog() -> None:
    cluster = Cluster(ack_every=1000, ack_every_seconds=0.05)
    cluster.join(A)
    cluster.send(0, 1)
    table = cluster.tables[A]
    assert table.backlog == 2
    assert table.next_deadline() == pytest.approx(0.05)
    assert table.apply(Tick(), 0.01) == []
    assert table.apply(JobFinished(ref(0), Outcome.success(b"ok")), 0.02) == []
    (send,) = of_type(table.apply(Tick(), 0.05), SendAck)
    assert send.envelope == Ack(INC, ((ref(0), Outcome.success(b"ok")),), ((PID, 1),), 1)
    assert table.next_deadline() is None


def test_an_ack_is_due_after_n_messages_read_however_many_jobs_they_pack() -> None:
    cluster = Cluster(ack_every=3)
    cluster.join(A)
    assert of_type(cluster.send(0, 1, 2, 3, 4)[A], SendAck) == []  # five jobs, one message
    assert of_type(cluster.send(5)[A], SendAck) == []
    (send,) = of_type(cluster.send(6)[A], SendAck)
    assert send.envelope.positions == ((PID, 3),)
    assert send.envelope.backlog == 7


def test_a_result_too_big_for_an_ack_is_reported_as_a_failure() -> None:
    cluster = Cluster(ack_every=1)
    cluster.join(A)
    cluster.send(0)
    finished = JobFinished(ref(0), Outcome.success(b"x" * 200_000))
    (send,) = of_type(cluster.tables[A].apply(finished, 1.0), SendAck)
    ((_, outcome),) = send.envelope.outcomes
    assert (outcome.status, outcome.error_type) == (Status.FAILED, "MessageTooLarge")


def test_several_finished_at_once_are_reported_in_order_and_once() -> None:
    cluster = Cluster(ack_every=1000)
    cluster.join(A)
    cluster.send(0, 1, 2)
    big = Outcome.success(b"x" * 200_000, attempts=2)
    finished = [
        JobFinished(ref(2), Outcome.success(b"2")),
        JobFinished(ref(0), big),
        JobFinished(ref(2), Outcome.success(b"again")),  # reported already: ignored
        JobFinished(ref(9), Outcome.success(b"9")),  # not outstanding: ignored
    ]
    table = cluster.tables[A]
    assert of_type(table.apply(JobsFinished(finished), 0.01), SendAck) == []  # not yet due
    assert table.backlog == 1  # job 1 still runs
    (send,) = of_type(table.apply(Tick(), 1.0), SendAck)
    (two, zero) = send.envelope.outcomes
    assert two == (ref(2), Outcome.success(b"2"))
    assert zero[0] == ref(0)
    assert (zero[1].error_type, zero[1].attempts) == ("MessageTooLarge", 2)


# --- duplicates -----------------------------------------------------------------------


def test_a_resent_outstanding_job_moves_to_its_new_slot_without_a_second_run() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    cluster.send(0, 1)  # 0 -> A, 1 -> B
    cluster.feed((A,), JobStarted(ref(0)))
    effects = cluster.send(2, 0)  # slot 2 -> A (job 2), slot 3 -> B (job 0 again)
    assert runs(effects[B]) == [0]  # B now owns it and must run it...
    assert of_type(effects[A], CancelJob) == []  # ...while A's run goes on and may win
    assert cluster.owners(A) == cluster.owners(B) == {1: B, 2: A, 0: B}
    assert cluster.tables[A].stats.duplicates == 1
    # a job that stays with its owner is not run again
    again = cluster.send(5, 1)  # slot 4 -> A, slot 5 -> B: job 1 stays with B
    assert (runs(again[A]), runs(again[B])) == ([5], [])


def test_a_run_that_moved_away_is_still_cancelled_by_the_ack() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    cluster.send(0)  # slot 0 -> A
    cluster.feed((A,), JobStarted(ref(0)))
    cluster.send(0)  # re-sent: slot 1 -> B; A's run goes on
    assert cluster.tables[A].backlog == 0
    effects = cluster.ack(B, 0)
    assert of_type(effects[A], CancelJob) == [CancelJob(ref(0), running=True)]
    assert of_type(effects[B], CancelJob) == [CancelJob(ref(0), running=False)]


def test_jobs_started_together_are_each_started() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    cluster.send(0, 1, 2)  # 0 -> A, 1 -> B, 2 -> A
    cluster.feed((A,), JobsStarted([ref(0), ref(1), ref(7)]))  # B's, unknown: no-ops
    cluster.send(0, 2)  # both re-sent: slot 3 -> B, slot 4 -> A
    effects = cluster.ack(B, 0)
    assert of_type(effects[A], CancelJob) == [CancelJob(ref(0), running=True)]
    effects = cluster.ack(A, 2)  # A's run of job 2 was queued, never started
    assert of_type(effects[A], CancelJob) == [CancelJob(ref(2), running=False)]


def test_a_queued_run_that_moved_away_is_dropped() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    cluster.send(0)  # slot 0 -> A, not started
    effects = cluster.send(0)  # slot 1 -> B
    assert of_type(effects[A], CancelJob) == [CancelJob(ref(0), running=False)]
    assert runs(effects[B]) == [0]


def test_a_resent_completed_job_is_answered_from_memory_by_its_owner() -> None:
    cluster = Cluster(ack_every=1)
    cluster.join(A)
    cluster.join(B)
    cluster.send(0)
    cluster.ack(A, 0)
    cluster.join(C)  # C does not remember job 0
    effects = cluster.send(7, 8, 0)  # slots 0, 1, 2 -> A, B, C
    assert runs(effects[C]) == [0]  # C runs it once more: at least once
    assert (runs(effects[A]), runs(effects[B])) == ([7], [8])
    assert {cluster.owners(n)[0] for n in (A, B, C)} == {C}
    assert cluster.tables[A].outstanding()[-1].duplicate
    cluster.ack(C, 0)
    effects = cluster.send(9, 10, 11, 0)  # slots 3..6 -> A, B, C, A: job 0 to A
    assert runs(effects[A]) == [9]  # A remembers job 0 and does not run it
    (send,) = of_type(effects[A], SendAck)
    assert (ref(0), Outcome.success(b"r0")) in send.envelope.outcomes


def test_a_resent_job_is_recognised_from_either_generation_of_the_history() -> None:
    # history_size 3: outcomes 0, 2 and 1 fill a generation, 3 starts the next; so job 0
    # is remembered in the previous generation only, job 3 in the current one
    cluster = Cluster(ack_every=1, history_size=3)
    cluster.join(A)
    cluster.join(B)
    cluster.send(0, 1, 2, 3)  # A owns 0 and 2, B owns 1 and 3
    cluster.ack(A, 0, 2)
    cluster.ack(B, 1, 3)
    effects = cluster.send(0, 3)  # both again: slots 4 and 5, to A and to B
    assert runs(effects[A]) == runs(effects[B]) == []  # neither runs again
    for name in (A, B):
        assert cluster.tables[name].stats.duplicates == 2
    (send,) = of_type(effects[A], SendAck)
    assert (ref(0), Outcome.success(b"r0")) in send.envelope.outcomes
    (send,) = of_type(effects[B], SendAck)
    assert (ref(3), Outcome.success(b"r3")) in send.envelope.outcomes
    # until its owner's ACK is read, B holds job 0 as an outstanding copy of a done job
    (copy,) = [job for job in cluster.tables[B].outstanding() if job.ref == ref(0)]
    assert copy.duplicate


# --- envelopes the owner cannot read --------------------------------------------------


def test_a_corrupt_envelope_takes_its_declared_slots_and_fails_at_its_owner() -> None:
    cluster = Cluster(ack_every=1)
    cluster.join(A)
    cluster.join(B)
    bad = b"SQ\x02\x01\x03\x00" + b"from a newer version"
    effects = cluster.feed((A, B), MessageDelivered("#p#h", MESS_TYPE, bad))
    (rejected,) = of_type(effects[A], JobRejected)  # one effect (one log line) per message
    assert rejected.count == 2  # slots 0 and 2
    (send,) = of_type(effects[A], SendAck)
    assert [o.error_type for _, o in send.envelope.outcomes] == ["EnvelopeError", "EnvelopeError"]
    assert "version 2" in send.envelope.outcomes[0][1].error_message
    assert [r.count for r in of_type(effects[B], JobRejected)] == [1]
    after = cluster.send(0)  # counting went on: slot 3 -> B
    assert runs(after[B]) == [0]
    cluster.feed((A, B), MessageDelivered(A, MESS_TYPE, encode(send.envelope)))
    assert [j.owner for j in cluster.tables[B].outstanding()] == [B, B]


def test_an_envelope_declaring_every_slot_gives_one_rejection_per_replica() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    bad = b"SQ\x02\x01\xff\xff" + b"0123456789"  # 16 bytes, 65,535 slots
    effects = cluster.feed((A, B), MessageDelivered("#p#h", MESS_TYPE, bad))
    assert [r.count for r in of_type(effects[A], JobRejected)] == [32_768]
    assert [r.count for r in of_type(effects[B], JobRejected)] == [32_767]


# --- poison jobs: a job whose owners keep leaving -------------------------------------


def given_up(effects: list[Effect]) -> list[GiveUpJob]:
    return of_type(effects, GiveUpJob)


def test_a_job_whose_owners_leave_more_than_max_failovers_times_is_given_up() -> None:
    cluster = Cluster(max_failovers=1, ack_every=1)
    for name in (A, B, C, D):
        cluster.join(name)
    cluster.send(0, 1)  # 0 -> A, 1 -> B
    first = cluster.view((B, C, D), DISCONNECT, A)  # 0 taken over: failover 1 of 1
    assert runs(first[B]) + runs(first[C]) + runs(first[D]) == [0]
    assert not any(given_up(e) for e in first.values())
    owner = cluster.owners(B)[0]
    assert owner is not None
    rest = tuple(m for m in (B, C, D) if m != owner)
    second = cluster.view(rest, DISCONNECT, owner)  # failover 2: more than 1
    new_owner = cluster.owners(rest[0])[0]
    assert new_owner is not None
    (give_up,) = given_up(second[new_owner])
    assert (give_up.ref, give_up.failovers, give_up.limit) == (ref(0), 2, 1)
    assert not runs(second[new_owner])
    for name in rest:  # every replica marks it at the same view, only the owner acts
        (changed,) = of_type(second[name], ViewChanged)
        assert changed.given_up == (ref(0),)
        (job,) = [j for j in cluster.tables[name].outstanding() if j.ref == ref(0)]
        assert (job.failovers, job.given_up) == (2, True)
        assert cluster.tables[name].stats.given_up == 1
        if name != new_owner:
            assert not given_up(second[name])
    # the owner reports the failure like any outcome; its ACK completes the job
    lost = Outcome.failure("spreadq.errors.WorkerLost", "given up", 1)
    cluster.feed((new_owner,), JobStarted(ref(0)))
    (send,) = of_type(cluster.feed((new_owner,), JobFinished(ref(0), lost))[new_owner], SendAck)
    assert send.envelope.outcomes == ((ref(0), lost),)
    cluster.feed(rest, MessageDelivered(new_owner, MESS_TYPE, encode(send.envelope)))
    assert not any(cluster.tables[name].is_outstanding(ref(0)) for name in rest)


def test_the_failover_count_moves_with_a_resent_job_and_none_means_no_limit() -> None:
    limited = Cluster(max_failovers=0)
    unlimited = Cluster()
    for cluster in (limited, unlimited):
        cluster.join(A)
        cluster.join(B)
        cluster.send(0)  # A
        cluster.join(C)
        cluster.view((B, C), DISCONNECT, A)  # B's and C's count: 1
    assert [j.failovers for j in limited.tables[B].outstanding()] == [1]
    assert [j.failovers for j in limited.tables[C].outstanding()] == []  # joined after it
    assert unlimited.tables[B].outstanding()[0].given_up is False
    assert limited.tables[B].outstanding()[0].given_up is True
    limited.send(0)  # re-sent: it moves to slot 0 of this view (B), its count with it
    assert [j.failovers for j in limited.tables[B].outstanding()] == [1]
    assert [j.failovers for j in limited.tables[C].outstanding()] == [0]


# --- draining -------------------------------------------------------------------------


def test_drain_removes_a_member_from_new_work_until_the_next_view() -> None:
    cluster = Cluster()
    for name in (A, B, C):
        cluster.join(name)
    (announce,) = cluster.tables[B].apply(StartDraining(), 0.0)
    assert isinstance(announce, AnnounceDrain)
    cluster.feed(cluster.members, MessageDelivered(B, MESS_TYPE, encode(announce.envelope)))
    assert cluster.tables[A].draining == frozenset({B})
    cluster.send(0, 1, 2, 3)  # eligible A, C: slots 0..3 -> A C A C
    assert cluster.owners(A) == {0: A, 1: C, 2: A, 3: C}
    # the next view forgets drains; B says it again; failover skips B meanwhile
    effects = cluster.view((A, B), DISCONNECT, C)
    assert cluster.tables[A].draining == frozenset()
    assert runs(effects[A]) == [1, 3]
    assert of_type(effects[B], AnnounceDrain)


# --- fragments ------------------------------------------------------------------------


def test_fragments_take_one_slot_at_the_last_one_and_newcomers_do_not_hold_them() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    payload = bytes(range(256)) * 2
    parts = encode_fragments(PID, 1, "json", JobSpec(50, "big", payload, "k"), max_size=200)
    assert len(parts) >= 3
    cluster.feed((A, B), MessageDelivered("#p#h", MESS_TYPE, parts[0]))
    cluster.join(C)  # C misses the first fragment
    for part in parts[1:-1]:
        assert cluster.feed((A, B, C), MessageDelivered("#p#h", MESS_TYPE, part)) == {
            A: [],
            B: [],
            C: [],
        }
    effects = cluster.feed((A, B, C), MessageDelivered("#p#h", MESS_TYPE, parts[-1]))
    # slot 0 of view (A, B, C) would go to A, who holds it
    (run,) = of_type(effects[A], RunJob)
    assert bytes(run.job.payload) == payload
    assert (run.job.kind, run.job.key) == ("big", "k")
    (c_job,) = cluster.tables[C].outstanding()
    assert (c_job.held, c_job.owner) == (False, None)
    cluster.send(1, 2)  # counting agrees everywhere: slots 1, 2 -> B, C
    assert {cluster.owners(n)[2] for n in (A, B, C)} == {C}


def test_a_straddling_job_whose_slot_falls_to_a_newcomer_goes_to_a_holder() -> None:
    cluster = Cluster()
    cluster.join(B)
    cluster.join(C)
    parts = encode_fragments(PID, 1, "json", JobSpec(60, "big", b"z" * 300), max_size=200)
    cluster.feed((B, C), MessageDelivered("#p#h", MESS_TYPE, parts[0]))
    cluster.join(A)  # members (A, B, C): slot 0 -> A, who lacks the head
    for part in parts[1:]:
        effects = cluster.feed((A, B, C), MessageDelivered("#p#h", MESS_TYPE, part))
    assert runs(effects[B]) == [60]  # candidates B, C; index 0 -> B
    assert runs(effects[A]) == []
    assert cluster.owners(B)[60] == cluster.owners(C)[60] == B


def test_a_job_we_do_not_hold_is_forgotten_when_its_last_holder_leaves() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    parts = encode_fragments(PID, 1, "json", JobSpec(70, "big", b"y" * 300), max_size=200)
    cluster.feed((A, B), MessageDelivered("#p#h", MESS_TYPE, parts[0]))
    cluster.join(C)  # C misses the head: it will never hold the job, only wait for its ACK
    for part in parts[1:]:
        cluster.feed((A, B, C), MessageDelivered("#p#h", MESS_TYPE, part))
    (job,) = cluster.tables[C].outstanding()
    assert not job.held
    cluster.view((B, C), DISCONNECT, A)
    assert [j.ref for j in cluster.tables[C].outstanding()] == [ref(70)]  # B may still ACK
    cluster.view((C,), DISCONNECT, B)  # nobody left who holds it: no ACK will ever come
    assert cluster.tables[C].outstanding() == []


def test_members_that_all_joined_after_a_head_forget_the_job_with_its_last_holder() -> None:
    # found by the simulation: C and D both missed the head, so neither will ever ACK
    # it; before the fix each kept the entry while the other stayed (a leak). D cannot
    # tell whether C, already there when D joined, holds it: D keeps it while C stays
    cluster = Cluster()
    cluster.join(A)
    parts = encode_fragments(PID, 1, "json", JobSpec(71, "big", b"x" * 300), max_size=200)
    cluster.feed((A,), MessageDelivered("#p#h", MESS_TYPE, parts[0]))
    cluster.join(C)
    cluster.join(D)
    for part in parts[1:]:
        cluster.feed((A, C, D), MessageDelivered("#p#h", MESS_TYPE, part))
    assert [j.held for j in cluster.tables[C].outstanding()] == [False]
    cluster.view((C, D), DISCONNECT, A)
    assert cluster.tables[C].outstanding() == []
    assert [j.ref for j in cluster.tables[D].outstanding()] == [ref(71)]
    cluster.view((D,), LEAVE, C)
    assert cluster.tables[D].outstanding() == []


# --- lifecycle ------------------------------------------------------------------------


def test_left_group_cancels_our_runs_and_forgets_the_view() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.send(0, 1)
    cluster.feed((A,), JobStarted(ref(0)))
    effects = cluster.tables[A].apply(LeftGroup(), 1.0)
    assert effects == [CancelJob(ref(0), running=True), CancelJob(ref(1), running=False)]
    assert cluster.tables[A].view is None
    assert cluster.tables[A].outstanding() == []
    assert cluster.tables[A].apply(MessageDelivered("#p#h", MESS_TYPE, b"x"), 1.0) == []


def test_view_announcements() -> None:
    cluster = Cluster(capacity=4)
    effects = cluster.join(B)
    assert of_type(effects[B], AnnounceView)
    effects = cluster.join(A)
    (view,) = of_type(effects[A], AnnounceView)
    assert (view.envelope.members, view.envelope.group_id) == ((A, B), cluster.gid)
    assert not of_type(effects[B], AnnounceView)
    hello = of_type(effects[B], AnnounceHello)[0]
    assert hello.envelope.capacity == 4
    assert isinstance(effects[A][0], ViewChanged)


def test_an_incarnation_is_16_bytes() -> None:
    with pytest.raises(ConfigurationError):
        OutstandingTable(A, rule=builtin_rules()["round_robin"], incarnation=b"short")


def test_a_view_without_us_is_refused() -> None:
    table = OutstandingTable(A, rule=builtin_rules()["round_robin"], incarnation=INC)
    with pytest.raises(LocalProtocolError):
        table.apply(ViewInstalled((B,), (1, 1, 1), JOIN, B), 0.0)


def test_a_rule_that_returns_a_stranger_is_a_plugin_error() -> None:
    class Stranger:
        name = "stranger"

        def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
            return "#nobody#h"

    table = OutstandingTable(A, rule=Stranger(), incarnation=INC)
    table.apply(ViewInstalled((A,), (1, 1, 1), JOIN, A), 0.0)
    with pytest.raises(PluginError, match="stranger"):
        table.apply(MessageDelivered("#p#h", MESS_TYPE, b"raw"), 0.0)


def test_a_rule_that_never_reads_the_job_and_returns_a_stranger_is_refused_naming_both() -> None:
    class JoblessStranger:
        name = "jobless-stranger"

        def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
            return "#nobody#h"

        def owner_without_job(self, members: tuple[str, ...], state: RuleState) -> str:
            return "#nobody#h"

    table = OutstandingTable(A, rule=JoblessStranger(), incarnation=INC)
    table.apply(ViewInstalled((A,), (1, 1, 1), JOIN, A), 0.0)
    batch = encode_batch(PID, 1, "json", [JobSpec(0, "work", b"p")])
    with pytest.raises(PluginError) as refused:
        table.apply(MessageDelivered("#p#h", MESS_TYPE, batch), 0.0)
    assert refused.value.plugin == "jobless-stranger"
    assert "rule returned '#nobody#h', not one of ('#a#h',)" in str(refused.value)


def test_an_empty_batch_takes_no_slot() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    effects = cluster.send()
    assert effects == {A: [], B: []}
    effects = cluster.send(0, 1)
    assert (runs(effects[A]), runs(effects[B])) == ([0], [1])  # slots 0 and 1 still


def test_a_batch_goes_on_past_a_copy_of_a_job_still_outstanding() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.join(B)
    cluster.send(0)  # slot 0: A
    effects = cluster.send(5, 0, 6)  # slots 1, 2, 3: B, A (0 again, still running), B
    assert runs(effects[B]) == [5, 6]  # the jobs after the copy take their slots
    assert runs(effects[A]) == []  # A keeps the run of 0 it has
    assert cluster.owners(A) == cluster.owners(B) == {0: A, 5: B, 6: B}
    effects = cluster.send(7, 8, 0)  # slots 4, 5, 6: A, B, A... 0 moves to A's slot 6
    assert runs(effects[A]) == [7]
    cluster.join(C)
    effects = cluster.send(9, 0)  # slots 0, 1 of the new view: A, B; 0 moves to B
    (run,) = of_type(effects[B], RunJob)
    assert run.ref == ref(0)
    assert run.sender == "#prod#h"  # the copy's sender, as any job's
    assert run.duplicate


def test_least_loaded_counts_outstanding_jobs_of_this_view() -> None:
    cluster = Cluster("least_loaded")
    for name in (A, B, C):
        cluster.join(name)
    cluster.send(1, 2, 3)  # A B C
    cluster.ack(B, 2)
    cluster.send(4, 5)  # B (0), then A (A, B, C all at 1)
    assert cluster.owners(C) == {1: A, 3: C, 4: B, 5: A}


def test_fill_first_fills_members_in_list_order_and_counts_a_block_s_loads() -> None:
    # batches of four or more enter as blocks: their loads are counted a member at a
    # time and released by the ACKs' runs, on every replica alike
    cluster = Cluster(FillFirst(room=2))
    for name in (A, B, C):
        cluster.join(name)
    cluster.send(1, 2, 3, 4)  # A A B B
    cluster.ack(A, 1, 2)  # A has room again
    cluster.send(5, 6, 7, 8)  # A A C C
    cluster.send(9, 10, 11, 12)  # all full at 2: the least loaded, ties by list order
    expected = {3: B, 4: B, 5: A, 6: A, 7: C, 8: C, 9: A, 10: B, 11: C, 12: A}
    assert cluster.owners(A) == cluster.owners(B) == cluster.owners(C) == expected
    cluster.ack(C, 7, 11)  # not a run of the block: its jobs complete one by one
    cluster.ack(B, 4)
    cluster.send(13, 14, 15, 16)  # loads A 4, B 2, C 1: C has room, then the least loaded
    owners = {seq: cluster.owners(A)[seq] for seq in (13, 14, 15, 16)}
    assert owners == {13: C, 14: B, 15: C, 16: B}
    assert cluster.owners(A) == cluster.owners(B) == cluster.owners(C)


def test_a_busy_member_announces_capacity_0_and_fill_first_passes_over_it() -> None:
    # the worker says when its jobs wait too long for a slot (Busy): its table announces
    # capacity 0 once, every replica then gives the next jobs to the next member, and a
    # new view (which forgets every capacity) hears the 0 again until the worker is ready
    cluster = Cluster(FillFirst(), capacity=4)
    assert cluster.table(A).apply(Busy(True), 0.0) == []  # no view: nobody to tell
    for name in (A, B, C):
        cluster.join(name)

    def told(effects: dict[str, list[Effect]]) -> Hello:
        (hello,) = of_type(effects[A], AnnounceHello)
        cluster.feed(cluster.members, MessageDelivered(A, MESS_TYPE, encode(hello.envelope)))
        return hello.envelope

    assert told(cluster.feed((A,), Busy(True))).capacity == 0
    assert cluster.feed((A,), Busy(True)) == {A: []}  # said once
    cluster.send(1, 2)
    assert told(cluster.join(D)).capacity == 0  # every view's HELLO says 0 while busy
    cluster.send(3, 4, 5, 6)
    assert told(cluster.feed((A,), Busy(False))).capacity == 4
    cluster.send(7)
    expected = {1: B, 2: B, 3: B, 4: B, 5: B, 6: B, 7: A}
    assert cluster.owners(A) == cluster.owners(B) == cluster.owners(C) == expected
    assert cluster.owners(D) == {seq: owner for seq, owner in expected.items() if seq > 2}


def test_jobs_before_mine_is_the_room_the_rule_leaves_before_us() -> None:
    cluster = Cluster(FillFirst(room=3))
    for name in (A, B, C):
        cluster.join(name)
    before = {name: cluster.tables[name].jobs_before_mine() for name in (A, B, C)}
    assert before == {A: 0, B: 3, C: 6}
    cluster.send(1, 2, 3, 4)  # A A A B: A is full, B has 2 left
    before = {name: cluster.tables[name].jobs_before_mine() for name in (A, B, C)}
    assert before == {A: 0, B: 0, C: 2}
    assert all(table.jobs_delivered == 4 for table in cluster.tables.values())
    rr = Cluster()  # a rule that cannot say: never more than 0
    rr.join(A)
    rr.join(B)
    assert rr.tables[B].jobs_before_mine() == rr.tables[A].jobs_before_mine() == 0


def test_drained_events_are_only_from_members() -> None:
    cluster = Cluster()
    cluster.join(A)
    cluster.feed((A,), MessageDelivered("#stranger#h", MESS_TYPE, encode(Drain(INC))))
    assert cluster.tables[A].draining == frozenset()


# --- the simulation -------------------------------------------------------------------

SEEDS = int(os.environ.get("SPREADQ_SIM_SEEDS", "30"))
STEPS = int(os.environ.get("SPREADQ_SIM_STEPS", "300"))
LONG_STEPS = int(os.environ.get("SPREADQ_SIM_LONG_STEPS", "2000"))
RULES = ("round_robin", "key_affinity", "least_loaded")


@pytest.mark.parametrize("seed", range(SEEDS))
def test_simulation(seed: int) -> None:
    sim = Simulation(seed, rule=RULES[seed % 3])
    for _ in range(STEPS):
        sim.step()
    sim.quiesce()
    sim.check_liveness()
    assert sim.checked_slots > 0
    assert sim.given_up == 0 or sim.max_failovers is not None


def test_the_simulation_generates_what_extended_virtual_synchrony_allows() -> None:
    # over the CI seeds: messages delivered on both sides of a partition, member names
    # reused by a later session, envelopes from non-members (all ignored)
    totals = {"both_sides": 0, "reused": 0, "forged": 0}
    for seed in range(10):
        sim = Simulation(seed, rule=RULES[seed % 3])
        for _ in range(STEPS):
            sim.step()
        for name in totals:
            totals[name] += getattr(sim, name)
    assert all(totals.values()), totals


@pytest.mark.parametrize("seed", [1000])
def test_a_long_simulation_keeps_every_table_bounded(seed: int) -> None:
    # a long run with churn: every step checks the invariants; at the end every table
    # is empty (an entry nobody will ACK is forgotten, not kept), and no table ever
    # held more entries than the jobs on their way at once could explain
    sim = Simulation(seed, rule=RULES[seed % 3])
    for _ in range(LONG_STEPS):
        sim.step()
    sim.quiesce()
    sim.check_liveness()
    assert sim.peak_entries < 200


@pytest.mark.parametrize("seed", range(1, SEEDS, 3))
def test_simulation_under_sticky(seed: int) -> None:
    # the seeds key_affinity runs above, under sticky: each new slot goes to its
    # message's owner at every replica, and every job completes after the partitions heal
    sim = Simulation(seed, rule="sticky")
    for _ in range(STEPS):
        sim.step()
    sim.quiesce()
    sim.check_liveness()
    assert sim.checked_slots > 0


@pytest.mark.parametrize(("room", "busy"), [(2, False), (4, True)], ids=["room2", "busy"])
@pytest.mark.parametrize("seed", range(2, SEEDS, 3))
def test_simulation_under_fill_first(seed: int, room: int, busy: bool) -> None:
    # the seeds least_loaded runs above, under fill_first. With room for two jobs work
    # spills down the list and comes back as ACKs free the first members; with busy
    # members, they say now and then that they are busy (capacity 0) or ready again, the
    # HELLOs go out in the order with the jobs and fill_first passes over the busy ones.
    # Either way every replica of a configuration gives each slot the same owner, and
    # every job completes
    sim = Simulation(seed, rule=FillFirst(room=room), busy=busy)
    for _ in range(STEPS):
        sim.step()
    sim.quiesce()
    sim.check_liveness()
    assert sim.checked_slots > 0


def test_busy_members_of_the_simulation_give_jobs_back_and_others_run_them() -> None:
    # over the busy seeds above: members that say they are busy take queued jobs out of
    # their queues and give them back (RELEASE); where it lands every replica deals them
    # to the same members, some start elsewhere, the rest come back to their giver, and
    # every job still completes (the invariants are checked after every step)
    given = run_elsewhere = 0
    # at least seeds 2 and 5 (scripts/mutate runs 5 seeds): in seed 2 alone every job
    # given back happens to land on its giver again, and the claim needs one that does not
    for seed in range(2, max(SEEDS, 8), 3):
        sim = Simulation(seed, rule=FillFirst(room=4), busy=True)
        for _ in range(STEPS):
            sim.step()
        sim.quiesce()
        sim.check_liveness()
        given += sim.given_back
        run_elsewhere += sim.run_elsewhere
    assert given > run_elsewhere > 0


def test_the_simulation_gives_up_jobs_whose_owners_keep_leaving() -> None:
    # seed 20 draws max_failovers=0 and crashes members holding jobs: every replica
    # agrees on each job's failover count, and the given-up jobs still complete
    sim = Simulation(20, rule=RULES[20 % 3])
    for _ in range(300):
        sim.step()
    sim.quiesce()
    sim.check_liveness()
    assert sim.max_failovers == 0
    assert sim.given_up > 0


@dataclass(frozen=True)
class OneSlotAtATime:
    """A rule (``round_robin`` unless told) without its :class:`SlotRule`,
    :class:`MessageRule` or :class:`LoadRule` method: the table asks it slot by slot."""

    rule: RoundRobin | Sticky | LeastLoaded | FillFirst = field(default_factory=RoundRobin)

    @property
    def name(self) -> str:
        return self.rule.name

    def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
        return self.rule.owner(members, state, job)

    def owner_without_job(self, members: tuple[str, ...], state: RuleState) -> str:
        return self.rule.owner_without_job(members, state)


def _simulation(variant: str, seed: int, rule: str | Rule = "round_robin") -> Simulation:
    if variant == "cancel":
        return CancelSimulation(seed, rule=rule)
    return Simulation(seed, rule=rule, dedupe=variant == "dedupe")


BATCH_RULES: dict[str, Rule] = {
    "round_robin": RoundRobin(),
    "sticky": Sticky(),
    "least_loaded": LeastLoaded(),
    "fill_first": FillFirst(room=2),  # a small room: the work spills in every run
}


@pytest.mark.parametrize("rule", list(BATCH_RULES))
@pytest.mark.parametrize("variant", ["plain", "cancel", "dedupe"])
@pytest.mark.parametrize("seed", range(0, SEEDS, 3))  # the seeds that run round_robin
def test_a_batch_rule_assigns_a_batch_as_it_would_slot_by_slot(
    seed: int, variant: str, rule: str
) -> None:
    # batches of jobs others own enter as blocks by batch, as entries slot by slot; the
    # tables must not tell the two apart, through views, ACKs, CANCELs, re-sent jobs and
    # dedupe keys. Also: a simulation is a function of its seed (the same steps and log).
    by_batch = _simulation(variant, seed, BATCH_RULES[rule])
    by_slot = _simulation(variant, seed, BATCH_RULES[rule])
    _same_by_batch_and_by_slot(by_batch, by_slot, BATCH_RULES[rule])


@pytest.mark.parametrize("seed", range(0, SEEDS, 3))
def test_fill_first_with_busy_members_assigns_a_batch_as_it_would_slot_by_slot(
    seed: int,
) -> None:
    rule = FillFirst(room=4)
    by_batch = Simulation(seed, rule=rule, busy=True)
    by_slot = Simulation(seed, rule=rule, busy=True)
    _same_by_batch_and_by_slot(by_batch, by_slot, rule)


def _same_by_batch_and_by_slot(by_batch: Simulation, by_slot: Simulation, rule: Rule) -> None:
    """Run two simulations of one seed, ``by_slot`` asking ``rule`` slot by slot, and
    check after every step that their tables hold the same jobs and owners."""
    by_slot.rule = OneSlotAtATime(rule)  # type: ignore[arg-type]
    for replica in by_slot.replicas.values():  # made before the rule was swapped
        table = replica.table
        table._slots = table._message_owners = table._load_owners = None
    assert isinstance(by_batch.rule, SlotRule | MessageRule | LoadRule)
    assert not isinstance(by_slot.rule, SlotRule | MessageRule | LoadRule)
    for _ in range(STEPS):
        by_batch.step()
        by_slot.step()
        assert by_batch.log == by_slot.log
        assert by_batch.replicas.keys() == by_slot.replicas.keys()
        for name, replica in by_batch.replicas.items():
            assert replica.table.outstanding() == by_slot.replicas[name].table.outstanding()
            assert replica.queued == by_slot.replicas[name].queued
    assert by_batch.checked_slots == by_slot.checked_slots > 0


def test_a_batch_that_names_a_job_twice_is_entered_as_slot_by_slot() -> None:
    # the second copy is a job re-sent while outstanding: it moves to its own slot,
    # whether the batch is assigned at once (round_robin) or slot by slot
    seen = []
    for rule in (RoundRobin(), OneSlotAtATime()):
        cluster = Cluster()
        cluster.rule = rule
        cluster.join(A)
        cluster.join(B)
        effects = cluster.send(0, 1, 2, 1, 3, 4, 5, 6)  # slot 3 -> B: job 1 stays with B
        seen.append((cluster.tables[A].outstanding(), runs(effects[A]), runs(effects[B])))
        assert cluster.owners(A) == {0: A, 2: A, 1: B, 3: A, 4: B, 5: A, 6: B}
        assert [job.ref.seq for job in cluster.tables[A].outstanding()] == [0, 2, 1, 3, 4, 5, 6]
        assert cluster.tables[A].stats.duplicates == 1
    assert seen[0] == seen[1]
    assert seen[0][1:] == ([0, 2, 3, 5], [1, 4, 6])  # job 1 runs once


def test_jobs_of_other_members_entered_together_answer_like_entries() -> None:
    # round_robin enters a batch's jobs that others own as one value: the table's
    # questions about them are answered as for any entry, and they complete by ACK
    cluster = Cluster()
    for name in (A, B, C):
        cluster.join(name)
    cluster.send(*range(9))  # A: 0 3 6, B: 1 4 7, C: 2 5 8
    table = cluster.tables[A]
    assert [table.owner_of(ref(seq)) for seq in range(9)] == [A, B, C] * 3
    assert table.sender_of(ref(4)) == "#prod#h"
    assert table.duplicate_of(ref(4)) is None
    assert [job.slot for job in table.outstanding()] == list(range(9))
    cluster.ack(B, 1, 4)
    assert table.owner_of(ref(4)) is None
    assert not table.is_outstanding(ref(1))
    assert table.owner_of(ref(7)) == B
    assert [job.ref.seq for job in table.outstanding()] == [0, 2, 3, 5, 6, 7, 8]
    cluster.view((A, B), DISCONNECT, C)  # C's jobs 2, 5, 8 go to A and B in order
    assert cluster.owners(A) == cluster.owners(B) == {0: A, 2: A, 3: A, 5: B, 6: A, 7: B, 8: A}


def test_a_slot_rule_that_gives_strangers_or_too_few_owners_is_refused() -> None:
    class Short:
        name = "short"

        def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
            return members[0]

        def owner_without_job(self, members: tuple[str, ...], state: RuleState) -> str:
            return members[0]

        def owners(self, members: tuple[str, ...], first: int, count: int) -> list[str]:
            return [members[0]] * (count - 1) + ["#nobody#h"] * (self.name == "stranger")

    batch = encode_batch(PID, 1, "json", [JobSpec(seq, "work", b"p") for seq in range(8)])
    why = {
        "short": "owners() gave 7 for 8 slots",
        "stranger": "owners() returned ['#nobody#h'], not one of ('#a#h',)",
    }
    for name, reason in why.items():
        rule = Short()
        rule.name = name
        table = OutstandingTable(A, rule=rule, incarnation=INC)
        table.apply(ViewInstalled((A,), (1, 1, 1), JOIN, A), 0.0)
        with pytest.raises(PluginError) as refused:
            table.apply(MessageDelivered("#p#h", MESS_TYPE, batch), 0.0)
        assert refused.value.plugin == name
        assert reason in str(refused.value)
        assert table.outstanding() == []  # nothing taken
