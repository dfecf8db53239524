"""Envelopes: byte-exact golden case, round trips for every kind, version skew, RAW
fallback, and fuzzing (arbitrary bytes decode or raise EnvelopeError, nothing else)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spreadq.errors import EnvelopeError, LocalProtocolError, MessageTooLarge
from spreadq.queue.envelope import (
    MAX_ENVELOPE_SIZE,
    MAX_RELEASE_REFS,
    Ack,
    Drain,
    Hello,
    JobBatch,
    JobFragment,
    JobSpec,
    Notice,
    Raw,
    Release,
    Stats,
    batch_size,
    declared_slots,
    decode,
    encode,
    encode_batch,
    encode_fragments,
    outcome_size,
)
from spreadq.queue.envelope import ack as ack_codec
from spreadq.queue.envelope.reader import _Reader as Reader
from spreadq.queue.jobs import (
    Job,
    JobRef,
    Outcome,
    Status,
    decode_headers,
    encode_headers,
)
from spreadq.queue.view import View

PID = bytes(range(16))

chars = st.characters(exclude_categories=["Cs"])  # no lone surrogates: not valid UTF-8
text = st.text(chars, max_size=12)
kinds = st.text(chars, min_size=1, max_size=12)
ids = st.binary(min_size=16, max_size=16)
u64 = st.integers(0, 2**64 - 1)
codecs = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=32)
headers = st.lists(st.tuples(text, text), max_size=4, unique_by=lambda kv: kv[0]).map(tuple)
specs = st.builds(
    JobSpec,
    seq=u64,
    kind=kinds,
    payload=st.binary(max_size=64),
    key=st.none() | text,
    headers=headers,
    dedupe_key=st.none() | st.text(chars, min_size=1, max_size=12),
)


def expected_headers(spec: JobSpec) -> dict[str, str]:
    """A spec's headers as decoded: a dedupe key travels as the ``dedupe_key`` header."""
    if spec.dedupe_key is None:
        return dict(spec.headers)
    return {n: v for n, v in spec.headers if n != "dedupe_key"} | {"dedupe_key": spec.dedupe_key}


outcomes = st.one_of(
    st.builds(
        Outcome.success, st.binary(max_size=100), st.integers(0, 0xFFFF), st.just("") | codecs
    ),
    st.builds(Outcome.failure, text, text, st.integers(0, 0xFFFF)),
)
refs = st.builds(JobRef, ids, u64)


def test_golden_batch_bytes() -> None:
    """One batch, byte for byte: the layout documented in the module docstring."""
    spec = JobSpec.build(7, "mk", b"\x01\x02", key="k", headers={"a": "b"})
    data = encode_batch(PID, 3, "json", [spec])
    expected = (
        b"SQ\x01\x01\x01\x00"  # magic, version 1, kind BATCH, 1 slot
        + PID
        + struct.pack("<Q", 3)  # mseq
        + b"\x04json"
        + struct.pack("<QBBHHI", 7, 1, 2, 1, 5, 2)  # seq, has-key, lens
        + b"mk"
        + b"k"
        + b"\x01a\x01\x00b"  # one header
        + b"\x01\x02"
    )
    assert data == expected
    assert len(data) == batch_size("json", [spec])


def test_golden_ack_bytes() -> None:
    """One ACK, byte for byte: a position, a result in another codec than the job's, a
    result in the job's own codec (no name), and a failure."""
    ack = Ack(
        PID,
        (
            (JobRef(PID, 7), Outcome.success(b"\x01", attempts=1, codec="raw")),
            (JobRef(PID, 8), Outcome.success(b"42", attempts=2)),
            (JobRef(PID, 9), Outcome.failure("E", "bad", attempts=3)),
        ),
        ((PID, 5),),
        backlog=4,
    )
    data = encode(ack)
    expected = (
        b"SQ\x01\x03\x00\x00"  # magic, version 1, kind ACK, no slots
        + PID  # incarnation
        + struct.pack("<IHH", 4, 1, 3)  # backlog, positions, outcomes
        + PID
        + struct.pack("<Q", 5)
        + PID
        + struct.pack("<QBHBBI", 7, 0, 1, 3, 0, 1)  # seq, OK, attempts, lens
        + b"raw\x01"
        + PID
        + struct.pack("<QBHBBI", 8, 0, 2, 0, 0, 2)  # the job's own codec: no name
        + b"42"
        + PID
        + struct.pack("<QBHBBI", 9, 1, 3, 0, 1, 3)  # FAILED
        + b"Ebad"
    )
    assert data == expected
    assert decode(data) == ack
    assert ack.outcomes[0][1].result_codec("json") == "raw"
    assert ack.outcomes[1][1].result_codec("json") == "json"


def test_a_failed_outcome_carries_no_codec() -> None:
    failed = Outcome(Status.FAILED, 1, b"", "E", "bad", codec="raw")
    with pytest.raises(LocalProtocolError, match="no result codec"):
        encode(Ack(PID, ((JobRef(PID, 1), failed),)))
    data = bytearray(encode(Ack(PID, ((JobRef(PID, 1), Outcome.failure("E", "bad")),))))
    at = 6 + 24 + 16 + 8 + 1 + 2  # the outcome's codec_len
    assert data[at] == 0
    data[at : at + 1] = b"\x03"
    data[at + 6 : at + 6] = b"raw"  # after the three lengths
    with pytest.raises(EnvelopeError, match="no result codec"):
        decode(bytes(data))


@given(ids, u64, codecs, st.lists(specs, max_size=6), st.booleans())
def test_batch_round_trip(
    producer_id: bytes, mseq: int, codec: str, jobs: list[JobSpec], notify: bool
) -> None:
    data = encode_batch(producer_id, mseq, codec, jobs, notify=notify)
    assert len(data) == batch_size(codec, jobs)
    assert declared_slots(data) == len(jobs)
    batch = decode(data)
    assert isinstance(batch, JobBatch)
    assert (batch.producer_id, batch.mseq, batch.codec) == (producer_id, mseq, codec)
    assert len(batch.jobs) == len(jobs)
    for job, spec in zip(batch.jobs, jobs, strict=True):
        assert job.ref == JobRef(producer_id, spec.seq)
        assert (job.kind, job.key, job.codec, job.error) == (spec.kind, spec.key, codec, None)
        assert bytes(job.payload) == spec.payload
        assert job.headers() == expected_headers(spec)
        assert job.dedupe_key == spec.dedupe_key
        assert job.notify is notify
    keys = {i: spec.dedupe_key for i, spec in enumerate(jobs) if spec.dedupe_key is not None}
    assert batch.jobs.dedupe_keys == keys  # type: ignore[attr-defined]
    assert encode(batch) == data


def test_decoded_payload_is_a_slice_of_the_message() -> None:
    data = encode_batch(PID, 1, "json", [JobSpec(1, "k", b"payload")])
    batch = decode(data)
    assert isinstance(batch, JobBatch)
    payload = batch.jobs[0].payload
    assert isinstance(payload, memoryview)
    assert payload.obj is data


@given(ids, u64, codecs, specs, st.integers(60, 200), st.integers(0, 600))
def test_fragments_round_trip(
    producer_id: bytes, mseq: int, codec: str, spec: JobSpec, room: int, size: int
) -> None:
    payload = bytes(i % 256 for i in range(size))
    spec = JobSpec(spec.seq, spec.kind, payload, spec.key, spec.headers, spec.dedupe_key)
    max_size = spec.encoded_size - len(spec.payload) + 6 + 29 + len(codec) + room
    mseq = min(mseq, 2**64 - 100)
    parts = encode_fragments(producer_id, mseq, codec, spec, max_size=max_size)
    assert all(len(part) <= max_size for part in parts)
    decoded = [decode(part) for part in parts]
    assert [declared_slots(part) for part in parts] == [0] * (len(parts) - 1) + [1]
    chunks = []
    for index, fragment in enumerate(decoded):
        assert isinstance(fragment, JobFragment)
        assert (fragment.index, fragment.count) == (index, len(parts))
        assert fragment.mseq == mseq + index
        assert fragment.job.ref == JobRef(producer_id, spec.seq)
        assert (fragment.job.kind, fragment.job.key) == (spec.kind, spec.key)
        assert fragment.job.dedupe_key == spec.dedupe_key
        chunks.append(bytes(fragment.job.payload))
        assert encode(fragment) == parts[index]
    assert b"".join(chunks) == spec.payload


def test_fragments_need_room() -> None:
    with pytest.raises(MessageTooLarge):
        encode_fragments(PID, 0, "json", JobSpec(1, "k", b"x" * 10), max_size=40)


@given(
    ids,
    st.lists(st.tuples(refs, outcomes), max_size=5),
    st.lists(st.tuples(ids, u64), max_size=4),
)
def test_ack_round_trip(
    incarnation: bytes, done: list[tuple[JobRef, Outcome]], positions: list[tuple[bytes, int]]
) -> None:
    ack = Ack(incarnation, tuple(done), tuple(positions), backlog=len(done))
    data = encode(ack)
    assert declared_slots(data) == 0
    assert decode(data) == ack
    assert len(data) == 6 + 24 + 24 * len(positions) + sum(outcome_size(o) for _, o in done)


@given(
    st.lists(outcomes, min_size=1, max_size=3),
    st.lists(st.tuples(refs, st.integers(0, 2)), max_size=12),
)
def test_an_ack_of_repeated_outcomes_round_trips(
    kinds: list[Outcome], picks: list[tuple[JobRef, int]]
) -> None:
    """An ACK shares the record of outcomes that are alike (a handler returning None):
    the bytes are those of each outcome on its own, and they read back alike."""
    done = tuple((ref, kinds[pick % len(kinds)]) for ref, pick in picks)
    data = encode(Ack(PID, done))
    assert decode(data) == Ack(PID, done)
    one_by_one = b"".join(encode(Ack(PID, (pair,)))[6 + 24 :] for pair in done)
    assert data[6 + 24 :] == one_by_one


def test_a_batch_mixing_notify_and_not_cannot_be_encoded_whole() -> None:
    data = encode_batch(PID, 1, "json", [JobSpec(1, "k", b""), JobSpec(2, "k", b"")])
    batch = decode(data)
    assert isinstance(batch, JobBatch)
    mixed = JobBatch(PID, 1, "json", [batch.jobs[0], batch.jobs[1]._replace(notify=True)])
    with pytest.raises(LocalProtocolError, match="all or none"):
        encode(mixed)


def test_golden_notice_bytes() -> None:
    """One NOTICE, byte for byte: the outcome count, then outcomes exactly as an ACK
    carries them."""
    notice = Notice(
        (
            (JobRef(PID, 7), Outcome.success(b"42", attempts=2)),
            (JobRef(PID, 9), Outcome.failure("E", "bad", attempts=3)),
        )
    )
    data = encode(notice)
    expected = (
        b"SQ\x01\x0b\x00\x00"  # magic, version 1, kind NOTICE, no slots
        + struct.pack("<H", 2)
        + PID
        + struct.pack("<QBHBBI", 7, 0, 2, 0, 0, 2)
        + b"42"
        + PID
        + struct.pack("<QBHBBI", 9, 1, 3, 0, 1, 3)
        + b"Ebad"
    )
    assert data == expected
    assert decode(data) == notice


@given(st.lists(st.tuples(refs, outcomes), max_size=5))
def test_notice_round_trip(done: list[tuple[JobRef, Outcome]]) -> None:
    notice = Notice(tuple(done))
    data = encode(notice)
    assert declared_slots(data) == 0
    assert decode(data) == notice
    assert len(data) == 6 + 2 + sum(outcome_size(o) for _, o in done)


@given(st.lists(st.tuples(refs, outcomes), min_size=1, max_size=3), st.integers(1, 40))
def test_a_cut_notice_is_an_envelope_error(done: list[tuple[JobRef, Outcome]], cut: int) -> None:
    data = encode(Notice(tuple(done)))
    with pytest.raises(EnvelopeError):
        decode(data[: max(6, len(data) - cut)])


@given(st.lists(refs, min_size=1, max_size=6), st.lists(outcomes, min_size=1, max_size=3))
def test_ack_outcomes_alike_decode_alike(refs_: list[JobRef], kinds_: list[Outcome]) -> None:
    # a worker's outcomes are mostly alike, and each distinct one is decoded once per ACK
    done = tuple((ref, kinds_[i % len(kinds_)]) for i, ref in enumerate(refs_))
    ack = Ack(PID, done)
    assert decode(encode(ack)) == ack
    assert decode(memoryview(bytearray(encode(ack)))) == ack  # a writable buffer too


# outcomes of one size (a 4-byte result, each with the job's codec, or each with "json"):
# what a worker whose handlers return alike results reports, and what the bulk reader
# takes; and one of another size, which makes it step aside
alike = st.sampled_from(["", "json"]).flatmap(
    lambda codec: st.lists(
        st.tuples(
            refs,
            st.builds(
                Outcome.success,
                st.sampled_from([b"null", b"true", b"1234"]),
                st.integers(1, 3),
                st.just(codec),
            ),
        ),
        min_size=4,
        max_size=12,
    )
)
odd_one = st.sampled_from([Outcome.success(b""), Outcome.failure("E", "bad")])
differing = st.sampled_from(["", "json", "msgpack"]).flatmap(
    lambda codec: st.lists(
        st.tuples(
            refs,
            st.builds(
                Outcome.success, st.binary(min_size=8, max_size=8), st.just(1), st.just(codec)
            ),
        ),
        min_size=10,
        max_size=40,
    )
)
"""Outcomes of one size whose results differ (timestamps, ids): more distinct records
than the bulk reader checks one by one, so it checks their heads."""


def _outcomes_region(done: list[tuple[JobRef, Outcome]]) -> tuple[memoryview, int]:
    """The outcomes one by one (never as runs), after a NOTICE's preamble and count."""
    parts: list[bytes] = []
    ack_codec._add_each(parts, done)
    data = encode(Notice(()))[:6] + struct.pack("<H", len(done)) + b"".join(parts)
    return memoryview(data), 6 + 2


def _each_or_error(data: memoryview, at: int, n: int) -> list[tuple[JobRef, Outcome]] | str:
    try:
        return list(ack_codec._read_entries(Reader(data, at), n))
    except EnvelopeError as error:
        return str(error)


def _bulk_or_error(data: memoryview, at: int, n: int) -> list[tuple[JobRef, Outcome]] | str:
    try:
        return list(ack_codec._read_outcomes(Reader(data, at), n))
    except EnvelopeError as error:
        return str(error)


def _check_bulk_reads_as_one_by_one(
    done: list[tuple[JobRef, Outcome]], odd: list[tuple[int, JobRef, Outcome]]
) -> None:
    for at, ref, outcome in odd:  # one of another size: the bulk reader steps aside
        done.insert(min(at, len(done)), (ref, outcome))
    data, start = _outcomes_region(done)
    bulk = ack_codec._read_alike(data, start, len(done))
    assert (bulk is None) == bool(odd)
    reader = Reader(data, start)
    assert list(ack_codec._read_outcomes(reader, len(done))) == done
    assert reader.at == len(data)
    assert _each_or_error(data, start, len(done)) == done


def _check_damaged_fail_alike(done: list[tuple[JobRef, Outcome]], draw: st.DataObject) -> None:
    data, start = _outcomes_region(done)
    damaged = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 3))):
        at = draw.draw(st.integers(start, len(damaged) - 1))
        damaged[at] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(start, len(damaged)))
    for candidate in (memoryview(bytes(damaged)), memoryview(bytes(damaged[:cut]))):
        assert _bulk_or_error(candidate, start, len(done)) == _each_or_error(
            candidate, start, len(done)
        )


@given(alike, st.lists(st.tuples(st.integers(0, 11), refs, odd_one), max_size=1))
def test_outcomes_read_in_bulk_are_read_as_one_by_one(
    done: list[tuple[JobRef, Outcome]], odd: list[tuple[int, JobRef, Outcome]]
) -> None:
    _check_bulk_reads_as_one_by_one(done, odd)


@given(differing, st.lists(st.tuples(st.integers(0, 39), refs, odd_one), max_size=1))
def test_differing_results_of_one_size_are_read_in_bulk_as_one_by_one(
    done: list[tuple[JobRef, Outcome]], odd: list[tuple[int, JobRef, Outcome]]
) -> None:
    _check_bulk_reads_as_one_by_one(done, odd)


@given(differing, st.data())
def test_damaged_differing_results_fail_in_bulk_as_one_by_one(
    done: list[tuple[JobRef, Outcome]], draw: st.DataObject
) -> None:
    _check_damaged_fail_alike(done, draw)


@given(alike, st.data())
def test_damaged_outcomes_fail_in_bulk_as_one_by_one(
    done: list[tuple[JobRef, Outcome]], draw: st.DataObject
) -> None:
    _check_damaged_fail_alike(done, draw)


def test_a_bad_codec_name_in_one_of_many_differing_results_is_refused_in_bulk_too() -> None:
    done = [(JobRef(PID, seq), Outcome.success(b"%08d" % seq, codec="json")) for seq in range(12)]
    data, start = _outcomes_region(done)
    damaged = bytearray(data)
    fifth = start + 4 * (len(data) - start) // 12  # the fifth outcome, and its codec name
    damaged[fifth + 24 + 9] = 0xFF
    assert ack_codec._read_alike(memoryview(bytes(damaged)), start, 12) is None
    assert _bulk_or_error(memoryview(bytes(damaged)), start, 12) == "bad codec name"


def test_a_codec_length_that_differs_in_one_of_many_results_sends_the_ack_one_by_one() -> None:
    done = [(JobRef(PID, seq), Outcome.success(b"%08d" % seq, codec="json")) for seq in range(12)]
    data, start = _outcomes_region(done)
    damaged = bytearray(data)
    fifth = start + 4 * (len(data) - start) // 12
    damaged[fifth + 24 + 3] = 3  # its codec name one byte shorter: it no longer fits the stride
    assert ack_codec._read_alike(memoryview(bytes(damaged)), start, 12) is None
    assert _bulk_or_error(memoryview(bytes(damaged)), start, 12) == _each_or_error(
        memoryview(bytes(damaged)), start, 12
    )


@given(
    st.lists(st.text(st.characters(min_codepoint=36, max_codepoint=126), max_size=32), max_size=6),
    st.tuples(st.integers(-(2**31), 2**31 - 1), st.integers(0, 2**31 - 1), st.integers(0, 99)),
    u64,
)
def test_view_round_trip(members: list[str], gid: tuple[int, int, int], ordinal: int) -> None:
    view = View(tuple(members), gid, ordinal)
    assert decode(encode(view)) == view


@given(ids, st.integers(0, 2**32 - 1), st.booleans())
def test_drain_and_hello_round_trip(incarnation: bytes, capacity: int, takes: bool) -> None:
    assert decode(encode(Drain(incarnation))) == Drain(incarnation)
    hello = Hello(incarnation, capacity, takes)
    assert decode(encode(hello)) == hello


def test_a_hello_without_its_flags_byte_takes_no_released_jobs() -> None:
    # a worker from before RELEASE sends the 20-byte body; flag bits unknown here are
    # ignored, so a later version can add some
    old = encode(Hello(PID, 3))
    assert len(old) == 6 + 20
    assert decode(old) == Hello(PID, 3, takes_released=False)
    assert decode(encode(Hello(PID, 3, takes_released=True))) == Hello(PID, 3, True)
    assert decode(old + b"\xfe") == Hello(PID, 3, takes_released=False)
    assert decode(old + b"\xff") == Hello(PID, 3, takes_released=True)
    with pytest.raises(EnvelopeError, match="trailing"):
        decode(old + b"\x01\x00")


@given(ids, st.lists(refs, max_size=50).map(tuple))
def test_release_round_trip(incarnation: bytes, released: tuple[JobRef, ...]) -> None:
    release = Release(incarnation, released)
    data = encode(release)
    assert len(data) == 6 + 18 + 24 * len(released)
    assert decode(data) == release


def test_a_release_names_at_most_its_limit_of_jobs() -> None:
    most = Release(PID, (JobRef(PID, 1),) * MAX_RELEASE_REFS)
    assert len(encode(most)) <= MAX_ENVELOPE_SIZE
    assert decode(encode(most)) == most
    with pytest.raises(LocalProtocolError, match="released jobs 4097"):
        encode(Release(PID, (JobRef(PID, 1),) * (MAX_RELEASE_REFS + 1)))
    # a body that claims more (which no encoder writes) is refused before it is read
    claimed = bytearray(encode(Release(PID, ())))
    claimed[-2:] = (MAX_RELEASE_REFS + 1).to_bytes(2, "little")
    with pytest.raises(EnvelopeError, match="a RELEASE of 4097 jobs"):
        decode(bytes(claimed))
    with pytest.raises(EnvelopeError, match="truncated"):
        decode(encode(Release(PID, (JobRef(PID, 1),)))[:-1])


@pytest.mark.parametrize("data", [b"", b"S", b"hello", b"QS\x01\x01", b"\x00" * 50])
def test_data_without_the_magic_is_raw(data: bytes) -> None:
    raw = decode(data)
    assert isinstance(raw, Raw)
    assert bytes(raw.data) == data


def test_unknown_version_keeps_its_declared_slots() -> None:
    data = bytearray(encode_batch(PID, 1, "json", [JobSpec(i, "k", b"") for i in range(5)]))
    data[2] = 2
    with pytest.raises(EnvelopeError, match="version 2"):
        decode(bytes(data))
    assert declared_slots(bytes(data)) == 5


@pytest.mark.parametrize("data", [b"SQ", b"SQ\x01", b"SQ\x01\x01\x05"])
def test_a_cut_preamble_takes_one_slot(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        decode(data)
    assert declared_slots(data) == 1


def test_unknown_kind_and_misplaced_slots_are_errors() -> None:
    with pytest.raises(EnvelopeError, match="unknown envelope kind"):
        decode(b"SQ\x01\xfe\x00\x00")  # kind 254: no such kind
    with pytest.raises(EnvelopeError, match="cannot take"):
        decode(b"SQ\x01\x05\x01\x00" + PID)  # a DRAIN declaring a slot


def test_trailing_and_truncated_bodies_are_errors() -> None:
    data = encode_batch(PID, 1, "json", [JobSpec(1, "k", b"abc")])
    with pytest.raises(EnvelopeError, match="trailing"):
        decode(data + b"x")
    with pytest.raises(EnvelopeError, match="truncated"):
        decode(data[:-1])


def test_bad_headers_fail_only_when_read() -> None:
    spec = JobSpec(1, "k", b"")
    data = bytearray(encode_batch(PID, 1, "json", [spec]))
    # give the job a 2-byte header block that claims a 5-byte name
    data[6 + 25 + 4 + 12 : 6 + 25 + 4 + 14] = struct.pack("<H", 2)
    data += b"\x05a"
    batch = decode(bytes(data))
    assert isinstance(batch, JobBatch)
    with pytest.raises(EnvelopeError):
        batch.jobs[0].headers()


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: JobSpec(-1, "k", b""), LocalProtocolError),
        (lambda: JobSpec(1, "", b""), LocalProtocolError),
        (lambda: JobSpec(1, "k" * 256, b""), LocalProtocolError),
        (lambda: JobSpec(1, "\ud800", b""), LocalProtocolError),
        (lambda: JobSpec(1, "k", b"", headers=(("h" * 256, ""),)), LocalProtocolError),
        (lambda: encode_batch(b"short", 1, "json", []), LocalProtocolError),
        (lambda: encode_batch(PID, 1, "", []), LocalProtocolError),
        (lambda: encode_batch(PID, 1, "j\u00e9", []), LocalProtocolError),
        (lambda: encode_batch(PID, 2**64, "json", []), LocalProtocolError),
        (
            lambda: encode_batch(PID, 1, "json", [JobSpec(1, "k", b"x" * MAX_ENVELOPE_SIZE)]),
            MessageTooLarge,
        ),
        (lambda: encode(Ack(b"x")), LocalProtocolError),
        (lambda: encode(Hello(PID, -1)), LocalProtocolError),
    ],
)
def test_encoding_refuses_what_the_envelope_cannot_carry(
    build: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        build()  # type: ignore[operator]


def test_headers_codec_round_trip() -> None:
    block = encode_headers((("deadline", "12.5"), ("trace", "ab\u00e9")))
    assert decode_headers(block) == {"deadline": "12.5", "trace": "ab\u00e9"}
    job = Job(JobRef(PID, 1), "k", None, "json", b"", block)
    assert job.headers()["trace"] == "ab\u00e9"


def test_outcome_helpers() -> None:
    assert Outcome.success(b"r").ok
    failed = Outcome.failure("ValueError", "bad", attempts=3)
    assert (failed.ok, failed.status, failed.attempts) == (False, Status.FAILED, 3)


# --- fuzzing ------------------------------------------------------------------------

kind_bytes = st.integers(0, 8)
any_preamble = st.tuples(st.integers(0, 3), kind_bytes, st.integers(0, 8)).map(
    lambda t: b"SQ" + struct.pack("<BBH", *t)
)


def _slots_in_preamble(data: bytes) -> int:
    """The slot rule, read independently of the module: the u16 at offset 4, or one
    slot when the preamble is cut short."""
    return int.from_bytes(data[4:6], "little") if len(data) >= 6 else 1


def _decode_or_envelope_error(data: bytes) -> None:
    try:
        result = decode(data)
    except EnvelopeError:
        assert data[:2] == b"SQ"  # only an envelope is refused; anything else is RAW
        assert declared_slots(data) == _slots_in_preamble(data)
        return
    if not data.startswith(b"SQ"):
        assert isinstance(result, Raw)
        assert bytes(result.data) == data
        return
    # a decoded envelope takes exactly the slots it declares
    slots = _slots_in_preamble(data)
    if isinstance(result, JobBatch):
        assert len(result.jobs) == slots
    elif isinstance(result, JobFragment):
        assert slots == (1 if result.index == result.count - 1 else 0)
        assert 0 <= result.index < result.count
    else:
        assert isinstance(result, Ack | View | Drain | Hello | Stats)
        assert slots == 0


@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _decode_or_envelope_error(data)


@given(any_preamble, st.binary(max_size=200))
def test_fuzz_behind_a_plausible_preamble(preamble: bytes, body: bytes) -> None:
    _decode_or_envelope_error(preamble + body)


valid_messages = st.one_of(
    st.builds(lambda jobs: encode_batch(PID, 1, "json", jobs), st.lists(specs, max_size=3)),
    st.builds(  # the first of several fragments: 10 payload bytes each
        lambda spec: encode_fragments(
            PID, 1, "j", spec, max_size=spec.encoded_size - len(spec.payload) + 46
        )[0],
        specs.filter(lambda spec: len(spec.payload) > 10),
    ),
    st.builds(
        lambda done: encode(Ack(PID, tuple(done), ((PID, 1),), 0)),
        st.lists(st.tuples(refs, outcomes), max_size=3),
    ),
    st.builds(lambda m: encode(View(tuple(m), (1, 2, 3), 4)), st.lists(text, max_size=3)),
)


@given(valid_messages, st.data())
def test_fuzz_mutated_valid_messages(data: bytes, draw: st.DataObject) -> None:
    mutated = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        if not mutated:
            break
        at = draw.draw(st.integers(0, len(mutated) - 1))
        mutated[at] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(mutated)))
    _decode_or_envelope_error(bytes(mutated[:cut]))
    _decode_or_envelope_error(bytes(mutated))
