"""RELEASE: a busy member gives back jobs it has not started, and every replica deals
them anew at the same point of the order (docs/design/replicated-table.md#release).

The seeded simulation gives jobs back too (``test_table.py``, the busy seeds); these are
the worked cases, one step at a time.
"""

from __future__ import annotations

from test_table import INC, A, B, C, Cluster, D, of_type, ref, runs

from spreadq.queue.effects import AnnounceHello, AnnounceRelease, CancelJob, Effect, RunJob
from spreadq.queue.envelope import MESS_TYPE, Cancel, Hello, Release, encode
from spreadq.queue.inputs import Busy, GiveBack, JobsStarted, MessageDelivered
from spreadq.queue.rules import FillFirst


def deliver(cluster: Cluster, sender: str, effects: list[Effect]) -> dict[str, list[Effect]]:
    """Multicast the HELLOs and RELEASEs among ``effects`` (``sender``'s), in order, to
    every member; what each table returned, the last delivery's."""
    told: dict[str, list[Effect]] = {}
    for effect in effects:
        if isinstance(effect, AnnounceHello | AnnounceRelease):
            data = encode(effect.envelope)
            told = cluster.feed(cluster.members, MessageDelivered(sender, MESS_TYPE, data))
    return told


def cluster_of(*names: str, capacity: int = 4) -> Cluster:
    """Members under ``fill_first`` that announced ``capacity`` (and take released jobs)."""
    cluster = Cluster(FillFirst(), capacity=capacity)
    for name in names:
        joined = cluster.join(name)
        for member, effects in joined.items():
            deliver(cluster, member, effects)
    return cluster


def give_back(cluster: Cluster, name: str, *seqs: int) -> list[Effect]:
    """``name`` says it is busy, then gives back ``seqs``: the RELEASE, not yet sent."""
    deliver(cluster, name, cluster.feed((name,), Busy(True))[name])
    return cluster.feed((name,), GiveBack(tuple(ref(seq) for seq in seqs)))[name]


def test_jobs_given_back_are_dealt_in_turn_to_the_members_that_take_them() -> None:
    cluster = cluster_of(A, B, C)
    assert runs(cluster.send(1, 2, 3, 4, 5, 6)[A]) == [1, 2, 3, 4, 5, 6]
    announced = give_back(cluster, A, 3, 4, 5, 6)
    (release,) = of_type(announced, AnnounceRelease)
    assert release.envelope == Release(INC, (ref(3), ref(4), ref(5), ref(6)))
    assert cluster.tables[A].backlog == 2  # given back: no longer in A's queue
    told = deliver(cluster, A, announced)
    assert runs(told[B]) == [3, 5]
    assert runs(told[C]) == [4, 6]
    assert told[A] == []
    assert all(run.released and not run.failover for run in of_type(told[B], RunJob))
    expected = {1: A, 2: A, 3: B, 4: C, 5: B, 6: C}
    assert cluster.owners(A) == cluster.owners(B) == cluster.owners(C) == expected
    assert all(cluster.tables[n].stats.released == 4 for n in (A, B, C))
    # the loads moved with the jobs: A is busy and B holds 2 of its room of 512, so 510
    # jobs go before C's; B gets the next one
    assert [cluster.tables[n].jobs_before_mine() for n in (B, C)] == [0, 510]
    assert runs(cluster.send(7)[B]) == [7]


def test_a_job_nobody_can_take_comes_back_to_its_giver() -> None:
    # B and C run a version before RELEASE (a HELLO without the flag), D is busy
    cluster = cluster_of(A, B, C, D)
    for name in (B, C):
        old = Hello(INC, 4)  # no takes_released
        cluster.feed(cluster.members, MessageDelivered(name, MESS_TYPE, encode(old)))
    deliver(cluster, D, cluster.feed((D,), Busy(True))[D])
    cluster.send(1, 2, 3)
    told = deliver(cluster, A, give_back(cluster, A, 2, 3))
    assert runs(told[A]) == [2, 3]
    assert all(run.released for run in of_type(told[A], RunJob))
    assert all(told[name] == [] for name in (B, C, D))
    assert cluster.owners(A) == cluster.owners(D) == {1: A, 2: A, 3: A}
    assert cluster.tables[A].backlog == 3


def test_a_job_completed_or_cancelled_before_the_release_lands_is_not_dealt() -> None:
    cluster = cluster_of(A, B)
    cluster.send(1, 2, 3)
    announced = give_back(cluster, A, 2, 3)
    cancel = encode(Cancel(ref(2)))
    cluster.feed(cluster.members, MessageDelivered("#prod#h", MESS_TYPE, cancel))
    told = deliver(cluster, A, announced)
    assert runs(told[B]) == [3]
    assert told[A] == []
    assert cluster.owners(A) == cluster.owners(B) == {1: A, 3: B}


def test_a_giver_gives_back_only_what_it_owns_and_has_not_started() -> None:
    cluster = cluster_of(A, B)
    cluster.send(1, 2, 3)
    cluster.feed((A,), JobsStarted([ref(1)]))
    announced = give_back(cluster, A, 1, 2, 99)  # 1 started, 99 unknown
    (release,) = of_type(announced, AnnounceRelease)
    assert release.envelope.refs == (ref(2),)
    assert cluster.feed((B,), GiveBack((ref(3),)))[B] == []  # not B's


def test_a_release_from_a_non_member_or_for_others_jobs_changes_nothing() -> None:
    cluster = cluster_of(A, B, C)
    cluster.send(1, 2, 3)
    before = cluster.owners(A)
    forged = encode(Release(INC, (ref(1), ref(2))))
    for sender in ("#ghost#h", B):  # a stranger; a member that does not own them
        told = cluster.feed(cluster.members, MessageDelivered(sender, MESS_TYPE, forged))
        assert all(effects == [] for effects in told.values())
    assert cluster.owners(A) == cluster.owners(B) == cluster.owners(C) == before
    assert cluster.tables[B].stats.ignored_messages == 1  # the stranger's


def test_a_job_its_giver_took_again_before_the_release_landed_stops_there() -> None:
    # A gives 2 and 3 back, says it is ready again, and a re-sent copy of 3 lands on it
    # before its RELEASE: every replica still deals 3 by the RELEASE (to C), so A's new
    # run of it is cancelled, while 2, out of A's queue all along, simply goes to B
    cluster = cluster_of(A, B, C)
    cluster.send(1, 2, 3)
    announced = give_back(cluster, A, 2, 3)
    deliver(cluster, A, cluster.feed((A,), Busy(False))[A])
    assert runs(cluster.send(3)[A]) == [3]  # the copy: A is first with room again
    told = deliver(cluster, A, announced)
    assert runs(told[B]) == [2]
    assert runs(told[C]) == [3]
    assert of_type(told[A], CancelJob) == [CancelJob(ref(3), running=False)]
    assert cluster.owners(A) == cluster.owners(B) == cluster.owners(C) == {1: A, 2: B, 3: C}


def test_a_newcomer_that_does_not_hold_a_job_is_not_dealt_it() -> None:
    # D joined after 2 and 3 were delivered: it has not their payloads
    cluster = cluster_of(A, B)
    cluster.send(1, 2, 3)
    joined = cluster.join(D)
    for member, effects in joined.items():
        deliver(cluster, member, effects)
    deliver(cluster, B, cluster.feed((B,), Busy(True))[B])  # B cannot take them either
    told = deliver(cluster, A, give_back(cluster, A, 2, 3))
    assert runs(told[A]) == [2, 3]
    assert told[D] == []
    assert cluster.owners(A) == cluster.owners(B) == {1: A, 2: A, 3: A}
    assert cluster.owners(D) == {}  # D never held them


def test_only_a_rule_that_fills_members_in_order_gives_back() -> None:
    # under round_robin every member holds its share: one that gave some back would sit
    # idle while the others caught up (the failover test's 4 ms jobs took 1.4-1.9 s so,
    # against 1.0-1.1 s without), so its busy members keep their jobs
    spread = Cluster("round_robin", capacity=4)
    filled = cluster_of(A, B)
    for name in (A, B):
        for member, effects in spread.join(name).items():
            deliver(spread, member, effects)
    for cluster in (spread, filled):
        deliver(cluster, A, cluster.feed((A,), Busy(True))[A])
    assert (spread.tables[A].can_give_back, filled.tables[A].can_give_back) == (False, True)
    deliver(filled, B, filled.feed((B,), Busy(True))[B])
    assert not filled.tables[A].can_give_back  # nobody to take them
