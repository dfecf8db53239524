"""Dedupe keys in the replicated table: every replica decides alike, a duplicate never runs.

``put(..., dedupe_key=)`` sets flag bit 1 of the job record; the table looks the key up
in its dedupe memory (docs/design/dedupe.md). These cases drive replicas by hand; the
seeded simulation (``queue_sim.py``) checks the same rules under kills and partitions.
"""

from __future__ import annotations

import os

import pytest
import queue_sim
from queue_sim import InvariantError, Simulation
from test_table import PID, A, B, C, Cluster, of_type, ref, runs
from test_table_planted_bugs import planted_table

from spreadq.errors import LocalProtocolError
from spreadq.queue.effects import Effect, RunJob, SendAck
from spreadq.queue.envelope import MESS_TYPE, JobBatch, JobSpec, decode, encode_batch
from spreadq.queue.inputs import MessageDelivered
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.queue.view import ChangeCause

PID2 = b"\x02" * 16  # a second producer


def put(
    cluster: Cluster,
    *jobs: tuple[int, str | None],
    pid: bytes = PID,
    to: tuple[str, ...] | None = None,
) -> dict[str, list[Effect]]:
    """One batch of ``(seq, dedupe_key)`` jobs from producer ``pid``."""
    cluster.mseq += 1
    specs = [JobSpec(seq, "work", b"p%d" % seq, dedupe_key=key) for seq, key in jobs]
    data = encode_batch(pid, cluster.mseq, "json", specs)
    return cluster.feed(to or cluster.members, MessageDelivered("#prod#h", MESS_TYPE, data))


def reported(effects: list[Effect]) -> dict[JobRef, Outcome]:
    return {r: o for send in of_type(effects, SendAck) for r, o in send.envelope.outcomes}


def three() -> Cluster:
    cluster = Cluster(ack_every=1)
    for name in (A, B, C):
        cluster.join(name)
    return cluster


def test_a_batch_without_dedupe_keys_carries_none() -> None:
    data = encode_batch(PID, 1, "json", [JobSpec(1, "w", b"x"), JobSpec(2, "w", b"y")])
    batch = decode(data)
    assert isinstance(batch, JobBatch)
    assert batch.jobs.dedupe_keys == {}  # type: ignore[attr-defined]
    data = encode_batch(
        PID, 1, "json", [JobSpec(1, "w", b"x"), JobSpec(2, "w", b"y", None, (), "k")]
    )
    batch = decode(data)
    assert isinstance(batch, JobBatch)
    assert batch.jobs.dedupe_keys == {1: "k"}  # type: ignore[attr-defined]
    assert (batch.jobs[0].dedupe_key, batch.jobs[1].dedupe_key) == (None, "k")
    assert batch.jobs[1].headers() == {"dedupe_key": "k"}


@pytest.mark.parametrize("key", ["", "x" * 256, "é" * 128])
def test_a_dedupe_key_the_envelope_cannot_carry_is_refused(key: str) -> None:
    with pytest.raises(LocalProtocolError, match="dedupe key"):
        JobSpec(1, "w", b"x", dedupe_key=key)


def test_a_second_job_with_the_key_never_runs_and_gets_the_first_outcome() -> None:
    cluster = three()
    first = put(cluster, (0, "order-7"))  # slot 0 -> A
    assert runs(first[A]) == [0]
    second = put(cluster, (5, "order-7"), pid=PID2)  # slot 1 -> B, another producer
    assert all(not of_type(second[n], RunJob) for n in (A, B, C))
    for name in (A, B, C):  # every replica decided alike
        assert cluster.tables[name].duplicate_of(JobRef(PID2, 5)) == ref(0)
        assert cluster.tables[name].dedupe_memory() == {"order-7": ref(0)}
        assert cluster.tables[name].stats.deduplicated == 1
    assert reported(second[B]) == {}  # the first is still running: B waits
    done = cluster.ack(A, 0)  # A reports job 0: "r0"
    assert reported(done[B]) == {JobRef(PID2, 5): Outcome.success(b"r0")}
    assert reported(done[C]) == {}


def test_a_duplicate_of_a_completed_job_is_answered_at_once() -> None:
    cluster = three()
    put(cluster, (0, "k"))
    cluster.ack(A, 0)
    effects = put(cluster, (1, None), (2, "k"))  # slots 1, 2 -> B, C
    assert runs(effects[B]) == [1]
    assert runs(effects[C]) == []
    assert reported(effects[C]) == {ref(2): Outcome.success(b"r0")}


def test_a_duplicate_whose_first_outcome_is_forgotten_fails_naming_the_first() -> None:
    cluster = Cluster(ack_every=1, history_size=1)
    cluster.join(A)
    put(cluster, (0, "k"))
    cluster.ack(A, 0)
    cluster.ack(A, 9)  # another outcome pushes job 0's out of the history
    effects = put(cluster, (1, "k"))
    assert runs(effects[A]) == []
    (outcome,) = reported(effects[A]).values()
    assert (outcome.ok, outcome.error_type) == (False, "DuplicateJob")
    assert str(ref(0)) in outcome.error_message


def test_the_memory_keeps_the_most_recent_keys() -> None:
    cluster = Cluster(ack_every=1, dedupe_size=2)
    cluster.join(A)
    put(cluster, (0, "a"), (1, "b"), (2, "c"))  # "a" is evicted
    assert cluster.tables[A].dedupe_memory() == {"b": ref(1), "c": ref(2)}
    effects = put(cluster, (3, "a"), (4, "c"))
    assert runs(effects[A]) == [3]
    assert cluster.tables[A].duplicate_of(ref(4)) == ref(2)
    assert list(cluster.tables[A].dedupe_memory()) == ["c", "a"]


def test_a_resent_first_job_is_not_a_duplicate_of_itself() -> None:
    cluster = three()
    put(cluster, (0, "k"))
    effects = put(cluster, (0, "k"))  # the producer re-sent it: slot 1 -> B
    assert runs(effects[B]) == [0]
    assert cluster.tables[B].duplicate_of(ref(0)) is None


def test_a_join_cuts_the_memory_on_every_replica_and_a_leave_keeps_it() -> None:
    cluster = Cluster(ack_every=1)
    cluster.join(A)
    cluster.join(B)
    put(cluster, (0, "k"))
    cluster.view((A,), ChangeCause.LEAVE, B)
    assert cluster.tables[A].dedupe_memory() == {"k": ref(0)}  # a leave keeps it
    cluster.join(C)
    for name in (A, C):  # C cannot know "k": so nobody remembers it
        assert cluster.tables[name].dedupe_memory() == {}
    effects = put(cluster, (1, None), (2, "k"))  # slot 1 -> C
    assert runs(effects[C]) == [2]
    assert cluster.tables[A].stats.dedupe_cuts == 1


def test_a_waiting_duplicate_whose_owner_dies_is_answered_by_the_next_owner() -> None:
    cluster = three()
    put(cluster, (0, "k"), (1, "k"))  # slot 0 -> A, slot 1 -> B (a duplicate, waiting)
    effects = cluster.view((A, C), ChangeCause.DISCONNECT, B)
    assert all(not of_type(effects[n], RunJob) for n in (A, C))
    owner = cluster.tables[A].owner_of(ref(1))
    assert owner is not None
    assert owner == cluster.tables[C].owner_of(ref(1))
    done = cluster.ack(A, 0)
    assert reported(done[owner]) == {ref(1): Outcome.success(b"r0")}


def test_each_side_of_a_partition_keeps_its_memory_and_the_merge_cuts_it() -> None:
    cluster = three()
    put(cluster, (0, "k"))
    cluster.ack(A, 0)
    vs_ab: dict[str, tuple[str, ...]] = {A: (A, B), B: (A, B)}
    cluster.view((A, B), ChangeCause.NETWORK, vs=vs_ab)  # C is cut off
    effects = put(cluster, (1, "k"))
    assert runs(effects[A]) + runs(effects[B]) == []  # remembered on this side
    vs = {A: (A, B), B: (A, B), C: (C,)}
    cluster.view((A, B, C), ChangeCause.NETWORK, vs=vs)
    for name in (A, B, C):
        assert cluster.tables[name].dedupe_memory() == {}


# --- the seeded simulation, with dedupe keys ------------------------------------------

SEEDS = int(os.environ.get("SPREADQ_SIM_SEEDS", "30"))
STEPS = int(os.environ.get("SPREADQ_SIM_STEPS", "300"))
RULES = ("round_robin", "key_affinity", "least_loaded")


_RUNS: dict[int, Simulation] = {}


def simulate(seed: int) -> Simulation:
    """Run one seed (once per session: the summary test reads the same runs)."""
    if seed not in _RUNS:
        sim = Simulation(seed, rule=RULES[seed % 3], dedupe=True)
        for _ in range(STEPS):
            sim.step()
        sim.quiesce()
        sim.check_liveness()
        _RUNS[seed] = sim
    return _RUNS[seed]


@pytest.mark.parametrize("seed", range(SEEDS))
def test_simulation_with_dedupe_keys(seed: int) -> None:
    # every replica remembers what the model remembers, decides each keyed job as the
    # model does, never runs a duplicate, reports a first job's outcome for it, and
    # every duplicate held by a survivor is answered once the partitions heal
    assert simulate(seed).checked_slots > 0


def test_the_dedupe_simulation_meets_duplicates_cuts_and_answers() -> None:
    runs = [simulate(seed) for seed in range(SEEDS)]  # thresholds for 30 seeds, scaled
    assert sum(sim.deduplicated for sim in runs) > 50 * SEEDS // 30
    assert sum(sim.dedupe_cuts for sim in runs) > 10 * SEEDS // 30
    assert sum(sim.duplicates_answered for sim in runs) > 50 * SEEDS // 30


# name: (original text, planted text); each must break an invariant on one of SEEDS_PLANTED
DEDUPE_BUGS: dict[str, tuple[str, str]] = {
    "a duplicate runs like any job": (
        "        if entry.dedupe_of is not None:  # never run: it gets the first job's outcome\n",
        "        if False:\n",
    ),
    "a join keeps the memory": (
        "        if self._keys and not came.issuperset(members):\n",
        "        if False:\n",
    ),
    "a waiting duplicate is never answered": (
        "                self._answer_waiting(waiting.pop(ref), outcome_of(record))\n",
        "                waiting.pop(ref)\n",
    ),
    "the memory evicts its newest key": (
        "                    memory.popitem(last=False)\n",
        "                    memory.popitem()\n",
    ),
}
SEEDS_PLANTED = range(6)


@pytest.mark.parametrize("name", list(DEDUPE_BUGS))
def test_the_dedupe_simulation_catches_a_planted_bug(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    original, planted = DEDUPE_BUGS[name]
    monkeypatch.setattr(queue_sim, "OutstandingTable", planted_table(original, planted))
    caught = []
    for seed in SEEDS_PLANTED:
        sim = Simulation(seed, rule=RULES[seed % 3], dedupe=True)
        try:
            for _ in range(300):
                sim.step()
            sim.quiesce()
            sim.check_liveness()
        except InvariantError as error:
            caught.append(str(error).splitlines()[0])
    assert caught, f"{name}: no seed broke an invariant"
