"""The worker's scheduler: slots, per-key order, failover first, delays, cancellation."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from spreadq.queue.jobs import JobRef
from spreadq.worker.scheduler import Scheduler

PID = b"p" * 16


@dataclass(frozen=True, slots=True)
class J:
    ref: JobRef
    key: str | None = None


def job(seq: int, key: str | None = None) -> J:
    return J(JobRef(PID, seq), key)


def drain(scheduler: Scheduler[J]) -> list[int]:
    started: list[int] = []
    while (found := scheduler.next()) is not None:
        started.append(found.ref.seq)
    return started


def test_the_worked_example() -> None:
    scheduler = Scheduler[J](1, ordered_keys=True)
    a1, a2, b1, t1 = job(1, "a"), job(2, "a"), job(3, "b"), job(4)
    for own in (a1, a2, b1):
        scheduler.offer(own)
    scheduler.offer(t1, failover=True)
    assert drain(scheduler) == [4]
    for ref, expected in ((t1, [1]), (a1, [2]), (a2, [3])):
        assert scheduler.ended(ref.ref)
        assert drain(scheduler) == expected
    assert scheduler.ended(b1.ref)
    assert (scheduler.running, scheduler.queued) == (0, 0)
    assert not scheduler.ended(b1.ref)  # twice: nothing to free


def test_slots_limit_what_runs() -> None:
    scheduler = Scheduler[J](2)
    for seq in range(5):
        scheduler.offer(job(seq))
    assert drain(scheduler) == [0, 1]
    assert (scheduler.running, scheduler.queued) == (2, 3)
    assert scheduler.is_running(JobRef(PID, 0))
    scheduler.ended(JobRef(PID, 0))
    assert drain(scheduler) == [2]


def test_without_ordered_keys_jobs_of_one_key_run_together() -> None:
    scheduler = Scheduler[J](3)
    for seq in range(3):
        scheduler.offer(job(seq, "k"))
    assert drain(scheduler) == [0, 1, 2]


def test_a_key_waits_for_its_holder_and_others_pass() -> None:
    scheduler = Scheduler[J](3, ordered_keys=True)
    for seq, key in enumerate(["k", "k", "m", "k"]):
        scheduler.offer(job(seq, key))
    assert drain(scheduler) == [0, 2]
    scheduler.ended(JobRef(PID, 0))
    assert drain(scheduler) == [1]
    scheduler.ended(JobRef(PID, 1))
    assert drain(scheduler) == [3]


def test_a_cancelled_job_is_skipped_and_hands_on_its_key() -> None:
    scheduler = Scheduler[J](1, ordered_keys=True)
    for seq in range(3):
        scheduler.offer(job(seq, "k"))
    assert drain(scheduler) == [0]
    assert scheduler.cancel(JobRef(PID, 0))  # running: the caller stops it
    assert drain(scheduler) == []  # its slot is held until it ends
    scheduler.ended(JobRef(PID, 0))
    assert not scheduler.cancel(JobRef(PID, 1))  # queued, and now holds the key
    assert drain(scheduler) == [2]


def test_delayed_jobs_wait_outside_the_slots_until_due() -> None:
    scheduler = Scheduler[J](1)
    assert scheduler.next_due() is None
    scheduler.defer(job(1), 20.0)
    scheduler.defer(job(2), 10.0)
    scheduler.defer(job(3), 10.0)
    scheduler.offer(job(4))
    assert scheduler.next_due() == 10.0
    assert scheduler.queued == 1  # delayed jobs are not queued for a slot
    scheduler.due(9.9)
    assert drain(scheduler) == [4]
    scheduler.ended(JobRef(PID, 4))
    scheduler.due(10.0)
    assert scheduler.next_due() == 20.0
    assert drain(scheduler) == [2]  # ties in the order deferred
    scheduler.ended(JobRef(PID, 2))
    assert drain(scheduler) == [3]


def test_drop_all_forgets_the_waiting_and_keeps_running_keys() -> None:
    scheduler = Scheduler[J](2, ordered_keys=True)
    for seq, key in enumerate(["k", "k", None, None]):
        scheduler.offer(job(seq, key))
    scheduler.defer(job(9), 1.0)
    assert drain(scheduler) == [0, 2]
    scheduler.drop_all()
    assert (scheduler.queued, scheduler.next_due(), scheduler.running) == (0, None, 2)
    scheduler.offer(job(5, "k"))
    scheduler.ended(JobRef(PID, 2))
    assert drain(scheduler) == []  # k is still held by the running job 0
    scheduler.ended(JobRef(PID, 0))
    assert drain(scheduler) == [5]


# -- properties --------------------------------------------------------------------------

KEYS = st.sampled_from([None, "a", "b", "c"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("offer"), KEYS, st.booleans()),
        st.tuples(st.just("end"), st.integers(min_value=0, max_value=40)),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=40)),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(limit=st.integers(min_value=1, max_value=4), ordered=st.booleans(), ops=OPS)
def test_properties_of_any_run(limit: int, ordered: bool, ops: list[tuple[object, ...]]) -> None:
    """Never more running than the limit; per key (ordered) at most one running, in the
    order offered within each kind; a job taken over never waits behind an own job
    (unordered); nothing started twice; every job not cancelled starts in the end."""
    scheduler = Scheduler[J](limit, ordered_keys=ordered)
    offered: list[tuple[J, bool]] = []
    cancelled: set[int] = set()
    started: list[int] = []
    running: set[int] = set()
    waiting_failover: set[int] = set()

    def step() -> None:
        while (found := scheduler.next()) is not None:
            seq = found.ref.seq
            failover = offered[seq][1]
            if not ordered and not failover:
                assert not waiting_failover, "an own job started before a taken-over one"
            waiting_failover.discard(seq)
            assert seq not in started
            assert seq not in cancelled
            started.append(seq)
            running.add(seq)
            assert len(running) <= limit
            if ordered and found.key is not None:
                assert sum(offered[r][0].key == found.key for r in running) == 1

    for op in ops:
        if op[0] == "offer":
            key, failover = op[1], op[2]
            assert isinstance(failover, bool)
            new = job(len(offered), key if isinstance(key, str) else None)
            offered.append((new, failover))
            if failover:
                waiting_failover.add(new.ref.seq)
            scheduler.offer(new, failover=failover)
        elif offered:
            assert isinstance(op[1], int)
            seq = op[1] % len(offered)
            ref = JobRef(PID, seq)
            if op[0] == "end" and seq in running:
                running.discard(seq)
                assert scheduler.ended(ref)
            elif op[0] == "cancel" and seq not in started and seq not in cancelled:
                assert not scheduler.cancel(ref)
                cancelled.add(seq)
                waiting_failover.discard(seq)
        step()
        assert scheduler.running == len(running)
    while running:  # the rest end: everything left must start, once
        scheduler.ended(JobRef(PID, running.pop()))
        step()
    assert sorted(started) == [s for s in range(len(offered)) if s not in cancelled]
    if ordered:
        for key in ("a", "b", "c"):
            for failover in (False, True):
                mine = [s for s in started if offered[s][1] is failover]
                order = [s for s in mine if offered[s][0].key == key]
                assert order == sorted(order), f"key {key} out of order"


@settings(max_examples=300)
@given(limit=st.integers(min_value=1, max_value=4), ordered=st.booleans(), ops=OPS)
def test_take_all_and_ended_all_do_what_next_and_ended_would(
    limit: int, ordered: bool, ops: list[tuple[object, ...]]
) -> None:
    by_next, at_once = (Scheduler[J](limit, ordered_keys=ordered) for _ in range(2))
    offered = 0
    for op in ops:
        if op[0] == "offer":
            key, failover = op[1], op[2]
            assert isinstance(failover, bool)
            new = job(offered, key if isinstance(key, str) else None)
            offered += 1
            for scheduler in (by_next, at_once):
                scheduler.offer(new, failover=failover)
        elif offered:
            assert isinstance(op[1], int)
            ref = JobRef(PID, op[1] % offered)
            if op[0] == "end":  # one by one, and at once (a ref twice: the second a no-op)
                by_next.ended(ref)
                by_next.ended(ref)
                at_once.ended_all([ref, ref])
            for scheduler in (by_next, at_once):
                if op[0] != "end" and not scheduler.is_running(ref):
                    scheduler.cancel(ref)
        expected = [] if (found := by_next.next()) is None else [found]
        while expected and (found := by_next.next()) is not None:
            expected.append(found)
        assert at_once.take_all() == expected
        assert (at_once.running, at_once.queued) == (by_next.running, by_next.queued)


def test_take_all_takes_ready_jobs_up_to_the_limit_and_skips_the_cancelled() -> None:
    scheduler = Scheduler[J](2)
    for seq in range(5):
        scheduler.offer(job(seq))
    assert [j.ref.seq for j in scheduler.take_all()] == [0, 1]
    assert scheduler.take_all() == []  # both slots taken
    assert not scheduler.cancel(JobRef(PID, 2))  # waiting: dropped when its turn comes
    scheduler.ended(JobRef(PID, 0))
    assert [j.ref.seq for j in scheduler.take_all()] == [3]
    scheduler.ended(JobRef(PID, 1))
    assert [j.ref.seq for j in scheduler.take_all()] == [4]
    assert (scheduler.running, scheduler.queued) == (2, 0)


def test_a_released_key_goes_to_its_successor_before_the_ready_queue() -> None:
    scheduler = Scheduler[J](2, ordered_keys=True)
    for seq, key in enumerate(["k", "k", None, None]):
        scheduler.offer(job(seq, key))
    assert drain(scheduler) == [0, 2]  # 1 waits for k
    scheduler.ended(JobRef(PID, 0))
    assert drain(scheduler) == [1]  # it has waited since before 3


# -- priorities ----------------------------------------------------------------------------


def test_the_priority_example() -> None:
    scheduler = Scheduler[J](1)
    for seq, priority in enumerate([0, 5, 5, -1]):
        scheduler.offer(job(seq), priority=priority)
    started = []
    while (found := scheduler.next()) is not None:
        started.append(found.ref.seq)
        scheduler.ended(found.ref)
    assert started == [1, 2, 0, 3]


def test_a_key_keeps_its_order_whatever_the_priorities() -> None:
    scheduler = Scheduler[J](2, ordered_keys=True)
    scheduler.offer(job(0, "k"), priority=-5)
    scheduler.offer(job(1, "k"), priority=50)
    scheduler.offer(job(2), priority=10)
    assert drain(scheduler) == [2, 0]  # 1 waits for k behind 0, however urgent
    scheduler.ended(JobRef(PID, 0))
    assert drain(scheduler) == [1]


def test_a_cancelled_key_holder_hands_its_key_on_at_once() -> None:
    scheduler = Scheduler[J](1, ordered_keys=True)
    scheduler.offer(job(0))
    assert drain(scheduler) == [0]
    scheduler.offer(job(1, "a"))
    scheduler.offer(job(2, "a"), priority=2)  # waits for a behind 1
    assert not scheduler.cancel(JobRef(PID, 1))
    scheduler.offer(job(3), priority=1)
    scheduler.ended(JobRef(PID, 0))
    assert drain(scheduler) == [2]  # not 3: nothing holds a back any more


def test_a_cancelled_delayed_job_does_not_keep_its_key() -> None:
    scheduler = Scheduler[J](1, ordered_keys=True)
    scheduler.defer(job(0, "a"), 1.0)
    assert not scheduler.cancel(JobRef(PID, 0))
    scheduler.due(1.0)
    scheduler.offer(job(1, "a"))
    assert drain(scheduler) == [1]


def test_taken_over_jobs_go_before_any_priority() -> None:
    scheduler = Scheduler[J](1)
    scheduler.offer(job(0), priority=100)
    scheduler.offer(job(1), failover=True)
    assert drain(scheduler) == [1]


def test_delayed_jobs_keep_their_priority() -> None:
    scheduler = Scheduler[J](1)
    scheduler.defer(job(0), 5.0, priority=3)
    scheduler.offer(job(1))
    scheduler.offer(job(2), priority=2)
    scheduler.due(5.0)
    assert drain(scheduler) == [0]


PRIORITY_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("offer"), KEYS, st.booleans(), st.integers(min_value=-2, max_value=2)),
        st.tuples(st.just("end"), st.integers(min_value=0, max_value=40)),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=40)),
    ),
    max_size=60,
)


@settings(max_examples=300)
@given(limit=st.integers(min_value=1, max_value=3), ordered=st.booleans(), ops=PRIORITY_OPS)
def test_priority_properties(limit: int, ordered: bool, ops: list[tuple[object, ...]]) -> None:
    """Whenever an own job starts, no taken-over job and no own job of a higher priority
    waits that could start (not held back by its key), and no such own job of the same
    priority offered earlier; with ordered keys, each key's jobs start one at a time in
    the order offered whatever their priorities; every job not cancelled starts once."""
    scheduler = Scheduler[J](limit, ordered_keys=ordered)
    offered: list[tuple[J, bool, int]] = []
    cancelled: set[int] = set()
    started: list[int] = []
    running: set[int] = set()

    def free(seq: int) -> bool:
        """Waiting, and nothing but a slot holds it back (its key, if ordered, is not
        held by a job offered before it that has not ended)."""
        if seq in started or seq in cancelled:
            return False
        key = offered[seq][0].key
        if not ordered or key is None:
            return True
        return not any(
            offered[other][0].key == key and (other in running or other not in started)
            for other in range(seq)
            if other not in cancelled
        )

    def step() -> None:
        while (found := scheduler.next()) is not None:
            seq = found.ref.seq
            _, failover, priority = offered[seq]
            others = [s for s in range(len(offered)) if s != seq and free(s)]
            if not failover:
                assert not [s for s in others if offered[s][1]], "a taken-over job waits"
                mine = [s for s in others if not offered[s][1]]
                assert all(offered[s][2] <= priority for s in mine), "a higher priority waits"
                if found.key is None or not ordered:  # a key's successor goes first
                    assert not [
                        s
                        for s in mine
                        if s < seq and offered[s][2] == priority and offered[s][0].key is None
                    ], "an earlier job of the same priority waits"
            assert seq not in started
            assert seq not in cancelled
            started.append(seq)
            running.add(seq)
            assert len(running) <= limit
            if ordered and found.key is not None:
                assert sum(offered[r][0].key == found.key for r in running) == 1

    for op in ops:
        if op[0] == "offer":
            key, failover, priority = op[1], op[2], op[3]
            assert isinstance(failover, bool)
            assert isinstance(priority, int)
            new = job(len(offered), key if isinstance(key, str) else None)
            offered.append((new, failover, priority))
            scheduler.offer(new, failover=failover, priority=priority)
        elif offered:
            assert isinstance(op[1], int)
            seq = op[1] % len(offered)
            ref = JobRef(PID, seq)
            if op[0] == "end" and seq in running:
                running.discard(seq)
                assert scheduler.ended(ref)
            elif op[0] == "cancel" and seq not in started and seq not in cancelled:
                assert not scheduler.cancel(ref)
                cancelled.add(seq)
        step()
    while running:
        scheduler.ended(JobRef(PID, running.pop()))
        step()
    assert sorted(started) == [s for s in range(len(offered)) if s not in cancelled]
    if ordered:
        for key in ("a", "b", "c"):
            order = [s for s in started if offered[s][0].key == key]
            assert order == sorted(order), f"key {key} out of order"


def test_the_default_priority_is_zero() -> None:
    scheduler = Scheduler[J](1)
    scheduler.offer(job(1))  # no priority given: 0, like job 2's
    scheduler.offer(job(2), priority=0)
    scheduler.offer(job(3), priority=1)
    scheduler.defer(job(4), 5.0)
    scheduler.defer(job(5), 5.0, priority=0)
    scheduler.due(5.0)
    started = []
    while (found := scheduler.next()) is not None:
        started.append(found.ref.seq)
        scheduler.ended(found.ref)
    assert started == [3, 1, 2, 4, 5]


def test_released_successors_go_ahead_of_their_level_and_stay_in_it() -> None:
    """A key's successor goes before every job of its own priority offered earlier, and
    never crosses into another level: one of priority 1 still goes before priority 0
    jobs, one of priority -1 still after them."""
    scheduler = Scheduler[J](1, ordered_keys=True)
    scheduler.offer(job(10), priority=1)  # the very first offers of levels 1 and -1
    scheduler.offer(job(12), priority=-1)
    holders = [job(n, key) for n, key in ((1, "a"), (2, "b"), (3, "c"), (4, "d"))]
    for holder in holders:
        scheduler.offer(holder, priority=9)  # run first, holding their keys
    scheduler.offer(job(11))  # level 0
    scheduler.offer(job(5, "a"), priority=1)  # successors, waiting for their keys
    scheduler.offer(job(6, "b"), priority=1)
    scheduler.offer(job(7, "c"), priority=-1)
    scheduler.offer(job(8, "d"), priority=-1)
    started = []
    while (found := scheduler.next()) is not None:
        started.append(found.ref.seq)
        scheduler.ended(found.ref)
    assert started[:4] == [1, 2, 3, 4]
    level_1, level_0, level_minus_1 = started[4:7], started[7:8], started[8:]
    assert sorted(level_1) == [5, 6, 10]
    assert level_1[-1] == 10  # both successors ahead of the earlier job of their level
    assert level_0 == [11]
    assert sorted(level_minus_1) == [7, 8, 12]
    assert level_minus_1[-1] == 12


def test_a_cancelled_ref_offered_again_runs() -> None:
    """Skipping a cancelled job forgets the cancellation: the same ref offered again (a
    job that came back to us) is not dropped."""
    scheduler = Scheduler[J](1)
    scheduler.offer(job(1))
    assert not scheduler.cancel(JobRef(PID, 1))  # queued, not running: dropped
    assert drain(scheduler) == []
    scheduler.offer(job(1))
    assert drain(scheduler) == [1]


def test_give_back_takes_plain_ready_jobs_after_the_first_few() -> None:
    # limit 1: job 0 runs; of the ready ones, a keyed job, a taken-over job and jobs
    # with a priority stay; of the plain ones the first two stay, a cancelled one goes
    # silently, and the rest come out in the order offered
    scheduler = Scheduler[J](1, ordered_keys=True)
    for seq in range(8):
        scheduler.offer(job(seq))
    scheduler.offer(job(20, "k"))
    scheduler.offer(job(21), failover=True)
    scheduler.offer(job(22), priority=5)
    scheduler.offer(job(23), priority=-5)
    assert drain(scheduler) == [21]
    scheduler.cancel(JobRef(PID, 5))
    given = scheduler.give_back(keep=2)
    assert [found.ref.seq for found in given] == [2, 3, 4, 6, 7]
    assert scheduler.queued == 5  # 0, 1, 20 (its key), 22 and 23 (priorities)
    order: list[int] = []
    for _ in range(6):
        scheduler.ended(JobRef(PID, order[-1] if order else 21))
        order += drain(scheduler)
    assert order == [22, 0, 1, 20, 23]
    assert scheduler.give_back(keep=0) == []  # nothing plain left


@given(st.integers(0, 30), st.integers(0, 10), st.integers(1, 4))
def test_give_back_leaves_keep_plain_jobs_and_hands_out_the_rest(
    offered: int, keep: int, limit: int
) -> None:
    scheduler = Scheduler[J](limit)
    for seq in range(offered):
        scheduler.offer(job(seq))
    started = drain(scheduler)
    waiting = offered - len(started)
    given = scheduler.give_back(keep)
    assert [found.ref.seq for found in given] == list(range(len(started) + keep, offered))
    assert scheduler.queued == min(waiting, keep)
