"""JOB BATCH and FRAGMENT: the jobs a producer sends, encoded and decoded.

Decoding a batch is the hot path (every consumer reads every job): the records are
checked and their offsets and refs kept; a :class:`Job` is built only when asked for."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from itertools import repeat
from operator import itemgetter
from typing import Any, Final, overload

from spreadq.errors import EnvelopeError, LocalProtocolError, MessageTooLarge
from spreadq.queue.envelope.preamble import (
    _PREAMBLE,
    _U16_MAX,
    _U32_MAX,
    _U64_MAX,
    MAX_ENVELOPE_SIZE,
    Kind,
    _check_id,
    _check_range,
    _codec_bytes,
    _preamble,
)
from spreadq.queue.envelope.reader import _read_codec, _Reader
from spreadq.queue.jobs import (
    DEDUPE_HEADER,
    MAX_DEDUPE_KEY,
    Job,
    JobRef,
    _new_ref,
    decode_headers,
    encode_headers,
    encode_text,
)

__all__ = [
    "BatchJobs",
    "JobBatch",
    "JobFragment",
    "JobSpec",
    "batch_size",
    "encode_batch",
    "encode_fragments",
]

_BATCH = struct.Struct("<16sQB")
_FRAGMENT = struct.Struct("<16sQHHB")
_new_job: Callable[[tuple[Any, ...]], Job] = partial(tuple.__new__, Job)
"""``Job(*fields)`` from a tuple of all nine, without the named tuple's Python ``__new__``
(the owner builds one per job it runs)."""
_JOB = struct.Struct("<QBBHHI")

_HAS_KEY = 0x01
_HAS_DEDUPE = 0x02
_NOTIFY = 0x04  # the producer asks for a NOTICE of the job's outcome
_FLAGS = _HAS_KEY | _HAS_DEDUPE | _NOTIFY


@dataclass(frozen=True, slots=True, init=False)
class JobSpec:
    """One job as a producer packs it; validated and pre-encoded when built.

    Raises:
        LocalProtocolError: a field that the envelope cannot carry (kind longer than
            255 bytes, key longer than 65,535 bytes, headers too big, seq out of range,
            text that is not valid Unicode, an empty dedupe key or one longer than
            :data:`~spreadq.queue.jobs.MAX_DEDUPE_KEY` bytes).
    """

    seq: int
    kind: str
    payload: bytes
    key: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    dedupe_key: str | None = None
    _head: bytes = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        seq: int,
        kind: str,
        payload: bytes,
        key: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        dedupe_key: str | None = None,
    ) -> None:
        # a producer builds one per put(): the fields are set through their slots, not
        # through the frozen class's object.__setattr__ (2.7 -> 1.7 us a spec)
        block = _header_block(headers, dedupe_key) if headers or dedupe_key is not None else b""
        head = _job_head(seq, kind, key, block, payload, dedupe_key)
        set_seq, set_kind, set_payload, set_key, set_headers, set_dedupe, set_head = _SPEC_SLOTS
        set_seq(self, seq)
        set_kind(self, kind)
        set_payload(self, payload)
        set_key(self, key)
        set_headers(self, headers)
        set_dedupe(self, dedupe_key)
        set_head(self, head)

    @classmethod
    def build(
        cls,
        seq: int,
        kind: str,
        payload: bytes,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        dedupe_key: str | None = None,
    ) -> JobSpec:
        """Build a spec from a headers mapping.

        Raises:
            LocalProtocolError: as for the constructor.
        """
        items = tuple(headers.items()) if headers else ()
        return cls(seq, kind, payload, key, items, dedupe_key)

    @property
    def encoded_size(self) -> int:
        """Bytes this job adds to a batch."""
        return len(self._head) + len(self.payload)


_SPEC_SLOTS: Final = tuple(
    getattr(JobSpec, name).__set__
    for name in ("seq", "kind", "payload", "key", "headers", "dedupe_key", "_head")
)
"""The slot setters of :class:`JobSpec`'s fields, in its ``__init__``'s order."""


@dataclass(frozen=True, slots=True)
class JobBatch:
    """JOB BATCH: one producer message carrying ``len(jobs)`` jobs (as many slots).

    A decoded batch's ``jobs`` is a :class:`BatchJobs`: each :class:`Job` is built when
    it is read, and the refs alone are at hand without building any.
    """

    producer_id: bytes
    mseq: int
    codec: str
    jobs: Sequence[Job]


class BatchJobs(Sequence[Job]):
    """The jobs of a decoded JOB BATCH, built on demand from the message.

    Every consumer reads every job, and most belong to others (docs/deployment.md#what-to-size):
    decoding checks each job record (bounds, flags, UTF-8 kind and key) and keeps its
    offset and its seq; ``jobs[i]`` builds the :class:`Job` (kind, key, and slices of the
    message for headers and payload) each time it is asked for, and :attr:`refs` the
    jobs' refs the first time it is read. A member that only counts other members' jobs
    goes by :attr:`producer_id` and :attr:`seqs` and builds no ref.
    """

    __slots__ = (
        "_codec",
        "_mv",
        "_offsets",
        "_refs",
        "_uniform",
        "dedupe_keys",
        "producer_id",
        "seqs",
    )

    def __init__(
        self,
        mv: memoryview,
        producer_id: bytes,
        codec: str,
        offsets: list[int],
        seqs: list[int],
        dedupe_keys: dict[int, str] | None = None,
        uniform: _Uniform | None = None,
    ) -> None:
        self._mv = mv
        self._codec = codec
        self._offsets = offsets
        self._uniform = uniform  # what every record shares, when they share their head
        self._refs: list[JobRef] | None = None
        self.producer_id = producer_id
        """The producer of every job of the batch."""
        self.seqs: Sequence[int] = seqs
        """Each job's seq, in order."""
        self.dedupe_keys: Mapping[int, str] = dedupe_keys or {}
        """The dedupe key of each job that has one, by its index (empty: none has)."""

    @property
    def refs(self) -> Sequence[JobRef]:
        """Each job's ref, in order (built the first time it is read)."""
        refs = self._refs
        if refs is None:
            refs = self._refs = list(map(_new_ref, zip(repeat(self.producer_id), self.seqs)))
        return refs

    def _ref(self, index: int) -> JobRef:
        """Job ``index``'s ref: from :attr:`refs` once built, else alone."""
        refs = self._refs
        if refs is not None:
            return refs[index]
        return _new_ref((self.producer_id, self.seqs[index]))

    def refs_at(self, indexes: Sequence[int]) -> list[JobRef]:
        """The refs of the jobs at ``indexes``: from :attr:`refs` once built, else only
        these (a member that owns a few of a batch's jobs builds no other ref)."""
        refs = self._refs
        if refs is not None:
            return [refs[index] for index in indexes]
        producer_id, seqs = self.producer_id, self.seqs
        return [_new_ref((producer_id, seqs[index])) for index in indexes]

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, index: int) -> Job: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | Sequence[Job]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(len(self))[index])
        if self._uniform is None:
            return _job_at(self._mv, self._offsets[index], self._ref(index), self._codec)
        return self._build_uniform((index,), (self._ref(index),))[0]

    def build(self, indexes: Sequence[int], refs: Sequence[JobRef] | None = None) -> list[Job]:
        """``[jobs[i] for i in indexes]``, in one call: the jobs of a batch that its
        owner runs (each built as ``jobs[i]`` builds it). ``refs``: their refs, when the
        caller holds them already (``refs_at(indexes)`` otherwise)."""
        if self._uniform is None:
            return [self[index] for index in indexes]
        return self._build_uniform(indexes, self.refs_at(indexes) if refs is None else refs)

    def _build_uniform(self, indexes: Sequence[int], refs: Sequence[JobRef]) -> list[Job]:
        """The jobs at ``indexes`` (whose refs are ``refs``) of a batch whose records
        share their head: each is two slices of the message."""
        assert self._uniform is not None
        kind, skip, headers_len, payload_len, notify = self._uniform  # no key, no dedupe key
        mv, offsets, codec, new = self._mv, self._offsets, self._codec, _new_job
        built: list[Job] = []
        for index, ref in zip(indexes, refs, strict=True):
            at = offsets[index] + skip
            payload_at = at + headers_len
            headers = mv[at:payload_at] if headers_len else b""
            payload = mv[payload_at : payload_at + payload_len]
            built.append(new((ref, kind, None, codec, payload, headers, None, None, notify)))
        return built

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"BatchJobs({list(self.refs)!r})"


@dataclass(frozen=True, slots=True)
class JobFragment:
    """FRAGMENT ``index`` of ``count`` of one job too big for a message.

    ``job.payload`` is this fragment's chunk; the consumer concatenates them in order. The
    job takes its slot when its last fragment is delivered.
    """

    producer_id: bytes
    mseq: int
    codec: str
    index: int
    count: int
    job: Job


def _header_block(headers: Sequence[tuple[str, str]], dedupe_key: str | None) -> bytes:
    """The header block of a job: ``headers``, then the dedupe key when there is one."""
    if dedupe_key is None:
        return encode_headers(headers) if headers else b""
    if not dedupe_key:
        raise LocalProtocolError("a dedupe key cannot be empty")
    encode_text(dedupe_key, "dedupe key", MAX_DEDUPE_KEY)
    own = tuple((name, value) for name, value in headers if name != DEDUPE_HEADER)
    return encode_headers((*own, (DEDUPE_HEADER, dedupe_key)))


def _read_dedupe_key(block: bytes | memoryview) -> str:
    """The dedupe key in the header block of a job whose flag bit 1 is set."""
    value = decode_headers(block).get(DEDUPE_HEADER)
    if not value or len(value.encode("utf-8")) > MAX_DEDUPE_KEY:
        raise EnvelopeError("a job flagged with a dedupe key carries no valid dedupe_key header")
    return value


_NOTIFY_FLAGS: Final = tuple(bytes((flags | _NOTIFY,)) for flags in range(256))
"""Each flags byte with the NOTIFY bit set, by its value."""

_KINDS: dict[str, bytes] = {}
"""Job kinds checked and encoded by :func:`_job_head`: a producer puts a few kinds
many times each."""
_KINDS_KEPT: Final = 1024


def _job_head(
    seq: int,
    kind: str,
    key: str | None,
    headers: bytes,
    payload: bytes,
    dedupe_key: str | None = None,
) -> bytes:
    if not 0 <= seq <= _U64_MAX:
        _check_range(seq, "job seq", _U64_MAX)  # raises
    raw_kind = _KINDS.get(kind)
    if raw_kind is None:
        if not kind:
            raise LocalProtocolError("a job kind cannot be empty")
        raw_kind = encode_text(kind, "job kind", 0xFF)
        if len(_KINDS) >= _KINDS_KEPT:
            _KINDS.clear()
        _KINDS[kind] = raw_kind
    size = len(payload)
    if size > _U32_MAX:
        _check_range(size, "payload size", _U32_MAX)  # raises
    if key is None and dedupe_key is None:  # the most frequent
        return _JOB.pack(seq, 0, len(raw_kind), 0, len(headers), size) + raw_kind + headers
    raw_key = b"" if key is None else encode_text(key, "job key", _U16_MAX)
    flags = 0 if key is None else _HAS_KEY
    if dedupe_key is not None:
        flags |= _HAS_DEDUPE
    fixed = _JOB.pack(seq, flags, len(raw_kind), len(raw_key), len(headers), size)
    return fixed + raw_kind + raw_key + headers


def _batch_overhead(codec: str) -> int:
    return _PREAMBLE.size + _BATCH.size + len(codec.encode("ascii", "replace"))


def batch_size(codec: str, jobs: Sequence[JobSpec]) -> int:
    """The size in bytes of the batch :func:`encode_batch` would build."""
    return _batch_overhead(codec) + sum(job.encoded_size for job in jobs)


def encode_batch(
    producer_id: bytes, mseq: int, codec: str, jobs: Sequence[JobSpec], *, notify: bool = False
) -> bytes:
    """Encode a JOB BATCH of ``jobs`` (one slot each); with ``notify``, each job asks its
    owner for a NOTICE of its outcome (flag bit 2).

    Raises:
        LocalProtocolError: a bad producer id, mseq, codec name, or more than 65,535 jobs.
        MessageTooLarge: the batch passes :data:`MAX_ENVELOPE_SIZE`; split it, or send a
            job that is too big alone with :func:`encode_fragments`.
    """
    _check_id(producer_id, "producer_id")
    _check_range(mseq, "mseq", _U64_MAX)
    _check_range(len(jobs), "jobs per batch", _U16_MAX)
    raw_codec = _codec_bytes(codec)
    parts = [_preamble(Kind.BATCH, len(jobs)), _BATCH.pack(producer_id, mseq, len(raw_codec))]
    parts.append(raw_codec)
    if notify:
        for job in jobs:
            head = job._head  # the flags byte follows the u64 seq
            parts += (head[:8], _NOTIFY_FLAGS[head[8]], head[9:], job.payload)
    else:
        for job in jobs:
            parts += (job._head, job.payload)
    data = b"".join(parts)
    if len(data) > MAX_ENVELOPE_SIZE:
        raise MessageTooLarge(len(data), MAX_ENVELOPE_SIZE, "job batch")
    return data


def encode_fragments(
    producer_id: bytes,
    first_mseq: int,
    codec: str,
    job: JobSpec,
    *,
    max_size: int = MAX_ENVELOPE_SIZE,
) -> list[bytes]:
    """Split one job into FRAGMENT messages of at most ``max_size`` bytes.

    Fragment ``i`` has mseq ``first_mseq + i``; every fragment repeats the job's kind,
    key and headers, so a consumer that joined mid-way still counts the job's slot.

    Raises:
        LocalProtocolError: bad ids or names, or more than 65,535 fragments needed.
        MessageTooLarge: ``max_size`` leaves no room for payload.
    """
    _check_id(producer_id, "producer_id")
    raw_codec = _codec_bytes(codec)
    head_size = _PREAMBLE.size + _FRAGMENT.size + len(raw_codec) + len(job._head)
    room = min(max_size, MAX_ENVELOPE_SIZE) - head_size
    if room <= 0:
        raise MessageTooLarge(head_size, max_size, "fragment header")
    chunks = [job.payload[at : at + room] for at in range(0, len(job.payload), room)] or [b""]
    count = len(chunks)
    _check_range(count, "fragment count", _U16_MAX)
    _check_range(first_mseq + count - 1, "mseq", _U64_MAX)
    headers = _header_block(job.headers, job.dedupe_key)
    out: list[bytes] = []
    for index, chunk in enumerate(chunks):
        slots = 1 if index == count - 1 else 0
        head = _FRAGMENT.pack(producer_id, first_mseq + index, index, count, len(raw_codec))
        record = _job_head(job.seq, job.kind, job.key, headers, chunk, job.dedupe_key)
        out.append(b"".join((_preamble(Kind.FRAGMENT, slots), head, raw_codec, record, chunk)))
    return out


def _encode_batch_value(batch: JobBatch) -> bytes:
    specs = [_spec_of(job) for job in batch.jobs]
    asking = {job.notify for job in batch.jobs}
    if len(asking) > 1:
        raise LocalProtocolError("the jobs of one batch ask for a NOTICE all or none")
    notify = asking == {True}
    return encode_batch(batch.producer_id, batch.mseq, batch.codec, specs, notify=notify)


def _encode_fragment_value(frag: JobFragment) -> bytes:
    _check_id(frag.producer_id, "producer_id")
    _check_range(frag.mseq, "mseq", _U64_MAX)
    if not 0 <= frag.index < frag.count <= _U16_MAX:
        raise LocalProtocolError(f"fragment {frag.index} of {frag.count} is out of range")
    raw_codec = _codec_bytes(frag.codec)
    job = frag.job
    payload = bytes(job.payload)
    block = bytes(job.header_block)
    record = _job_head(job.ref.seq, job.kind, job.key, block, payload, job.dedupe_key)
    slots = 1 if frag.index == frag.count - 1 else 0
    head = _FRAGMENT.pack(frag.producer_id, frag.mseq, frag.index, frag.count, len(raw_codec))
    return b"".join((_preamble(Kind.FRAGMENT, slots), head, raw_codec, record, payload))


def _spec_of(job: Job) -> JobSpec:
    headers = tuple(job.headers().items())
    return JobSpec(job.ref.seq, job.kind, bytes(job.payload), job.key, headers, job.dedupe_key)


def _read_job(reader: _Reader, producer_id: bytes, codec: str) -> Job:
    # the hot path: every consumer reads every job, so offsets are computed inline
    mv, at = reader.mv, reader.at
    if at + _JOB.size > len(mv):
        raise EnvelopeError(f"truncated job record at byte {at}")
    seq, flags, kind_len, key_len, headers_len, payload_len = _JOB.unpack_from(mv, at)
    if flags & ~_FLAGS or (not flags & _HAS_KEY and key_len) or not kind_len:
        raise EnvelopeError("bad job record flags")
    key_at = at + _JOB.size + kind_len
    headers_at = key_at + key_len
    payload_at = headers_at + headers_len
    end = reader.at = payload_at + payload_len
    if end > len(mv):
        raise EnvelopeError(f"truncated job record at byte {at}")
    try:
        kind = str(mv[at + _JOB.size : key_at], "utf-8")
        key = str(mv[key_at:headers_at], "utf-8") if flags & _HAS_KEY else None
    except UnicodeDecodeError as exc:
        raise EnvelopeError("job kind or key is not UTF-8") from exc
    headers = mv[headers_at:payload_at] if headers_len else b""
    dedupe = _read_dedupe_key(headers) if flags & _HAS_DEDUPE else None
    ref = JobRef(producer_id, seq)
    payload = mv[payload_at:end]
    return _new_job((ref, kind, key, codec, payload, headers, None, dedupe, bool(flags & _NOTIFY)))


def _job_at(mv: memoryview, at: int, ref: JobRef, codec: str) -> Job:
    """The job whose record :func:`_decode_batch` checked at offset ``at``."""
    _, flags, kind_len, key_len, headers_len, payload_len = _JOB.unpack_from(mv, at)
    key_at = at + _JOB.size + kind_len
    headers_at = key_at + key_len
    payload_at = headers_at + headers_len
    kind = str(mv[at + _JOB.size : key_at], "utf-8")
    key = str(mv[key_at:headers_at], "utf-8") if flags & _HAS_KEY else None
    headers = mv[headers_at:payload_at] if headers_len else b""
    dedupe = _read_dedupe_key(headers) if flags & _HAS_DEDUPE else None
    payload = mv[payload_at : payload_at + payload_len]
    return _new_job((ref, kind, key, codec, payload, headers, None, dedupe, bool(flags & _NOTIFY)))


def _decode_batch(reader: _Reader, slots: int) -> JobBatch:
    producer_id, mseq, codec_len = reader.unpack(_BATCH)
    codec = _read_codec(reader, codec_len)
    pid: bytes = producer_id
    # the hot path: every consumer reads every job; check each record, build no Job
    read = _read_alike_records(reader.mv, reader.at, slots) if slots >= _ALIKE_AT_LEAST else None
    if read is None:
        read = _read_records(reader.mv, reader.at, slots)
    offsets, seqs, dedupe, reader.at, uniform = read
    reader.done()
    jobs = BatchJobs(reader.mv, pid, codec, offsets, seqs, dedupe, uniform)
    return JobBatch(pid, mseq, codec, jobs)


_Uniform = tuple[str, int, int, int, bool]
"""What the job records of a batch share when they share their head: the kind, the bytes
from a record's start to its headers, the headers' and the payload's sizes, and whether
the producer asked for a NOTICE (they have no key and no dedupe key)."""

_Records = tuple[list[int], list[int], dict[int, str] | None, int, _Uniform | None]
"""A batch's job records, checked: their offsets, seqs, dedupe keys by index (None:
none has one), the offset after the last, and what they all share (None: not their head)."""

_ALIKE_AT_LEAST: Final = 4
"""Job records in a batch from which :func:`_read_alike_records` is tried first."""
_JOB_HEAD = struct.Struct("<BBHHI")  # a job record's fixed fields after its seq


@lru_cache(maxsize=64)
def _alike_layout(kind_len: int, rest: int) -> struct.Struct:
    """Job records with a ``kind_len``-byte kind and ``rest`` bytes of headers and
    payload: the seq, and the fixed fields with the kind as one bytes."""
    return struct.Struct(f"<Q{_JOB_HEAD.size + kind_len}s{rest}x")


def _read_records(mv: memoryview, at: int, slots: int) -> _Records:
    """``slots`` job records from ``at``, one after the other.

    Raises:
        EnvelopeError: a record is cut short, or its flags, kind or key are bad.
    """
    size, fixed, unpack = len(mv), _JOB.size, _JOB.unpack_from
    offsets: list[int] = []
    seqs: list[int] = []
    add_offset, add_seq = offsets.append, seqs.append
    dedupe: dict[int, str] | None = None
    kind: memoryview | None = None  # the last kind checked: a batch's jobs mostly share one
    for _ in range(slots):
        if at + fixed > size:
            raise EnvelopeError(f"truncated job record at byte {at}")
        seq, flags, kind_len, key_len, headers_len, payload_len = unpack(mv, at)
        if flags & ~_FLAGS or (not flags & _HAS_KEY and key_len) or not kind_len:
            raise EnvelopeError("bad job record flags")
        key_at = at + fixed + kind_len
        headers_at = key_at + key_len
        end = headers_at + headers_len + payload_len
        if end > size:
            raise EnvelopeError(f"truncated job record at byte {at}")
        try:
            this_kind = mv[at + fixed : key_at]
            if kind is None or this_kind != kind:
                str(this_kind, "utf-8")
                kind = this_kind
            if flags:
                str(mv[key_at:headers_at], "utf-8")
        except UnicodeDecodeError as exc:
            raise EnvelopeError("job kind or key is not UTF-8") from exc
        if flags & _HAS_DEDUPE:  # only a job that has one pays for its header block
            if dedupe is None:
                dedupe = {}
            dedupe[len(offsets)] = _read_dedupe_key(mv[headers_at : headers_at + headers_len])
        add_offset(at)
        add_seq(seq)
        at = end
    return offsets, seqs, dedupe, at, None


def _read_alike_records(mv: memoryview, at: int, slots: int) -> _Records | None:
    """``slots`` job records of one size read in bulk, or None when they are not all
    such (then :func:`_read_records` reads them, and raises what it finds wrong).

    A producer that puts jobs of one kind with payloads of one size (fixed-size data,
    ids of one length) and no key or dedupe key sends records that differ only in their
    seq and payload. ``struct.iter_unpack`` splits them in C and each distinct head
    (flags, lengths and kind) is checked once. The split is sound for the reason it is
    for ACK outcomes: each record at the first one's stride declares that size again.
    """
    fixed = _JOB.size
    if at + fixed > len(mv):
        return None
    _, flags, kind_len, key_len, headers_len, payload_len = _JOB.unpack_from(mv, at)
    if flags & ~_NOTIFY or key_len or not kind_len:
        return None
    rest = headers_len + payload_len
    stride = fixed + kind_len + rest
    end = at + slots * stride
    if end > len(mv):
        return None
    records = list(_alike_layout(kind_len, rest).iter_unpack(mv[at:end]))
    heads = set(map(itemgetter(1), records))
    for head in heads:
        head_flags, kind_len_, key_len_, headers_len_, payload_len_ = _JOB_HEAD.unpack_from(head)
        if (
            head_flags & ~_NOTIFY
            or key_len_
            or kind_len_ != kind_len
            or headers_len_ != headers_len
            or payload_len_ != payload_len
        ):
            return None
        try:
            kind = str(head[_JOB_HEAD.size :], "utf-8")
        except UnicodeDecodeError:
            return None
    uniform = None
    if len(heads) == 1:  # one kind, one NOTICE flag: a job is two slices of the message
        uniform = (kind, fixed + kind_len, headers_len, payload_len, bool(flags & _NOTIFY))
    return list(range(at, end, stride)), list(map(itemgetter(0), records)), None, end, uniform


def _decode_fragment(reader: _Reader, slots: int) -> JobFragment:
    producer_id, mseq, index, count, codec_len = reader.unpack(_FRAGMENT)
    if not 0 <= index < count or slots != (index == count - 1):
        raise EnvelopeError(f"fragment {index} of {count} declares {slots} slots")
    codec = _read_codec(reader, codec_len)
    job = _read_job(reader, producer_id, codec)
    reader.done()
    return JobFragment(producer_id, mseq, codec, index, count, job)
