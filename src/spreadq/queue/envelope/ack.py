"""ACK: a consumer's outcomes, read positions and backlog; NOTICE: outcomes sent
straight to their producer; and the outcome record an ACK, a NOTICE and a RESULT answer
share."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import Final, overload

from spreadq.errors import EnvelopeError, LocalProtocolError
from spreadq.queue.envelope.preamble import (
    _ID_SIZE,
    _PREAMBLE,
    _U16,
    _U16_MAX,
    _U32_MAX,
    _U64_MAX,
    MAX_ATTEMPTS,
    MAX_ENVELOPE_SIZE,
    Kind,
    _check_id,
    _check_range,
    _check_ref,
    _codec_bytes,
    _preamble,
)
from spreadq.queue.envelope.reader import _CODEC_NAMES, _codec_name, _read_codec, _Reader
from spreadq.queue.jobs import (
    PLAIN_SUCCESS,
    STATUS_OK,
    JobRef,
    Outcome,
    OutcomeRecord,
    OutcomeRun,
    Status,
    _new_ref,
    encode_text,
    outcome_of,
)

__all__ = [
    "Ack",
    "AckOutcomes",
    "Notice",
    "ack_overhead",
    "notice_overhead",
    "outcome_chunks",
    "outcome_size",
]

_ACK = struct.Struct("<16sIHH")
_POSITION = struct.Struct("<16sQ")
_OUTCOME = struct.Struct("<16sQBHBBI")
_OUTCOME_TAIL = struct.Struct("<BHBBI")  # an ACK outcome without its ref
_REF = struct.Struct("<16sQ")  # where an ACK outcome starts

_REF_SIZE = _REF.size
_RUN = struct.Struct("<16sQBHBBIIH")  # an ACK outcome run: an outcome's fields, stride, count
_RUN_FLAG: Final = 0x80
"""In an ACK outcome's status byte: the entry is a run (:class:`~spreadq.queue.jobs.OutcomeRun`)."""
_SHARED_FLAG: Final = 0x40
"""In a run's status byte: its jobs share one result, sent once."""
_RUN_AT_LEAST: Final = 4
"""Outcomes in a row from which :func:`_add_outcomes` sends a run."""
_SHARED_RECORD = 64  # outcomes up to this size that are alike share a record in an ACK


class AckOutcomes(Sequence[tuple[JobRef, Outcome]]):
    """The outcomes of a decoded ACK: ``(ref, outcome)`` pairs, built on demand.

    Every consumer and producer reads every ACK, and most of what it reports is only
    remembered (by a consumer) or belongs to another producer: decoding checks each
    outcome and keeps its ref and its :data:`~spreadq.queue.jobs.OutcomeRecord`;
    ``outcomes[i]`` builds the :class:`Outcome` when asked. An ACK whose outcomes came
    in runs keeps them as :attr:`runs`, and builds :attr:`refs` and :attr:`records`
    only when asked for them.
    """

    __slots__ = ("_records", "_refs", "runs")

    def __init__(
        self,
        refs: Sequence[JobRef] | None = None,
        records: Sequence[OutcomeRecord] | None = None,
        *,
        runs: Sequence[OutcomeRun] | None = None,
    ) -> None:
        if (refs is None) != (records is None) or (refs is None) == (runs is None):
            raise TypeError("AckOutcomes takes refs and records, or runs")
        self._refs = refs
        self._records = records
        self.runs: Sequence[OutcomeRun] | None = runs
        """The outcomes as the ACK's runs (an outcome alone is a run of one), or None
        when they were given as refs and records."""

    @property
    def refs(self) -> Sequence[JobRef]:
        """Each outcome's job, in order."""
        refs = self._refs
        if refs is None:
            assert self.runs is not None
            refs = self._refs = list(chain.from_iterable(map(OutcomeRun.refs, self.runs)))
        return refs

    @property
    def records(self) -> Sequence[OutcomeRecord]:
        """Each outcome as decoded: an :class:`Outcome`, or a successful one's record."""
        records = self._records
        if records is None:
            assert self.runs is not None
            records = self._records = list(chain.from_iterable(map(OutcomeRun.records, self.runs)))
        return records

    @staticmethod
    def parts(
        outcomes: Sequence[tuple[JobRef, Outcome]],
    ) -> tuple[Sequence[JobRef], Sequence[OutcomeRecord]]:
        """The refs and records of ``outcomes``: a decoded ACK's as they are, those of
        an ACK built by hand taken apart."""
        if isinstance(outcomes, AckOutcomes):
            return outcomes.refs, outcomes.records
        return [ref for ref, _ in outcomes], [outcome for _, outcome in outcomes]

    def __len__(self) -> int:
        runs = self.runs
        if runs is not None and self._refs is None:
            return sum(run.count for run in runs)
        return len(self.refs)

    @overload
    def __getitem__(self, index: int) -> tuple[JobRef, Outcome]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[JobRef, Outcome]]: ...

    def __getitem__(
        self, index: int | slice
    ) -> tuple[JobRef, Outcome] | Sequence[tuple[JobRef, Outcome]]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(len(self))[index])
        return self.refs[index], outcome_of(self.records[index])

    def __iter__(self) -> Iterator[tuple[JobRef, Outcome]]:
        for ref, record in zip(self.refs, self.records, strict=True):
            yield ref, outcome_of(record)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"AckOutcomes({list(self)!r})"


@dataclass(frozen=True, slots=True)
class Ack:
    """ACK: what a consumer finished, how far it read each producer, and its backlog.

    A decoded ACK's ``outcomes`` is an :class:`AckOutcomes` (equal to the tuple it was
    encoded from)."""

    incarnation: bytes
    outcomes: Sequence[tuple[JobRef, Outcome]] = ()
    positions: tuple[tuple[bytes, int], ...] = ()
    backlog: int = 0


@dataclass(frozen=True, slots=True)
class Notice:
    """NOTICE: outcomes a consumer sends straight to the producer of their jobs.

    It goes to the producer's private group only (no consumer reads it), as soon as the
    jobs end, so a receipt need not wait for the next ACK; the ACK still settles the
    jobs everywhere (docs/cancel-and-results.md#outcome-notices). A decoded NOTICE's
    ``outcomes`` is an :class:`AckOutcomes`."""

    outcomes: Sequence[tuple[JobRef, Outcome]] = ()


def outcome_size(outcome: Outcome) -> int:
    """Bytes one outcome (with its ref) adds to an ACK."""
    if outcome.status is STATUS_OK and not outcome.error_type:  # codec names are ASCII
        return _OUTCOME.size + len(outcome.codec) + len(outcome.result)
    data = outcome.result if outcome.ok else outcome.error_message.encode("utf-8", "replace")
    text = len(outcome.codec) + len(outcome.error_type.encode("utf-8", "replace"))
    return _OUTCOME.size + text + len(data)


def notice_overhead() -> int:
    """Bytes of a NOTICE without its outcomes."""
    return _PREAMBLE.size + _U16.size


def ack_overhead(positions: int) -> int:
    """Bytes of an ACK without its outcomes, with ``positions`` read positions."""
    return _PREAMBLE.size + _ACK.size + positions * _POSITION.size


def outcome_chunks(
    outcomes: Iterable[tuple[JobRef, Outcome]], overhead: int
) -> list[tuple[tuple[JobRef, Outcome], ...]]:
    """``outcomes`` cut, in order, into as few groups as fit one envelope each, of
    ``overhead`` bytes besides them (:func:`ack_overhead`, :func:`notice_overhead`) and
    at most 65,535 outcomes. An outcome that fits no envelope goes alone."""
    budget = MAX_ENVELOPE_SIZE - overhead
    chunks: list[tuple[tuple[JobRef, Outcome], ...]] = []
    chunk: list[tuple[JobRef, Outcome]] = []
    size = 0
    for reached in outcomes:
        grow = outcome_size(reached[1])
        if chunk and (size + grow > budget or len(chunk) == _U16_MAX):
            chunks.append(tuple(chunk))
            chunk, size = [], 0
        chunk.append(reached)
        size += grow
    if chunk:
        chunks.append(tuple(chunk))
    return chunks


def _encode_ack(ack: Ack) -> bytes:
    _check_id(ack.incarnation, "incarnation")
    _check_range(ack.backlog, "backlog", _U32_MAX)
    _check_range(len(ack.positions), "positions per ACK", _U16_MAX)
    _check_range(len(ack.outcomes), "outcomes per ACK", _U16_MAX)
    outcomes: list[bytes] = []
    entries = _add_outcomes(outcomes, ack.outcomes)
    parts = [
        _preamble(Kind.ACK, 0),
        _ACK.pack(ack.incarnation, ack.backlog, len(ack.positions), entries),
    ]
    for producer_id, mseq in ack.positions:
        _check_id(producer_id, "producer_id")
        _check_range(mseq, "mseq", _U64_MAX)
        parts.append(_POSITION.pack(producer_id, mseq))
    return b"".join(parts + outcomes)


def _encode_notice(notice: Notice) -> bytes:
    # in runs, as an ACK: a round_robin worker's turn ends every n-th job of a producer,
    # whose outcomes differ in their results at most; a run is a third of the bytes, and
    # its producer reads each job's outcome from it with the head read once
    # (OutcomeRun.outcomes; docs/design/envelopes.md, NOTICE)
    _check_range(len(notice.outcomes), "outcomes per NOTICE", _U16_MAX)
    outcomes: list[bytes] = []
    entries = _add_outcomes(outcomes, notice.outcomes)
    return b"".join([_preamble(Kind.NOTICE, 0), _U16.pack(entries), *outcomes])


def _add_outcomes(parts: list[bytes], outcomes: Sequence[tuple[JobRef, Outcome]]) -> int:
    """Append ``outcomes`` to ``parts`` as an ACK carries them; return how many
    entries that took.

    Outcomes in a row that are successes of one producer's jobs at one stride, alike
    but for their results (which are of one length), go as one run (:func:`_run_end`)
    when there are :data:`_RUN_AT_LEAST` of them; the others one by one
    (:func:`_add_each`). A run is never longer than the outcomes it stands for."""
    total = len(outcomes)
    if total < _RUN_AT_LEAST:
        _add_each(parts, outcomes)
        return total
    entries = start = 0
    single = 0  # the first of the outcomes not yet added, which go one by one
    while start < total:
        end = _run_end(outcomes, start, total)
        if end - start < _RUN_AT_LEAST:
            start = end
            continue
        if single < start:
            _add_each(parts, outcomes[single:start])
            entries += start - single
        _add_run(parts, outcomes, start, end)
        entries += 1
        start = single = end
    if single < total:
        _add_each(parts, outcomes[single:])
        entries += total - single
    return entries


def _run_end(outcomes: Sequence[tuple[JobRef, Outcome]], start: int, total: int) -> int:
    """The end of the longest run that begins at ``outcomes[start]``: successes with no
    error type, of one producer, seqs at one positive stride, one attempts count, one
    codec and results of one length (``start + 1`` when none begins there)."""
    (producer_id, seq), outcome = outcomes[start]
    if start + 1 == total or outcome.status is not STATUS_OK or outcome.error_type:
        return start + 1
    (next_id, next_seq), _ = outcomes[start + 1]
    stride = next_seq - seq
    if next_id != producer_id or not 0 < stride <= _U32_MAX:
        return start + 1
    _, attempts, result, _, _, codec = outcome
    length = len(result)
    end = start + 1
    expected = next_seq
    limit = min(total, start + _U16_MAX)
    while end < limit:
        (
            (other_id, other_seq),
            (status, other_attempts, other_result, error_type, _, other_codec),
        ) = outcomes[end]
        if (
            other_seq != expected
            or other_id != producer_id
            or status is not STATUS_OK
            or error_type
            or other_attempts != attempts
            or other_codec != codec
            or len(other_result) != length
        ):
            break
        expected += stride
        end += 1
    return end


def _add_run(
    parts: list[bytes], outcomes: Sequence[tuple[JobRef, Outcome]], start: int, end: int
) -> None:
    """Append ``outcomes[start:end]``, a run :func:`_run_end` found, as one entry."""
    (producer_id, first), outcome = outcomes[start]
    count = end - start
    stride = outcomes[start + 1][0][1] - first if count > 1 else 1
    _check_ref(outcomes[start][0])
    if first + stride * (count - 1) > _U64_MAX:
        _check_ref(outcomes[end - 1][0])  # raises, saying which
    raw_codec = _codec_bytes(outcome.codec) if outcome.codec else b""
    attempts = min(max(outcome.attempts, 0), MAX_ATTEMPTS)
    result = outcome.result
    length = len(result)
    status = STATUS_OK | _RUN_FLAG
    results = b"".join(map(_result_of, map(_outcome_of_pair, outcomes[start:end])))
    if length and results == result * count:  # one result for all (``return "ok"``)
        status |= _SHARED_FLAG
        results = result
    parts.append(
        _RUN.pack(producer_id, first, status, attempts, len(raw_codec), 0, length, stride, count)
    )
    if raw_codec:
        parts.append(raw_codec)
    if results:
        parts.append(results)


_outcome_of_pair = itemgetter(1)
_result_of = itemgetter(2)


def _add_each(parts: list[bytes], outcomes: Sequence[tuple[JobRef, Outcome]]) -> None:
    """Append ``outcomes`` one entry each.

    Each outcome is its ref, then its record as a RESULT answer carries it
    (:func:`_outcome_parts`). The usual outcome, a short success, is its ref and fixed
    fields in one ``pack``, then its codec name and result as they are; a run of the
    same outcome (a handler that returns None: one value for every job) packs its fixed
    fields once."""
    add = parts.append
    pack_ref, pack_outcome = _REF.pack, _OUTCOME.pack
    codecs: dict[str, bytes] = {"": b""}  # the codec names met, checked once each
    last: Outcome | None = None  # the outcome ``record`` was built for
    record = b""
    for ref, outcome in outcomes:
        producer_id, seq = ref
        if len(producer_id) != _ID_SIZE or not 0 <= seq <= _U64_MAX:
            _check_ref(ref)  # raises, saying which
        if outcome is last:
            add(pack_ref(producer_id, seq))
            add(record)
            continue
        status, attempts, result, error_type, _, codec = outcome
        if status is not STATUS_OK or error_type or len(result) > _SHARED_RECORD:
            add(pack_ref(producer_id, seq))
            parts += _outcome_parts(outcome)
            continue
        raw_codec = codecs.get(codec)
        if raw_codec is None:
            raw_codec = codecs[codec] = _codec_bytes(codec)
        if not 0 < attempts <= MAX_ATTEMPTS:
            attempts = min(max(attempts, 0), MAX_ATTEMPTS)
        add(pack_outcome(producer_id, seq, STATUS_OK, attempts, len(raw_codec), 0, len(result)))
        if raw_codec:
            add(raw_codec)
        if result:
            add(result)
        elif not raw_codec:  # no result, the job's codec: the next one alike shares this
            last = outcome
            record = _OUTCOME_TAIL.pack(STATUS_OK, attempts, 0, 0, 0)


def _outcome_parts(outcome: Outcome) -> list[bytes]:
    """One outcome's record without its ref: as a RESULT answer carries it (the answer
    names the job once), and as an ACK or a NOTICE does after each outcome's ref."""
    raw_type = encode_text(outcome.error_type, "error type", 0xFF)
    data = outcome.result if outcome.ok else encode_text(outcome.error_message, "error", _U32_MAX)
    raw_codec = b""
    if outcome.codec:
        if not outcome.ok:
            raise LocalProtocolError("a failed outcome carries no result codec")
        raw_codec = _codec_bytes(outcome.codec)
    attempts = min(max(outcome.attempts, 0), MAX_ATTEMPTS)
    head = _OUTCOME_TAIL.pack(outcome.status, attempts, len(raw_codec), len(raw_type), len(data))
    return [head, raw_codec, raw_type, data]


def _decode_ack(reader: _Reader, slots: int) -> Ack:
    incarnation, backlog, n_positions, n_outcomes = reader.unpack(_ACK)
    positions = tuple(reader.unpack(_POSITION) for _ in range(n_positions))
    outcomes = _read_outcomes(reader, n_outcomes)
    reader.done()
    return Ack(incarnation, outcomes, positions, backlog)


def _decode_notice(reader: _Reader, slots: int) -> Notice:
    (n_outcomes,) = reader.unpack(_U16)
    outcomes = _read_outcomes(reader, n_outcomes)
    reader.done()
    return Notice(outcomes)


def _read_outcomes(reader: _Reader, n_entries: int) -> AckOutcomes:
    """``n_entries`` outcomes and runs as an ACK (or a NOTICE) carries them."""
    # the hot path: every consumer and producer reads every ACK
    if n_entries >= _ALIKE_AT_LEAST:  # outcomes one by one, all alike: read in bulk
        alike = _read_alike(reader.mv, reader.at, n_entries)  # None if one is a run
        if alike is not None:
            refs, records, reader.at = alike
            return AckOutcomes(refs, records)
    return _read_entries(reader, n_entries)


def _read_entries(reader: _Reader, n_entries: int) -> AckOutcomes:
    """``n_entries`` outcomes and runs, one entry after the other."""
    refs: list[JobRef] = []
    records: list[OutcomeRecord] = []
    left = n_entries - _read_each(reader, n_entries, refs, records)
    if not left:
        return AckOutcomes(refs, records)
    runs = _single_runs(refs, records)
    while left:  # _read_each stopped before a run
        runs.append(_read_run(reader))
        refs, records = [], []
        left -= 1 + _read_each(reader, left - 1, refs, records)
        runs += _single_runs(refs, records)
    return AckOutcomes(runs=runs)


def _single_runs(refs: list[JobRef], records: list[OutcomeRecord]) -> list[OutcomeRun]:
    """Outcomes read one by one, as runs of one."""
    return [
        OutcomeRun(producer_id, seq, 1, 1, record)
        for (producer_id, seq), record in zip(refs, records, strict=True)
    ]


def _read_run(reader: _Reader) -> OutcomeRun:
    """One run of outcomes (:class:`~spreadq.queue.jobs.OutcomeRun`)."""
    producer_id, first, status, attempts, codec_len, type_len, length, stride, count = (
        reader.unpack(_RUN)
    )
    if status & ~_SHARED_FLAG != STATUS_OK | _RUN_FLAG or type_len:
        raise EnvelopeError(f"an outcome run has status {status}: runs are of successes")
    if not count or not stride:
        raise EnvelopeError(f"an outcome run of {count} jobs at stride {stride}")
    if first + stride * (count - 1) > _U64_MAX:
        raise EnvelopeError("an outcome run passes the last job seq")
    raw_codec = bytes(reader.take(codec_len))
    if codec_len and raw_codec not in _CODEC_NAMES:
        _codec_name(raw_codec)  # raises when it is no codec name
    shared = status & _SHARED_FLAG
    if shared and not length:
        raise EnvelopeError("an outcome run shares a result of 0 bytes")
    if not length and not codec_len and attempts == 1:  # what most outcomes are
        return OutcomeRun(producer_id, first, stride, count, PLAIN_SUCCESS)
    head = _OUTCOME_TAIL.pack(STATUS_OK, attempts, codec_len, 0, length) + raw_codec
    if shared:  # one record for every job of the run
        return OutcomeRun(producer_id, first, stride, count, head + reader.take(length))
    results = bytes(reader.take(count * length)) if length else b""
    return OutcomeRun(producer_id, first, stride, count, head, results, length)


_ALIKE_AT_LEAST: Final = 4
"""Outcomes in an ACK from which :func:`_read_alike` is tried first."""

_LAYOUTS_KEPT: Final = 64
"""Bulk layouts kept per kind of layout (outcome sizes seen lately)."""


@lru_cache(maxsize=_LAYOUTS_KEPT)
def _alike_layout(size: int) -> struct.Struct:
    """Outcomes of ``size`` bytes: producer id, seq, and the rest of the record as one bytes."""
    return struct.Struct(f"<16sQ{size - _REF_SIZE}s")


@lru_cache(maxsize=_LAYOUTS_KEPT)
def _head_layout(size: int, head: int) -> struct.Struct:
    """Outcomes of ``size`` bytes: the ``head`` bytes after the ref (fixed part and codec)."""
    return struct.Struct(f"<{_REF_SIZE}x{head}s{size - _REF_SIZE - head}x")


def _codec_ok(raw: bytes) -> bool:
    """Whether ``raw`` is a codec name an outcome may carry (checked once per name)."""
    if raw in _CODEC_NAMES:
        return True
    try:
        _codec_name(raw)
    except EnvelopeError:
        return False
    return True


def _read_alike(
    mv: memoryview, at: int, n_outcomes: int
) -> tuple[list[JobRef], list[OutcomeRecord], int] | None:
    """``n_outcomes`` successes of one size, read in bulk: refs, records and the offset
    after them; None when they are not all such (then :func:`_read_each` reads them,
    and raises what it finds wrong).

    An ACK of a worker whose handlers return the same result (None, most often) holds
    outcomes of one size that differ only in their refs. ``struct.iter_unpack`` splits
    them in C, and each distinct record is checked once. The split is sound: the first
    record declares the size, each record at that stride declares it again (its lengths
    are checked), so each starts where the one before it ends.
    """
    total = len(mv)
    if at + _OUTCOME.size > total:
        return None
    _, _, status, _, codec_len, type_len, data_len = _OUTCOME.unpack_from(mv, at)
    if status != STATUS_OK or type_len:
        return None
    size = _OUTCOME.size + codec_len + data_len
    end = at + n_outcomes * size
    if end > total:
        return None
    producer_ids, seqs, tails = zip(*_alike_layout(size).iter_unpack(mv[at:end]), strict=True)
    distinct = set(tails)
    if len(distinct) > _HEADS_AFTER and data_len:  # results that differ: check their heads
        if not _heads_alike(mv[at:end], size, codec_len, data_len):
            return None
        return list(map(_new_ref, zip(producer_ids, seqs, strict=True))), list(tails), end
    records: dict[bytes, OutcomeRecord] = {}
    fixed = _OUTCOME_TAIL.size
    for tail in distinct:
        status, attempts, codec_len, type_len, data_len = _OUTCOME_TAIL.unpack_from(tail)
        if status != STATUS_OK or type_len or fixed + codec_len + data_len != len(tail):
            return None
        if codec_len and not _codec_ok(tail[fixed : fixed + codec_len]):
            return None
        plain = not codec_len and not data_len and attempts == 1
        records[tail] = PLAIN_SUCCESS if plain else tail
    refs = list(map(_new_ref, zip(producer_ids, seqs, strict=True)))
    if len(records) == 1:
        return refs, [records[tails[0]]] * n_outcomes, end
    return refs, list(map(records.__getitem__, tails)), end


_HEADS_AFTER: Final = 8
"""Distinct records in a bulk read past which their heads are checked instead."""


def _heads_alike(region: memoryview, size: int, codec_len: int, data_len: int) -> bool:
    """Whether every outcome of ``region`` (``size`` bytes each) is a success whose
    head (status, attempts, lengths and codec name) is a valid one declaring
    ``codec_len`` and ``data_len``: then each record is valid whatever its result bytes,
    and a worker whose results all differ (timestamps, ids) has its ACKs read in bulk
    too, checking each distinct head once instead of each record."""
    fixed = _OUTCOME_TAIL.size
    layout = _head_layout(size, fixed + codec_len)
    for (record_head,) in set(layout.iter_unpack(region)):
        status, _, codec, type_len, data = _OUTCOME_TAIL.unpack_from(record_head)
        if status != STATUS_OK or type_len or codec != codec_len or data != data_len:
            return False
        if codec and not _codec_ok(record_head[fixed:]):
            return False
    return True


def _read_each(
    reader: _Reader, n_outcomes: int, refs: list[JobRef], records: list[OutcomeRecord]
) -> int:
    """Up to ``n_outcomes`` outcomes, one after the other, added to ``refs`` and
    ``records``; stops before a run. Returns how many it read."""
    # A successful outcome is checked here and kept as its record (one bytes object);
    # an Outcome is built only when asked for
    mv, at = reader.mv, reader.at
    total = len(mv)
    unpack, fixed = _OUTCOME.unpack_from, _OUTCOME.size
    add_ref, add_record = refs.append, records.append
    seen: dict[bytes, bytes] = {}
    checked = _CODEC_NAMES  # codec names already checked (by any batch or ACK)
    for read in range(n_outcomes):
        if at + fixed > total:
            raise EnvelopeError(f"truncated at byte {at}: {fixed} more bytes needed")
        producer_id, seq, status, attempts, codec_len, type_len, data_len = unpack(mv, at)
        if status & _RUN_FLAG:
            reader.at = at
            return read
        body_at = at + fixed
        end = body_at + codec_len + data_len  # where a success ends: it has no error type
        add_ref(_new_ref((producer_id, seq)))
        if status == STATUS_OK and not type_len and end <= total:
            if end == body_at and attempts == 1:
                add_record(PLAIN_SUCCESS)  # what most outcomes are: no new value
            else:
                record = mv[at + _REF_SIZE : end].tobytes()
                short = end - at <= _SHARED_RECORD
                known = seen.get(record) if short else None
                if known is not None:  # alike outcomes share one record, checked once
                    record = known
                else:
                    if codec_len:  # checked here, read as a name only when asked for
                        codec = mv[body_at : body_at + codec_len].tobytes()
                        if codec not in checked:
                            _codec_name(codec)
                    if short:
                        seen[record] = record
                add_record(record)
            at = end
            continue
        reader.at = body_at
        add_record(_read_outcome(reader, status, attempts, codec_len, type_len, data_len))
        at = reader.at
    reader.at = at
    return n_outcomes


def _read_outcome(
    reader: _Reader, status: int, attempts: int, codec_len: int, type_len: int, data_len: int
) -> Outcome:
    """The rest of one ACK outcome, after its fixed fields."""
    codec = _read_codec(reader, codec_len) if codec_len else ""
    error_type = reader.text(type_len, "error type")
    if status == STATUS_OK:
        if type_len:
            raise EnvelopeError("a successful outcome carries no error type")
        result = bytes(reader.take(data_len))
        return Outcome(STATUS_OK, attempts, result, codec=codec)
    if status in (Status.FAILED, Status.CANCELLED):
        if codec_len:
            what = "failed" if status == Status.FAILED else "cancelled"
            raise EnvelopeError(f"a {what} outcome carries no result codec")
        message = reader.text(data_len, "error message")
        return Outcome(Status(status), attempts, b"", error_type, message)
    raise EnvelopeError(f"unknown outcome status {status}")
