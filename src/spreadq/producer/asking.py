"""What ``Receipt.cancel`` and ``Producer.result`` do on the wire: multicast a CANCEL or
RESULT queries and wait until the order, or an answer, decides.

:mod:`spreadq.producer.results` keeps the open questions (pure bookkeeping);
:class:`Asking` is the I/O half. It holds no session of its own: the facade hands it
callables that read the live session (the connection, whether the producer is open,
the error it closed with) and the one ``apply`` that feeds the core, and every wait is
on the facade's ``changed`` condition, notified at every input the core takes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
from structlog.stdlib import BoundLogger

from spreadq.client import Connection
from spreadq.errors import (
    ConfigurationError,
    ConnectionLost,
    JobCancelled,
    JobFailed,
    OutcomeUnknown,
)
from spreadq.producer.condition import Changed
from spreadq.producer.core import CancelPlan, ProducerCore
from spreadq.producer.inputs import CancelSending, Input, Withdraw
from spreadq.producer.receipt import Receipt, ReceiptState
from spreadq.producer.results import Ask, Asks
from spreadq.producer.routes import Routes
from spreadq.queue.envelope import MESS_TYPE, Cancel, ResultQuery, ResultState, encode
from spreadq.queue.jobs import JobRef, Outcome, Status
from spreadq.queue.seal import Seal
from spreadq.wire.constants import ServiceType

__all__ = ["Asking"]


def _never() -> bool:
    return False


class Asking:
    """One producer's cancels and result queries.

    Args:
        core: the producer's core (cancel plans, sessions).
        asks: the open ``result()`` calls.
        changed: notified whenever the core took an input.
        routes: decodes a result put by kind name.
        apply: feeds an input to the core and carries out its effects.
        connection: the session's connection now (None between sessions).
        is_open: whether the producer is open.
        error: the error the producer closed with (None while open).
        check_open: raises that error when the producer is closed or closing.
        producer_id: the producer's id; work_group, feedback_group: the queue's groups.
        member: a member producer (a fire-and-forget one cannot ask).
        seal: seals every message when the queue has a secret.
        log: the producer's bound logger.
    """

    def __init__(
        self,
        core: ProducerCore,
        asks: Asks,
        changed: Changed,
        routes: Routes,
        *,
        apply: Callable[[Input], int],
        connection: Callable[[], Connection | None],
        is_open: Callable[[], bool],
        error: Callable[[], ConnectionLost | None],
        check_open: Callable[[], None],
        producer_id: bytes,
        work_group: str,
        feedback_group: str,
        member: bool,
        seal: Seal | None,
        log: BoundLogger,
    ) -> None:
        self._core = core
        self._asks = asks
        self._changed = changed
        self._routes = routes
        self._apply = apply
        self._connection = connection
        self._is_open = is_open
        self._error = error
        self._check_open = check_open
        self._id = producer_id
        self._work = work_group
        self._feedback = feedback_group
        self._member = member
        self._seal = seal
        self._log = log

    async def cancel(self, receipt: Receipt[Any], seq: int) -> bool:
        """``receipt.cancel()``: withdraw the job, or multicast a CANCEL and wait for its
        place in the order to decide (see :mod:`spreadq.producer.core`).

        Raises:
            ConnectionLost: the producer closed while the cancel was undecided.
        """
        core = self._core
        while not receipt.done and self._is_open():
            plan = core.cancel_plan(seq)
            if plan is CancelPlan.DONE:
                break
            if plan is CancelPlan.WITHDRAW:
                self._apply(Withdraw(seq))
                continue
            if plan is CancelPlan.SEND and (conn := self._connection()) is not None:
                sessions = core.sessions
                self._apply(CancelSending(seq))  # a NOTICE no longer decides it
                data = encode(Cancel(JobRef(self._id, seq)))
                if self._seal is not None:
                    data = self._seal.seal(data, conn.private_group)
                with contextlib.suppress(ConnectionLost):  # then sent again, once re-sent
                    await conn.multicast(
                        (self._work, self._feedback), data, ServiceType.AGREED, MESS_TYPE
                    )
                self._log.info("job_cancel_sent", job=receipt.job_id)
                await self._changed.wait_for(
                    partial(self._cancel_moved, receipt, seq, CancelPlan.SEND, sessions)
                )
            else:
                await self._changed.wait_for(
                    partial(self._cancel_moved, receipt, seq, plan, core.sessions)
                )
        if receipt.state is ReceiptState.CANCELLED:
            return True
        if isinstance(receipt._error, ConnectionLost):
            raise receipt._error  # the producer closed while the cancel was undecided
        error = self._error()
        if not receipt.done and error is not None:
            raise error
        return False

    def _cancel_moved(
        self, receipt: Receipt[Any], seq: int, plan: CancelPlan, sessions: int
    ) -> bool:
        """Whether a cancel waiting in ``plan`` since session ``sessions`` may go on."""
        core = self._core
        return (
            receipt.done
            or not self._is_open()
            or core.sessions != sessions
            or core.cancel_plan(seq) is not plan
        )

    async def result(self, job_id: str, *, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        """``Producer.result(job_id, timeout=...)`` (its docstring says what it does).

        Raises:
            OutcomeUnknown, JobFailed, JobCancelled, PayloadError, ConfigurationError,
            ConnectionLost: as ``Producer.result`` documents.
        """
        try:
            ref = JobRef.parse(job_id)
        except ValueError as error:
            raise ConfigurationError(str(error)) from None
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigurationError(f"timeout must be > 0 seconds, not {timeout!r}")
        if not self._member:
            raise ConfigurationError("a fire-and-forget producer (member=False) cannot ask")
        self._check_open()
        asks = self._asks
        ask = asks.open(ref)  # watch FEEDBACK before the first query goes out
        try:
            with anyio.move_on_after(timeout):
                await self._ask(ask, job_id, f"after {timeout} s")
        finally:
            asks.close(ask)
        self._check_open()
        if ask.outcome is None:
            raise OutcomeUnknown(job_id, ask.reason or f"no consumer answered within {timeout} s")
        return self._outcome_value(job_id, ask.outcome)

    async def _ask(self, ask: Ask, job_id: str, bound: str) -> None:
        """Query the consumers one index at a time until ``ask`` has an outcome, or every
        consumer said it does not know (``ask.reason`` then says so). A new session
        (answers to the old private group are lost) asks the same index again."""
        index = 0
        while ask.outcome is None and self._is_open():
            conn = self._connection()
            if conn is None:  # between sessions
                await self._changed.wait_for(
                    lambda: self._connection() is not None or not self._is_open()
                )
                continue
            query = ResultQuery(self._asks.query(ask), ask.ref, index)
            data = encode(query)
            if self._seal is not None:
                data = self._seal.seal(data, conn.private_group)
            try:
                await conn.multicast(self._work, data, ServiceType.AGREED, MESS_TYPE)
            except ConnectionLost:
                await self._changed.wait_for(partial(self._ask_moved, ask, conn, _never))
                continue
            self._log.debug("result_asked", job=job_id, index=index)
            await self._changed.wait_for(
                partial(self._ask_moved, ask, conn, lambda: ask.answer is not None)
            )
            answer = ask.answer
            if answer is None:  # a new session, or an outcome seen on FEEDBACK
                continue
            if answer.state is ResultState.PENDING:
                ask.reason = f"the job was still outstanding {bound}"
                await self._changed.wait_for(partial(self._ask_moved, ask, conn, ask.is_rechecked))
                continue  # ACKed, or a CANCEL went by (the same member says which)
            index += 1
            if index >= answer.members:
                ask.reason = f"none of the {answer.members} consumers remembers it"
                return

    def _ask_moved(self, ask: Ask, conn: Connection, more: Callable[[], bool]) -> bool:
        """Whether a result() waiting in session ``conn`` may go on."""
        return (
            ask.outcome is not None
            or self._connection() is not conn
            or not self._is_open()
            or more()
        )

    def _outcome_value(self, job_id: str, outcome: Outcome) -> Any:
        if outcome.status is Status.CANCELLED:
            raise JobCancelled(job_id)
        if not outcome.ok:
            raise JobFailed(outcome.error_type, outcome.error_message, outcome.attempts)
        if not outcome.result:
            return None
        route = self._routes.for_kind("result", False)
        decode = self._routes.result_decoder(route, route.codec.name, outcome) or route.decode
        return decode(outcome.result)
