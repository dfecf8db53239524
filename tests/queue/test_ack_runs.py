"""ACK outcome runs: a worker's outcomes at one stride, sent and remembered as one.

A worker under ``round_robin`` finishes every n-th job of a producer, and its handlers'
outcomes differ at most in their result bytes; its ACK then carries them as a run
(first seq, stride, count, one head and the results). These tests pin that runs decode
to exactly the outcomes encoded, whatever their mix with outcomes sent alone, that an
ACK never grows by them, that the decoder refuses a malformed run, and that the outcome
history remembers a run as it remembers the same outcomes one by one.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_envelope import outcomes, refs

from spreadq.errors import EnvelopeError
from spreadq.queue import Ack, decode, encode
from spreadq.queue.envelope import AckOutcomes, Notice
from spreadq.queue.envelope import ack as ack_codec
from spreadq.queue.jobs import (
    PLAIN_SUCCESS,
    JobRef,
    Outcome,
    OutcomeHistory,
    OutcomeRun,
    outcome_of,
)

INCARNATION = b"I" * 16
PIDS = (b"P" * 16, b"Q" * 16)
HEADER = 6 + 16 + 4 + 2 + 2  # preamble, incarnation, backlog, n_positions, n_outcomes


@st.composite
def runs_of_outcomes(draw: st.DrawFn) -> list[tuple[JobRef, Outcome]]:
    """Outcomes at one stride of one producer, alike but for results of one length."""
    pid = draw(st.sampled_from(PIDS))
    first = draw(st.integers(0, 2**64 - 1 - 70 * 9))
    stride = draw(st.integers(1, 9))
    count = draw(st.integers(1, 70))
    codec = draw(st.sampled_from(["", "json", "msgpack"]))
    attempts = draw(st.integers(1, 3))
    length = draw(st.sampled_from([0, 1, 8, 80]))
    results = draw(st.lists(st.binary(min_size=length, max_size=length), min_size=count))
    return [
        (JobRef(pid, first + stride * i), Outcome.success(results[i], attempts, codec))
        for i in range(count)
    ]


mixed = st.lists(
    runs_of_outcomes() | st.lists(st.tuples(refs, outcomes), max_size=3), max_size=5
).map(lambda parts: [outcome for part in parts for outcome in part])
"""Runs and outcomes that fit none, in any order."""


def _encode_one_by_one(done: list[tuple[JobRef, Outcome]]) -> bytes:
    parts: list[bytes] = []
    ack_codec._add_each(parts, done)
    return b"".join(parts)


@given(mixed)
def test_runs_decode_to_the_outcomes_encoded(done: list[tuple[JobRef, Outcome]]) -> None:
    data = encode(Ack(INCARNATION, tuple(done)))
    ack = decode(data)
    assert isinstance(ack, Ack)
    assert list(ack.outcomes) == done
    assert isinstance(ack.outcomes, AckOutcomes)
    assert len(ack.outcomes) == len(done)
    assert list(ack.outcomes.refs) == [ref for ref, _ in done]
    assert [outcome_of(record) for record in ack.outcomes.records] == [o for _, o in done]
    notice = decode(encode(Notice(tuple(done))))
    assert isinstance(notice, Notice)
    assert list(notice.outcomes) == done


@given(mixed)
def test_an_ack_is_never_longer_for_its_runs(done: list[tuple[JobRef, Outcome]]) -> None:
    with_runs = encode(Ack(INCARNATION, tuple(done)))
    assert len(with_runs) <= HEADER + len(_encode_one_by_one(done))


def test_a_round_robin_workers_outcomes_are_one_run() -> None:
    """Every fourth job of a batch, each with its own 8-byte result: one entry."""
    done = tuple(
        (JobRef(PIDS[0], 1000 + 4 * i), Outcome.success(i.to_bytes(8, "little"), codec="raw"))
        for i in range(200)
    )
    data = encode(Ack(INCARNATION, done))
    assert struct.unpack_from("<H", data, HEADER - 2) == (1,)  # n_outcomes counts entries
    ack = decode(data)
    assert isinstance(ack, Ack)
    assert isinstance(ack.outcomes, AckOutcomes)
    assert ack.outcomes.runs is not None
    [run] = ack.outcomes.runs
    assert (run.first, run.stride, run.count, run.length) == (1000, 4, 200, 8)
    assert list(ack.outcomes) == list(done)
    assert len(data) < len(_encode_one_by_one(list(done))) / 3


def test_a_run_of_one_result_carries_it_once() -> None:
    done = tuple((JobRef(PIDS[1], seq), Outcome.success(b'"ok"')) for seq in range(0, 300, 3))
    data = encode(Ack(INCARNATION, done))
    status, length, count = struct.unpack_from("<B", data, HEADER + 24) + struct.unpack_from(
        "<I4xH", data, HEADER + 29
    )
    assert (status, length, count) == (0xC0, 4, 100)
    assert len(data) == HEADER + ack_codec._RUN.size + 4
    ack = decode(data)
    assert isinstance(ack, Ack)
    assert list(ack.outcomes) == list(done)
    assert isinstance(ack.outcomes, AckOutcomes)
    assert ack.outcomes.runs is not None
    assert [run.length for run in ack.outcomes.runs] == [0]  # one record for them all


def test_outcomes_alike_but_too_few_go_one_by_one() -> None:
    done = tuple((JobRef(PIDS[0], seq), PLAIN_SUCCESS) for seq in range(3))
    data = encode(Ack(INCARNATION, done))
    assert data[HEADER:] == _encode_one_by_one(list(done))


def _one_run(**changes: int) -> bytearray:
    """An ACK holding one run of four successes, its fields then ``changes``d."""
    done = tuple(
        (JobRef(PIDS[0], 10 + seq), Outcome.success(b"a%d" % seq, codec="json")) for seq in range(4)
    )
    data = bytearray(encode(Ack(INCARNATION, done)))
    fields = dict(
        zip(
            ("pid", "first", "status", "attempts", "codec", "type", "length", "stride", "count"),
            ack_codec._RUN.unpack_from(data, HEADER),
            strict=True,
        )
    )
    fields.update(changes)
    ack_codec._RUN.pack_into(data, HEADER, *fields.values())
    return data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": 0x81}, "runs are of successes"),
        ({"status": 0xC1}, "runs are of successes"),
        ({"status": 0xC0, "length": 0}, "shares a result of 0 bytes"),
        ({"type": 2}, "runs are of successes"),
        ({"count": 0}, "run of 0 jobs"),
        ({"stride": 0}, "at stride 0"),
        ({"first": 2**64 - 2}, "passes the last job seq"),
        ({"count": 5}, "more bytes needed"),
        ({"codec": 5}, "bad codec name|more bytes needed|trailing"),
    ],
)
def test_a_malformed_run_is_refused(changes: dict[str, int], message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        decode(bytes(_one_run(**changes)))


def test_a_run_with_a_bad_codec_name_is_refused() -> None:
    data = _one_run()
    data[HEADER + ack_codec._RUN.size] = 0xFF  # the first byte of "json"
    with pytest.raises(EnvelopeError, match="bad codec name"):
        decode(bytes(data))


@given(runs_of_outcomes(), st.integers(0, 40), st.booleans())
def test_the_history_remembers_a_run_as_its_outcomes_one_by_one(
    done: list[tuple[JobRef, Outcome]], before: int, full: bool
) -> None:
    """Whether the run is taken at once or, where that cannot be, job by job."""
    ack = decode(encode(Ack(INCARNATION, tuple(done))))
    assert isinstance(ack, Ack)
    assert isinstance(ack.outcomes, AckOutcomes)
    runs = ack.outcomes.runs or [
        OutcomeRun(ref.producer_id, ref.seq, 1, 1, record)
        for ref, record in zip(ack.outcomes.refs, ack.outcomes.records, strict=True)
    ]
    limit = 30 if full else 100_000
    by_run, one_by_one = OutcomeHistory(max_items=limit), OutcomeHistory(max_items=limit)
    pid, first = done[0][0]
    for history in (by_run, one_by_one):  # what each remembered before: the same
        for seq in range(max(0, first - before), first):
            history.add(JobRef(pid, seq), PLAIN_SUCCESS)
    for run in runs:
        by_run.add_run(run)
    for ref, outcome in done:
        one_by_one.add(ref, outcome)
    assert len(by_run) == len(one_by_one)
    for ref, _ in done:
        assert by_run.get(ref) == one_by_one.get(ref)
    if not full:
        assert [by_run.get(ref) for ref, _ in done] == [o for _, o in done]


@given(runs_of_outcomes())
def test_a_runs_records_joined_are_its_records_one_after_the_other(
    done: list[tuple[JobRef, Outcome]],
) -> None:
    ack = decode(encode(Ack(INCARNATION, tuple(done))))
    assert isinstance(ack, Ack)
    assert isinstance(ack.outcomes, AckOutcomes)
    runs = ack.outcomes.runs
    assert runs is not None or len(done) < ack_codec._RUN_AT_LEAST
    for run in runs or ():
        if run.length:
            assert run.joined() == b"".join(run.records())  # type: ignore[arg-type]
    assert [ref for run in runs or () for ref in run.refs()] == (
        [ref for ref, _ in done] if runs else []
    )


@given(runs_of_outcomes())
def test_a_runs_outcomes_are_its_records_read(done: list[tuple[JobRef, Outcome]]) -> None:
    ack = decode(encode(Ack(INCARNATION, tuple(done))))
    assert isinstance(ack, Ack)
    assert isinstance(ack.outcomes, AckOutcomes)
    for run in ack.outcomes.runs or ():
        assert run.outcomes() == [outcome_of(record) for record in run.records()]
    if ack.outcomes.runs:
        assert [o for run in ack.outcomes.runs for o in run.outcomes()] == [o for _, o in done]


@given(runs_of_outcomes())
def test_a_notice_carries_a_workers_outcomes_in_runs(done: list[tuple[JobRef, Outcome]]) -> None:
    data = encode(Notice(tuple(done)))
    notice = decode(data)
    assert notice == Notice(tuple(done))
    assert len(data) <= 6 + 2 + len(_encode_one_by_one(done))  # never longer for its runs
    assert isinstance(notice, Notice)
    assert isinstance(notice.outcomes, AckOutcomes)
    runs = notice.outcomes.runs
    if len(done) >= ack_codec._RUN_AT_LEAST:
        assert runs is not None
        assert len(runs) == 1  # one run: one head, the results packed
        assert len(data) < 6 + 2 + len(_encode_one_by_one(done))


@given(mixed.filter(bool), st.data())
def test_damaged_runs_decode_or_fail_with_an_envelope_error(
    done: list[tuple[JobRef, Outcome]], draw: st.DataObject
) -> None:
    """Bytes changed anywhere in an ACK of runs: an ``EnvelopeError``, or outcomes that
    can be read in full (the table builds a run's refs and records only later)."""
    damaged = bytearray(encode(Ack(INCARNATION, tuple(done))))
    for _ in range(draw.draw(st.integers(1, 3))):
        at = draw.draw(st.integers(HEADER, len(damaged) - 1))
        damaged[at] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(HEADER, len(damaged)))
    for candidate in (bytes(damaged), bytes(damaged[:cut])):
        try:
            ack = decode(candidate)
        except EnvelopeError:
            continue
        assert isinstance(ack, Ack)
        assert len(list(ack.outcomes)) == len(ack.outcomes)
        history = OutcomeHistory()
        for run in getattr(ack.outcomes, "runs", None) or ():
            history.add_run(run)
