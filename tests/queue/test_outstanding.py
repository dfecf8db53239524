"""The table's store of outstanding jobs against a model: a dict of refs in delivery order.

:class:`~spreadq.queue.outstanding.Outstanding` keeps the jobs other members own as
blocks (a byte a job) and completes an ACK's runs a slice at a time. Whatever it does
inside, it must answer as a plain ordered dict of every outstanding job would: the same
jobs, owners and delivery order, and the same jobs left for the table to pop one by one
after :meth:`~spreadq.queue.outstanding.Outstanding.complete_runs`.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from spreadq.queue.envelope import BatchJobs
from spreadq.queue.jobs import JobRef, OutcomeRun
from spreadq.queue.outstanding import Outstanding, _Block, _Entry, _Origin, owner_counts

ME, B, C = "#a#h", "#b#h", "#c#h"
MEMBERS = (ME, B, C)
PIDS = (b"P" * 16, b"Q" * 16)
ORIGIN = _Origin(1, frozenset(MEMBERS))


class Model:
    """What the store should hold: ref -> owner, in delivery order."""

    def __init__(self) -> None:
        self.jobs: dict[JobRef, str] = {}
        self.high: dict[bytes, int] = {}
        self.slot = 0


def _batch(producer_id: bytes, first: int, count: int) -> BatchJobs:
    seqs = [first + i for i in range(count)]
    return BatchJobs(memoryview(b""), producer_id, "json", list(range(count)), seqs)


def _enter(
    store: Outstanding,
    model: Model,
    producer_id: bytes,
    gap: int,
    count: int,
    whose: str = "mixed",
) -> None:
    """Enter a batch whose owners go round the members (``mixed``), or are all ``ME``
    (``ours``) or all another member (``theirs``), as ``fill_first`` mostly gives them."""
    first = model.high.get(producer_id, -1) + 1 + gap
    jobs = _batch(producer_id, first, count)
    assert store.is_new(producer_id, jobs.seqs)
    if whose == "mixed":
        owners = [MEMBERS[(model.slot + i) % 3] for i in range(count)]
    else:
        owners = [ME if whose == "ours" else MEMBERS[1]] * count
    block = _Block(jobs, "#prod#h", 0, ORIGIN, owners, model.slot, 1)
    mine = store.enter_block(block, ME)
    assert [entry.ref for entry in mine] == [
        r for r, o in zip(jobs.refs, owners, strict=True) if o == ME
    ]
    model.slot += count
    model.high[producer_id] = first + count - 1
    model.jobs.update(zip(jobs.refs, owners, strict=True))


def _entry(ref: JobRef, owner: str) -> _Entry:
    return _Entry(ref, None, None, 0, "#prod#h", 0, ORIGIN, owner, 0, 1, True)


def _check(store: Outstanding, model: Model) -> None:
    assert len(store) == len(model.jobs)
    assert [job.ref for job in store.listing(lambda _: False)] == list(model.jobs)
    assert [job.owner for job in store.listing(lambda _: False)] == list(model.jobs.values())
    for ref, owner in model.jobs.items():
        assert ref in store
        assert store.owner_of(ref) == owner
        assert store.get(ref) is not None
    counts: dict[bytes, int] = {}
    for ref in model.jobs:
        counts[ref.producer_id] = counts.get(ref.producer_id, 0) + 1
    assert store.per_producer() == counts


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("batch"),
            st.sampled_from(PIDS),
            st.integers(0, 3),
            st.integers(1, 40),
            st.sampled_from(["mixed", "ours", "theirs"]),
        ),
        st.tuples(
            st.just("run"),
            st.sampled_from(PIDS),
            st.integers(0, 120),
            st.integers(1, 4),
            st.integers(1, 50),
        ),
        st.tuples(st.just("pop"), st.sampled_from(PIDS), st.integers(0, 120)),
        st.tuples(st.just("entry"), st.sampled_from(PIDS), st.integers(0, 120)),
        st.tuples(st.just("alone"), st.sampled_from(PIDS), st.integers(1, 3)),
        st.tuples(st.just("unblocked")),
    ),
    max_size=40,
)


@settings(max_examples=300)
@given(operations)
def test_the_store_answers_as_an_ordered_dict_of_every_job(ops: list[tuple[object, ...]]) -> None:
    store, model = Outstanding(), Model()
    for op in ops:
        kind = op[0]
        if kind == "batch":
            _, producer_id, gap, count, whose = op
            _enter(store, model, producer_id, gap, count, whose)  # type: ignore[arg-type]
        elif kind == "run":
            _, producer_id, first, stride, count = op
            run = OutcomeRun(producer_id, first, stride, count, b"")  # type: ignore[arg-type]
            others = store.complete_runs([run])
            popped = store.pop_all(others)
            refs = run.refs()
            assert others == [r for r in refs if r in set(others)]  # in the run's order
            # a block completes only outstanding jobs, never ours (entries, popped)
            assert all(model.jobs.get(r, ME) != ME for r in refs if r not in set(others))
            assert [p is not None for p in popped] == [r in model.jobs for r in others]
            for ref in run.refs():
                model.jobs.pop(ref, None)
        elif kind == "pop":
            _, producer_id, seq = op
            ref = JobRef(producer_id, seq)  # type: ignore[arg-type]
            assert (store.pop(ref) is not None) == (ref in model.jobs)
            model.jobs.pop(ref, None)
        elif kind == "entry":
            _, producer_id, seq = op
            ref = JobRef(producer_id, seq)  # type: ignore[arg-type]
            entry = store.entry(ref)
            assert (entry is not None) == (ref in model.jobs)
            if entry is not None:
                assert entry.owner == model.jobs[ref]
        elif kind == "alone":  # a job entered by itself (a re-sent or a keyed one)
            _, producer_id, gap = op
            seq = model.high.get(producer_id, -1) + gap  # type: ignore[call-overload]
            ref = JobRef(producer_id, seq)  # type: ignore[arg-type]
            if ref in model.jobs:
                del store[ref]
                del model.jobs[ref]
            store[ref] = _entry(ref, B)
            model.jobs[ref] = B
            model.high[ref.producer_id] = max(seq, model.high.get(ref.producer_id, -1))
        else:
            entries = store.unblocked()
            assert list(entries) == list(model.jobs)
            assert all(isinstance(entry, _Entry) for entry in entries.values())
        _check(store, model)


def test_a_run_over_blocks_completes_them_without_a_job_left_to_pop() -> None:
    store, model = Outstanding(), Model()
    _enter(store, model, PIDS[0], 0, 30)  # slots 0..29: ME 0 3 6 ..., B 1 4 7 ..., C 2 5 8 ...
    _enter(store, model, PIDS[0], 0, 30)
    run = OutcomeRun(PIDS[0], 1, 3, 20, b"")  # every job B owns, across both batches
    assert store.complete_runs([run]) == []
    assert len(store) == 40
    assert store.in_blocks == 20  # C's
    ours = OutcomeRun(PIDS[0], 0, 3, 20, b"")
    assert store.complete_runs([ours]) == ours.refs()  # entries: the table pops them
    assert all(isinstance(entry, _Entry) for entry in store.pop_all(ours.refs()))
    assert len(store) == 20
    mixed = OutcomeRun(PIDS[0], 1, 1, 4, b"")  # B's 1 and 4 and our 3 are done; C's 2 is not
    assert store.complete_runs([mixed]) == [JobRef(PIDS[0], seq) for seq in (1, 3, 4)]
    assert len(store) == 19
    assert JobRef(PIDS[0], 2) not in store


def test_a_batch_that_is_not_new_cannot_enter_as_a_block() -> None:
    store, model = Outstanding(), Model()
    _enter(store, model, PIDS[0], 0, 10)
    assert not store.is_new(PIDS[0], list(range(9, 15)))  # 9 was held
    assert not store.is_new(PIDS[0], [10, 12, 11])  # not in a row
    assert store.is_new(PIDS[0], list(range(10, 15)))
    assert store.is_new(PIDS[1], list(range(0, 5)))  # another producer


@given(st.lists(st.sampled_from("abc"), max_size=12))
def test_owner_counts_counts_each_owner_in_first_seen_order(owners: list[str]) -> None:
    # one owner for all (fill_first's and sticky's usual block) is answered at once
    assert list(owner_counts(owners)) == list(Counter(owners).items())
