"""CANCEL (kind 8) and RESULT (kind 9): golden bytes, hypothesis round trips, refusals,
and the cancelled outcome status in ACKs and answers."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spreadq.errors import EnvelopeError, LocalProtocolError
from spreadq.queue.envelope import (
    Ack,
    Cancel,
    Kind,
    ResultAnswer,
    ResultQuery,
    ResultState,
    declared_slots,
    decode,
    encode,
)
from spreadq.queue.jobs import JobRef, Outcome, Status

PID = bytes(range(16))
REF = JobRef(PID, 7)

u16 = st.integers(0, 2**16 - 1)
u64 = st.integers(0, 2**64 - 1)
refs = st.builds(JobRef, st.binary(min_size=16, max_size=16), u64)
text = st.text(max_size=40)
codecs = st.sampled_from(["", "json", "raw", "msgpack"])
outcomes = st.one_of(
    st.builds(Outcome.success, st.binary(max_size=64), st.integers(1, 9), codecs),
    st.builds(Outcome.failure, st.text(min_size=1, max_size=20), text, st.integers(1, 9)),
    st.builds(Outcome.cancelled, st.integers(0, 9)),
)


def test_cancel_golden_bytes() -> None:
    data = encode(Cancel(REF))
    assert data == b"SQ\x01\x08\x00\x00" + PID + struct.pack("<Q", 7)
    assert declared_slots(data) == 0
    assert (int(Kind.CANCEL), int(Kind.RESULT)) == (8, 9)


def test_result_query_and_answer_golden_bytes() -> None:
    head = b"SQ\x01\x09\x00\x00"
    query = encode(ResultQuery(3, REF, 2))
    assert query == head + b"\x00" + struct.pack("<Q", 3) + PID + struct.pack("<QH", 7, 2)
    unknown = encode(ResultAnswer(3, REF, ResultState.UNKNOWN, 4))
    assert unknown == head + b"\x01" + struct.pack("<Q", 3) + PID + struct.pack("<QBH", 7, 2, 4)
    known = encode(ResultAnswer(3, REF, ResultState.KNOWN, 4, Outcome.cancelled()))
    # status 2 (cancelled), attempts 0, no codec, no error type, no message
    assert known == unknown[:-3] + struct.pack("<BH", 0, 4) + struct.pack("<BHBBI", 2, 0, 0, 0, 0)


@given(refs)
def test_cancel_round_trips(ref: JobRef) -> None:
    assert decode(encode(Cancel(ref))) == Cancel(ref)


@given(u64, refs, u16)
def test_query_round_trips(query_id: int, ref: JobRef, index: int) -> None:
    query = ResultQuery(query_id, ref, index)
    assert decode(encode(query)) == query


@given(u64, refs, u16, st.sampled_from(ResultState), outcomes)
def test_answer_round_trips(
    query_id: int, ref: JobRef, members: int, state: ResultState, outcome: Outcome
) -> None:
    answer = ResultAnswer(
        query_id, ref, state, members, outcome if state is ResultState.KNOWN else None
    )
    assert decode(encode(answer)) == answer


@given(st.lists(st.tuples(refs, outcomes), max_size=5))
def test_acks_carry_cancelled_outcomes(pairs: list[tuple[JobRef, Outcome]]) -> None:
    ack = Ack(bytes(16), tuple(pairs))
    assert decode(encode(ack)) == ack


def test_an_answer_carries_an_outcome_exactly_when_known() -> None:
    with pytest.raises(LocalProtocolError, match="exactly when it is KNOWN"):
        encode(ResultAnswer(1, REF, ResultState.KNOWN, 1))
    with pytest.raises(LocalProtocolError, match="exactly when it is KNOWN"):
        encode(ResultAnswer(1, REF, ResultState.PENDING, 1, Outcome.success()))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"SQ\x01\x08\x00\x00" + PID, "truncated"),
        (encode(Cancel(REF)) + b"x", "trailing"),
        (b"SQ\x01\x08\x01\x00" + PID + bytes(8), "cannot take 1 job slots"),
        (b"SQ\x01\x09\x00\x00\x05" + bytes(8) + PID + bytes(8), "unknown RESULT op 5"),
        (
            b"SQ\x01\x09\x00\x00\x01" + bytes(8) + PID + bytes(8) + b"\x07\x01\x00",
            "unknown RESULT state 7",
        ),
        (
            encode(ResultAnswer(1, REF, ResultState.KNOWN, 1, Outcome.cancelled()))[:-9]
            + struct.pack("<BHBBI", 2, 0, 4, 0, 0)
            + b"json",
            "carries no result codec",
        ),
    ],
)
def test_malformed_cancel_and_result_envelopes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        decode(data)


def test_the_cancelled_outcome() -> None:
    outcome = Outcome.cancelled()
    assert outcome.status is Status.CANCELLED
    assert not outcome.ok


@pytest.mark.parametrize("text", ["", "00:1", "zz" * 16 + ":1", PID.hex(), PID.hex() + ":-1"])
def test_a_job_id_that_does_not_parse_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a job id"):
        JobRef.parse(text)


def test_a_job_id_names_its_ref() -> None:
    assert REF.id == PID.hex() + ":7"
    assert JobRef.parse(REF.id) == REF
    assert str(REF) == PID[:4].hex() + ":7"  # the short form logs keep


QUERIED = JobRef(b"p" * 16, 1)


@pytest.mark.parametrize(
    ("envelope", "named"),
    [
        (ResultQuery(2**64, QUERIED), "query id"),
        (ResultQuery(1, QUERIED, 2**16), "member index"),
        (ResultAnswer(2**64, QUERIED, ResultState.UNKNOWN, 1), "query id"),
        (ResultAnswer(1, QUERIED, ResultState.UNKNOWN, 2**16), "members"),
        (
            ResultAnswer(1, QUERIED, ResultState.UNKNOWN, 1, Outcome.success()),
            "a RESULT answer carries an outcome exactly when it is KNOWN",
        ),
        (ResultAnswer(1, QUERIED, ResultState.KNOWN, 1), "a RESULT answer carries an outcome"),
    ],
)
def test_a_result_envelope_out_of_range_is_refused_by_name(envelope: object, named: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode(envelope)  # type: ignore[arg-type]
    assert str(info.value).startswith(named)
