"""Jobs as the queue core sees them: a stable reference, the decoded job, its outcome.

These values cross from the queue core to the Dispatcher (in effects) and back (in
:class:`~spreadq.queue.table.JobFinished`); the envelope module encodes them.
"""

from __future__ import annotations

import enum
import struct
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import repeat
from operator import itemgetter
from typing import Final, NamedTuple

from spreadq.errors import EnvelopeError, LocalProtocolError

__all__ = [
    "DEDUPE_HEADER",
    "MAX_DEDUPE_KEY",
    "Job",
    "JobRef",
    "Outcome",
    "OutcomeHistory",
    "PLAIN_SUCCESS",
    "STATUS_OK",
    "OutcomeRecord",
    "OutcomeRun",
    "Status",
    "decode_headers",
    "encode_headers",
    "encode_text",
    "outcome_of",
]

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U16_MAX = 0xFFFF

DEDUPE_HEADER: Final = "dedupe_key"
"""The header that carries a job's dedupe key (read only when the job record's flag
bit 1 says it has one; the header alone makes no job a candidate for deduplication)."""

MAX_DEDUPE_KEY: Final = 255
"""The longest dedupe key, in UTF-8 bytes."""


class JobRef(NamedTuple):
    """A job's identity on every replica: its producer's id and the producer's job seq.

    For RAW jobs and unreadable envelopes the table derives ``producer_id`` from the
    view's group id and the sender, and ``seq`` counts that sender's slots in the view.

    A named tuple rather than a frozen dataclass: every replica builds, hashes and
    compares one per job it reads and per job an ACK completes, and a tuple does all
    three in C (the dataclass's generated ``__hash__`` and ``__eq__`` are Python
    calls). So a ref equals, and hashes like, the plain tuple ``(producer_id, seq)``.
    """

    producer_id: bytes
    seq: int

    def __str__(self) -> str:
        return f"{self.producer_id[:4].hex()}:{self.seq}"

    @property
    def id(self) -> str:
        """The job's full printable id, ``<producer_id as 32 hex digits>:<seq>``: what
        ``Receipt.job_id`` gives and ``Producer.result`` and ``spreadq result`` take
        (``str(ref)`` is the short form for logs)."""
        return f"{self.producer_id.hex()}:{self.seq}"

    @classmethod
    def parse(cls, text: str) -> JobRef:
        """The ref a printable id (:attr:`id`) names.

        Raises:
            ValueError: ``text`` is not 32 hex digits, a colon and a decimal seq.
        """
        head, sep, tail = text.strip().partition(":")
        try:
            producer_id = bytes.fromhex(head)
            seq = int(tail) if tail.isdigit() else -1
        except ValueError:
            producer_id, seq = b"", -1
        if not sep or len(producer_id) != 16 or not 0 <= seq < 2**64:
            raise ValueError(f"{text!r} is not a job id (32 hex digits, ':', a seq)")
        return cls(producer_id, seq)


class Job(NamedTuple):
    """A job as a consumer reads it: fixed fields decoded, headers and payload left raw.

    ``payload`` and ``header_block`` are usually slices of the delivered message (no
    copy). ``error`` is set for a slot whose envelope could not be read; its owner
    reports it as failed with :class:`~spreadq.errors.EnvelopeError` and never runs it.
    RAW jobs have ``codec == "raw"`` and ``kind == "raw:<mess_type>"``.
    ``dedupe_key`` is the producer's idempotency key (``put(..., dedupe_key=)``), if any.
    ``notify`` says its producer asks the owner for a NOTICE of its outcome (a member
    producer the consumers keep up with; docs/cancel-and-results.md#outcome-notices).

    A named tuple for the reason :class:`JobRef` is one: the owner builds one per job
    it runs, and a frozen dataclass's ``__init__`` (eight ``object.__setattr__`` calls)
    cost three times what the tuple does.
    """

    ref: JobRef
    kind: str
    key: str | None
    codec: str
    payload: bytes | memoryview
    header_block: bytes | memoryview = b""
    error: str | None = None
    dedupe_key: str | None = None
    notify: bool = False

    def headers(self) -> dict[str, str]:
        """Decode the job's headers (deadline, not_before, trace context ...).

        Raises:
            EnvelopeError: the header block is malformed.
        """
        return decode_headers(self.header_block)


class Status(enum.IntEnum):
    """How a job ended."""

    OK = 0
    FAILED = 1
    CANCELLED = 2


STATUS_OK: Final = Status.OK
"""``Status.OK``, read once: through its class an enum member costs about 170 ns a read on
CPython 3.11, and every outcome a worker reaches or reads is compared with it."""


class Outcome(NamedTuple):
    """How one job ended, as an ACK reports it.

    ``result`` is the codec'd return value of a successful job, and ``codec`` names the
    codec that encoded it when that is not the job's own payload codec (empty when it
    is, and for every failure: the wire stays one byte longer, not five). A failed job
    carries the qualified exception type and its message instead.

    A named tuple for the reason :class:`JobRef` is one: every replica builds one per
    distinct outcome an ACK reports, and a frozen dataclass's ``__init__`` costs six
    Python-level attribute writes where a tuple is built in C. Immutable all the same.
    """

    status: Status
    attempts: int = 1
    result: bytes = b""
    error_type: str = ""
    error_message: str = ""
    codec: str = ""

    @classmethod
    def success(cls, result: bytes = b"", attempts: int = 1, codec: str = "") -> Outcome:
        """The job ran and returned ``result``, encoded with ``codec`` (empty: with the
        job's own codec)."""
        if not result and attempts == 1 and not codec and cls is Outcome:
            return PLAIN_SUCCESS  # the most frequent outcome by far: one shared value
        return _tuple_new(cls, (STATUS_OK, attempts, result, "", "", codec))

    def result_codec(self, job_codec: str) -> str:
        """The codec to decode ``result`` with, for a job whose payload codec is
        ``job_codec``."""
        return self.codec or job_codec

    @classmethod
    def failure(cls, error_type: str, error_message: str, attempts: int = 1) -> Outcome:
        """The job failed for good with an exception of type ``error_type``."""
        return cls(Status.FAILED, attempts, b"", error_type, error_message)

    @classmethod
    def cancelled(cls, attempts: int = 0) -> Outcome:
        """The job was cancelled (a CANCEL was ordered before any outcome of it)."""
        return cls(Status.CANCELLED, attempts)

    @property
    def ok(self) -> bool:
        """True when the job succeeded."""
        return self.status is STATUS_OK


_tuple_new = tuple.__new__
"""``tuple.__new__``: a named tuple (an :class:`Outcome`) from a tuple of all its fields,
in C, without the named tuple's Python ``__new__``."""

PLAIN_SUCCESS: Final = Outcome(STATUS_OK)
"""A first attempt that succeeded with no result: shared, as outcomes are immutable (a
worker of no-op handlers would otherwise build one per job, and every replica one
per job an ACK reports)."""

_RECORD = struct.Struct("<BHBBI")  # status, attempts, codec, error type and data lengths
_RECORD_FIXED = _RECORD.size

OutcomeRecord = Outcome | bytes
"""An outcome, or a successful one still in the form an ACK carried it (status,
attempts, the three lengths, the codec name and the result: checked when the ACK was
decoded). Every replica reads every ACK, and most outcomes are only remembered, never
asked for: a record is one ``bytes`` where an :class:`Outcome` is a tuple and its result."""


def outcome_of(record: OutcomeRecord) -> Outcome:
    """The :class:`Outcome` an :data:`OutcomeRecord` stands for."""
    if not isinstance(record, bytes):
        return record
    _, attempts, codec_len, _, _ = _RECORD.unpack_from(record)  # a success: no error type
    if not codec_len:  # the job's own codec: the result follows the fixed part
        return _tuple_new(Outcome, (STATUS_OK, attempts, record[_RECORD_FIXED:], "", "", ""))
    start = _RECORD_FIXED + codec_len
    codec = str(record[_RECORD_FIXED:start], "ascii")
    return _tuple_new(Outcome, (STATUS_OK, attempts, record[start:], "", "", codec))


_new_ref: Callable[[tuple[bytes, int]], JobRef] = partial(tuple.__new__, JobRef)
"""``JobRef(producer_id, seq)`` from a tuple, without the named tuple's Python ``__new__``."""


@dataclass(frozen=True, slots=True)
class OutcomeRun:
    """The outcomes of one producer's jobs ``first``, ``first + stride``, ... (``count``
    of them), as an ACK carries them in a run: one record they share, or one head and
    each job's result.

    A worker under ``round_robin`` finishes every n-th job of a producer, under
    ``sticky`` the jobs of a message in a row, and most handlers' outcomes differ at
    most in their result bytes; so its ACK is a few runs, and every replica that reads
    it completes and remembers a run at once instead of job by job
    (docs/design/envelopes.md#ack-what-a-consumer-finished-and-how-far-it-has-read).

    ``length`` 0: every job's record is ``head``. ``length`` > 0: job ``i``'s record is
    ``head`` (a success's fixed fields and codec name) followed by
    ``results[i * length : (i + 1) * length]``.
    """

    producer_id: bytes
    first: int
    stride: int
    count: int
    head: OutcomeRecord
    results: bytes = b""
    length: int = 0

    @property
    def last(self) -> int:
        """The seq of the run's last job."""
        return self.first + self.stride * (self.count - 1)

    def refs(self) -> list[JobRef]:
        """The jobs of the run, in order."""
        first, stride, count = self.first, self.stride, self.count
        seqs = range(first, first + stride * count, stride)
        return list(map(_new_ref, zip(repeat(self.producer_id), seqs)))

    def records(self) -> list[OutcomeRecord]:
        """Each job's record, in order."""
        head, length = self.head, self.length
        if not length:
            return [head] * self.count
        assert isinstance(head, bytes)
        size = len(head) + length
        if size <= _JOIN_BY_COLUMN:  # joined in C, then cut in C
            return list(map(_first, _records_of(size).iter_unpack(self.joined())))
        return list(map(head.__add__, self._results()))

    def outcomes(self) -> list[Outcome]:
        """Each job's :class:`Outcome`, in order: what :func:`outcome_of` gives of each of
        :meth:`records`, with the head read once and no record built (a producer
        resolving receipts from a NOTICE's run needs the outcomes, not the records)."""
        shared = outcome_of(self.head)  # with length > 0, the head's result is empty
        if not self.length:
            return [shared] * self.count
        status, attempts, _, error_type, error_message, codec = shared
        return [
            _tuple_new(Outcome, (status, attempts, result, error_type, error_message, codec))
            for result in self._results()
        ]

    def _results(self) -> Iterator[bytes]:
        """Each job's result (a run with ``length`` > 0)."""
        length = self.length
        ends = range(length, length * self.count + 1, length)
        return map(self.results.__getitem__, map(slice, range(0, ends[-1], length), ends))

    def joined(self) -> bytes:
        """Every job's record, one after the other (a run with ``length`` > 0)."""
        head, length, count = self.head, self.length, self.count
        assert isinstance(head, bytes)
        size = len(head) + length
        if size > _JOIN_BY_COLUMN:
            return head.join([b"", *self._results()])
        joined = bytearray(size * count)
        for column, byte in enumerate(head):  # a column of the records at a time, in C
            joined[column::size] = bytes((byte,)) * count
        results = self.results
        for column in range(length):
            joined[len(head) + column :: size] = results[column::length]
        return bytes(joined)


@lru_cache(maxsize=64)
def _records_of(size: int) -> struct.Struct:
    """Records of ``size`` bytes one after the other, each as one ``bytes``."""
    return struct.Struct(f"{size}s")


_first = itemgetter(0)

_JOIN_BY_COLUMN: Final = 64
"""Records up to this size are joined column by column (a slice assignment per byte of
a record), longer ones record by record."""


def encode_text(value: str, what: str, limit: int) -> bytes:
    """``value`` as UTF-8 of at most ``limit`` bytes.

    Raises:
        LocalProtocolError: ``value`` is not valid Unicode or is too long.
    """
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"{what} {value!r} is not valid Unicode") from exc
    if len(raw) > limit:
        raise LocalProtocolError(f"{what} is {len(raw)} bytes; the envelope allows {limit}")
    return raw


def encode_headers(headers: Sequence[tuple[str, str]]) -> bytes:
    """Encode headers as repeated ``name_len u8 | name | value_len u16 | value``.

    Raises:
        LocalProtocolError: a name over 255 bytes, a value over 65,535 bytes, a block
            over 65,535 bytes, or text that is not valid Unicode.
    """
    parts: list[bytes] = []
    for name, value in headers:
        raw_name = encode_text(name, "header name", 0xFF)
        raw_value = encode_text(value, "header value", _U16_MAX)
        parts += [_U8.pack(len(raw_name)), raw_name, _U16.pack(len(raw_value)), raw_value]
    block = b"".join(parts)
    if len(block) > _U16_MAX:
        raise LocalProtocolError(f"headers take {len(block)} bytes; the envelope allows 65535")
    return block


def decode_headers(block: bytes | memoryview) -> dict[str, str]:
    """Decode a header block written by :func:`encode_headers`.

    Raises:
        EnvelopeError: the block is truncated or its text is not UTF-8.
    """
    mv = memoryview(block)
    at = 0
    headers: dict[str, str] = {}
    try:
        while at < len(mv):
            name_end = at + 1 + mv[at]
            value_len = _U16.unpack_from(mv, name_end)[0]
            value_end = name_end + 2 + value_len
            if value_end > len(mv):
                raise EnvelopeError("truncated header block")
            headers[str(mv[at + 1 : name_end], "utf-8")] = str(
                mv[name_end + 2 : value_end], "utf-8"
            )
            at = value_end
    except (struct.error, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"malformed header block: {exc}") from exc
    return headers


_IN_BLOB: Final = 255
"""The code of a seq whose record is kept in its generation's blob."""
_BLOB_MAX: Final = 0x7FFF_FFFF
"""A blob this long takes no more records (its offsets are kept as 32-bit numbers;
a generation ends long before, at half the history's byte budget)."""
_STRIDED_AT_LEAST: Final = 8
"""Outcomes in one :meth:`OutcomeHistory.add_all` from which the strided path is tried."""


def _result_bytes(record: OutcomeRecord) -> int:
    """What ``record`` counts against the history's byte budget: a record in the form
    an ACK carried it, whole; an :class:`Outcome`, its result."""
    return len(record) if isinstance(record, bytes) else len(record.result)


class _Outcomes:
    """One producer's outcomes in one generation of an :class:`OutcomeHistory`.

    A producer numbers its jobs 0, 1, 2, ..., and a replica remembers the outcome of
    every job of the queue, so the seqs remembered are dense: each takes one byte of
    ``codes`` (its offset from ``base``). Code 0 means nothing remembered; codes 1 to
    254 name one of the first distinct records, kept once in ``records`` (most outcomes
    are alike: a handler that returns None, or one of a few results); code 255 says the
    record is in ``blob``, at the offset ``starts`` gives (a handler whose results all
    differ; the record's own lengths say where it ends). So an outcome costs a byte, or
    five bytes and its record, where a dict slot, an int and a ``bytes`` object cost
    about 150.
    A seq far from the span (more than four times the outcomes held beyond it, or
    64 KiB at least) and a distinct :class:`Outcome` past the 254th go to ``other``, a
    plain dict.
    """

    __slots__ = (
        "base",
        "blob",
        "codes",
        "codes_of",
        "high",
        "low",
        "other",
        "records",
        "starts",
    )

    def __init__(self) -> None:
        self.base = 0
        self.codes = bytearray()
        self.records: list[OutcomeRecord] = [PLAIN_SUCCESS]  # code 0 is never read
        self.codes_of: dict[OutcomeRecord, int] = {}
        self.blob = bytearray()
        self.starts: array[int] | None = None  # parallel to codes once the blob is used
        self.other: dict[int, OutcomeRecord] = {}
        self.low = self.high = -1  # the least and greatest seq ever put here

    def get(self, seq: int) -> OutcomeRecord | None:
        offset = seq - self.base
        if 0 <= offset < len(self.codes):
            code = self.codes[offset]
            if code == _IN_BLOB:
                return self._from_blob(offset)
            if code:
                return self.records[code]
        return self.other.get(seq) if self.other else None

    def pop(self, seq: int) -> OutcomeRecord | None:
        """Forget ``seq``; its record, or None when it was not here."""
        offset = seq - self.base
        if 0 <= offset < len(self.codes):
            code = self.codes[offset]
            if code:
                record = self._from_blob(offset) if code == _IN_BLOB else self.records[code]
                self.codes[offset] = 0
                return record
        return self.other.pop(seq, None) if self.other else None

    def put(self, seq: int, record: OutcomeRecord, held: int) -> OutcomeRecord | None:
        """Remember ``record`` for ``seq`` (``held`` outcomes are here already); the
        record it replaces, or None."""
        if self.low < 0:
            self.low = self.high = self.base = seq
        elif seq < self.low:
            self.low = seq
        elif seq > self.high:
            self.high = seq
        code = self.codes_of.get(record)
        if code is None:
            if len(self.records) < _IN_BLOB:
                code = self.codes_of[record] = len(self.records)
                self.records.append(record)
            elif isinstance(record, bytes) and len(self.blob) <= _BLOB_MAX:
                code = _IN_BLOB
        offset = seq - self.base
        if code is not None and not 0 <= offset < len(self.codes):
            offset = self._widen(seq, held)
        if code is None or offset < 0:  # not in the span: in the dict
            old = self.pop(seq)
            self.other[seq] = record
            return old
        old = self.pop(seq)
        self.codes[offset] = code
        if code == _IN_BLOB:
            assert isinstance(record, bytes)
            starts = self.starts
            if starts is None:
                starts = self.starts = array("I", bytes(4 * len(self.codes)))
            starts[offset] = len(self.blob)
            self.blob += record
        return old

    def _from_blob(self, offset: int) -> bytes:
        assert self.starts is not None
        at = self.starts[offset]
        _, _, codec_len, error_len, data_len = _RECORD.unpack_from(self.blob, at)
        return bytes(self.blob[at : at + _RECORD_FIXED + codec_len + error_len + data_len])

    def _widen(self, seq: int, held: int) -> int:
        """Make the span cover ``seq`` if it stays within bounds; ``seq``'s offset then,
        or -1 to keep it in the dict."""
        codes, base, starts = self.codes, self.base, self.starts
        limit = max(4 * (held + 1), 1 << 16)
        if seq < base:
            grow = min(max(base - seq, len(codes) // 2, 256), base)  # seqs are never negative
            if len(codes) + grow > limit:
                grow = base - seq
                if len(codes) + grow > limit:
                    return -1
            codes[0:0] = bytes(grow)
            if starts is not None:
                starts[0:0] = array("I", bytes(4 * grow))
            self.base = base - grow
        else:
            need = seq - base - len(codes) + 1
            grow = max(need, len(codes) // 2, 256)
            if len(codes) + grow > limit:
                grow = need
                if len(codes) + grow > limit:
                    return -1
            codes.extend(bytes(grow))
            if starts is not None:
                starts.extend(array("I", bytes(4 * grow)))
        return seq - self.base


def _stride_runs(refs: Sequence[JobRef]) -> list[tuple[int, int]]:
    """``refs`` cut into runs of one producer's seqs at one stride: ``(start, end)``
    index pairs, in order, each as long as it can be (a run of one or two where nothing
    lines up). ``0,1,2, 9,10,11, 20`` gives ``(0, 3), (3, 6), (6, 7)``."""
    runs: list[tuple[int, int]] = []
    total, start = len(refs), 0
    while start < total:
        end = start + 1
        if end < total:
            producer_id, first = refs[start]
            next_producer, second = refs[end]
            stride = second - first
            if next_producer == producer_id and stride > 0:
                end += 1
                seq = second
                while end < total:
                    ref = refs[end]
                    if ref[1] - seq != stride or ref[0] != producer_id:
                        break
                    seq = ref[1]
                    end += 1
        runs.append((start, end))
        start = end
    return runs


class OutcomeHistory:
    """Outcomes of completed jobs, bounded in count and bytes, oldest forgotten first.

    Used to recognise a re-sent job and answer it with the outcome it already had, and
    to answer ``Producer.result`` for jobs other processes put.

    Kept in two *generations*: outcomes are added to the current one until it holds
    ``max_items`` outcomes or ``max_bytes / 2`` bytes of results; then the previous
    generation is forgotten whole and the current one becomes the previous. So the
    history remembers at least the last ``max_items`` outcomes (fewer only when their
    results pass ``max_bytes / 2``) and at most twice as many, and never more than
    ``max_bytes`` of results (each outcome counts its whole record, even when it is
    alike another and kept once). A generation keeps each producer's outcomes as a
    byte per seq naming one of its distinct records (:class:`_Outcomes`): a full
    history of 200,000 alike outcomes takes about 200 KB, where a dict entry, an int
    and a record each took about 150 bytes. A generation is dropped whole instead of
    rebuilt by churn, so a full history's memory stays flat.
    """

    __slots__ = (
        "_bytes",
        "_count",
        "_current",
        "_previous",
        "_previous_count",
        "max_bytes",
        "max_items",
    )

    def __init__(self, max_items: int = 100_000, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._current: dict[bytes, _Outcomes] = {}
        self._previous: dict[bytes, _Outcomes] = {}
        self._count = 0  # outcomes in the current generation
        self._previous_count = 0
        self._bytes = 0  # result bytes in the current generation

    def __len__(self) -> int:
        return self._count + self._previous_count

    def get(self, ref: JobRef) -> Outcome | None:
        """The remembered outcome of ``ref``, if any."""
        producer_id, seq = ref
        outcomes = self._current.get(producer_id)
        if outcomes is not None:
            record = outcomes.get(seq)
            if record is not None:
                return outcome_of(record)
        outcomes = self._previous.get(producer_id)
        if outcomes is None:
            return None
        record = outcomes.get(seq)
        return None if record is None else outcome_of(record)

    def window(self, producer_id: bytes) -> tuple[int, int]:
        """The least and greatest seq of ``producer_id`` that may be remembered, for a
        batch to ask once whether any of its jobs may be (``(0, -1)``: none). Seqs
        outside it are not remembered; seqs inside it may not be either (ask
        :meth:`get`)."""
        current = self._current.get(producer_id)
        previous = self._previous.get(producer_id)
        if previous is None or previous.low < 0:
            return (0, -1) if current is None else (current.low, current.high)
        if current is None or current.low < 0:
            return previous.low, previous.high
        return min(current.low, previous.low), max(current.high, previous.high)

    def __contains__(self, ref: JobRef) -> bool:
        producer_id, seq = ref
        for generation in (self._current, self._previous):
            outcomes = generation.get(producer_id)
            if outcomes is not None and outcomes.get(seq) is not None:
                return True
        return False

    def add(self, ref: JobRef, outcome: OutcomeRecord) -> None:
        """Remember ``outcome`` for ``ref`` (the latest wins); forget the older generation
        when the current one is full. A record counts its whole length as result bytes."""
        if self.max_items > 0:
            self._add_one(ref, outcome)

    def add_all(self, refs: Sequence[JobRef], outcomes: Sequence[OutcomeRecord]) -> None:
        """:meth:`add` each of ``refs`` with its outcome, in order (an ACK's at once).

        Raises:
            ValueError: ``refs`` and ``outcomes`` differ in length (nothing is added).
        """
        if len(refs) != len(outcomes):
            raise ValueError(f"{len(refs)} refs for {len(outcomes)} outcomes")
        if self.max_items <= 0:
            return
        total = len(refs)
        if total < _STRIDED_AT_LEAST:
            self._add_each(refs, outcomes, 0, total)
        elif not self._add_strided(refs, outcomes):
            # several runs at one stride each (a worker's ACK under ``sticky``: the jobs
            # of its messages, seqs in a row with gaps between), or none; one run that
            # covers them all was refused just now, and is not asked again
            runs = _stride_runs(refs)
            for start, end in runs:
                if (
                    len(runs) == 1
                    or end - start < _STRIDED_AT_LEAST
                    or not self._add_strided(refs[start:end], outcomes[start:end])
                ):
                    self._add_each(refs, outcomes, start, end)

    def _add_each(
        self, refs: Sequence[JobRef], outcomes: Sequence[OutcomeRecord], index: int, end: int
    ) -> None:
        """Add ``refs[index:end]``, in runs of the common case and one by one."""
        while index < end:
            index = self._add_run(refs, outcomes, index, end)
            if index < end:  # one the run could not take: the general way
                self._add_one(refs[index], outcomes[index])
                index += 1

    def _add_run(
        self, refs: Sequence[JobRef], outcomes: Sequence[OutcomeRecord], index: int, end: int
    ) -> int:
        """Add ``refs[index:end]`` while they are the common case: one producer's new
        seqs within its span, not in the previous generation, with a record seen before
        or one for the blob. Returns the index of the first it did not add."""
        producer_id = refs[index][0]
        kept = self._current.get(producer_id)
        if kept is None or kept.other:
            return index
        previous = self._previous.get(producer_id)
        low_previous, high_previous = (0, -1) if previous is None else (previous.low, previous.high)
        codes, base, codes_of, starts, blob = (
            kept.codes,
            kept.base,
            kept.codes_of,
            kept.starts,
            kept.blob,
        )
        span = len(codes)
        count, size, high, low = self._count, self._bytes, kept.high, kept.low
        max_items, max_bytes = self.max_items, self.max_bytes
        while index < end:
            ref_producer, seq = refs[index]
            if ref_producer != producer_id or low_previous <= seq <= high_previous:
                break
            offset = seq - base
            if not 0 <= offset < span or codes[offset]:
                break
            outcome = outcomes[index]
            code = codes_of.get(outcome)
            if code is not None:
                codes[offset] = code
                # _result_bytes(outcome), inline: this loop runs for every outcome
                size += len(outcome) if isinstance(outcome, bytes) else len(outcome.result)
            elif starts is not None and type(outcome) is bytes and len(blob) <= _BLOB_MAX:
                codes[offset] = _IN_BLOB
                starts[offset] = len(blob)
                blob += outcome
                size += len(outcome)
            else:
                break
            if seq > high:
                high = seq
            elif seq < low:
                low = seq
            count += 1
            index += 1
            if count >= max_items or 2 * size > max_bytes:
                break
        self._count, self._bytes, kept.high, kept.low = count, size, high, low
        if count >= max_items or 2 * size > max_bytes:
            self._flip()
        return index

    def add_run(self, run: OutcomeRun) -> None:
        """:meth:`add` each job of ``run`` with its record (an ACK's run at once)."""
        if self.max_items <= 0:
            return
        if run.count >= _STRIDED_AT_LEAST:
            if run.length:
                if self._add_at_stride(run, None, run.joined(), run.length + len(run.head)):
                    return
            elif self._add_at_stride(run, run.head, b"", 0):
                return
        self._add_each(run.refs(), run.records(), 0, run.count)

    def _add_strided(self, refs: Sequence[JobRef], outcomes: Sequence[OutcomeRecord]) -> bool:
        """Add them all at once if they are one producer's new seqs at one stride (a
        worker's ACK under ``round_robin``: every n-th job of a batch) within its span,
        none in the previous generation, with one record or records of one length for
        the blob, and the generation does not fill up; else add nothing and say so."""
        producer_id = refs[0][0]
        if len(set(map(itemgetter(0), refs))) != 1:
            return False
        seqs = list(map(itemgetter(1), refs))
        first, count = seqs[0], len(seqs)
        stride = seqs[1] - first
        if stride <= 0 or seqs != list(range(first, first + stride * count, stride)):
            return False
        run = OutcomeRun(producer_id, first, stride, count, outcomes[0])
        if outcomes.count(outcomes[0]) == count:  # one record for them all
            return self._add_at_stride(run, outcomes[0], b"", 0)
        try:
            joined = b"".join(outcomes)  # type: ignore[arg-type]  # Outcome: TypeError
        except TypeError:
            return False
        if len(set(map(len, outcomes))) != 1:
            return False
        return self._add_at_stride(run, None, joined, len(joined) // count)

    def _add_at_stride(
        self, run: OutcomeRun, record: OutcomeRecord | None, joined: bytes, length: int
    ) -> bool:
        """Add the jobs of ``run`` at once, with ``record`` for them all or (``record``
        None) the records of ``length`` bytes each ``joined`` holds, if they are new
        seqs within the producer's span, none in the previous generation, and the
        generation does not fill up; else add nothing and say so.

        What :meth:`_add_run` would do one by one, with a slice of ``codes`` (and of
        ``starts``) assigned at once and the records joined to the blob in one step."""
        producer_id, first, stride, count = run.producer_id, run.first, run.stride, run.count
        last = first + stride * (count - 1)
        kept = self._current.get(producer_id)
        if kept is None or kept.other or kept.low < 0 or stride <= 0:
            return False
        previous = self._previous.get(producer_id)
        if previous is not None and not (last < previous.low or first > previous.high):
            return False
        at, end = first - kept.base, last - kept.base + 1
        codes = kept.codes
        if at < 0 or (end > len(codes) and kept._widen(last, self._count) < 0):
            return False  # below the span, or too far above it: the general way
        if codes[at:end:stride] != bytes(count):
            return False
        starts: array[int] | None = None
        if record is not None:
            code = kept.codes_of.get(record)
            if code is None:
                return False  # the general way keeps it (or sends it to the blob)
            size = count * _result_bytes(record)
        else:
            size, code = len(joined), _IN_BLOB
            starts = kept.starts
            if starts is None or len(kept.blob) + size - length > _BLOB_MAX:
                return False
        if self._count + count >= self.max_items or 2 * (self._bytes + size) > self.max_bytes:
            return False  # the generation fills up on the way: the general way flips it
        if starts is not None:
            blob = kept.blob
            starts[at:end:stride] = array("I", range(len(blob), len(blob) + size, length))
            blob += joined
        codes[at:end:stride] = bytes((code,)) * count
        kept.low, kept.high = min(kept.low, first), max(kept.high, last)
        self._count += count
        self._bytes += size
        return True

    def _add_one(self, ref: JobRef, outcome: OutcomeRecord) -> None:
        producer_id, seq = ref
        previous = self._previous.get(producer_id)
        if (
            previous is not None
            and previous.low <= seq <= previous.high
            and previous.pop(seq) is not None
        ):
            self._previous_count -= 1
        kept = self._current.get(producer_id)
        if kept is None:
            kept = self._current[producer_id] = _Outcomes()
        old = kept.put(seq, outcome, self._count)
        if old is None:
            self._count += 1
        else:
            self._bytes -= _result_bytes(old)
        self._bytes += _result_bytes(outcome)
        if self._count >= self.max_items or 2 * self._bytes > self.max_bytes:
            self._flip()

    def _flip(self) -> None:
        """The current generation is full: it becomes the previous one, and the previous
        one is forgotten."""
        self._previous, self._previous_count = self._current, self._count
        self._current, self._count, self._bytes = {}, 0, 0
