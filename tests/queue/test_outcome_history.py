"""The outcome history against a model: two generations of plain dicts.

:class:`~spreadq.queue.jobs.OutcomeHistory` keeps a byte per seq naming one of a
producer's distinct records, and a dict for the rest; these tests pin that it remembers
and forgets exactly what the plain two-generation form does, whatever the order of the
seqs, their gaps and how many distinct records there are.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spreadq.queue import Ack, decode, encode
from spreadq.queue.envelope import AckOutcomes
from spreadq.queue.jobs import (
    PLAIN_SUCCESS,
    JobRef,
    Outcome,
    OutcomeHistory,
    OutcomeRecord,
    _stride_runs,
    outcome_of,
)

PIDS = (b"P" * 16, b"Q" * 16)


class ModelHistory:
    """The history's rules with a dict per producer and generation, nothing compact."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self.current: dict[bytes, dict[int, OutcomeRecord]] = {}
        self.previous: dict[bytes, dict[int, OutcomeRecord]] = {}
        self.bytes = 0

    def add(self, ref: JobRef, record: OutcomeRecord) -> None:
        producer_id, seq = ref
        self.previous.get(producer_id, {}).pop(seq, None)
        seqs = self.current.setdefault(producer_id, {})
        old = seqs.get(seq)
        if old is not None:
            self.bytes -= len(old) if isinstance(old, bytes) else len(old.result)
        seqs[seq] = record
        self.bytes += len(record) if isinstance(record, bytes) else len(record.result)
        count = sum(len(s) for s in self.current.values())
        if count >= self.max_items or 2 * self.bytes > self.max_bytes:
            self.previous, self.current, self.bytes = self.current, {}, 0

    def get(self, ref: JobRef) -> OutcomeRecord | None:
        producer_id, seq = ref
        found = self.current.get(producer_id, {}).get(seq)
        return found if found is not None else self.previous.get(producer_id, {}).get(seq)

    def __len__(self) -> int:
        return sum(len(s) for g in (self.current, self.previous) for s in g.values())


def add_to_model(
    model: ModelHistory, refs: list[JobRef], records: list[OutcomeRecord], touched: set[JobRef]
) -> None:
    """What the history was given, given to the model one by one too."""
    for ref, record_ in zip(refs, records, strict=True):
        touched.add(ref)
        model.add(ref, record_)


def assert_remembers_as(history: OutcomeHistory, model: ModelHistory, refs: set[JobRef]) -> None:
    """The history remembers each of ``refs`` as the model does, within its window."""
    for ref in refs:
        expected = model.get(ref)
        assert history.get(ref) == (None if expected is None else outcome_of(expected))
        assert (ref in history) == (expected is not None)
        if expected is not None:
            low, high = history.window(ref.producer_id)
            assert low <= ref.seq <= high


def _ack_records(count: int) -> list[OutcomeRecord]:
    """Successes with distinct results in the form an ACK carries them (``bytes``)."""
    done = tuple(
        (JobRef(PIDS[0], n), Outcome.success(b"%d" % n, codec="json")) for n in range(count)
    )
    ack = decode(encode(Ack(b"I" * 16, done)))
    assert isinstance(ack, Ack)
    assert isinstance(ack.outcomes, AckOutcomes)
    records = list(AckOutcomes.parts(ack.outcomes)[1])
    assert all(isinstance(r, bytes) for r in records)
    return records


RECORDS = _ack_records(800)


def record(n: int) -> OutcomeRecord:
    """Distinct outcomes for distinct ``n``: a few alike ones, many results as ACKs
    carry them (kept in the blob past the 254th) and many as built outcomes (kept in
    the dict past it)."""
    if n == 0:
        return PLAIN_SUCCESS
    if n == 1:
        return Outcome.failure("E", "m")
    if n % 2:
        return RECORDS[n]
    return Outcome.success(str(n).encode(), codec="json")


seqs = st.one_of(
    st.integers(0, 40),  # the same seqs again, across generations
    st.integers(0, 600),  # dense, in any order
    st.integers(0, 2**64 - 1),  # far from the rest: kept in the dict
)
producers = st.sampled_from([PIDS[0]] * 4 + [PIDS[1]])  # mostly one: runs, as in an ACK
adds = st.lists(
    st.tuples(producers, seqs, st.one_of(st.integers(0, 3), st.integers(4, 790))),
    max_size=400,
)


@settings(max_examples=200)
@given(adds, st.integers(1, 300), st.sampled_from([1 << 20, 600]), st.integers(1, 60))
def test_the_history_remembers_and_forgets_as_two_dict_generations_do(
    steps: list[tuple[bytes, int, int]], max_items: int, max_bytes: int, chunk: int
) -> None:
    """One at a time with ``add`` (``chunk`` 1) or ``chunk`` at a time with ``add_all``,
    as the table adds an ACK's outcomes."""
    history, model = OutcomeHistory(max_items, max_bytes), ModelHistory(max_items, max_bytes)
    touched: set[JobRef] = set()
    for start in range(0, len(steps), chunk):
        refs = [JobRef(producer_id, seq) for producer_id, seq, _ in steps[start : start + chunk]]
        records = [record(n) for _, _, n in steps[start : start + chunk]]
        if chunk == 1:
            history.add(refs[0], records[0])
        else:
            history.add_all(refs, records)
        add_to_model(model, refs, records, touched)
        assert len(history) == len(model)
    assert_remembers_as(history, model, touched)


def test_more_than_255_distinct_records_of_one_producer_are_all_remembered() -> None:
    history = OutcomeHistory(max_items=10_000)
    for seq in range(1000):
        history.add(JobRef(PIDS[0], seq), record(seq % 790 + 2))
    assert all(
        history.get(JobRef(PIDS[0], seq)) == outcome_of(record(seq % 790 + 2))
        for seq in range(1000)
    )


def test_distinct_results_as_acks_carry_them_take_their_length_and_five_bytes() -> None:
    history = OutcomeHistory(max_items=200_000, max_bytes=1 << 30)
    records = _ack_records(20_000)
    for seq, record_ in enumerate(records):  # upwards for one producer, downwards for another
        history.add(JobRef(PIDS[0], seq), record_)
        history.add(JobRef(PIDS[1], 19_999 - seq), record_)
    for producer_id in PIDS:
        outcomes = history._current[producer_id]
        assert not outcomes.other
        assert len(outcomes.blob) == sum(len(r) for r in records[254:])
    assert [history.get(JobRef(PIDS[0], seq)) for seq in range(20_000)] == [
        outcome_of(r) for r in records
    ]
    assert [history.get(JobRef(PIDS[1], 19_999 - seq)) for seq in range(20_000)] == [
        outcome_of(r) for r in records
    ]


def test_alike_outcomes_of_dense_seqs_take_about_a_byte_each() -> None:
    history = OutcomeHistory(max_items=200_000)
    for seq in range(100_000):
        history.add(JobRef(PIDS[0], seq), PLAIN_SUCCESS)
    outcomes = history._current[PIDS[0]]  # the compact form itself
    assert len(outcomes.codes) < 2 * 100_000
    assert not outcomes.other
    assert len(outcomes.records) == 2  # the unused code 0, and the one record


def test_add_all_refuses_refs_and_outcomes_of_different_lengths_and_adds_nothing() -> None:
    history = OutcomeHistory()
    with pytest.raises(ValueError, match="2 refs for 1 outcomes"):
        history.add_all([JobRef(PIDS[0], 1), JobRef(PIDS[0], 2)], [PLAIN_SUCCESS])
    assert len(history) == 0


def test_add_all_takes_a_seq_remembered_in_the_previous_generation_out_of_it() -> None:
    history = OutcomeHistory(max_items=10)
    history.add_all([JobRef(PIDS[0], seq) for seq in range(10)], [PLAIN_SUCCESS] * 10)
    assert len(history) == 10  # all in the previous generation now
    history.add_all([JobRef(PIDS[0], seq) for seq in (5, 6, 7)], [record(1)] * 3)
    assert len(history) == 10  # moved, not copied
    assert history.get(JobRef(PIDS[0], 6)) == record(1)


def test_add_all_ends_a_generation_at_max_items_even_within_one_call() -> None:
    history = OutcomeHistory(max_items=3)
    history.add_all([JobRef(PIDS[0], seq) for seq in range(10)], [PLAIN_SUCCESS] * 10)
    # generations of three: 0-2 (forgotten), 3-5 (forgotten), 6-8 (previous), 9 (current)
    assert len(history) == 4
    assert [JobRef(PIDS[0], seq) in history for seq in (5, 6, 9)] == [False, True, True]


def _fixed_records(count: int, width: int = 8) -> list[OutcomeRecord]:
    """Successes whose results differ but share a length (timestamps, ids), as ACKs
    carry them."""
    done = tuple(
        (JobRef(PIDS[0], n), Outcome.success(n.to_bytes(width, "little"), codec="json"))
        for n in range(count)
    )
    ack = decode(encode(Ack(b"I" * 16, done)))
    assert isinstance(ack, Ack)
    assert isinstance(ack.outcomes, AckOutcomes)
    return list(AckOutcomes.parts(ack.outcomes)[1])


FIXED = _fixed_records(4000)
KINDS = ("alike", "built", "fixed", "varied")


def strided_records(kind: str, count: int, start: int) -> list[OutcomeRecord]:
    """``count`` records of one ``kind``: all one record (as bytes or as a built
    :class:`Outcome`), results of one length that differ, or results of many lengths."""
    if kind == "alike":
        return [PLAIN_SUCCESS] * count
    if kind == "built":
        return [Outcome.failure("E", "m")] * count
    pool = FIXED if kind == "fixed" else RECORDS
    return [pool[(start + i) % len(pool)] for i in range(count)]


strided_acks = st.lists(
    st.tuples(
        producers,
        st.integers(0, 700),  # the first seq
        st.integers(1, 5),  # the stride: one worker's share of a batch
        st.integers(8, 60),  # outcomes in the ACK
        st.sampled_from(KINDS),
        st.sampled_from([None, "repeat", "gap", "other producer", "other producer's"]),
    ),
    max_size=60,
)


@settings(max_examples=200)
@given(strided_acks, st.integers(20, 500), st.sampled_from([1 << 20, 4000]))
def test_strided_acks_are_remembered_as_their_outcomes_one_by_one(
    acks: list[tuple[bytes, int, int, int, str, str | None]], max_items: int, max_bytes: int
) -> None:
    """ACKs of one producer's seqs at one stride (what a worker reports under
    ``round_robin``) take a bulk path; it must remember and forget what adding them one
    by one does, across generations, and when one seq of the ACK is out of line."""
    history, model = OutcomeHistory(max_items, max_bytes), ModelHistory(max_items, max_bytes)
    touched: set[JobRef] = set()
    made = 0
    for producer_id, first, stride, count, kind, odd in acks:
        refs = [JobRef(producer_id, first + stride * i) for i in range(count)]
        if odd == "repeat":
            refs[count // 2] = refs[0]
        elif odd == "gap":
            refs[count // 2] = JobRef(producer_id, refs[count // 2].seq + 1)
        elif odd is not None:  # another producer's first seq, or its seq in line
            seq = first if odd == "other producer" else refs[count // 2].seq
            refs[count // 2] = JobRef(PIDS[1] if producer_id == PIDS[0] else PIDS[0], seq)
        records = strided_records(kind, count, made)
        made += count
        history.add_all(refs, records)
        add_to_model(model, refs, records, touched)
        assert len(history) == len(model)
    assert_remembers_as(history, model, touched)


# an ACK of several messages' jobs (a worker under ``sticky``): runs of seqs in a row,
# with gaps between and sometimes another producer's run or a stride of its own
run_acks = st.lists(
    st.tuples(
        st.lists(
            st.tuples(producers, st.integers(0, 60), st.integers(1, 3), st.integers(1, 40)),
            min_size=1,
            max_size=6,
        ),  # (producer, gap before the run, stride, length) of each run
        st.sampled_from(KINDS),
    ),
    max_size=30,
)


@settings(max_examples=200)
@given(run_acks, st.integers(20, 500), st.sampled_from([1 << 20, 4000]))
def test_acks_of_several_runs_are_remembered_as_their_outcomes_one_by_one(
    acks: list[tuple[list[tuple[bytes, int, int, int]], str]], max_items: int, max_bytes: int
) -> None:
    history, model = OutcomeHistory(max_items, max_bytes), ModelHistory(max_items, max_bytes)
    touched: set[JobRef] = set()
    made, seq = 0, 0
    for runs, kind in acks:
        refs: list[JobRef] = []
        for producer_id, gap, stride, length in runs:
            seq += gap
            refs += [JobRef(producer_id, seq + stride * i) for i in range(length)]
            seq += stride * length
        records = strided_records(kind, len(refs), made)
        made += len(refs)
        history.add_all(refs, records)
        add_to_model(model, refs, records, touched)
        assert len(history) == len(model)
    assert_remembers_as(history, model, touched)


@given(st.lists(st.tuples(producers, st.integers(0, 50)), max_size=60))
def test_stride_runs_cover_the_refs_in_order_each_at_one_stride_and_as_long_as_it_can(
    steps: list[tuple[bytes, int]],
) -> None:
    refs, seq = [], 0
    for producer_id, step in steps:
        seq += step
        refs.append(JobRef(producer_id, seq))
    runs = _stride_runs(refs)
    assert [i for start, end in runs for i in range(start, end)] == list(range(len(refs)))
    for start, end in runs:
        run = refs[start:end]
        assert len({ref.producer_id for ref in run}) == 1
        strides = {b.seq - a.seq for a, b in itertools.pairwise(run)}
        assert len(strides) <= 1
        assert all(stride > 0 for stride in strides)
        if end < len(refs) and end - start >= 2:  # the next ref does not carry it on
            stride = run[1].seq - run[0].seq
            follows = refs[end].producer_id == run[0].producer_id
            assert not (follows and refs[end].seq - run[-1].seq == stride)


def test_an_ack_of_runs_is_taken_a_run_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    history = OutcomeHistory(max_items=100_000)
    history.add_all([JobRef(PIDS[0], seq) for seq in range(300)], strided_records("fixed", 300, 0))
    # the jobs of three messages of 28 that one worker ran, every fourth message
    refs = [JobRef(PIDS[0], m * 28 + i) for m in (11, 15, 19) for i in range(28)]
    records = strided_records("fixed", len(refs), 300)
    ones: list[JobRef] = []
    add_one = OutcomeHistory._add_one

    def counted(self: OutcomeHistory, ref: JobRef, outcome: OutcomeRecord) -> None:
        ones.append(ref)
        add_one(self, ref, outcome)

    monkeypatch.setattr(OutcomeHistory, "_add_one", counted)
    history.add_all(refs, records)
    assert ones == []  # no outcome the general way
    assert [history.get(ref) for ref in refs] == [outcome_of(r) for r in records]


@pytest.mark.parametrize("kind", ["alike", "built", "fixed"])
def test_a_strided_ack_is_taken_in_one_step(kind: str) -> None:
    history = OutcomeHistory(max_items=100_000)
    # before: the producer's first outcomes, so the span (and, for "fixed", the blob)
    # exist, and the one record has its code
    history.add_all([JobRef(PIDS[0], seq) for seq in range(400)], strided_records(kind, 400, 0))
    refs = [JobRef(PIDS[0], seq) for seq in range(402, 600, 4)]
    records = strided_records(kind, len(refs), 400)
    assert history._add_strided(refs, records)
    assert [history.get(ref) for ref in refs] == [outcome_of(r) for r in records]
    assert history.get(JobRef(PIDS[0], 401)) is None  # between two of them
    assert history.window(PIDS[0]) == (0, 598)
    assert len(history) == 400 + len(refs)
    assert not history._add_strided(refs, records)  # remembered: the general way replaces


def test_a_strided_ack_of_results_of_many_lengths_takes_the_general_way() -> None:
    history = OutcomeHistory(max_items=100_000)
    history.add_all([JobRef(PIDS[0], seq) for seq in range(400)], strided_records("fixed", 400, 0))
    assert history._current[PIDS[0]].starts is not None  # the blob is in use
    refs = [JobRef(PIDS[0], seq) for seq in range(400, 500, 2)]
    records = strided_records("varied", len(refs), 1)
    assert len({len(r) for r in records if isinstance(r, bytes)}) > 1
    assert not history._add_strided(refs, records)
    history.add_all(refs, records)
    assert [history.get(ref) for ref in refs] == [outcome_of(r) for r in records]


def test_a_strided_ack_that_would_fill_the_generation_takes_the_general_way() -> None:
    history = OutcomeHistory(max_items=20)
    history.add_all([JobRef(PIDS[0], seq) for seq in range(4)], [PLAIN_SUCCESS] * 4)
    refs = [JobRef(PIDS[0], seq) for seq in range(4, 60, 2)]  # 28: past max_items
    assert not history._add_strided(refs, [PLAIN_SUCCESS] * len(refs))
    history.add_all(refs, [PLAIN_SUCCESS] * len(refs))
    assert len(history) == 20 + 12  # a full previous generation and the rest
