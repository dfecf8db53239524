"""A decoded ACK's outcomes: checked when decoded, built when asked for.

Every consumer and producer reads every ACK. Decoding keeps each successful outcome as
its record (one ``bytes``) and builds the :class:`Outcome` only when something asks for
it; these tests pin that the lazy form is indistinguishable from the outcomes encoded,
that bad bytes are still refused at decode time, and that the outcome history and the
table keep records as they are.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_envelope import outcomes, refs

from spreadq.errors import EnvelopeError
from spreadq.queue import Ack, decode, encode
from spreadq.queue.envelope import AckOutcomes
from spreadq.queue.envelope import ack as ack_codec
from spreadq.queue.jobs import PLAIN_SUCCESS, JobRef, Outcome, OutcomeHistory, Status, outcome_of

INCARNATION = b"I" * 16
PID = b"P" * 16


def decoded(done: tuple[tuple[JobRef, Outcome], ...]) -> AckOutcomes:
    ack = decode(encode(Ack(INCARNATION, done)))
    assert isinstance(ack, Ack)
    assert isinstance(ack.outcomes, AckOutcomes)
    return ack.outcomes


@given(st.lists(st.tuples(refs, outcomes), max_size=6))
def test_decoded_outcomes_are_the_encoded_ones_however_they_are_read(
    done: list[tuple[JobRef, Outcome]],
) -> None:
    lazy = decoded(tuple(done))
    assert len(lazy) == len(done)
    assert list(lazy) == done  # iterating
    assert [lazy[i] for i in range(len(done))] == done  # indexing
    assert list(lazy[1:]) == done[1:]  # slicing
    assert list(lazy.refs) == [ref for ref, _ in done]
    assert [outcome_of(record) for record in lazy.records] == [o for _, o in done]
    assert lazy == tuple(done)
    assert tuple(done) == lazy  # either side of ==
    assert hash(lazy) == hash(tuple(done))
    assert AckOutcomes.parts(lazy) == (lazy.refs, lazy.records)
    assert tuple(map(list, AckOutcomes.parts(done))) == (
        [ref for ref, _ in done],
        [o for _, o in done],
    )


def test_a_success_stays_a_record_and_anything_else_is_built_at_once() -> None:
    done = (
        (JobRef(PID, 1), Outcome.success()),
        (JobRef(PID, 2), Outcome.success(b"\x01\x02", codec="msgpack")),
        (JobRef(PID, 3), Outcome.success(b"", attempts=2)),
        (JobRef(PID, 4), Outcome.failure("builtins.ValueError", "bad")),
        (JobRef(PID, 5), Outcome.cancelled()),
    )
    records = decoded(done).records
    assert records[0] is PLAIN_SUCCESS  # the shared value, no record
    assert isinstance(records[1], bytes)
    assert records[1].endswith(b"msgpack\x01\x02")
    assert isinstance(records[2], bytes)
    assert records[3:] == [done[3][1], done[4][1]]
    assert outcome_of(records[1]) == Outcome(Status.OK, 1, b"\x01\x02", codec="msgpack")
    assert outcome_of(records[2]).attempts == 2
    assert "msgpack" in repr(decoded(done))


def _with_codec_byte(data: bytes, codec: bytes, replacement: bytes) -> bytes:
    at = data.rindex(codec)
    return data[:at] + replacement + data[at + len(codec) :]


def test_a_bad_codec_name_is_refused_when_decoded_even_after_good_ones() -> None:
    good = encode(Ack(INCARNATION, ((JobRef(PID, 1), Outcome.success(b"x", codec="json")),)))
    decode(good)  # "json" is now a name seen before
    bad = _with_codec_byte(good, b"json", b"js\xe9n")
    with pytest.raises(EnvelopeError, match=r"^bad codec name$"):
        decode(bad)
    with pytest.raises(EnvelopeError, match=r"^bad codec name$"):
        decode(bad)  # and again: a refused name is never remembered as good


def test_a_success_with_an_error_type_or_cut_short_is_refused() -> None:
    data = encode(Ack(INCARNATION, ((JobRef(PID, 1), Outcome.success(b"xy", codec="j")),)))
    # the outcome's fixed part ends the header: status, attempts, codec, type, data lengths
    tail = struct.Struct("<BHBBI")
    head = len(data) - 1 - 2 - tail.size
    status, attempts, codec_len, type_len, data_len = tail.unpack_from(data, head)
    assert (status, codec_len, type_len, data_len) == (Status.OK, 1, 0, 2)
    typed = data[:head] + tail.pack(status, attempts, codec_len, 1, 1) + data[head + tail.size :]
    with pytest.raises(EnvelopeError, match="a successful outcome carries no error type"):
        decode(typed)
    with pytest.raises(EnvelopeError, match="truncated"):
        decode(data[:-1])


def test_the_history_keeps_records_and_answers_outcomes() -> None:
    record = decoded(((JobRef(PID, 7), Outcome.success(b"abc", codec="json")),)).records[0]
    assert isinstance(record, bytes)
    history = OutcomeHistory(max_items=10, max_bytes=1000)
    history.add(JobRef(PID, 7), record)
    history.add(JobRef(PID, 8), Outcome.failure("E", "m"))
    assert history.get(JobRef(PID, 7)) == Outcome.success(b"abc", codec="json")
    assert history.get(JobRef(PID, 8)) == Outcome.failure("E", "m")
    assert JobRef(PID, 7) in history
    assert JobRef(PID, 9) not in history
    assert len(history) == 2


def test_a_record_counts_its_whole_length_against_the_byte_budget() -> None:
    record = decoded(((JobRef(PID, 1), Outcome.success(b"r" * 40, codec="json")),)).records[0]
    assert isinstance(record, bytes)
    size = len(record)  # 9 fixed bytes, the codec name and the 40 result bytes
    assert size == 9 + 4 + 40
    # a generation ends when its bytes pass half the budget: after two records here,
    # where counting only results (40 bytes each) would take three
    history = OutcomeHistory(max_items=100, max_bytes=4 * size - 1)
    history.add(JobRef(PID, 1), record)
    history.add(JobRef(PID, 1), record)  # the same ref again: replaces, counts once
    history.add(JobRef(PID, 2), record)  # the first generation is full
    history.add(JobRef(PID, 3), record)
    assert all(JobRef(PID, seq) in history for seq in (1, 2, 3))
    history.add(JobRef(PID, 4), record)  # the second is full: the first is forgotten
    assert [JobRef(PID, seq) in history for seq in (1, 2, 3, 4)] == [False, False, True, True]


def test_alike_short_outcomes_of_one_ack_share_one_record() -> None:
    same = Outcome.success(b"null", codec="json")
    long = Outcome.success(b"x" * 100, codec="json")
    records = decoded(
        tuple((JobRef(PID, seq), same if seq < 3 else long) for seq in range(5))
    ).records
    assert records[0] is records[1] is records[2]  # remembered once, not once a job
    assert records[3] == records[4]
    assert records[3] is not records[4]  # long ones are not looked up


def test_the_history_gives_a_window_holding_every_seq_it_remembers_of_a_producer() -> None:
    history = OutcomeHistory(max_items=3, max_bytes=1000)
    assert history.window(PID) == (0, -1)  # nothing remembered: an empty window
    for seq in (5, 2, 9, 4):  # 5, 2 and 9 fill a generation; 4 starts the next
        history.add(JobRef(PID, seq), PLAIN_SUCCESS)
    assert history.window(PID) == (2, 9)  # both generations
    assert history.window(b"O" * 16) == (0, -1)  # a producer it remembers nothing of


def test_a_ref_moved_from_the_previous_generation_counts_once() -> None:
    history = OutcomeHistory(max_items=3, max_bytes=1000)
    for seq in (1, 2, 3):  # a full generation: now the previous one
        history.add(JobRef(PID, seq), PLAIN_SUCCESS)
    history.add(JobRef(PID, 2), Outcome.failure("E", "again"))  # moves to the current one
    assert len(history) == 3
    history.add(JobRef(PID, 1), PLAIN_SUCCESS)
    assert len(history) == 3
    assert history.get(JobRef(PID, 2)) == Outcome.failure("E", "again")


def test_result_codec_names_of_1_to_32_ascii_chars_and_no_more() -> None:
    for name in ("j", "c" * 32):
        outcome = Outcome.success(b"r", codec=name)
        assert list(decoded(((JobRef(PID, 1), outcome), (JobRef(PID, 2), outcome)))) == [
            (JobRef(PID, 1), outcome),
            (JobRef(PID, 2), outcome),
        ]
    # a 33-character name cannot be encoded: write one over a 32-character one by hand
    data = encode(Ack(INCARNATION, ((JobRef(PID, 1), Outcome.success(b"", codec="c" * 32)),)))
    tail = struct.Struct("<BHBBI")
    head = len(data) - 32 - tail.size
    status, attempts, _, type_len, data_len = tail.unpack_from(data, head)
    longer = data[:head] + tail.pack(status, attempts, 33, type_len, data_len) + data[head + 9 :]
    with pytest.raises(EnvelopeError, match=r"^bad codec name$"):
        decode(longer + b"c")


def test_alike_outcomes_share_a_record_up_to_64_bytes_with_their_ref() -> None:
    # an outcome takes 24 bytes of ref, 9 fixed, its codec name and its result
    at_most = Outcome.success(b"x" * (64 - 24 - 9 - 4), codec="json")
    over = Outcome.success(b"x" * (65 - 24 - 9 - 4), codec="json")
    for outcome, shared in ((at_most, True), (over, False)):
        records = decoded(((JobRef(PID, 1), outcome), (JobRef(PID, 2), outcome))).records
        assert records[0] == records[1]
        assert (records[0] is records[1]) is shared


def test_outcomes_whose_refs_and_records_differ_in_number_are_an_error_not_cut_short() -> None:
    broken = AckOutcomes([JobRef(PID, 1), JobRef(PID, 2)], [PLAIN_SUCCESS])
    with pytest.raises(ValueError, match="shorter"):
        list(broken)


def test_a_cancelled_outcome_that_names_a_codec_is_refused_as_cancelled() -> None:
    # no encoder of ours writes one: turn a success with a codec into a cancellation
    data = encode(Ack(INCARNATION, ((JobRef(PID, 1), Outcome.success(b"", codec="json")),)))
    tail = struct.Struct("<BHBBI")
    head = len(data) - 4 - tail.size
    status, attempts, codec_len, type_len, data_len = tail.unpack_from(data, head)
    assert (status, codec_len) == (Status.OK, 4)
    for refused, word in ((Status.CANCELLED, "cancelled"), (Status.FAILED, "failed")):
        changed = tail.pack(refused, attempts, codec_len, type_len, data_len)
        with pytest.raises(EnvelopeError, match=rf"^a {word} outcome carries no result codec$"):
            decode(data[:head] + changed + data[head + tail.size :])


@given(
    st.lists(
        st.tuples(refs, outcomes | st.sampled_from([PLAIN_SUCCESS, Outcome.cancelled()])),
        max_size=8,
    ).map(lambda done: done + done[:2])  # a run of the same outcome value, too
)
def test_outcomes_are_encoded_as_each_ref_then_its_record(
    done: list[tuple[JobRef, Outcome]],
) -> None:
    """However :func:`_add_each` takes its shortcuts (one ``pack`` for a short success,
    one record for a run of one value), an ACK outcome sent alone is its ref followed
    by the outcome's record as a RESULT answer has it."""
    parts: list[bytes] = []
    ack_codec._add_each(parts, done)
    expected = b"".join(
        ack_codec._REF.pack(*ref) + b"".join(ack_codec._outcome_parts(outcome))
        for ref, outcome in done
    )
    assert b"".join(parts) == expected
