"""Receipt: the awaitable outcome of one job put by a :class:`~spreadq.producer.Producer`.

A receipt is *pending* until the producer learns the job's outcome, then *done* for
good: *succeeded* (``await receipt`` returns the handler's result, decoded lazily on
each await), *failed* (``await receipt`` raises: :class:`~spreadq.errors.JobFailed`,
or :class:`~spreadq.errors.ConnectionLost` when the producer closed first) or
*cancelled* (``await receipt`` raises :class:`~spreadq.errors.JobCancelled`; see
:meth:`Receipt.cancel`). Only its producer resolves it, once; later outcomes are ignored.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Generic, TypeVar, cast

import anyio

from spreadq.errors import ConfigurationError, JobCancelled

__all__ = ["Receipt", "ReceiptState"]

ResultT = TypeVar("ResultT")


class ReceiptState(enum.IntEnum):
    """Where a :class:`Receipt` stands."""

    PENDING = 0
    SUCCEEDED = 1
    FAILED = 2
    CANCELLED = 3


_PENDING, _OK, _FAILED = ReceiptState.PENDING, ReceiptState.SUCCEEDED, ReceiptState.FAILED
_CANCELLED = ReceiptState.CANCELLED


class Receipt(Generic[ResultT]):
    """The outcome of one job, returned by :meth:`~spreadq.producer.Producer.put`; await it.

    ``await receipt`` (or ``await receipt.result()``) waits until a consumer reports the
    job finished and returns the handler's return value: for a job put by handler,
    decoded with the handler's result codec as its declared result type; for a job put
    by kind name, decoded to plain values (``bytes`` from a handler that returns
    bytes). Either way a result is decoded with the codec the worker encoded it with,
    which the outcome names. A handler that returned nothing gives ``None``.

    A receipt from a fire-and-forget producer (``member=False``) never learns the
    outcome: awaiting it raises :class:`~spreadq.errors.ConfigurationError` at once.

    Attributes:
        job_id: the job's printable id (``<producer id in hex>:<seq>``), the same as
            ``Context.job.id`` in its handler; ``Producer.result`` and ``spreadq result``
            take it.
        kind: the handler kind the job was put for.
        seq: the job's sequence number within its producer (0, 1, 2, ...).
        key: the job's key, if it was given one.
        resolved_at: when the outcome arrived (``time.monotonic()``), None before;
            with the time ``put()`` was called it gives a job's end-to-end latency.
    """

    __slots__ = (
        "_cancel",
        "_decode",
        "_error",
        "_event",
        "_result",
        "_route",
        "_state",
        "job_id",
        "key",
        "kind",
        "resolved_at",
        "seq",
    )

    def __init__(
        self,
        kind: str,
        seq: int,
        key: str | None = None,
        *,
        decode: Callable[[bytes], ResultT] | None = None,
        confirmed: bool = True,
        job_id: str = "",
        cancel: Callable[[Receipt[Any], int], Awaitable[bool]] | None = None,
    ) -> None:
        self.job_id = job_id
        self._cancel = cancel
        self.kind = kind
        self.seq = seq
        self.key = key
        self._decode = decode
        self._route: object = None  # the producer's: how the job was put (its Route)
        self._event: asyncio.Event | None = None  # made when someone waits
        self._state: ReceiptState = _PENDING
        self._result: bytes | None = None
        self._error: BaseException | None = None
        self.resolved_at: float | None = None
        if not confirmed:
            self._fail(
                ConfigurationError(
                    f"job {kind!r} #{seq} was put by a fire-and-forget producer "
                    "(member=False): its outcome is never reported"
                )
            )

    def __repr__(self) -> str:
        state = ("pending", "done", "failed", "cancelled")[self._state]
        return f"<Receipt {self.kind!r} #{self.seq} {state}>"

    @property
    def state(self) -> ReceiptState:
        """Pending, succeeded or failed."""
        return self._state

    @property
    def done(self) -> bool:
        """True once the outcome is known (success, failure, cancel or a lost connection)."""
        return self._state != _PENDING

    async def cancel(self) -> bool:
        """Cancel the job; return True if the cancel took, False if the job had already
        finished (or was never pending).

        A job never sent is withdrawn at once. Otherwise a CANCEL is multicast to the
        consumers, ordered with the jobs and ACKs: if it comes before the job's
        outcome, every consumer drops the job (it never starts anywhere, not after a
        failover either) or its owner cancels the running handler, and this receipt
        raises :class:`~spreadq.errors.JobCancelled`; if the outcome came first, it
        stands and this returns False. Waits until that is decided; bound it with
        ``anyio.fail_after``.

        Raises:
            ConfigurationError: the producer is fire-and-forget (``member=False``).
            ConnectionLost: the producer closed before the cancel was decided.
        """
        if self._cancel is None and isinstance(self._error, ConfigurationError):
            raise self._error  # fire-and-forget: no consumer tells it anything back
        if self._state != _PENDING or self._cancel is None:
            return False
        return await self._cancel(self, self.seq)

    async def wait(self) -> None:
        """Wait until the outcome is known, without raising it."""
        if self._state == _PENDING:
            if self._event is None:
                self._event = asyncio.Event()
            await self._event.wait()

    async def result(self) -> ResultT:
        """Wait for the job's outcome and return the handler's result.

        Raises:
            JobFailed: the handler failed on every attempt (remote error type, message
                and attempts are on the exception).
            JobCancelled: the job was cancelled before its outcome was reported.
            ConnectionLost: the producer closed, or its connection ended for good,
                before the outcome arrived.
            PayloadError: the result bytes could not be decoded.
            ConfigurationError: the producer is fire-and-forget (``member=False``).
        """
        await self.wait()
        return self.result_nowait()

    def result_nowait(self) -> ResultT:
        """The job's result if its outcome is known, without waiting: what
        :meth:`result` returns (or raises) then.

        Raises:
            anyio.WouldBlock: the outcome is not known yet.
            JobFailed: the handler failed on every attempt.
            JobCancelled: the job was cancelled before its outcome was reported.
            ConnectionLost: the producer closed, or its connection ended for good,
                before the outcome arrived.
            PayloadError: the result bytes could not be decoded.
            ConfigurationError: the producer is fire-and-forget (``member=False``).
        """
        if self._state == _PENDING:
            raise anyio.WouldBlock
        if self._error is not None:
            raise self._error
        data = self._result
        if not data or self._decode is None:
            return cast(ResultT, None)
        return self._decode(data)

    def __await__(self) -> Generator[Any, None, ResultT]:
        return self.result().__await__()

    # -- called by the producer that owns this receipt -----------------------------------

    def _succeed(
        self, result: bytes, now: float, decode: Callable[[bytes], ResultT] | None = None
    ) -> None:
        if self._state == _PENDING:
            self._state = _OK
            self._result = result
            self.resolved_at = now
            if decode is not None:
                self._decode = decode
            if self._event is not None:
                self._event.set()

    def _fail(self, error: BaseException) -> None:
        if self._state == _PENDING:
            self._state = _CANCELLED if isinstance(error, JobCancelled) else _FAILED
            self._error = error
            self.resolved_at = time.monotonic()
            if self._event is not None:
                self._event.set()
