"""A JOB BATCH's records read in bulk are read as one by one.

:func:`~spreadq.queue.envelope.batch._read_alike_records` takes a batch whose jobs share
a kind and a size (no key, no dedupe key) in one ``struct.iter_unpack``; anything else
goes to the record-by-record reader. These tests pin that both give the same jobs, and
on damaged or cut messages the same jobs or the same error.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spreadq.errors import EnvelopeError
from spreadq.queue.envelope import JobBatch, JobSpec, decode, encode_batch
from spreadq.queue.envelope import batch as batch_codec

PID = b"P" * 16
kinds = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8)
u64 = st.integers(0, 2**64 - 1)


@st.composite
def alike_batches(draw: st.DrawFn) -> tuple[list[JobSpec], bool]:
    """Specs of one kind and payload size (headers alike or none), and whether one of
    another size or with a key was slipped in."""
    kind = draw(kinds)
    size = draw(st.integers(0, 40))
    headers = draw(st.sampled_from([(), (("traceparent", "00-abc-def-01"),)]))
    count = draw(st.integers(4, 30))
    # another kind of the same size (records alike, heads not): every other job's
    other_kind = kind[::-1] if draw(st.booleans()) else kind
    specs = [
        JobSpec(
            draw(u64),
            other_kind if n % 2 else kind,
            draw(st.binary(min_size=size, max_size=size)),
            None,
            headers,
        )
        for n in range(count)
    ]
    odd = draw(st.booleans())
    if odd:
        at = draw(st.integers(0, count))
        other = draw(
            st.sampled_from(
                [
                    JobSpec(draw(u64), kind, b"x" * (size + 1), None, headers),
                    JobSpec(draw(u64), kind, b"y" * size, "a-key", headers),
                ]
            )
        )
        specs.insert(at, other)
    return specs, odd


def _decoded(data: bytes) -> object:
    """What ``data`` decodes to (a damaged preamble may make it RAW), or the error."""
    try:
        return decode(data)
    except EnvelopeError as error:
        return str(error)


def _one_by_one(data: bytes, monkeypatch: pytest.MonkeyPatch) -> object:
    with monkeypatch.context() as patched:
        patched.setattr(batch_codec, "_ALIKE_AT_LEAST", 10**9)  # never in bulk
        return _decoded(data)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=alike_batches(), notify=st.booleans())
def test_alike_records_are_read_in_bulk_as_one_by_one(
    batch: tuple[list[JobSpec], bool], notify: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs, odd = batch
    data = encode_batch(PID, 7, "json", specs, notify=notify)
    taken: list[bool] = []
    bulk = batch_codec._read_alike_records

    def spy(*args: object) -> object:
        result = bulk(*args)  # type: ignore[arg-type]
        taken.append(result is not None)
        return result

    with monkeypatch.context() as patched:
        patched.setattr(batch_codec, "_read_alike_records", spy)
        decoded = _decoded(data)
    assert taken == [not odd]  # in bulk unless one record differs
    assert decoded == _one_by_one(data, monkeypatch)
    assert isinstance(decoded, JobBatch)
    assert [job.ref.seq for job in decoded.jobs] == [spec.seq for spec in specs]
    assert [bytes(job.payload) for job in decoded.jobs] == [spec.payload for spec in specs]
    assert [job.kind for job in decoded.jobs] == [spec.kind for spec in specs]
    assert [job.notify for job in decoded.jobs] == [notify] * len(specs)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=alike_batches(), draw=st.data())
def test_damaged_batches_fail_in_bulk_as_one_by_one(
    batch: tuple[list[JobSpec], bool], draw: st.DataObject, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytearray(encode_batch(PID, 7, "json", batch[0]))
    for _ in range(draw.draw(st.integers(1, 3))):
        at = draw.draw(st.integers(0, len(data) - 1))
        data[at] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(data)))
    for candidate in (bytes(data), bytes(data[:cut])):
        assert _decoded(candidate) == _one_by_one(candidate, monkeypatch)


def test_a_kind_that_is_not_utf8_in_one_of_many_records_is_refused_in_bulk_too() -> None:
    specs = [JobSpec(seq, "kind", b"%06d" % seq) for seq in range(10)]
    data = bytearray(encode_batch(PID, 1, "json", specs))
    record = 18 + 4 + 6  # the fixed fields, the kind and the payload
    first = len(data) - 10 * record
    data[first + 5 * record + 18] = 0xFF  # the sixth record's kind
    assert batch_codec._read_alike_records(memoryview(bytes(data)), first, 10) is None
    with pytest.raises(EnvelopeError, match="not UTF-8"):
        decode(bytes(data))


@pytest.mark.parametrize(
    ("offset", "value"),
    # an unknown flag; a dedupe flag; a key length; a shorter kind; a header block
    [(8, 0x08), (8, 0x02), (10, 0x01), (9, 3), (12, 1)],
    ids=["unknown-flag", "dedupe-flag", "key-length-without-key", "kind-length", "headers-length"],
)
def test_a_bad_head_in_one_of_many_records_is_refused_in_bulk_too(offset: int, value: int) -> None:
    specs = [JobSpec(seq, "kind", b"%06d" % seq) for seq in range(10)]
    data = bytearray(encode_batch(PID, 1, "json", specs))
    record = 18 + 4 + 6  # the fixed fields, the kind and the payload
    first = len(data) - 10 * record
    data[first + 5 * record + offset] = value  # in the sixth record (its seq takes 8 bytes)
    assert batch_codec._read_alike_records(memoryview(bytes(data)), first, 10) is None
    with pytest.raises(EnvelopeError):
        decode(bytes(data))
