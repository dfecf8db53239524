"""DeadLetters: a worker puts the jobs that failed for good on a dead-letter queue.

``App(dead_letter=True)`` (or a queue name) turns it on. When a job the worker owns
fails for good (its retries are spent, its payload does not decode, its result does
not encode, or it was given up after ``max_failovers``), the owner, after the
``on_failure`` hooks and before it reports the failure, puts a copy on the dead-letter
queue: the original payload bytes, kind, key, codec and headers, plus the headers
:data:`~spreadq.queue.protocol.ERROR_HEADER`,
:data:`~spreadq.queue.protocol.ERROR_TYPE_HEADER`,
:data:`~spreadq.queue.protocol.ATTEMPTS_HEADER` and
:data:`~spreadq.queue.protocol.ORIGIN_QUEUE_HEADER`. The table names one owner per job,
so each failure is put once; a job whose failure never reached the queue (its owner
died first) is taken over and may fail, and be put, again.

The worker is no producer (it must not import one): it encodes the JOB BATCH itself
with :mod:`spreadq.queue.envelope`, under a producer id of its own for the session, and
multicasts it on its own connection, sealed like its other envelopes. It sends it and
forgets it: no receipt, no flow control (a worker puts at most one dead letter per job
it owns), no retry when the session is lost meanwhile. A dead-letter consumer is an
ordinary :class:`~spreadq.App` on the dead-letter queue with handlers for the kinds it
expects.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import structlog

from spreadq.errors import EnvelopeError, MessageTooLarge, SpreadqError
from spreadq.queue import MESS_TYPE, Job, Outcome
from spreadq.queue.envelope import JobSpec, encode_batch, encode_fragments
from spreadq.queue.protocol import (
    ATTEMPTS_HEADER,
    ERROR_HEADER,
    ERROR_TYPE_HEADER,
    ORIGIN_QUEUE_HEADER,
)
from spreadq.queue.seal import Seal
from spreadq.wire.constants import ServiceType

__all__ = ["DeadLetters", "Multicaster"]

_OURS = frozenset({ERROR_HEADER, ERROR_TYPE_HEADER, ATTEMPTS_HEADER, ORIGIN_QUEUE_HEADER})


class Multicaster(Protocol):
    """What dead letters need of a connection (``spreadq.client.Connection`` fits)."""

    @property
    def private_group(self) -> str:
        """Our member name (sealed envelopes name their sender)."""
        ...

    async def multicast(
        self,
        groups: str | Sequence[str],
        data: bytes,
        service: ServiceType = ServiceType.AGREED,
        mess_type: int = 0,
        self_discard: bool = False,
    ) -> None:
        """Send one message to one group or several."""
        ...


class DeadLetters:
    """Puts failed jobs on one dead-letter queue, for one worker session.

    Args:
        conn: the session's connection (the worker's own).
        queue: the queue the jobs failed on.
        dead_letter_queue: the queue to put them on (its WORK group).
        seal: seals each envelope when the queue has a secret.
        log: where ``job_dead_lettered`` and ``dead_letter_failed`` go.
    """

    __slots__ = ("_conn", "_group", "_id", "_log", "_mseq", "_queue", "_seal", "_seq")

    def __init__(
        self,
        conn: Multicaster,
        *,
        queue: str,
        dead_letter_queue: str,
        seal: Seal | None,
        log: structlog.stdlib.BoundLogger,
    ) -> None:
        self._conn = conn
        self._queue = queue
        self._group = dead_letter_queue
        self._seal = seal
        self._log = log
        self._id = os.urandom(16)  # a producer id of our own, for this session
        self._seq = 0
        self._mseq = 0

    @property
    def queue(self) -> str:
        """The dead-letter queue."""
        return self._group

    async def put(self, job: Job, outcome: Outcome) -> None:
        """Put ``job``, which failed for good with ``outcome``, on the dead-letter queue.

        Never raises a spreadq error: a job that cannot be put (a connection lost
        meanwhile, a header the envelope cannot carry) is logged as
        ``dead_letter_failed`` at error level.

        Raises:
            anyio.get_cancelled_exc_class(): the worker cancelled the job meanwhile.
        """
        try:
            try:
                original = job.headers() if job.header_block else {}
            except EnvelopeError:
                original = {}  # unreadable: the failure says so
            headers = (
                *((k, v) for k, v in original.items() if k not in _OURS),
                (ERROR_HEADER, outcome.error_message),
                (ERROR_TYPE_HEADER, outcome.error_type),
                (ATTEMPTS_HEADER, str(outcome.attempts)),
                (ORIGIN_QUEUE_HEADER, self._queue),
            )
            spec = JobSpec(self._seq, job.kind, bytes(job.payload), job.key, headers)
            try:
                messages = [encode_batch(self._id, self._mseq, job.codec, [spec])]
            except MessageTooLarge:  # too large for one message: in fragments
                messages = encode_fragments(self._id, self._mseq, job.codec, spec)
            self._seq += 1
            self._mseq += len(messages)
            for data in messages:
                if self._seal is not None:
                    data = self._seal.seal(data, self._conn.private_group)
                await self._conn.multicast(self._group, data, ServiceType.AGREED, MESS_TYPE)
        except SpreadqError as error:
            self._log.error(
                "dead_letter_failed",
                job=str(job.ref),
                kind=job.kind,
                dead_letter_queue=self._group,
                error=f"{type(error).__name__}: {error}",
            )
            return
        self._log.info(
            "job_dead_lettered",
            job=str(job.ref),
            kind=job.kind,
            dead_letter_queue=self._group,
            error_type=outcome.error_type,
        )
