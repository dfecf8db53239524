"""The member producer's reader: what the FEEDBACK group and its private group deliver.

VIEW, ACK and CANCEL envelopes and FEEDBACK memberships become the core's inputs (the
facade's ``apply`` feeds them and carries out the effects); outcomes and CANCELs also go
to the open ``result()`` calls (:mod:`spreadq.producer.results`). Two kinds come to the
private group: NOTICEs (a consumer's outcomes, sent straight to us), which become core
inputs too, and RESULT answers, which go only to the open calls. A message that cannot be read (or
whose seal does not verify) is logged and dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from structlog.stdlib import BoundLogger

from spreadq.client import Connection
from spreadq.errors import ConnectionLost, EnvelopeError
from spreadq.producer.core import ProducerCore
from spreadq.producer.inputs import (
    AckReceived,
    CancelDelivered,
    FeedbackMembership,
    Input,
    NoticeReceived,
    ViewReceived,
)
from spreadq.producer.results import Asks
from spreadq.queue.envelope import Ack, AckOutcomes, Cancel, Notice, ResultAnswer
from spreadq.queue.jobs import outcome_of
from spreadq.queue.seal import Seal
from spreadq.queue.view import View
from spreadq.session.translate import read_envelope
from spreadq.wire.events import DaemonMessage, DataMessage, RegularMembership

__all__ = ["FeedbackReader"]


class FeedbackReader:
    """Reads one member producer's session: FEEDBACK into the core, answers to its asks.

    Args:
        core: the producer's core (who the consumers are).
        asks: the open ``result()`` calls.
        apply: feeds an input to the core and carries out its effects.
        feedback_group: the queue's FEEDBACK group.
        seal: checks every message when the queue has a secret.
        log: the producer's bound logger.
    """

    def __init__(
        self,
        core: ProducerCore,
        asks: Asks,
        apply: Callable[[Input], object],
        *,
        feedback_group: str,
        seal: Seal | None,
        log: BoundLogger,
    ) -> None:
        self._core = core
        self._asks = asks
        self._apply = apply
        self._feedback = feedback_group
        self._seal = seal
        self._log = log

    async def run(self, conn: Connection) -> None:
        """Read the session until it ends or this is cancelled.

        The connection's reader hands each read's events to :meth:`_on_events` itself
        (:meth:`~spreadq.client.Connection.deliver_to`): one task switch less per read
        than waiting in ``receive_batch``. What that raises ends this task, not the
        connection.

        Raises:
            ConnectionLost: the connection ended.
            Exception: whatever reading the events raised (a fault of ours).
        """
        stopped = asyncio.Event()
        reason: list[BaseException] = []

        def sink(events: Sequence[DaemonMessage]) -> None:
            if reason:
                return
            try:
                self._on_events(events)
            except Exception as error:  # in the connection's reader: hand it to our task
                reason.append(error)
                stopped.set()

        def end(error: ConnectionLost) -> None:
            if not reason:
                reason.append(error)
            stopped.set()

        conn.deliver_to(sink, end)
        await stopped.wait()
        raise reason[0]

    def _on_events(self, events: Sequence[DaemonMessage]) -> None:
        feedback = self._feedback
        for event in events:
            if type(event) is DataMessage:
                if feedback in event.groups:  # not a private message
                    self._on_data(event)
                else:
                    self._on_private(event)
            elif type(event) is RegularMembership and event.group == feedback:
                self._apply(FeedbackMembership(event.members))
                if self._asks:
                    self._asks.release(self._core.consumers, event.members)

    def _on_data(self, event: DataMessage) -> None:
        try:
            message = read_envelope(event, self._seal)
        except EnvelopeError as error:
            self._log.warning("feedback_dropped", sender=event.sender, reason=str(error))
            return
        if type(message) is Ack:
            if self._asks:
                self._tell_asks(event.sender, message)
            self._apply(AckReceived(event.sender, message))
        elif type(message) is Cancel:
            self._asks.on_cancel(message.ref)
            self._apply(CancelDelivered(event.sender, message.ref))
        elif type(message) is View:
            self._apply(ViewReceived(event.sender, message))
            if self._asks:
                self._asks.release(self._core.consumers)

    def _tell_asks(self, sender: str, ack: Ack) -> None:
        """The outcomes ``ack`` reports of jobs the open asks wait for: they count when
        a VIEW lists ``sender`` as a consumer, now or (held until then) later."""
        asks = self._asks
        listed = sender in self._core.consumers
        refs, records = AckOutcomes.parts(ack.outcomes)
        for ref, record in zip(refs, records, strict=True):
            if ref in asks:
                if listed:
                    asks.on_outcome(ref, outcome_of(record))
                else:
                    asks.hold(sender, ref, outcome_of(record))

    def _on_private(self, event: DataMessage) -> None:
        """A message to our private group: a NOTICE or a RESULT answer (anything else is
        dropped)."""
        try:
            message = read_envelope(event, self._seal)
        except EnvelopeError as error:
            self._log.warning("answer_dropped", sender=event.sender, reason=str(error))
            return
        if type(message) is Notice:  # receipts only: result() calls wait for the order
            self._apply(NoticeReceived(event.sender, message))
            return
        if type(message) is not ResultAnswer or not self._asks.on_answer(message):
            self._log.debug("answer_dropped", sender=event.sender, reason="no open ask")
