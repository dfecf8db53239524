"""Jobs, outcomes, header blocks and the outcome history: values, limits, exact reasons.

Written from the survivors of ``scripts/mutate src/spreadq/queue/jobs.py``
(docs/mutation.md).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spreadq.errors import EnvelopeError, LocalProtocolError
from spreadq.queue.jobs import (
    PLAIN_SUCCESS,
    JobRef,
    Outcome,
    OutcomeHistory,
    Status,
    decode_headers,
    encode_headers,
    encode_text,
)

PID = bytes(range(16))


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def test_a_ref_prints_short() -> None:
    assert str(JobRef(PID, 42)) == "00010203:42"


def test_outcome_constructors() -> None:
    assert Outcome.success() is PLAIN_SUCCESS
    assert (PLAIN_SUCCESS.status, PLAIN_SUCCESS.attempts, PLAIN_SUCCESS.result) == (
        Status.OK,
        1,
        b"",
    )
    for outcome in (
        Outcome.success(b"r"),
        Outcome.success(attempts=2),
        Outcome.success(codec="raw"),
    ):
        assert outcome is not PLAIN_SUCCESS
        assert outcome.ok
    assert Outcome.success(b"r") == Outcome(Status.OK, 1, b"r")
    assert Outcome.success(attempts=2) == Outcome(Status.OK, 2)
    assert Outcome.success(codec="raw").result_codec("json") == "raw"

    class Special(Outcome):
        __slots__ = ()

    assert type(Special.success()) is Special  # a subclass gets its own value
    failed = Outcome.failure("E", "m")
    assert (failed.status, failed.attempts, failed.result, failed.ok) == (
        Status.FAILED,
        1,
        b"",
        False,
    )


def test_encode_text_limits_and_reasons() -> None:
    assert encode_text("\u00e9" * 2, "x", 4) == "\u00e9\u00e9".encode()
    with pytest.raises(LocalProtocolError, match=exactly("x is 5 bytes; the envelope allows 4")):
        encode_text("abcde", "x", 4)
    with pytest.raises(LocalProtocolError, match=exactly("x 'a\\ud800' is not valid Unicode")):
        encode_text("a\ud800", "x", 10)


def test_header_limits_and_reasons() -> None:
    with pytest.raises(
        LocalProtocolError, match=exactly("header name is 256 bytes; the envelope allows 255")
    ):
        encode_headers([("n" * 256, "v")])
    with pytest.raises(
        LocalProtocolError, match=exactly("header value is 65536 bytes; the envelope allows 65535")
    ):
        encode_headers([("n", "v" * 65536)])
    # the block as a whole: 65535 bytes pass, one more does not
    value = "v" * (65535 - 4)
    assert len(encode_headers([("n", value)])) == 65535
    with pytest.raises(
        LocalProtocolError, match=exactly("headers take 65536 bytes; the envelope allows 65535")
    ):
        encode_headers([("nn", value)])


def test_decode_headers_refusals() -> None:
    block = encode_headers([("a", "\u00e9")])
    assert decode_headers(block) == {"a": "\u00e9"}
    with pytest.raises(EnvelopeError, match=exactly("truncated header block")):
        decode_headers(block[:-1])
    with pytest.raises(EnvelopeError, match=r"^malformed header block: "):
        decode_headers(block[:2])
    bad = bytearray(block)
    bad[-1] = 0xFF
    with pytest.raises(EnvelopeError, match=r"^malformed header block: .*utf-8"):
        decode_headers(bytes(bad))


def test_outcome_history_keeps_two_generations() -> None:
    history = OutcomeHistory(max_items=2, max_bytes=100)
    assert (history.max_items, history.max_bytes, len(history)) == (2, 100, 0)
    one, two, three, four = (JobRef(PID, n) for n in (1, 2, 3, 4))
    history.add(one, Outcome.success(b"aaaa"))
    history.add(two, Outcome.success(b"bbbb"))  # the generation is full: it becomes the old one
    history.add(three, Outcome.success(b"cccc"))
    assert len(history) == 3  # at least the last two, at most four
    assert [history.get(r) for r in (one, two, three)] == [
        Outcome.success(b"aaaa"),
        Outcome.success(b"bbbb"),
        Outcome.success(b"cccc"),
    ]
    history.add(four, Outcome.success(b"dddd"))  # full again: the old generation goes
    assert (history.get(one), history.get(two), len(history)) == (None, None, 2)
    assert history.get(four) == Outcome.success(b"dddd")


def test_outcome_history_the_latest_outcome_wins_across_generations() -> None:
    history = OutcomeHistory(max_items=2, max_bytes=100)
    first, other = JobRef(PID, 1), JobRef(b"\xff" * 16, 1)  # the same seq, two producers
    history.add(first, Outcome.success(b"old"))
    history.add(other, Outcome.success(b"x"))  # first is in the old generation now
    history.add(first, Outcome.success(b"new"))  # moves to the current one
    assert history.get(first) == Outcome.success(b"new")
    assert history.get(other) == Outcome.success(b"x")
    assert len(history) == 2  # counted once
    history.add(first, Outcome.success(b"newer"))  # replaced in the current generation
    assert (history.get(first), len(history)) == (Outcome.success(b"newer"), 2)
    history.add(JobRef(PID, 2), Outcome.success(b""))  # full: the old generation goes
    assert history.get(other) is None
    assert history.get(first) == Outcome.success(b"newer")


def test_outcome_history_bytes_bound_closes_a_generation() -> None:
    history = OutcomeHistory(max_items=100, max_bytes=8)
    history.add(JobRef(PID, 1), Outcome.success(b"aa"))
    history.add(JobRef(PID, 2), Outcome.success(b"bb"))  # 4 bytes: half the bound, open
    history.add(JobRef(PID, 3), Outcome.success(b"c"))  # 5: past half, closed
    history.add(JobRef(PID, 4), Outcome.success(b"dd"))
    history.add(JobRef(PID, 4), Outcome.success(b"d"))  # replaced: 1 byte, not 3
    history.add(JobRef(PID, 5), Outcome.success(b"eee"))  # 4: still open
    assert len(history) == 5
    history.add(JobRef(PID, 6), Outcome.success(b"f"))  # 5: closed, 1 to 3 forgotten
    assert [history.get(JobRef(PID, n)) is None for n in range(1, 7)] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert OutcomeHistory().max_items == 100_000
    assert OutcomeHistory().max_bytes == 16 * 1024 * 1024


def test_an_outcome_history_of_no_items_remembers_nothing() -> None:
    history = OutcomeHistory(max_items=0)
    history.add(JobRef(PID, 1), Outcome.success())
    assert (history.get(JobRef(PID, 1)), len(history)) == (None, 0)


@given(
    st.integers(1, 6),
    st.integers(2, 40),
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 12), st.binary(max_size=6))),
)
def test_outcome_history_remembers_the_last_items_within_its_bounds(
    max_items: int, max_bytes: int, adds: list[tuple[int, int, bytes]]
) -> None:
    history = OutcomeHistory(max_items=max_items, max_bytes=max_bytes)
    latest: dict[JobRef, Outcome] = {}
    largest: dict[JobRef, int] = {}  # the largest result each ref was added with
    order: list[JobRef] = []  # distinct refs, most recently added last
    for producer, seq, result in adds:
        ref, outcome = JobRef(bytes([producer]) * 16, seq), Outcome.success(result)
        history.add(ref, outcome)
        latest[ref] = outcome
        largest[ref] = max(largest.get(ref, 0), len(result))
        if ref in order:
            order.remove(ref)
        order.append(ref)
        remembered = [r for r in latest if history.get(r) is not None]
        assert all(history.get(r) == latest[r] for r in remembered)  # never a stale one
        assert len(history) == len(remembered) <= 2 * max_items
        assert sum(len(latest[r].result) for r in remembered) <= max_bytes + 6
        # the most recent refs are all remembered, as many as fit half the byte bound;
        # a generation ends by the sizes it held then, so a ref re-added with a smaller
        # result counts with its largest (else a shrunk one makes room the history never had)
        recent, size = [], 0
        for r in reversed(order[-max_items:]):
            size += largest[r]
            if 2 * size > max_bytes:
                break
            recent.append(r)
        assert all(history.get(r) is not None for r in recent)


@given(st.binary(min_size=16, max_size=16), st.integers(0, 2**64 - 1))
def test_a_job_id_parses_back_to_its_ref(producer_id: bytes, seq: int) -> None:
    ref = JobRef(producer_id, seq)
    assert JobRef.parse(ref.id) == ref
    assert JobRef.parse(f"  {ref.id}\n") == ref  # surrounding space is forgiven


@pytest.mark.parametrize(
    "text",
    [
        "",
        "00" * 16,  # no seq
        "00" * 16 + ":",
        "00" * 16 + ":-1",
        "00" * 16 + ":x",
        "00" * 16 + ":+5",  # int() would take it; a job id does not
        "00" * 16 + f":{2**64}",
        "00" * 15 + ":1",  # 15 bytes
        "00" * 17 + ":1",
        "zz" * 16 + ":1",
        "00" * 16 + "-1",
    ],
)
def test_anything_else_is_no_job_id(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a job id \(32 hex digits, ':', a seq\)$"):
        JobRef.parse(text)


def test_a_cancelled_outcome_counts_no_attempt_unless_told() -> None:
    assert Outcome.cancelled() == Outcome(Status.CANCELLED, 0)
    assert Outcome.cancelled(2).attempts == 2
    assert not Outcome.cancelled().ok
