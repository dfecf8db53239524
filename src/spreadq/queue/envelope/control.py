"""The control envelopes: VIEW, DRAIN, HELLO, RELEASE, CANCEL and RESULT (query and
answer)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from spreadq.errors import EnvelopeError, LocalProtocolError
from spreadq.queue.envelope.ack import _OUTCOME_TAIL, _REF, _outcome_parts, _read_outcome
from spreadq.queue.envelope.preamble import (
    _U8,
    _U16_MAX,
    _U32_MAX,
    _U64_MAX,
    Kind,
    _check_id,
    _check_range,
    _check_ref,
    _preamble,
)
from spreadq.queue.envelope.reader import _Reader
from spreadq.queue.jobs import (
    JobRef,
    Outcome,
    _new_ref,
    encode_text,
)
from spreadq.queue.view import View

__all__ = [
    "Cancel",
    "Drain",
    "Hello",
    "MAX_RELEASE_REFS",
    "Release",
    "ResultAnswer",
    "ResultQuery",
    "ResultState",
]

_VIEW = struct.Struct("<iiiQH")
_DRAIN = struct.Struct("<16s")
_HELLO = struct.Struct("<16sI")
_HELLO_FLAGS = struct.Struct("<B")
_TAKES_RELEASED = 0x01
_RELEASE = struct.Struct("<16sH")  # then each job as an ACK names it (_REF)
_RESULT = struct.Struct("<BQ16sQ")
_QUERY = struct.Struct("<H")
_ANSWER = struct.Struct("<BH")
_QUERY_OP, _ANSWER_OP = 0, 1


@dataclass(frozen=True, slots=True)
class Drain:
    """DRAIN: the sender takes no new work (re-announced after every view change)."""

    incarnation: bytes


@dataclass(frozen=True, slots=True)
class Hello:
    """HELLO: the sender's capacity (how many jobs it runs at once; 0 while it is busy,
    its own jobs waiting too long for a slot), and whether it takes jobs a busy member
    gives back (:class:`Release`).

    ``takes_released`` is the one flag of an optional flags byte after the capacity: a
    HELLO without it (from a worker before RELEASE) says False.
    """

    incarnation: bytes
    capacity: int
    takes_released: bool = False


MAX_RELEASE_REFS: Final = 4096
"""The most jobs one RELEASE names (24 bytes each: about 98 KB, under the size cap)."""


@dataclass(frozen=True, slots=True)
class Release:
    """RELEASE: the sender gives back jobs it owns and has not started.

    Multicast to WORK with AGREED order. The sender took ``refs`` out of its own queue
    before sending, so it runs none of them unless the order gives one back to it;
    where the RELEASE lands, every replica deals the jobs that the sender still owns
    there to the members that take released jobs (docs/design/replicated-table.md#release).
    """

    incarnation: bytes
    refs: tuple[JobRef, ...]


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


def _encode_cancel(cancel: Cancel) -> bytes:
    _check_ref(cancel.ref)
    return _preamble(Kind.CANCEL, 0) + _REF.pack(*cancel.ref)  # the job, as an ACK names it


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
        parts += _outcome_parts(answer.outcome)
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
    data = _preamble(Kind.HELLO, 0) + _HELLO.pack(hello.incarnation, hello.capacity)
    if hello.takes_released:
        data += _HELLO_FLAGS.pack(_TAKES_RELEASED)
    return data


def _encode_release(release: Release) -> bytes:
    _check_id(release.incarnation, "incarnation")
    _check_range(len(release.refs), "released jobs", MAX_RELEASE_REFS)
    parts = [_preamble(Kind.RELEASE, 0), _RELEASE.pack(release.incarnation, len(release.refs))]
    for ref in release.refs:
        _check_ref(ref)
        parts.append(_REF.pack(*ref))
    return b"".join(parts)


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
    flags = 0
    if reader.at < len(reader.mv):  # the flags byte; bits this version does not know are ignored
        (flags,) = reader.unpack(_HELLO_FLAGS)
    reader.done()
    return Hello(incarnation, capacity, bool(flags & _TAKES_RELEASED))


def _decode_release(reader: _Reader, slots: int) -> Release:
    incarnation, count = reader.unpack(_RELEASE)
    if count > MAX_RELEASE_REFS:
        raise EnvelopeError(f"a RELEASE of {count} jobs (at most {MAX_RELEASE_REFS})")
    refs = tuple(_new_ref(reader.unpack(_REF)) for _ in range(count))
    reader.done()
    return Release(incarnation, refs)


def _decode_cancel(reader: _Reader, slots: int) -> Cancel:
    producer_id, seq = reader.unpack(_REF)
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
