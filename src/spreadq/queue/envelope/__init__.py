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
    job record  seq u64 | flags u8 (bit 0: has key, bit 1: has dedupe key, bit 2: notify) |
                kind_len u8 |
                key_len u16 |
                headers_len u16 | payload_len u32 | kind | key | headers | payload
                (a job with flag bit 1 carries its dedupe key in the ``dedupe_key`` header)
    headers   repeated: name_len u8 | name | value_len u16 | value
    ACK       incarnation 16s | backlog u32 | n_positions u16 | n_outcomes u16 |
              n_positions x (producer_id 16s | mseq u64) |
              n_outcomes x (producer_id 16s | seq u64 | status u8 | attempts u16 |
                            codec_len u8 | error_type_len u8 | data_len u32 |
                            codec | error_type | data)
    NOTICE    n_outcomes u16 | n_outcomes x (an outcome as in ACK)
    VIEW      gid 3 x i32 | ordinal u64 | n_members u16 | n_members x (len u8 | name)
    DRAIN     incarnation 16s
    HELLO     incarnation 16s | capacity u32 | (optional) flags u8 (bit 0: takes released jobs)
    RELEASE   incarnation 16s | n u16 | n x (producer_id 16s | seq u64)
    CANCEL    producer_id 16s | seq u64
    RESULT    op u8 (0 query, 1 answer) | query_id u64 | producer_id 16s | seq u64 | then
              query:  index u16
              answer: state u8 | members u16 | (state 0 only) status u8 | attempts u16 |
                      codec_len u8 | error_type_len u8 | data_len u32 | codec | error_type | data
    STATS     incarnation 16s | state u8 | owned u32 | running u32 | done u64 | failed u64 |
              oldest_ms u32 | failovers u32 | takeover_ms_sum u64 | takeover_ms_max u32 |
              gid 3 x i32 | ordinal u64 | interval_ms u32 | member_len u8 | member |
              n_producers u16 | n_producers x (producer_id 16s | outstanding u32 | read u64)
    LEDGER    gid 3 x i32 | n_members u16 | n_members x (len u8 | name) |
              n_schedules u16 | n_schedules x (len u8 | schedule | tick u64)

CANCEL goes to WORK and FEEDBACK in one AGREED message, so consumers and the producer
see it at the same place among the ACKs (:class:`Cancel`). A RESULT query goes to WORK
and is answered by the member at its ``index`` in the view, to the asker's private
group (:class:`ResultQuery`, :class:`ResultAnswer`). An outcome's ``status`` is 0
success, 1 failure, 2 cancelled (no codec; ``data`` is an empty message).

RELEASE goes to the WORK group only: jobs a busy consumer gives back without having
started them, dealt anew at its place in the order to the members whose latest HELLO
said they take released jobs (:class:`Release`, docs/design/replicated-table.md#release).
A worker from before RELEASE counts it as an unknown kind with no slots, sends HELLOs
without the flags byte, so nothing is dealt to it, and refuses a HELLO with one (it
loses that member's capacity, which no rule before ``fill_first`` read).

LEDGER goes to the WORK group only: the latest periodic tick the members it names
accepted, per schedule, sent after a join or a merge so the view's tick ledgers settle
to one (:class:`Ledger`, docs/design/periodic.md).

NOTICE goes to one producer's private group only, from the consumer that ran its jobs
(those whose record has flag bit 2, *notify*, set), as soon as they end: the producer
resolves their receipts from it without waiting for the ACK, which still settles the
jobs at every replica (:class:`Notice`). No consumer reads it, so it costs the group
nothing; a NOTICE on WORK is ignored.
STATS goes to the FEEDBACK group only (never WORK, so it takes no slot anywhere): one
consumer's periodic report for ``spreadq top`` and other observers (:class:`Stats`).

An ACK outcome's ``codec`` names the codec of a successful result only when it differs
from the job's own payload codec (``codec_len`` 0 otherwise, and always for a failure),
so a producer decodes the result with ``codec`` or else the codec it sent the job with.

Decoding is cheap for jobs a consumer does not own: the batch header and each job's
fixed fields are read and its kind and key checked, and the batch keeps each job's
offset and seq (:class:`BatchJobs`); a :class:`Job` (or a ref) is built only when asked for, with
headers and payload as slices of the message (``memoryview``, no copy), decoded only
by whoever runs the job.
"""

from __future__ import annotations

from spreadq.queue.envelope.ack import Ack as Ack
from spreadq.queue.envelope.ack import AckOutcomes as AckOutcomes
from spreadq.queue.envelope.ack import Notice as Notice
from spreadq.queue.envelope.ack import ack_overhead as ack_overhead
from spreadq.queue.envelope.ack import notice_overhead as notice_overhead
from spreadq.queue.envelope.ack import outcome_chunks as outcome_chunks
from spreadq.queue.envelope.ack import outcome_size as outcome_size
from spreadq.queue.envelope.batch import BatchJobs as BatchJobs
from spreadq.queue.envelope.batch import JobBatch as JobBatch
from spreadq.queue.envelope.batch import JobFragment as JobFragment
from spreadq.queue.envelope.batch import JobSpec as JobSpec
from spreadq.queue.envelope.batch import batch_size as batch_size
from spreadq.queue.envelope.batch import encode_batch as encode_batch
from spreadq.queue.envelope.batch import encode_fragments as encode_fragments
from spreadq.queue.envelope.control import MAX_RELEASE_REFS as MAX_RELEASE_REFS
from spreadq.queue.envelope.control import Cancel as Cancel
from spreadq.queue.envelope.control import Drain as Drain
from spreadq.queue.envelope.control import Hello as Hello
from spreadq.queue.envelope.control import Release as Release
from spreadq.queue.envelope.control import ResultAnswer as ResultAnswer
from spreadq.queue.envelope.control import ResultQuery as ResultQuery
from spreadq.queue.envelope.control import ResultState as ResultState
from spreadq.queue.envelope.dispatch import Decoded as Decoded
from spreadq.queue.envelope.dispatch import Envelope as Envelope
from spreadq.queue.envelope.dispatch import Raw as Raw
from spreadq.queue.envelope.dispatch import decode as decode
from spreadq.queue.envelope.dispatch import encode as encode
from spreadq.queue.envelope.ledger import Ledger as Ledger
from spreadq.queue.envelope.preamble import MAGIC as MAGIC
from spreadq.queue.envelope.preamble import MAX_ENVELOPE_SIZE as MAX_ENVELOPE_SIZE
from spreadq.queue.envelope.preamble import MESS_TYPE as MESS_TYPE
from spreadq.queue.envelope.preamble import SEAL_SIZE as SEAL_SIZE
from spreadq.queue.envelope.preamble import VERSION as VERSION
from spreadq.queue.envelope.preamble import Kind as Kind
from spreadq.queue.envelope.preamble import declared_slots as declared_slots
from spreadq.queue.envelope.stats import Stats as Stats
from spreadq.queue.envelope.stats import StatsState as StatsState

__all__ = [
    "MAGIC",
    "MAX_ENVELOPE_SIZE",
    "MAX_RELEASE_REFS",
    "MESS_TYPE",
    "SEAL_SIZE",
    "VERSION",
    "Ack",
    "AckOutcomes",
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
    "Notice",
    "Ledger",
    "Raw",
    "Release",
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
    "notice_overhead",
    "outcome_chunks",
]
