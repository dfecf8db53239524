"""spreadq's own messages on a queue's groups: compact, versioned, struct-based.

Theory of operation
-------------------
Every spreadq message starts with a six-byte *preamble* that every version keeps::

    offset 0  b"SQ"      magic
    offset 2  u8         version (this module writes and reads 1)
    offset 3  u8         kind (:class:`Kind`)
    offset 4  u16        slots: how many job slots the message takes on the WORK group

All integers are little-endian. ``slots`` is what lets replicas agree on job counting
even when they cannot read a message: a JOB BATCH of N jobs declares N, the last
FRAGMENT of a job declares 1, every other kind declares 0. A replica that meets an
unknown version or a body it cannot parse still takes ``slots`` slots (one, when the
preamble itself is cut short), each of which becomes a job that fails with an
:class:`~spreadq.errors.EnvelopeError` at its owner. Version 1 is the first; a later
version must keep the preamble and the meaning of ``slots``. Until a release ships
version 1, its bodies may still change in place; after that, a body change (a field
added) takes a new version.

Version 2 is a *sealed* version-1 envelope: the same preamble with version byte 2, the
version-1 body, and a 16-byte HMAC tag (:data:`SEAL_SIZE`) over everything before it,
made and checked by :mod:`spreadq.queue.seal` when a queue has a shared secret.
:func:`decode` reads version 1 only: a sealed message is unsealed first (by whoever
holds the secret), and a reader without the secret refuses it like any unknown
version, still counting its ``slots``. The size cap leaves room for the tag.

A WORK message that does not start with ``b"SQ"`` is a RAW job (sent by a C, Java or
Perl program): it takes one slot, is routed by its Spread ``mess_type`` and is handed to
a handler as bytes. spreadq sends every message with ``mess_type =`` :data:`MESS_TYPE`,
but recognition is by the magic, so a raw sender must not begin its data with ``b"SQ"``.

Bodies (version 1; ``str`` fields are UTF-8, prefixed by their byte length)::

    BATCH     producer_id 16s | mseq u64 | codec_len u8 | codec | slots x job record
    FRAGMENT  producer_id 16s | mseq u64 | index u16 | count u16 | codec_len u8 | codec |
              one job record whose payload is chunk ``index`` of ``count``
    job record  seq u64 | flags u8 (bit 0: has key, bit 1: has dedupe key) | kind_len u8 |
                key_len u16 |
                headers_len u16 | payload_len u32 | kind | key | headers | payload
                (a job with flag bit 1 carries its dedupe key in the ``dedupe_key`` header)
    headers   repeated: name_len u8 | name | value_len u16 | value
    ACK       incarnation 16s | backlog u32 | n_positions u16 | n_outcomes u16 |
              n_positions x (producer_id 16s | mseq u64) |
              n_outcomes x (producer_id 16s | seq u64 | status u8 | attempts u16 |
                            codec_len u8 | error_type_len u8 | data_len u32 |
                            codec | error_type | data)
    VIEW      gid 3 x i32 | ordinal u64 | n_members u16 | n_members x (len u8 | name)
    DRAIN     incarnation 16s
    HELLO     incarnation 16s | capacity u32
    CANCEL    producer_id 16s | seq u64
    RESULT    op u8 (0 query, 1 answer) | query_id u64 | producer_id 16s | seq u64 | then
              query:  index u16
              answer: state u8 | members u16 | (state 0 only) status u8 | attempts u16 |
                      codec_len u8 | error_type_len u8 | data_len u32 | codec | error_type | data
    STATS     incarnation 16s | state u8 | owned u32 | running u32 | done u64 | failed u64 |
              oldest_ms u32 | failovers u32 | takeover_ms_sum u64 | takeover_ms_max u32 |
              gid 3 x i32 | ordinal u64 | interval_ms u32 | member_len u8 | member |
              n_producers u16 | n_producers x (producer_id 16s | outstanding u32 | read u64)

CANCEL goes to WORK and FEEDBACK in one AGREED message, so consumers and the producer
see it at the same place among the ACKs (:class:`Cancel`). A RESULT query goes to WORK
and is answered by the member at its ``index`` in the view, to the asker's private
group (:class:`ResultQuery`, :class:`ResultAnswer`). An outcome's ``status`` is 0
success, 1 failure, 2 cancelled (no codec; ``data`` is an empty message).

STATS goes to the FEEDBACK group only (never WORK, so it takes no slot anywhere): one
consumer's periodic report for ``spreadq top`` and other observers (:class:`Stats`).

An ACK outcome's ``codec`` names the codec of a successful result only when it differs
from the job's own payload codec (``codec_len`` 0 otherwise, and always for a failure),
so a producer decodes the result with ``codec`` or else the codec it sent the job with.

Decoding is cheap for jobs a consumer does not own: the batch header and each job's
fixed fields are read and its kind and key checked, and the batch keeps each job's
offset and ref (:class:`BatchJobs`); a :class:`Job` is built only when asked for, with
headers and payload as slices of the message (``memoryview``, no copy), decoded only
by whoever runs the job.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, overload

from spreadq.errors import EnvelopeError, LocalProtocolError, MessageTooLarge
from spreadq.queue.jobs import (
    DEDUPE_HEADER,
    MAX_DEDUPE_KEY,
    PLAIN_SUCCESS,
    Job,
    JobRef,
    Outcome,
    Status,
    decode_headers,
    encode_headers,
    encode_text,
)
from spreadq.queue.view import View

__all__ = [
    "MAGIC",
    "MAX_ENVELOPE_SIZE",
    "MESS_TYPE",
    "SEAL_SIZE",
    "VERSION",
    "Ack",
    "BatchJobs",
    "Cancel",
    "Decoded",
    "Envelope",
    "Drain",
    "Hello",
    "JobBatch",
    "JobFragment",
    "JobSpec",
    "Kind",
    "Raw",
    "ResultAnswer",
    "ResultQuery",
    "ResultState",
    "Stats",
    "StatsState",
    "ack_overhead",
    "batch_size",
    "outcome_size",
    "declared_slots",
    "decode",
    "encode",
    "encode_batch",
    "encode_fragments",
]

MAGIC: Final = b"SQ"
VERSION: Final = 1
MESS_TYPE: Final = 0x5351
"""The Spread ``mess_type`` spreadq sends its envelopes with (ASCII ``"SQ"``)."""

SEAL_SIZE: Final = 16
"""Bytes a seal adds to an envelope (its tag; :mod:`spreadq.queue.seal`)."""

MAX_ENVELOPE_SIZE: Final = 140_000 - 48 - 2 * 32 - SEAL_SIZE
"""The largest envelope spreadq builds: the Java client's 140,000-byte rule for a message
addressed to two groups (docs/design/spread-protocol.md#message-size), less room for a
seal, so one cap serves JOB, ACK and control messages, sealed or not."""

MAX_CODEC_NAME: Final = 32
MAX_ATTEMPTS: Final = 0xFFFF


class Kind(enum.IntEnum):
    """The byte at offset 3 of every envelope."""

    BATCH = 1
    FRAGMENT = 2
    ACK = 3
    VIEW = 4
    DRAIN = 5
    HELLO = 6
    STATS = 7
    CANCEL = 8
    RESULT = 9


_PREAMBLE = struct.Struct("<2sBBH")
_BATCH = struct.Struct("<16sQB")
_FRAGMENT = struct.Struct("<16sQHHB")
_JOB = struct.Struct("<QBBHHI")
_ACK = struct.Struct("<16sIHH")
_POSITION = struct.Struct("<16sQ")
_OUTCOME = struct.Struct("<16sQBHBBI")
_VIEW = struct.Struct("<iiiQH")
_DRAIN = struct.Struct("<16s")
_HELLO = struct.Struct("<16sI")
_STATS = struct.Struct("<16sBIIQQIIQIiiiQI")
_STATS_PRODUCER = struct.Struct("<16sIQ")
_CANCEL = struct.Struct("<16sQ")
_RESULT = struct.Struct("<BQ16sQ")
_QUERY = struct.Struct("<H")
_ANSWER = struct.Struct("<BH")
_OUTCOME_TAIL = struct.Struct("<BHBBI")  # an ACK outcome without its ref
_QUERY_OP, _ANSWER_OP = 0, 1
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")

_new_ref: Callable[[tuple[bytes, int]], JobRef] = partial(tuple.__new__, JobRef)
"""``JobRef(producer_id, seq)`` from a tuple, without the named tuple's Python ``__new__``."""

_HAS_KEY = 0x01
_HAS_DEDUPE = 0x02
_FLAGS = _HAS_KEY | _HAS_DEDUPE
_ID_SIZE = 16
_REF_SIZE = _ID_SIZE + 8  # producer_id and seq, where an ACK outcome starts
_SHORT_OUTCOME = 256  # ACK outcomes up to this size are decoded once per ACK
_U16_MAX = 0xFFFF
_U32_MAX = 0xFFFF_FFFF
_U64_MAX = 0xFFFF_FFFF_FFFF_FFFF


# --- values -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
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

    def __post_init__(self) -> None:
        block = _header_block(self.headers, self.dedupe_key)
        head = _job_head(self.seq, self.kind, self.key, block, self.payload, self.dedupe_key)
        object.__setattr__(self, "_head", head)

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
    decoding checks each job record (bounds, flags, UTF-8 kind and key) and keeps its offset and its
    ref; ``jobs[i]`` builds the :class:`Job` (kind, key, and slices of the message for
    headers and payload) each time it is asked for.
    """

    __slots__ = ("_codec", "_mv", "_offsets", "_producer_id", "dedupe_keys", "refs")

    def __init__(
        self,
        mv: memoryview,
        producer_id: bytes,
        codec: str,
        offsets: list[int],
        refs: list[JobRef],
        dedupe_keys: dict[int, str] | None = None,
    ) -> None:
        self._mv = mv
        self._producer_id = producer_id
        self._codec = codec
        self._offsets = offsets
        self.refs: Sequence[JobRef] = refs
        """Each job's ref, in order."""
        self.dedupe_keys: Mapping[int, str] = dedupe_keys or {}
        """The dedupe key of each job that has one, by its index (empty: none has)."""

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, index: int) -> Job: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | Sequence[Job]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(len(self))[index])
        return _job_at(self._mv, self._offsets[index], self.refs[index], self._codec)

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


@dataclass(frozen=True, slots=True)
class Ack:
    """ACK: what a consumer finished, how far it read each producer, and its backlog."""

    incarnation: bytes
    outcomes: tuple[tuple[JobRef, Outcome], ...] = ()
    positions: tuple[tuple[bytes, int], ...] = ()
    backlog: int = 0


@dataclass(frozen=True, slots=True)
class Drain:
    """DRAIN: the sender takes no new work (re-announced after every view change)."""

    incarnation: bytes


@dataclass(frozen=True, slots=True)
class Hello:
    """HELLO: the sender's capacity (how many jobs it runs at once)."""

    incarnation: bytes
    capacity: int


class StatsState(enum.IntEnum):
    """What a consumer reporting :class:`Stats` is doing."""

    RUNNING = 0
    DRAINING = 1


@dataclass(frozen=True, slots=True)
class Stats:
    """STATS: one consumer's periodic report, sent to FEEDBACK only.

    Attributes:
        incarnation: the sender's session incarnation (as in its ACKs).
        member: the sender's Spread member name; a reader takes a report only from the
            member it names.
        state: running or draining.
        owned: outstanding jobs the sender owns (its backlog).
        running: handlers running now.
        done: jobs that succeeded on the sender since it started.
        failed: jobs that failed for good on the sender since it started.
        oldest_ms: how long its longest-running job has run, in milliseconds.
        failovers: jobs it took over from departed members.
        takeover_ms_sum: the sum, over those, of the time from the membership change to
            the takeover, in milliseconds; ``takeover_ms_max`` the longest.
        group_id: the WORK view's Spread group id; ``ordinal`` its local ordinal.
        interval_ms: how often the sender reports (a reader calls it gone after a few
            intervals without a report).
        producers: per producer: ``(producer_id, outstanding jobs, last mseq read)``.
    """

    incarnation: bytes
    member: str
    state: StatsState = StatsState.RUNNING
    owned: int = 0
    running: int = 0
    done: int = 0
    failed: int = 0
    oldest_ms: int = 0
    failovers: int = 0
    takeover_ms_sum: int = 0
    takeover_ms_max: int = 0
    group_id: tuple[int, int, int] = (0, 0, 0)
    ordinal: int = 0
    interval_ms: int = 0
    producers: tuple[tuple[bytes, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Cancel:
    """CANCEL: the job's producer asks that ``ref`` end as cancelled.

    Multicast to WORK and FEEDBACK with AGREED order. Where it lands among the ACKs
    decides, identically at every consumer and at the producer: a job still
    outstanding there is cancelled (never started again anywhere, and stopped where it
    runs); a job already completed keeps its outcome. Only the Spread member that sent
    the job's current copy may cancel it.
    """

    ref: JobRef


class ResultState(enum.IntEnum):
    """What the member asked by a :class:`ResultQuery` knows of the job."""

    KNOWN = 0
    """It remembers the outcome (in the answer)."""
    PENDING = 1
    """The job is outstanding: its outcome is not reported yet."""
    UNKNOWN = 2
    """It has no record of the job (never delivered to it, or forgotten)."""


@dataclass(frozen=True, slots=True)
class ResultQuery:
    """RESULT query: "what became of ``ref``?", multicast to WORK.

    Only the member at position ``index`` of the view at the query's place in the order
    answers, so one query gets one answer; an asker that hears UNKNOWN asks the next
    index, up to the view's size.
    """

    query_id: int
    ref: JobRef
    index: int = 0


@dataclass(frozen=True, slots=True)
class ResultAnswer:
    """RESULT answer, sent to the asker's private group.

    ``members`` is the size of the view the answerer was in (how many indexes there
    are to ask); ``outcome`` is set when ``state`` is KNOWN.
    """

    query_id: int
    ref: JobRef
    state: ResultState
    members: int
    outcome: Outcome | None = None


@dataclass(frozen=True, slots=True)
class Raw:
    """A WORK message that is not a spreadq envelope: one RAW job."""

    data: bytes | memoryview = field(repr=False)


Decoded = (
    JobBatch
    | JobFragment
    | Ack
    | View
    | Drain
    | Hello
    | Stats
    | Cancel
    | ResultQuery
    | ResultAnswer
    | Raw
)
"""What :func:`decode` returns."""

Envelope = (
    JobBatch | JobFragment | Ack | View | Drain | Hello | Stats | Cancel | ResultQuery
) | ResultAnswer


# --- encoding -----------------------------------------------------------------------


def _check_id(value: bytes, what: str) -> None:
    if len(value) != _ID_SIZE:
        raise LocalProtocolError(f"{what} must be {_ID_SIZE} bytes, not {len(value)}")


def _check_range(value: int, what: str, limit: int) -> None:
    if not 0 <= value <= limit:
        raise LocalProtocolError(f"{what} {value} is outside 0..{limit}")


def _header_block(headers: Sequence[tuple[str, str]], dedupe_key: str | None) -> bytes:
    """The header block of a job: ``headers``, then the dedupe key when there is one."""
    if dedupe_key is None:
        return encode_headers(headers)
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


def _job_head(
    seq: int,
    kind: str,
    key: str | None,
    headers: bytes,
    payload: bytes,
    dedupe_key: str | None = None,
) -> bytes:
    _check_range(seq, "job seq", _U64_MAX)
    if not kind:
        raise LocalProtocolError("a job kind cannot be empty")
    raw_kind = encode_text(kind, "job kind", 0xFF)
    raw_key = b"" if key is None else encode_text(key, "job key", _U16_MAX)
    _check_range(len(payload), "payload size", _U32_MAX)
    flags = 0 if key is None else _HAS_KEY
    if dedupe_key is not None:
        flags |= _HAS_DEDUPE
    fixed = _JOB.pack(seq, flags, len(raw_kind), len(raw_key), len(headers), len(payload))
    return fixed + raw_kind + raw_key + headers


def outcome_size(outcome: Outcome) -> int:
    """Bytes one outcome (with its ref) adds to an ACK."""
    if outcome.status is Status.OK and not outcome.error_type:  # codec names are ASCII
        return _OUTCOME.size + len(outcome.codec) + len(outcome.result)
    data = outcome.result if outcome.ok else outcome.error_message.encode("utf-8", "replace")
    text = len(outcome.codec) + len(outcome.error_type.encode("utf-8", "replace"))
    return _OUTCOME.size + text + len(data)


def ack_overhead(positions: int) -> int:
    """Bytes of an ACK without its outcomes, with ``positions`` read positions."""
    return _PREAMBLE.size + _ACK.size + positions * _POSITION.size


def _preamble(kind: Kind, slots: int) -> bytes:
    return _PREAMBLE.pack(MAGIC, VERSION, kind, slots)


def _batch_overhead(codec: str) -> int:
    return _PREAMBLE.size + _BATCH.size + len(codec.encode("ascii", "replace"))


def batch_size(codec: str, jobs: Sequence[JobSpec]) -> int:
    """The size in bytes of the batch :func:`encode_batch` would build."""
    return _batch_overhead(codec) + sum(job.encoded_size for job in jobs)


def _codec_bytes(codec: str) -> bytes:
    if not codec.isascii() or not 1 <= len(codec) <= MAX_CODEC_NAME:
        raise LocalProtocolError(f"codec name {codec!r} must be 1..{MAX_CODEC_NAME} ASCII chars")
    return codec.encode("ascii")


def encode_batch(producer_id: bytes, mseq: int, codec: str, jobs: Sequence[JobSpec]) -> bytes:
    """Encode a JOB BATCH of ``jobs`` (one slot each).

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


def _encode_ack(ack: Ack) -> bytes:
    _check_id(ack.incarnation, "incarnation")
    _check_range(ack.backlog, "backlog", _U32_MAX)
    _check_range(len(ack.positions), "positions per ACK", _U16_MAX)
    _check_range(len(ack.outcomes), "outcomes per ACK", _U16_MAX)
    parts = [
        _preamble(Kind.ACK, 0),
        _ACK.pack(ack.incarnation, ack.backlog, len(ack.positions), len(ack.outcomes)),
    ]
    for producer_id, mseq in ack.positions:
        _check_id(producer_id, "producer_id")
        _check_range(mseq, "mseq", _U64_MAX)
        parts.append(_POSITION.pack(producer_id, mseq))
    for ref, outcome in ack.outcomes:
        _check_ref(ref)
        parts += _outcome_parts(outcome, ref)
    return b"".join(parts)


def _check_ref(ref: JobRef) -> None:
    _check_id(ref.producer_id, "producer_id")
    _check_range(ref.seq, "job seq", _U64_MAX)


def _outcome_parts(outcome: Outcome, ref: JobRef | None) -> list[bytes]:
    """One outcome as an ACK carries it (with ``ref`` in front), or as a RESULT answer
    does (``ref`` None: the answer names the job once)."""
    raw_type = encode_text(outcome.error_type, "error type", 0xFF)
    data = outcome.result if outcome.ok else encode_text(outcome.error_message, "error", _U32_MAX)
    raw_codec = b""
    if outcome.codec:
        if not outcome.ok:
            raise LocalProtocolError("a failed outcome carries no result codec")
        raw_codec = _codec_bytes(outcome.codec)
    attempts = min(max(outcome.attempts, 0), MAX_ATTEMPTS)
    sizes = (len(raw_codec), len(raw_type), len(data))
    if ref is None:
        head = _OUTCOME_TAIL.pack(outcome.status, attempts, *sizes)
    else:
        head = _OUTCOME.pack(ref.producer_id, ref.seq, outcome.status, attempts, *sizes)
    return [head, raw_codec, raw_type, data]


def _encode_cancel(cancel: Cancel) -> bytes:
    _check_ref(cancel.ref)
    return _preamble(Kind.CANCEL, 0) + _CANCEL.pack(*cancel.ref)


def _encode_query(query: ResultQuery) -> bytes:
    _check_ref(query.ref)
    _check_range(query.query_id, "query id", _U64_MAX)
    _check_range(query.index, "member index", _U16_MAX)
    head = _RESULT.pack(_QUERY_OP, query.query_id, *query.ref)
    return _preamble(Kind.RESULT, 0) + head + _QUERY.pack(query.index)


def _encode_answer(answer: ResultAnswer) -> bytes:
    _check_ref(answer.ref)
    _check_range(answer.query_id, "query id", _U64_MAX)
    _check_range(answer.members, "members", _U16_MAX)
    state = ResultState(answer.state)
    if (state is ResultState.KNOWN) != (answer.outcome is not None):
        raise LocalProtocolError("a RESULT answer carries an outcome exactly when it is KNOWN")
    parts = [
        _preamble(Kind.RESULT, 0),
        _RESULT.pack(_ANSWER_OP, answer.query_id, *answer.ref),
        _ANSWER.pack(state, answer.members),
    ]
    if answer.outcome is not None:
        parts += _outcome_parts(answer.outcome, None)
    return b"".join(parts)


def _encode_view(view: View) -> bytes:
    names = [encode_text(member, "member name", 0xFF) for member in view.members]
    _check_range(len(names), "members", _U16_MAX)
    _check_range(view.ordinal, "view ordinal", _U64_MAX)
    parts = [_preamble(Kind.VIEW, 0), _VIEW.pack(*view.group_id, view.ordinal, len(names))]
    for name in names:
        parts += (_U8.pack(len(name)), name)
    return b"".join(parts)


def _encode_drain(drain: Drain) -> bytes:
    _check_id(drain.incarnation, "incarnation")
    return _preamble(Kind.DRAIN, 0) + _DRAIN.pack(drain.incarnation)


def _encode_hello(hello: Hello) -> bytes:
    _check_id(hello.incarnation, "incarnation")
    _check_range(hello.capacity, "capacity", _U32_MAX)
    return _preamble(Kind.HELLO, 0) + _HELLO.pack(hello.incarnation, hello.capacity)


def _encode_stats(stats: Stats) -> bytes:
    _check_id(stats.incarnation, "incarnation")
    name = encode_text(stats.member, "member name", 0xFF)
    _check_range(len(stats.producers), "producers per STATS", _U16_MAX)
    for value, what, limit in (
        (stats.owned, "owned", _U32_MAX),
        (stats.running, "running", _U32_MAX),
        (stats.done, "done", _U64_MAX),
        (stats.failed, "failed", _U64_MAX),
        (stats.oldest_ms, "oldest_ms", _U32_MAX),
        (stats.failovers, "failovers", _U32_MAX),
        (stats.takeover_ms_sum, "takeover_ms_sum", _U64_MAX),
        (stats.takeover_ms_max, "takeover_ms_max", _U32_MAX),
        (stats.ordinal, "view ordinal", _U64_MAX),
        (stats.interval_ms, "interval_ms", _U32_MAX),
    ):
        _check_range(value, what, limit)
    parts = [
        _preamble(Kind.STATS, 0),
        _STATS.pack(
            stats.incarnation,
            StatsState(stats.state),
            stats.owned,
            stats.running,
            stats.done,
            stats.failed,
            stats.oldest_ms,
            stats.failovers,
            stats.takeover_ms_sum,
            stats.takeover_ms_max,
            *stats.group_id,
            stats.ordinal,
            stats.interval_ms,
        ),
        _U8.pack(len(name)),
        name,
        _U16.pack(len(stats.producers)),
    ]
    for producer_id, outstanding, read in stats.producers:
        _check_id(producer_id, "producer_id")
        _check_range(outstanding, "outstanding", _U32_MAX)
        _check_range(read, "mseq", _U64_MAX)
        parts.append(_STATS_PRODUCER.pack(producer_id, outstanding, read))
    return b"".join(parts)


def _encode_batch_value(batch: JobBatch) -> bytes:
    specs = [_spec_of(job) for job in batch.jobs]
    return encode_batch(batch.producer_id, batch.mseq, batch.codec, specs)


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


_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    JobBatch: _encode_batch_value,
    JobFragment: _encode_fragment_value,
    Ack: _encode_ack,
    View: _encode_view,
    Drain: _encode_drain,
    Hello: _encode_hello,
    Stats: _encode_stats,
    Cancel: _encode_cancel,
    ResultQuery: _encode_query,
    ResultAnswer: _encode_answer,
}


def encode(envelope: Envelope) -> bytes:
    """Encode any envelope value (the Dispatcher's one call for ACK, VIEW, DRAIN, HELLO).

    Raises:
        LocalProtocolError: a field the envelope cannot carry.
        MessageTooLarge: a JOB BATCH over :data:`MAX_ENVELOPE_SIZE`.
    """
    return _ENCODERS[type(envelope)](envelope)


# --- decoding -----------------------------------------------------------------------


class _Reader:
    """A cursor over one message; every read is bounds-checked."""

    __slots__ = ("at", "mv")

    def __init__(self, mv: memoryview, at: int) -> None:
        self.mv = mv
        self.at = at

    def unpack(self, layout: struct.Struct) -> tuple[Any, ...]:
        end = self.at + layout.size
        if end > len(self.mv):
            raise EnvelopeError(f"truncated at byte {self.at}: {layout.size} more bytes needed")
        values = layout.unpack_from(self.mv, self.at)
        self.at = end
        return values

    def take(self, size: int) -> memoryview:
        end = self.at + size
        if end > len(self.mv):
            raise EnvelopeError(f"truncated at byte {self.at}: {size} more bytes needed")
        chunk = self.mv[self.at : end]
        self.at = end
        return chunk

    def text(self, size: int, what: str) -> str:
        chunk = self.take(size)
        try:
            return str(chunk, "utf-8")
        except UnicodeDecodeError as exc:
            raise EnvelopeError(f"{what} is not UTF-8") from exc

    def done(self) -> None:
        if self.at != len(self.mv):
            raise EnvelopeError(f"{len(self.mv) - self.at} trailing bytes after the envelope")


def _read_codec(reader: _Reader, size: int) -> str:
    raw = reader.take(size)
    if not 1 <= size <= MAX_CODEC_NAME or not bytes(raw).isascii():
        raise EnvelopeError("bad codec name")
    return str(raw, "ascii")


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
    return Job(ref, kind, key, codec, mv[payload_at:end], headers, dedupe_key=dedupe)


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
    return Job(ref, kind, key, codec, payload, headers, dedupe_key=dedupe)


def _decode_batch(reader: _Reader, slots: int) -> JobBatch:
    producer_id, mseq, codec_len = reader.unpack(_BATCH)
    codec = _read_codec(reader, codec_len)
    pid: bytes = producer_id
    # the hot path: every consumer reads every job; check each record, build no Job
    mv, at = reader.mv, reader.at
    size, fixed, unpack = len(mv), _JOB.size, _JOB.unpack_from
    offsets: list[int] = []
    refs: list[JobRef] = []
    dedupe: dict[int, str] | None = None
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
            str(mv[at + fixed : key_at], "utf-8")
            if flags:
                str(mv[key_at:headers_at], "utf-8")
        except UnicodeDecodeError as exc:
            raise EnvelopeError("job kind or key is not UTF-8") from exc
        if flags & _HAS_DEDUPE:  # only a job that has one pays for its header block
            if dedupe is None:
                dedupe = {}
            dedupe[len(offsets)] = _read_dedupe_key(mv[headers_at : headers_at + headers_len])
        offsets.append(at)
        refs.append(_new_ref((pid, seq)))
        at = end
    reader.at = at
    reader.done()
    return JobBatch(pid, mseq, codec, BatchJobs(mv, pid, codec, offsets, refs, dedupe))


def _decode_fragment(reader: _Reader, slots: int) -> JobFragment:
    producer_id, mseq, index, count, codec_len = reader.unpack(_FRAGMENT)
    if not 0 <= index < count or slots != (index == count - 1):
        raise EnvelopeError(f"fragment {index} of {count} declares {slots} slots")
    codec = _read_codec(reader, codec_len)
    job = _read_job(reader, producer_id, codec)
    reader.done()
    return JobFragment(producer_id, mseq, codec, index, count, job)


def _decode_ack(reader: _Reader, slots: int) -> Ack:
    incarnation, backlog, n_positions, n_outcomes = reader.unpack(_ACK)
    positions = tuple(reader.unpack(_POSITION) for _ in range(n_positions))
    outcomes: list[tuple[JobRef, Outcome]] = []
    # the hot path: every consumer reads every ACK, and one worker's outcomes are mostly
    # alike (a no-op handler's are all the same): each distinct short body (what follows
    # the ref) is decoded once per ACK; a memoryview of bytes hashes as the bytes do
    mv, at = reader.mv, reader.at
    total = len(mv)
    hashable = total if mv.readonly and mv.format == "B" else -1
    unpack, fixed = _OUTCOME.unpack_from, _OUTCOME.size
    append = outcomes.append
    seen: dict[memoryview, Outcome] = {}
    for _ in range(n_outcomes):
        if at + fixed > total:
            raise EnvelopeError(f"truncated at byte {at}: {fixed} more bytes needed")
        producer_id, seq, status, attempts, codec_len, type_len, data_len = unpack(mv, at)
        ref = _new_ref((producer_id, seq))
        body_at = at + fixed
        end = body_at + codec_len + type_len + data_len
        if end == body_at and status == Status.OK and attempts == 1:
            append((ref, PLAIN_SUCCESS))  # what most outcomes are: no new value
            at = end
            continue
        body = None
        if end <= hashable and end - at <= _SHORT_OUTCOME:
            body = mv[at + _REF_SIZE : end]
            known = seen.get(body)
            if known is not None:
                append((ref, known))
                at = end
                continue
        reader.at = body_at
        outcome = _read_outcome(reader, status, attempts, codec_len, type_len, data_len)
        at = reader.at
        if body is not None:
            seen[body] = outcome
        append((ref, outcome))
    reader.at = at
    reader.done()
    return Ack(incarnation, tuple(outcomes), positions, backlog)


def _read_outcome(
    reader: _Reader, status: int, attempts: int, codec_len: int, type_len: int, data_len: int
) -> Outcome:
    """The rest of one ACK outcome, after its fixed fields."""
    codec = _read_codec(reader, codec_len) if codec_len else ""
    error_type = reader.text(type_len, "error type")
    if status == Status.OK:
        if type_len:
            raise EnvelopeError("a successful outcome carries no error type")
        result = bytes(reader.take(data_len))
        return Outcome(Status.OK, attempts, result, codec=codec)
    if status in (Status.FAILED, Status.CANCELLED):
        if codec_len:
            what = "failed" if status == Status.FAILED else "cancelled"
            raise EnvelopeError(f"a {what} outcome carries no result codec")
        message = reader.text(data_len, "error message")
        return Outcome(Status(status), attempts, b"", error_type, message)
    raise EnvelopeError(f"unknown outcome status {status}")


def _decode_view(reader: _Reader, slots: int) -> View:
    proc_id, time, index, ordinal, count = reader.unpack(_VIEW)
    members = []
    for _ in range(count):
        (size,) = reader.unpack(_U8)
        members.append(reader.text(size, "member name"))
    reader.done()
    return View(tuple(members), (proc_id, time, index), ordinal)


def _decode_drain(reader: _Reader, slots: int) -> Drain:
    (incarnation,) = reader.unpack(_DRAIN)
    reader.done()
    return Drain(incarnation)


def _decode_hello(reader: _Reader, slots: int) -> Hello:
    incarnation, capacity = reader.unpack(_HELLO)
    reader.done()
    return Hello(incarnation, capacity)


def _decode_stats(reader: _Reader, slots: int) -> Stats:
    (incarnation, state, *counts, proc_id, time, index, ordinal, interval_ms) = reader.unpack(
        _STATS
    )
    try:
        known_state = StatsState(state)
    except ValueError:
        raise EnvelopeError(f"unknown STATS state {state}") from None
    (size,) = reader.unpack(_U8)
    member = reader.text(size, "member name")
    (count,) = reader.unpack(_U16)
    producers = tuple(reader.unpack(_STATS_PRODUCER) for _ in range(count))
    reader.done()
    owned, running, done, failed, oldest_ms, failovers, takeover_sum, takeover_max = counts
    return Stats(
        incarnation,
        member,
        known_state,
        owned,
        running,
        done,
        failed,
        oldest_ms,
        failovers,
        takeover_sum,
        takeover_max,
        (proc_id, time, index),
        ordinal,
        interval_ms,
        producers,
    )


def _decode_cancel(reader: _Reader, slots: int) -> Cancel:
    producer_id, seq = reader.unpack(_CANCEL)
    reader.done()
    return Cancel(_new_ref((producer_id, seq)))


def _decode_result(reader: _Reader, slots: int) -> ResultQuery | ResultAnswer:
    op, query_id, producer_id, seq = reader.unpack(_RESULT)
    ref = _new_ref((producer_id, seq))
    if op == _QUERY_OP:
        (index,) = reader.unpack(_QUERY)
        reader.done()
        return ResultQuery(query_id, ref, index)
    if op != _ANSWER_OP:
        raise EnvelopeError(f"unknown RESULT op {op}")
    state, members = reader.unpack(_ANSWER)
    try:
        known = ResultState(state)
    except ValueError:
        raise EnvelopeError(f"unknown RESULT state {state}") from None
    outcome = None
    if known is ResultState.KNOWN:
        outcome = _read_outcome(reader, *reader.unpack(_OUTCOME_TAIL))
    reader.done()
    return ResultAnswer(query_id, ref, known, members, outcome)


_DECODERS: dict[Kind, Callable[[_Reader, int], Decoded]] = {
    Kind.BATCH: _decode_batch,
    Kind.FRAGMENT: _decode_fragment,
    Kind.ACK: _decode_ack,
    Kind.VIEW: _decode_view,
    Kind.DRAIN: _decode_drain,
    Kind.HELLO: _decode_hello,
    Kind.STATS: _decode_stats,
    Kind.CANCEL: _decode_cancel,
    Kind.RESULT: _decode_result,
}
_SLOTTED = {Kind.BATCH, Kind.FRAGMENT}


def decode(data: bytes | memoryview) -> Decoded:
    """Decode one message delivered on a queue group.

    Data that does not start with :data:`MAGIC` is returned as :class:`Raw`. Job
    payloads and header blocks in the result are slices of ``data`` (no copy).

    Raises:
        EnvelopeError: the data starts with the magic but is an unknown version or kind,
            or its body is malformed. :func:`declared_slots` then says how many job slots
            it takes.
    """
    mv = memoryview(data)
    if bytes(mv[:2]) != MAGIC:
        return Raw(data)
    if len(mv) < _PREAMBLE.size:
        raise EnvelopeError(f"a {len(mv)}-byte message is too short for a spreadq envelope")
    _, version, kind, slots = _PREAMBLE.unpack_from(mv)
    if version != VERSION:
        if version == 2:
            raise EnvelopeError("a sealed envelope (version 2): it takes the queue's secret")
        raise EnvelopeError(f"envelope version {version} is not supported (this is {VERSION})")
    try:
        decoder = _DECODERS[Kind(kind)]
    except ValueError:
        raise EnvelopeError(f"unknown envelope kind {kind}") from None
    if slots and kind not in _SLOTTED:
        raise EnvelopeError(f"a {Kind(kind).name} envelope cannot take {slots} job slots")
    return decoder(_Reader(mv, _PREAMBLE.size), slots)


def declared_slots(data: bytes | memoryview) -> int:
    """How many job slots an unreadable envelope takes: its declared count, or 1 when
    even the preamble is cut short (the rule every version must follow)."""
    if len(data) < _PREAMBLE.size:
        return 1
    slots: int = _PREAMBLE.unpack_from(data)[3]
    return slots
