"""Sender: the producer's task that takes batches from its core and multicasts them.

Theory of operation
-------------------
One :class:`Sender` lives as long as its :class:`~spreadq.producer.facade.Producer` and
runs once per daemon session (:meth:`Sender.run`). In each it first waits, after a
lost session, for the consumers known before to come back (see
:meth:`Sender.await_consumers_back`), then loops: ask the core whether a short batch
should wait for company (:meth:`~spreadq.producer.core.ProducerCore.send_delay`; by
default it never does), take the batch
(:meth:`~spreadq.producer.core.ProducerCore.next_batch`), wait until the core clears
each of its messages, and multicast it to the WORK group with AGREED order.

Batching happens only under load, in the manner of Nagle's algorithm: a job put while
nothing of ours is waiting to be written goes at once, alone; after each message that
left fewer than ``batch_max_jobs`` jobs queued, the sender waits until the message has
been written to the socket (``Connection.flush``), and everything put meanwhile goes
together in the next message. No timer is involved while the producer is idle, so it
adds no latency, and a busy one packs as many jobs per message as pile up during one
write. Jobs put one per turn of the loop pile up during no write: past
``batch_max_rate`` messages a second (:meth:`~spreadq.producer.core.ProducerCore.send_delay`),
a short batch waits for the next message the rate allows. A
job too big for one message goes as FRAGMENT messages, each cleared on its own; they
were numbered from the first mseq, and clearances keep them consecutive because only
this task advances mseq.

Every wait is a condition over the core (:class:`~spreadq.producer.condition.Changed`):
the facade notifies :attr:`Sender.queued` when the core says jobs are ready and
:attr:`Sender.clearance` after every input; the sender notifies :attr:`Sender.idle`
when it finds nothing queued, which is what ``flush()`` waits for. Cancelled (the
session ended), it leaves its batch in hand; the core puts it back when told the
session was lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
from structlog.stdlib import BoundLogger

from spreadq.actors.timers import timer_delay
from spreadq.client import Connection
from spreadq.errors import MessageTooLarge
from spreadq.producer.condition import Changed
from spreadq.producer.core import ProducerCore
from spreadq.producer.inputs import Cleared, GiveUp, Input, Resending, Sent
from spreadq.producer.jobs import Batch
from spreadq.queue.envelope import MESS_TYPE, encode_batch, encode_fragments
from spreadq.queue.seal import Seal
from spreadq.wire.constants import ServiceType

__all__ = ["Sender"]


class Sender:
    """Takes batches from ``core`` and multicasts them to ``work_group``.

    Args:
        core: the producer's core.
        apply: feeds an input to the core and carries out its effects (the facade's).
        consumers: notified by the facade when the consumer list changes.
        producer_id: the producer's id, in every JOB envelope.
        work_group: the WORK group.
        seal: seals every message when the queue has a secret.
        member: a member producer (it waits for consumers after a lost session).
        backoff_max: the workers' longest reconnect backoff (seconds).
        log: the producer's bound logger.
    """

    __slots__ = (
        "_apply",
        "_backoff_max",
        "_consumers",
        "_core",
        "_id",
        "_log",
        "_member",
        "_seal",
        "_work",
        "clearance",
        "flushing",
        "held",
        "idle",
        "queued",
        "waiting",
    )

    def __init__(
        self,
        core: ProducerCore,
        apply: Callable[[Input], object],
        consumers: Changed,
        *,
        producer_id: bytes,
        work_group: str,
        seal: Seal | None,
        member: bool,
        backoff_max: float,
        log: BoundLogger,
    ) -> None:
        self._core = core
        self._apply = apply
        self._consumers = consumers
        self._id = producer_id
        self._work = work_group
        self._seal = seal
        self._member = member
        self._backoff_max = backoff_max
        self._log = log
        self.queued = Changed()
        """Notify when jobs are queued, a flush starts or the producer closes."""
        self.clearance = Changed()
        """Notify when an input may have cleared the message waiting."""
        self.idle = Changed()
        """Notified when the sender finds nothing queued."""
        self.flushing = 0
        """How many flushes wait (a short batch goes at once while any does)."""
        self.waiting = False
        """Whether a message waits for clearance now."""
        self.held = 0
        """Batches that waited for company before they went (``batch_max_delay``, or
        ``batch_max_rate`` when jobs came faster)."""

    async def run(self, conn: Connection) -> None:
        """Send until cancelled (the session ended).

        Raises:
            ConnectionLost: the connection ended.
        """
        core = self._core
        await self.await_consumers_back()
        waited = False  # the batch about to go waited for company
        while True:
            wait = core.send_delay(time.monotonic(), flushing=self.flushing > 0)
            if wait is None:  # nothing queued
                waited = False
                self.idle.notify()
                await self.queued.wait()
                continue
            if wait > 0:  # a short batch waits for company, or for a flush
                waited = True
                with anyio.move_on_after(timer_delay(wait)):  # uvloop: whole ms, no spin
                    await self.queued.wait()
                if core.send_delay(time.monotonic(), flushing=self.flushing > 0) != 0:
                    continue
            batch = core.next_batch(time.monotonic())
            if batch is None:
                continue
            if waited:
                self.held += 1
                waited = False
            if batch.fragmented:
                await self._send_fragments(conn, batch)
            else:
                await self._send_batch(conn, batch)
            if core.unsent < core.batch_max_jobs:
                # Nagle: the next short batch waits until this message is written, and
                # takes everything put meanwhile; a full batch goes at once
                await conn.flush()

    async def await_consumers_back(self) -> None:
        """After a lost session, give the consumers known then (the most known at once)
        time to come back before re-sending: at most twice ``backoff_max`` after the
        first is back. Workers retry at most ``backoff_max`` apart, so the last is back
        within that of the first, and the second period covers its connect, its join
        and the VIEW that tells us (one period was too short against a real Spread
        daemon: 1 run in 6 re-sent before the second worker was seen).

        Workers reconnect on the same backoff schedule and each announces, as it joins,
        the outcomes its handlers reached that no delivered ACK confirmed (see
        :mod:`spreadq.worker.runtime`). Jobs re-sent after that announcement are answered from
        memory; jobs re-sent before a worker is back may run again elsewhere.
        """
        core = self._core
        expect = core.expected_back  # kept until the wait ends: this session may end too
        if not self._member or expect <= 1:
            self._apply(Resending())
            return
        await self._consumers.wait_for(lambda: bool(core.consumers))
        with anyio.move_on_after(2 * self._backoff_max):
            await self._consumers.wait_for(lambda: len(core.consumers) >= expect)
        self._apply(Resending())
        if len(core.consumers) < expect:
            self._log.info("consumers_not_back", expected=expect, consumers=len(core.consumers))

    async def _clear(self, batch: Batch[Any], final: bool = True) -> None:
        """Wait until the core clears the next message of ``batch``, and tell it so."""
        core = self._core
        waited = False
        if not core.clear_to_send(batch, final):
            waited = self.waiting = True
            slowest = core.slowest()
            self._log.debug(
                "window_blocked",
                reason=str(core.blocked()),
                last_mseq=core.last_mseq,
                slowest=slowest[0] if slowest else None,
                share=core.share,
            )
            try:
                await self.clearance.wait_for(lambda: core.clear_to_send(batch, final))
            finally:
                self.waiting = False
            self._log.debug("window_opened", last_mseq=core.last_mseq)
        self._apply(Cleared(batch, final, waited))

    async def _send_batch(self, conn: Connection, batch: Batch[Any]) -> None:
        await self._clear(batch)
        live = tuple(job for job in batch.jobs if not job.settled)
        if live:
            mseq = self._core.last_mseq
            specs = [job.spec for job in live]
            notify = self._core.keeping_up()  # under a flood NOTICEs would cost the flood
            data = encode_batch(self._id, mseq, live[0].codec, specs, notify=notify)
            if self._seal is not None:
                data = self._seal.seal(data, conn.private_group)
            await conn.multicast(self._work, data, ServiceType.AGREED, MESS_TYPE)
        self._apply(Sent(live, 1 if live else 0))

    async def _send_fragments(self, conn: Connection, batch: Batch[Any]) -> None:
        (job,) = batch.jobs
        try:
            parts = encode_fragments(self._id, self._core.last_mseq + 1, job.codec, job.spec)
        except MessageTooLarge as error:  # pragma: no cover - a 9 GB payload
            self._apply(GiveUp(job, error))
            return
        last = len(parts) - 1
        for index, data in enumerate(parts):
            await self._clear(batch, index == last)
            if job.settled:
                self._apply(Sent((), index))
                return
            if self._seal is not None:
                data = self._seal.seal(data, conn.private_group)
            await conn.multicast(self._work, data, ServiceType.AGREED, MESS_TYPE)
        self._apply(Sent((job,), len(parts)))
