"""Edges of the envelopes: what each encoder and decoder refuses (the exact reason, naming
the field, as a user debugging reads it), the boundaries of fragments and ACK outcomes, sizes.

Written from the survivors of ``scripts/mutate src/spreadq/queue/envelope``
(docs/mutation.md).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

import pytest

from spreadq.errors import EnvelopeError, LocalProtocolError, MessageTooLarge
from spreadq.queue.envelope import (
    MAX_ENVELOPE_SIZE,
    Ack,
    BatchJobs,
    Drain,
    Hello,
    JobBatch,
    JobFragment,
    JobSpec,
    Notice,
    ack_overhead,
    decode,
    encode,
    encode_batch,
    encode_fragments,
    outcome_size,
)
from spreadq.queue.jobs import Job, JobRef, Outcome, Status
from spreadq.queue.view import View

PID = bytes(range(16))
SHORT = b"\x01" * 15
U64 = "0..18446744073709551615"


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


TWO_PARTS = len(encode_fragments(PID, 1, "j", JobSpec(1, "k", b"ab"))[0]) - 1
"""A ``max_size`` that splits a two-byte payload in two."""


def job(seq: int = 1, payload: bytes = b"p") -> Job:
    return Job(JobRef(PID, seq), "k", None, "json", payload)


REFUSALS: list[tuple[str, Callable[[], object]]] = [
    (
        "producer_id must be 16 bytes, not 15",
        lambda: encode_fragments(SHORT, 1, "j", JobSpec(1, "k", b"")),
    ),
    ("incarnation must be 16 bytes, not 15", lambda: encode(Ack(SHORT))),
    (
        "producer_id must be 16 bytes, not 15",
        lambda: encode(Ack(PID, ((JobRef(SHORT, 1), Outcome.success()),))),
    ),
    (
        "job seq 18446744073709551616 is outside 0..18446744073709551615",
        lambda: encode(Ack(PID, ((JobRef(PID, 2**64), Outcome.success()),))),
    ),
    (
        "job seq -1 is outside 0..18446744073709551615",
        lambda: encode(Notice(((JobRef(PID, -1), Outcome.failure("E", "m")),))),
    ),
    ("incarnation must be 16 bytes, not 15", lambda: encode(Drain(SHORT))),
    ("incarnation must be 16 bytes, not 15", lambda: encode(Hello(SHORT, 1))),
    (
        "producer_id must be 16 bytes, not 15",
        lambda: encode(JobFragment(SHORT, 1, "j", 0, 1, job())),
    ),
    ("backlog 4294967296 is outside 0..4294967295", lambda: encode(Ack(PID, backlog=2**32))),
    ("capacity 4294967296 is outside 0..4294967295", lambda: encode(Hello(PID, 2**32))),
    ("capacity -1 is outside 0..4294967295", lambda: encode(Hello(PID, -1))),
    (
        "view ordinal 18446744073709551616 is outside 0..18446744073709551615",
        lambda: encode(View((), (1, 2, 3), 2**64)),
    ),
    ("members 65536 is outside 0..65535", lambda: encode(View(("m",) * 65536, (1, 2, 3), 1))),
    (
        "positions per ACK 65536 is outside 0..65535",
        lambda: encode(Ack(PID, (), ((PID, 1),) * 65536)),
    ),
    (
        "outcomes per ACK 65536 is outside 0..65535",
        lambda: encode(Ack(PID, ((JobRef(PID, 1), Outcome.success()),) * 65536)),
    ),
    (
        "mseq 18446744073709551616 is outside 0..18446744073709551615",
        lambda: encode(Ack(PID, (), ((PID, 2**64),))),
    ),
    (
        "mseq 18446744073709551616 is outside 0..18446744073709551615",
        lambda: encode(JobFragment(PID, 2**64, "j", 0, 1, job())),
    ),
    (
        "mseq 18446744073709551616 is outside 0..18446744073709551615",
        lambda: encode_fragments(PID, 2**64 - 1, "j", JobSpec(1, "k", b"ab"), max_size=TWO_PARTS),
    ),
    (
        "job seq 18446744073709551616 is outside 0..18446744073709551615",
        lambda: encode(Ack(PID, ((JobRef(PID, 2**64), Outcome.success()),))),
    ),
    ("fragment 1 of 1 is out of range", lambda: encode(JobFragment(PID, 1, "j", 1, 1, job()))),
    (
        "fragment 0 of 65536 is out of range",
        lambda: encode(JobFragment(PID, 1, "j", 0, 65536, job())),
    ),
    ("fragment -1 of 2 is out of range", lambda: encode(JobFragment(PID, 1, "j", -1, 2, job()))),
    (
        "member name is 256 bytes; the envelope allows 255",
        lambda: encode(View(("m" * 256,), (1, 2, 3), 1)),
    ),
]


@pytest.mark.parametrize(("message", "build"), REFUSALS, ids=[m[:40] for m, _ in REFUSALS])
def test_encoders_refuse_with_the_field_named(message: str, build: Callable[[], object]) -> None:
    with pytest.raises(LocalProtocolError, match=exactly(message)):
        build()


def test_the_largest_values_pass() -> None:
    assert decode(encode(Hello(PID, 2**32 - 1))) == Hello(PID, 2**32 - 1)
    last = JobFragment(PID, 2**64 - 1, "j", 65534, 65535, job())
    assert encode(last)  # the last of the most fragments
    assert encode(View(("m" * 255,), (1, 2, 3), 2**64 - 1))


def test_fragments_need_room_for_a_byte() -> None:
    spec = JobSpec(1, "k", b"ab")
    head = len(encode_fragments(PID, 1, "j", spec)[0]) - 2
    assert len(encode_fragments(PID, 1, "j", spec, max_size=head + 1)) == 2  # one byte each
    with pytest.raises(MessageTooLarge) as info:
        encode_fragments(PID, 1, "j", spec, max_size=head)
    assert (info.value.size, info.value.limit) == (head, head)
    assert "fragment header" in str(info.value)


def test_a_fragment_index_must_be_below_its_count() -> None:
    data = bytearray(encode(JobFragment(PID, 1, "j", 0, 1, job())))
    struct.pack_into("<H", data, 6 + 16 + 8, 1)  # index 1 of 1
    with pytest.raises(EnvelopeError, match=exactly("fragment 1 of 1 declares 1 slots")):
        decode(bytes(data))


def test_a_fragment_keeps_its_codec_on_the_job() -> None:
    (part,) = encode_fragments(PID, 1, "msgpack", JobSpec(1, "k", b"x"))
    fragment = decode(part)
    assert isinstance(fragment, JobFragment)
    assert (fragment.codec, fragment.job.codec) == ("msgpack", "msgpack")


def test_job_record_flags() -> None:
    data = bytearray(encode_batch(PID, 1, "j", [JobSpec(1, "k", b"x")]))
    at = 6 + 16 + 8 + 1 + 1  # preamble, pid, mseq, codec_len, codec
    assert data[at + 8] == 0  # flags: no key
    for flags, key_len, kind_len in ((8, 0, 1), (2, 1, 1), (0, 1, 1), (1, 0, 0), (0, 0, 0)):
        bad = bytearray(data)
        struct.pack_into("<BBH", bad, at + 8, flags, kind_len, key_len)
        with pytest.raises(EnvelopeError, match=exactly("bad job record flags")):
            decode(bytes(bad))
    bad = bytearray(data)
    bad[at + 8] = 8  # bit 3: no such flag
    with pytest.raises(EnvelopeError, match=exactly("bad job record flags")):
        decode(bytes(bad))
    notify = bytearray(data)
    notify[at + 8] = 4  # bit 2: the producer asks for a NOTICE
    batch = decode(bytes(notify))
    assert isinstance(batch, JobBatch)
    assert batch.jobs[0].notify
    plain = decode(bytes(data))
    assert isinstance(plain, JobBatch)
    assert not plain.jobs[0].notify
    bad[at + 8] = 2  # flagged with a dedupe key but carrying no dedupe_key header
    with pytest.raises(EnvelopeError, match="carries no valid dedupe_key header"):
        decode(bytes(bad))


def test_undecodable_text_is_named() -> None:
    view = bytearray(encode(View(("ab",), (1, 2, 3), 1)))
    view[-1] = 0xFF
    with pytest.raises(EnvelopeError, match=exactly("member name is not UTF-8")):
        decode(bytes(view))
    batch = bytearray(encode_batch(PID, 1, "j", [JobSpec(1, "kk", b"x")]))
    batch[6 + 16 + 8 + 1 + 1 + 18] = 0xFF  # the kind's first byte
    with pytest.raises(EnvelopeError, match=exactly("job kind or key is not UTF-8")):
        decode(bytes(batch))
    failed = bytearray(encode(Ack(PID, ((JobRef(PID, 1), Outcome.failure("E", "m")),))))
    failed[-1] = 0xFF
    with pytest.raises(EnvelopeError, match=exactly("error message is not UTF-8")):
        decode(bytes(failed))
    failed[-2] = 0xFF
    with pytest.raises(EnvelopeError, match=exactly("error type is not UTF-8")):
        decode(bytes(failed))


def test_a_successful_outcome_with_an_error_type_is_refused() -> None:
    ok = bytearray(encode(Ack(PID, ((JobRef(PID, 1), Outcome.success(b"r")),))))
    at = 6 + 24 + 16 + 8  # the outcome's status, attempts, codec_len, type_len, data_len
    ok[at + 4] = 1  # error_type_len
    ok[at + 5 : at + 9] = struct.pack("<I", 0)  # data_len 0: the byte "r" is the type
    with pytest.raises(EnvelopeError, match=exactly("a successful outcome carries no error type")):
        decode(bytes(ok))


def test_ack_outcomes_short_and_long_alike_and_not() -> None:
    # outcomes alike are decoded once per ACK; that must not mix up different ones
    plain = Outcome.success()
    twice = Outcome(Status.OK, 2, b"")  # an empty success on the second attempt
    small = Outcome.success(b"r")
    big = Outcome.success(b"x" * 300)  # too long to be shared
    failed = Outcome.failure("E", "m")
    outcomes = [plain, twice, small, big, failed, small, twice, big, failed, plain]
    ack = Ack(PID, tuple((JobRef(PID, n), o) for n, o in enumerate(outcomes)))
    data = encode(ack)
    for buffer in (data, memoryview(data), memoryview(bytearray(data))):
        decoded = decode(buffer)
        assert isinstance(decoded, Ack)
        assert [o for _, o in decoded.outcomes] == outcomes
        assert decoded == ack
    # a truncated outcome is refused, however the ACK was cut
    with pytest.raises(EnvelopeError, match=r"^truncated at byte \d+: 33 more bytes needed$"):
        decode(data[:-1])  # the last outcome, a plain success, is all fixed fields


def test_sizes() -> None:
    assert ack_overhead(0) == len(encode(Ack(PID)))
    assert ack_overhead(3) == len(encode(Ack(PID, (), ((PID, 1),) * 3)))
    for outcome in (
        Outcome.success(b"abc"),
        Outcome.success(b"abc", codec="raw"),
        Outcome.failure("ValueError", "bad \u00e9"),
        Outcome(Status.OK, 1, b"r", "E"),  # an odd success with an error type
    ):
        with_one = len(encode(Ack(PID, ((JobRef(PID, 1), outcome),))))
        assert outcome_size(outcome) == with_one - ack_overhead(0), outcome


def test_job_spec_build_without_headers() -> None:
    assert JobSpec.build(1, "k", b"p", headers={}).headers == ()
    assert JobSpec.build(1, "k", b"p").headers == ()
    assert JobSpec.build(1, "k", b"p", headers={"a": "b"}).headers == (("a", "b"),)


def test_codec_names_of_1_to_32_ascii_chars() -> None:
    for codec in ("j", "c" * 32):
        batch = decode(encode_batch(PID, 1, codec, [JobSpec(1, "k", b"")]))
        assert isinstance(batch, JobBatch)
        assert batch.codec == codec
    for bad in ("", "c" * 33, "\u00e9"):
        with pytest.raises(
            LocalProtocolError, match=exactly(f"codec name {bad!r} must be 1..32 ASCII chars")
        ):
            encode_batch(PID, 1, bad, [])
    data = bytearray(encode_batch(PID, 1, "j", []))
    data[-1] = 0xE9  # not ASCII
    with pytest.raises(EnvelopeError, match=exactly("bad codec name")):
        decode(bytes(data))


def test_a_batch_of_exactly_the_largest_size() -> None:
    empty = len(encode_batch(PID, 1, "j", [JobSpec(1, "k", b"")]))
    spec = JobSpec(1, "k", b"x" * (MAX_ENVELOPE_SIZE - empty))
    assert len(encode_batch(PID, 1, "j", [spec])) == MAX_ENVELOPE_SIZE
    over = JobSpec(1, "k", b"x" * (MAX_ENVELOPE_SIZE - empty + 1))
    with pytest.raises(MessageTooLarge) as info:
        encode_batch(PID, 1, "j", [over])
    assert (info.value.size, info.value.limit) == (MAX_ENVELOPE_SIZE + 1, MAX_ENVELOPE_SIZE)
    assert "job batch" in str(info.value)


def test_batch_records_cut_short_or_followed_by_more() -> None:
    data = encode_batch(PID, 1, "j", [JobSpec(1, "k", b"ab"), JobSpec(2, "k", b"")])
    second = len(encode_batch(PID, 1, "j", [JobSpec(1, "k", b"ab")]))
    with pytest.raises(EnvelopeError, match=exactly(f"truncated job record at byte {second}")):
        decode(data[: second + 17])  # one byte short of the second record's fixed part
    with pytest.raises(EnvelopeError, match=exactly(f"truncated job record at byte {second}")):
        decode(data[:-1])
    with pytest.raises(EnvelopeError, match=exactly("2 trailing bytes after the envelope")):
        decode(data + b"zz")
    assert decode(data[: second + 18] + data[second + 18 :]) == decode(data)


def test_batch_jobs_compare_as_sequences() -> None:
    batch = decode(encode_batch(PID, 1, "j", [JobSpec(1, "k", b"a"), JobSpec(2, "k", b"b")]))
    again = decode(encode_batch(PID, 1, "j", [JobSpec(1, "k", b"a"), JobSpec(2, "k", b"b")]))
    other = decode(encode_batch(PID, 1, "j", [JobSpec(1, "k", b"a"), JobSpec(2, "k", b"c")]))
    assert isinstance(batch, JobBatch)
    assert isinstance(again, JobBatch)
    assert isinstance(other, JobBatch)
    assert batch.jobs == again.jobs
    assert batch.jobs != other.jobs
    assert batch.jobs == tuple(again.jobs)
    assert [job.ref.producer_id for job in batch.jobs] == [PID, PID]
    assert batch.jobs[1:] == (again.jobs[1],)


def test_fragment_job_records_are_checked_too() -> None:
    (data,) = encode_fragments(PID, 1, "j", JobSpec(1, "k", b"x"))
    at = 6 + 16 + 8 + 2 + 2 + 1 + 1  # preamble, pid, mseq, index, count, codec_len, codec
    for flags, kind_len in ((8, 1), (0, 0)):
        bad = bytearray(data)
        struct.pack_into("<BB", bad, at + 8, flags, kind_len)
        with pytest.raises(EnvelopeError, match=exactly("bad job record flags")):
            decode(bytes(bad))


def test_a_fragment_past_its_count_is_refused_whatever_its_slots() -> None:
    data = bytearray(encode(JobFragment(PID, 1, "j", 0, 1, job())))
    struct.pack_into("<H", data, 6 + 16 + 8, 1)  # index 1 of 1
    struct.pack_into("<H", data, 4, 0)  # declaring no slot
    with pytest.raises(EnvelopeError, match=exactly("fragment 1 of 1 declares 0 slots")):
        decode(bytes(data))


def test_a_batch_key_that_is_not_utf8_is_refused() -> None:
    data = bytearray(encode_batch(PID, 1, "j", [JobSpec(1, "k", b"x", key="kk")]))
    data[6 + 16 + 8 + 1 + 1 + 18 + 1] = 0xFF  # the key's first byte, after the kind
    with pytest.raises(EnvelopeError, match=exactly("job kind or key is not UTF-8")):
        decode(bytes(data))


def test_a_bare_failure_is_not_a_plain_success() -> None:
    bare = Outcome(Status.FAILED, 1)
    ack = Ack(PID, ((JobRef(PID, 1), bare),))
    decoded = decode(encode(ack))
    assert isinstance(decoded, Ack)
    assert decoded.outcomes[0][1] == bare


def test_outcome_size_of_a_message_with_a_lone_surrogate() -> None:
    outcome = Outcome.failure("E", "bad \ud800")
    assert outcome_size(outcome) == outcome_size(Outcome.failure("E", "bad ?"))


def test_batch_jobs_hash_and_print_as_their_refs() -> None:
    batch = decode(encode_batch(PID, 1, "j", [JobSpec(1, "k", b"a")]))
    assert isinstance(batch, JobBatch)
    assert hash(batch.jobs) == hash(tuple(batch.jobs))
    assert repr(batch.jobs) == f"BatchJobs({[JobRef(PID, 1)]!r})"


@pytest.mark.parametrize("specs", [1, 6], ids=["one-by-one", "in-bulk"])
def test_batch_jobs_build_their_refs_when_asked_and_each_job_the_same_ref(specs: int) -> None:
    seqs = [40 + 3 * n for n in range(specs)]  # not in a row: refs are not arithmetic
    batch = decode(encode_batch(PID, 1, "j", [JobSpec(seq, "k", b"a") for seq in seqs]))
    assert isinstance(batch, JobBatch)
    jobs = batch.jobs
    assert isinstance(jobs, BatchJobs)
    assert (jobs.producer_id, list(jobs.seqs)) == (PID, seqs)
    assert [job.ref for job in jobs] == [JobRef(PID, seq) for seq in seqs]  # built alone
    assert jobs._refs is None  # nothing built them all yet
    refs = jobs.refs
    assert refs == [JobRef(PID, seq) for seq in seqs]
    assert jobs.refs is refs  # built once
    assert all(job.ref is ref for job, ref in zip(jobs, refs, strict=True))  # then shared


@pytest.mark.parametrize("uniform", [True, False], ids=["records-alike", "records-differ"])
def test_batch_jobs_build_gives_the_jobs_indexing_gives(uniform: bool) -> None:
    specs = [
        JobSpec(7 + n, "k", bytes([n]) * (4 if uniform else n + 1), headers=(("h", "v"),))
        for n in range(6)
    ]
    if not uniform:
        specs[3] = JobSpec(10, "other", b"x", key="a key", headers=(("h", "v"),))
    batch = decode(encode_batch(PID, 1, "j", specs, notify=True))
    assert isinstance(batch, JobBatch)
    jobs = batch.jobs
    assert isinstance(jobs, BatchJobs)
    assert (jobs._uniform is not None) is uniform  # the path each case means to take
    built = jobs.build([0, 2, 3, 5])
    assert built == [jobs[0], jobs[2], jobs[3], jobs[5]]
    assert [bytes(job.payload) for job in built] == [specs[i].payload for i in (0, 2, 3, 5)]
    assert all(job.notify and bytes(job.header_block) for job in built)
    assert jobs.build([]) == []


def test_batch_jobs_give_the_refs_of_some_jobs_without_building_the_others() -> None:
    seqs = [40 + 3 * n for n in range(6)]
    batch = decode(encode_batch(PID, 1, "j", [JobSpec(seq, "k", b"a") for seq in seqs]))
    assert isinstance(batch, JobBatch)
    jobs = batch.jobs
    assert isinstance(jobs, BatchJobs)
    assert jobs.refs_at([1, 4]) == [JobRef(PID, 43), JobRef(PID, 52)]
    built = jobs.build([1, 4])  # an owner's few jobs: their refs alone
    assert [job.ref for job in built] == [JobRef(PID, 43), JobRef(PID, 52)]
    assert jobs._refs is None  # the other four refs were never built
    given = [JobRef(PID, 43), JobRef(PID, 52)]
    assert all(  # refs the caller holds are the jobs' own
        job.ref is ref for job, ref in zip(jobs.build([1, 4], given), given, strict=True)
    )
    refs = jobs.refs
    assert all(ref is refs[i] for ref, i in zip(jobs.refs_at([5, 0]), [5, 0], strict=True))
    assert jobs.refs_at([]) == []


# -- the exact text of the remaining refusals ------------------------------------------


class Huge(bytes):
    """A payload that says it is 4 GiB long (nothing that big is allocated)."""

    def __len__(self) -> int:
        return 2**32


@pytest.mark.parametrize(
    ("message", "build"),
    [
        ("producer_id must be 16 bytes, not 15", lambda: encode_batch(SHORT, 1, "j", [])),
        ("producer_id must be 16 bytes, not 15", lambda: encode(Ack(PID, (), ((SHORT, 1),)))),
        (
            "producer_id must be 16 bytes, not 15",
            lambda: encode(Ack(PID, ((JobRef(SHORT, 1), Outcome.success()),))),
        ),
        (f"mseq 18446744073709551616 is outside {U64}", lambda: encode_batch(PID, 2**64, "j", [])),
        (f"job seq 18446744073709551616 is outside {U64}", lambda: JobSpec(2**64, "k", b"")),
        ("a job kind cannot be empty", lambda: JobSpec(1, "", b"")),
        ("job kind is 256 bytes; the envelope allows 255", lambda: JobSpec(1, "k" * 256, b"")),
        (
            "job key is 65536 bytes; the envelope allows 65535",
            lambda: JobSpec(1, "k", b"", key="k" * 65536),
        ),
        ("payload size 4294967296 is outside 0..4294967295", lambda: JobSpec(1, "k", Huge())),
        (
            "jobs per batch 65536 is outside 0..65535",
            lambda: encode_batch(PID, 1, "j", [JobSpec(1, "k", b"")] * 65536),
        ),
        (
            "error type is 256 bytes; the envelope allows 255",
            lambda: encode(Ack(PID, ((JobRef(PID, 1), Outcome.failure("E" * 256, "m")),))),
        ),
        (
            "error '\\ud800' is not valid Unicode",
            lambda: encode(Ack(PID, ((JobRef(PID, 1), Outcome.failure("E", "\ud800")),))),
        ),
        (
            "a failed outcome carries no result codec",
            lambda: encode(Ack(PID, ((JobRef(PID, 1), Outcome(Status.FAILED, codec="raw")),))),
        ),
    ],
)
def test_encoding_refusals(message: str, build: object) -> None:
    assert callable(build)
    with pytest.raises(LocalProtocolError, match=exactly(message)):
        build()


def test_too_many_fragments() -> None:
    spec = JobSpec(1, "k", b"x" * 65536)
    head = len(encode_fragments(PID, 1, "j", JobSpec(1, "k", b"x"))[0]) - 1
    with pytest.raises(
        LocalProtocolError, match=exactly("fragment count 65536 is outside 0..65535")
    ):
        encode_fragments(PID, 1, "j", spec, max_size=head + 1)


def test_size_refusals_name_what_was_too_big() -> None:
    empty = len(encode_batch(PID, 1, "j", [JobSpec(1, "k", b"")]))
    over = JobSpec(1, "k", b"x" * (MAX_ENVELOPE_SIZE - empty + 1))
    with pytest.raises(
        MessageTooLarge,
        match=exactly(
            f"job batch of {MAX_ENVELOPE_SIZE + 1} bytes exceeds the limit of "
            f"{MAX_ENVELOPE_SIZE} bytes"
        ),
    ):
        encode_batch(PID, 1, "j", [over])
    head = len(encode_fragments(PID, 1, "j", JobSpec(1, "k", b"x"))[0]) - 1
    with pytest.raises(
        MessageTooLarge,
        match=exactly(f"fragment header of {head} bytes exceeds the limit of {head} bytes"),
    ):
        encode_fragments(PID, 1, "j", JobSpec(1, "k", b"ab"), max_size=head)


def test_decoding_refusals() -> None:
    with pytest.raises(
        EnvelopeError, match=exactly("a 3-byte message is too short for a spreadq envelope")
    ):
        decode(b"SQ\x01")
    (fragment,) = encode_fragments(PID, 1, "j", JobSpec(1, "k", b"xy"))
    with pytest.raises(EnvelopeError, match=exactly("truncated job record at byte 36")):
        decode(fragment[:-1])
    with pytest.raises(EnvelopeError, match=exactly("truncated job record at byte 36")):
        decode(fragment[: 36 + 10])  # inside the record's fixed part
    bad_kind = bytearray(fragment)
    bad_kind[36 + 18] = 0xFF  # the kind's byte
    with pytest.raises(EnvelopeError, match=exactly("job kind or key is not UTF-8")):
        decode(bytes(bad_kind))
    view = encode(View(("ab",), (1, 2, 3), 1))
    with pytest.raises(EnvelopeError, match=exactly("truncated at byte 29: 2 more bytes needed")):
        decode(view[:-1])
    ack = encode(Ack(PID, (), ((PID, 1),)))
    with pytest.raises(EnvelopeError, match=exactly("truncated at byte 30: 24 more bytes needed")):
        decode(ack[:-1])
    bad = bytearray(encode(Ack(PID, ((JobRef(PID, 1), Outcome.success(b"r")),))))
    bad[6 + 24 + 24] = 3  # the outcome's status (0 ok, 1 failed, 2 cancelled)
    with pytest.raises(EnvelopeError, match=exactly("unknown outcome status 3")):
        decode(bytes(bad))
    failed = bytearray(encode(Ack(PID, ((JobRef(PID, 1), Outcome.failure("E", "m")),))))
    at = 6 + 24 + 24  # status, attempts, codec_len ...
    failed[at + 3] = 1  # a codec name of one byte: the "E" of the error type
    failed[at + 4] = 0  # ... and no error type
    with pytest.raises(EnvelopeError, match=exactly("a failed outcome carries no result codec")):
        decode(bytes(failed))


def test_versions_other_than_1_are_refused_with_their_reason() -> None:
    data = encode(Drain(b"i" * 16))
    assert data[2] == 1
    with pytest.raises(EnvelopeError, match=r"^a sealed envelope \(version 2\)"):
        decode(data[:2] + b"\x02" + data[3:])
    with pytest.raises(EnvelopeError, match=r"^envelope version 3 is not supported \(this is 1\)"):
        decode(data[:2] + b"\x03" + data[3:])


def test_job_spec_build_keeps_the_dedupe_key() -> None:
    assert JobSpec.build(1, "k", b"", dedupe_key="once").dedupe_key == "once"
    assert JobSpec.build(1, "k", b"").dedupe_key is None


def test_bad_dedupe_keys_are_refused_by_name() -> None:
    with pytest.raises(LocalProtocolError, match=r"^a dedupe key cannot be empty$"):
        JobSpec(1, "k", b"", None, (), "")
    with pytest.raises(LocalProtocolError, match=r"^dedupe key is 256 bytes"):
        JobSpec(1, "k", b"", None, (), "d" * 256)


def test_a_dedupe_key_of_the_longest_length_travels() -> None:
    longest = "d" * 255
    decoded = decode(
        encode_batch(b"p" * 16, 1, "json", [JobSpec(7, "k", b"{}", None, (), longest)])
    )
    assert isinstance(decoded, JobBatch)
    assert decoded.jobs[0].dedupe_key == longest


def test_a_job_flagged_with_a_dedupe_key_but_without_one_is_refused_by_name() -> None:
    seq = 0x0123456789ABCDEF
    data = bytearray(encode_batch(b"p" * 16, 1, "json", [JobSpec(seq, "k", b"{}")]))
    flags_at = data.index(seq.to_bytes(8, "little")) + 8
    data[flags_at] |= 0x02  # "has a dedupe key", with no header to carry it
    with pytest.raises(EnvelopeError, match=r"^a job flagged with a dedupe key carries no valid"):
        decode(bytes(data))


def test_key_bytes_without_the_key_flag_are_refused() -> None:
    seq = 0x0123456789ABCDEF
    data = bytearray(encode_batch(b"p" * 16, 1, "json", [JobSpec(seq, "k", b"{}", "kk")]))
    flags_at = data.index(seq.to_bytes(8, "little")) + 8
    assert data[flags_at] & 0x01
    data[flags_at] &= ~0x01 & 0xFF  # the key is still there, its flag gone
    with pytest.raises(EnvelopeError, match=r"^bad job record flags$"):
        decode(bytes(data))
