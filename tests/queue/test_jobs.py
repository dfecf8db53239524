"""Jobs, outcomes, header blocks and the outcome history: values, limits, exact reasons.

Written from the survivors of ``scripts/mutate src/spreadq/queue/jobs.py``
(docs/mutation.md).
"""

from __future__ import annotations

import re

import pytest

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


def test_outcome_history_bounds() -> None:
    history = OutcomeHistory(max_items=2, max_bytes=10)
    assert (history.max_items, history.max_bytes, len(history)) == (2, 10, 0)
    first, second, third = JobRef(PID, 1), JobRef(PID, 2), JobRef(PID, 3)
    history.add(first, Outcome.success(b"aaaa"))
    history.add(second, Outcome.success(b"bbbb"))
    assert len(history) == 2  # exactly at both bounds: nothing evicted
    assert history.get(first) == Outcome.success(b"aaaa")
    history.add(first, Outcome.success(b"cc"))  # the latest wins, bytes recounted
    assert history.get(first) == Outcome.success(b"cc")
    history.add(third, Outcome.success(b"dddd"))  # 3 items: the oldest (second) goes
    assert (history.get(second), len(history)) == (None, 2)
    assert history.get(third) == Outcome.success(b"dddd")
    history.add(JobRef(PID, 4), Outcome.success(b"e" * 5))  # 11 bytes: first goes
    assert history.get(first) is None
    assert len(history) == 2


def test_outcome_history_bytes_bound_alone() -> None:
    history = OutcomeHistory(max_items=100, max_bytes=8)
    for n in range(4):
        history.add(JobRef(PID, n), Outcome.success(b"xy"))
    assert len(history) == 4  # 8 bytes: at the bound
    history.add(JobRef(PID, 0), Outcome.success(b"xy"))  # replaced, not added
    assert len(history) == 4
    history.add(JobRef(PID, 9), Outcome.success(b"z"))
    assert len(history) == 4  # the oldest went
    assert history.get(JobRef(PID, 1)) is None
    assert OutcomeHistory().max_items == 100_000
    assert OutcomeHistory().max_bytes == 16 * 1024 * 1024


def test_outcome_history_counts_bytes_after_an_eviction() -> None:
    history = OutcomeHistory(max_items=100, max_bytes=8)
    history.add(JobRef(PID, 1), Outcome.success(b"aaaaa"))
    history.add(JobRef(PID, 2), Outcome.success(b"bbb"))
    history.add(JobRef(PID, 3), Outcome.success(b"cccc"))  # 12 bytes: 1 goes, 7 left
    assert history.get(JobRef(PID, 1)) is None
    history.add(JobRef(PID, 4), Outcome.success(b"dd"))  # 9 bytes: 2 goes too
    assert history.get(JobRef(PID, 2)) is None
    assert len(history) == 2
