"""Producer: put jobs on a queue and await their outcomes through receipts.

::

    async with Producer("thumbnails", spread="4803@localhost") as producer:
        receipt = await producer.put(resize, ResizeJob(url=...))   # typed by the handler
        thumbnail = await receipt                                   # or raises JobFailed

Theory of operation
-------------------
``put()`` encodes the payload with the job's codec (a failure raises
:class:`~spreadq.errors.PayloadError` to the caller, before anything is queued), waits
for admission from the :class:`~spreadq.actors.flow.FlowControl` actor, numbers the job
(``seq``) and queues it. A *batcher* task packs queued jobs into JOB BATCH messages (up
to ``batch_max_jobs`` jobs, one codec, under the message size cap, after waiting at most
``batch_max_delay`` for company), asks the flow actor to clear each message's ``mseq``
and multicasts it to the WORK group (AGREED). A job too big for one message goes alone
as FRAGMENT messages, each cleared on its own.

A *member* producer (the default) joins the FEEDBACK group and reads it:

* VIEW envelopes give the consumer list; FEEDBACK memberships show consumers leaving.
  Only envelopes Spread shows to come from the right members count (see
  :mod:`spreadq.queue.witnesses`, Trust): a VIEW from a FEEDBACK member that is the
  first consumer it lists; an ACK from a FEEDBACK member that the last VIEW taken
  lists (an ACK from a sender that is not yet both is held, at most ``MAX_HELD_ACKS`` of
  them, until it is, or dropped if it leaves FEEDBACK: a returning worker announces its
  recovered outcomes between its WORK and FEEDBACK joins, so they reach us before we
  count it back and re-send). Every other VIEW or ACK is dropped with a
  ``feedback_dropped`` warning naming its sender, and settles nothing.
  A producer that joins FEEDBACK after the last VIEW is not left in the dark: the first
  consumer of the current WORK view announces it again when a member that is not a
  consumer joins FEEDBACK (see :mod:`spreadq.worker.dispatcher`), so the WORK group
  sees no view change on the producer's account.
* ACK outcomes for our producer id resolve receipts (results are decoded lazily, when a
  receipt is awaited); their read positions and backlogs go to the flow actor.
* Every job sent records the consumers present when it was sent, its *witnesses*
  (:mod:`spreadq.queue.witnesses` keeps that account). When no witness of an
  unconfirmed job is left, nobody holds its payload any more, so the job is queued
  again, ahead of new work, and re-sent with the same ``(producer_id, seq)`` under a
  new mseq once a consumer is present. A lost connection loses every witness: after
  reconnecting (with exponential backoff) every unconfirmed job is re-sent, so every
  receipt still resolves. Consumers recognise re-sent jobs by their reference and
  re-ACK a remembered outcome instead of running them again; workers that lost their
  session too announce the outcomes they had not reported as they rejoin, so after a
  lost session the producer waits (at most twice ``reconnect_backoff_max`` after the
  first consumer is back) for as many consumers as it knew before re-sending.
* With ``settings.secret`` set, JOB messages go out sealed and only FEEDBACK messages
  whose seal verifies are read at all (:mod:`spreadq.queue.seal`); the checks above
  still apply.
* While no consumer is present nothing is multicast: jobs are held (admission still
  bounds them by ``max_in_flight``) and go out once a consumer appears.

A producer with ``member=False`` is fire-and-forget, as plain Spread is: it joins no
group, has no flow control (a burst can overrun a slow consumer), keeps no job once it
is written, and its receipts never resolve (awaiting one raises
:class:`~spreadq.errors.ConfigurationError`).

Closing (leaving ``async with``) stops new puts, waits up to ``close_timeout`` for the
queued jobs to be sent, then ends the session: pending receipts and waiting puts fail
with :class:`~spreadq.errors.ConnectionLost` (``CLOSED_LOCALLY``). Await receipts inside
the block. A producer that has tried ``settings.reconnect_max_attempts`` times in a row
to reconnect gives up the same way, with the last ``ConnectionLost``, which every later
``put()`` raises too.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self, TypeVar, overload

import anyio
import anyio.abc

from spreadq.actors.flow import FlowControl, FlowHandle, FlowState
from spreadq.client import Connection, connect
from spreadq.codecs import Codec, CodecRegistry, default_codecs
from spreadq.errors import (
    CloseReason,
    ConfigurationError,
    ConnectError,
    ConnectionLost,
    EnvelopeError,
    InvalidName,
    MessageTooLarge,
)
from spreadq.handlers import Handler
from spreadq.logs import get_logger
from spreadq.outbox import HeldJob, Outbox
from spreadq.queue.envelope import (
    MAX_ENVELOPE_SIZE,
    MESS_TYPE,
    Ack,
    JobSpec,
    batch_size,
    decode,
    encode_batch,
    encode_fragments,
)
from spreadq.queue.protocol import NOT_BEFORE_HEADER, queue_groups
from spreadq.queue.seal import Seal
from spreadq.queue.view import View
from spreadq.queue.witnesses import Trust, Witnesses
from spreadq.receipt import Receipt
from spreadq.routes import Routes
from spreadq.settings import Settings
from spreadq.wire.constants import ServiceType
from spreadq.wire.events import DataMessage, RegularMembership, check_private_name

__all__ = ["Producer", "ProducerStatistics", "Receipt"]  # Receipt: from spreadq.receipt

log = get_logger(__name__)

PayloadT = TypeVar("PayloadT")
ResultT = TypeVar("ResultT")

_BYTES_LIKE: Final = (bytes, bytearray, memoryview)

MAX_HELD_ACKS: Final = 256
"""ACKs a producer holds from FEEDBACK members that no VIEW lists yet, at most."""


@dataclass(frozen=True, slots=True)
class ProducerStatistics:
    """Counters of one producer (see :meth:`Producer.statistics`)."""

    put: int
    """Jobs accepted by ``put()``."""
    pending: int
    """Jobs held: queued to be sent, or sent and not yet confirmed (member producers)."""
    queued: int
    """Jobs waiting to be sent (new or to be re-sent)."""
    messages: int
    """Spread messages multicast to the WORK group (batches and fragments)."""
    sent: int
    """Jobs multicast, re-sends included."""
    resent: int
    """Jobs queued again because every consumer that held them left or the session ended."""
    succeeded: int
    failed: int
    consumers: tuple[str, ...]
    sessions: int
    """Sessions opened with the daemon (1 + reconnections)."""


class Producer:
    """Puts jobs on a queue; an async context manager holding one daemon session.

    Args:
        queue: the queue name (its WORK group; the FEEDBACK group is ``<queue>~fb``).
        spread: the daemon address (``"4803"``, ``"4803@host"``, ``"unix:/path"``);
            None means Spread's default, ``"4803"``.
        member: join the FEEDBACK group to get confirmations, flow control and
            re-sending (the default); False is fire-and-forget.
        settings: tunables (``window``, ``max_in_flight``, ``max_backlog``,
            ``batch_max_jobs``, ``batch_max_delay``, ``reconnect_backoff_*``,
            ``reconnect_max_attempts``);
            ``Settings()`` when None.
        codec: the codec of payloads put by kind name (``bytes`` always go ``raw``); a
            payload put by handler uses the handler's codec.
        codecs: codecs beyond the built-in ``json`` and ``raw``.
        name: the private name of the daemon session (up to 10 bytes); None lets the
            daemon choose.
        close_timeout: how long closing waits for queued jobs to be sent (seconds).

    Raises:
        ConfigurationError: a bad queue name, private name or close_timeout, or an
            unknown codec.
    """

    def __init__(
        self,
        queue: str,
        spread: str | None = None,
        *,
        member: bool = True,
        settings: Settings | None = None,
        codec: str = "json",
        codecs: Sequence[Codec] = (),
        name: str | None = None,
        close_timeout: float = 10.0,
    ) -> None:
        self._work, self._feedback = queue_groups(queue)
        self._spread = spread
        self._member = member
        self._settings = settings = Settings() if settings is None else settings
        self._codecs: CodecRegistry = default_codecs().with_codecs(*codecs)
        self._routes = Routes(self._codecs, codec)
        if name is not None:
            try:
                check_private_name(name)
            except InvalidName as error:
                raise ConfigurationError(
                    f"invalid producer name {name!r}: {error.reason}"
                ) from None
        self._name = name
        if not (close_timeout >= 0 and math.isfinite(close_timeout)):
            raise ConfigurationError(f"close_timeout must be >= 0 seconds, not {close_timeout!r}")
        self._close_timeout = close_timeout
        self._id = os.urandom(16)
        self._log = log.bind(queue=queue, producer=self._id[:4].hex())
        self._batch_jobs = settings.batch_max_jobs
        self._batch_delay = settings.batch_max_delay
        secret = settings.secret
        self._seal = None if secret is None else Seal(secret.get_secret_value().encode())

        # lifecycle
        self._group: anyio.abc.TaskGroup | None = None
        self._open = False
        self._closing = False
        self._error: ConnectionLost | None = None
        self._flow_actor: FlowControl | None = None
        self._flow: FlowHandle | None = None
        self._conn: Connection | None = None

        # jobs
        self._seq = 0
        self._mseq = 0
        self._outbox = Outbox(
            self._id, self._routes, member=member, batch_max_jobs=settings.batch_max_jobs
        )
        self._wake = anyio.Event()
        self._flushed = anyio.Event()
        self._flushing = 0
        self._room = anyio.Event()

        # consumers and witness epochs
        self._witnesses = Witnesses()
        self._consumers_changed = anyio.Event()
        self._peak = 0  # the most consumers known at once in this session
        self._expect_back = 0  # ... in the last session lost
        self._held: dict[str, list[Ack]] = {}  # ACKs from FEEDBACK members not listed yet
        self._held_count = 0

        self._sessions = 0

    # -- identity --------------------------------------------------------------------

    @property
    def producer_id(self) -> bytes:
        """This producer's random 16-byte id (consumers report read positions by it)."""
        return self._id

    @property
    def queue(self) -> str:
        """The queue name."""
        return self._work

    @property
    def work_group(self) -> str:
        """The WORK group jobs are multicast to."""
        return self._work

    @property
    def feedback_group(self) -> str:
        """The FEEDBACK group a member producer reads."""
        return self._feedback

    @property
    def member(self) -> bool:
        """Whether this producer joins FEEDBACK (confirmations, flow control, re-sending)."""
        return self._member

    @property
    def consumers(self) -> tuple[str, ...]:
        """The consumers this producer knows to be present (member producers only)."""
        return self._witnesses.consumers

    async def wait_for_consumers(self, count: int = 1) -> tuple[str, ...]:
        """Wait until at least ``count`` consumers are known; return them.

        Puts need not wait for this (jobs are held until a consumer is present); it is
        for programs that want to start timing, or reporting, once workers are there.
        Consumers become known from the VIEW they announce when the WORK membership
        changes, and again when a producer joins the FEEDBACK group after it. Bound it
        with ``anyio.fail_after``.

        Raises:
            ConfigurationError: the producer is fire-and-forget (it cannot know).
            ConnectionLost: the producer closed, or gave up reconnecting.
        """
        if not self._member:
            raise ConfigurationError("a fire-and-forget producer (member=False) knows no consumers")
        while len(self._witnesses.consumers) < count:
            if self._error is not None:
                raise self._error
            await self._consumers_event().wait()
        return self._witnesses.consumers

    def _consumers_event(self) -> anyio.Event:
        """The event the next change of the consumer list sets (shared by waiters)."""
        if self._consumers_changed.is_set():
            self._consumers_changed = anyio.Event()
        return self._consumers_changed

    async def flow_state(self) -> FlowState | None:
        """The flow-control actor's accounting now (None for a fire-and-forget producer).

        Raises:
            ConnectionLost: the producer is closed.
        """
        if self._flow is None:
            return None
        return await self._flow.snapshot()

    def statistics(self) -> ProducerStatistics:
        """The producer's counters now."""
        outbox = self._outbox
        return ProducerStatistics(
            put=outbox.put,
            pending=outbox.held,
            queued=outbox.unsent,
            messages=outbox.messages,
            sent=outbox.sent,
            resent=outbox.resent,
            succeeded=outbox.succeeded,
            failed=outbox.failed,
            consumers=self._witnesses.consumers,
            sessions=self._sessions,
        )

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._group is not None:
            raise RuntimeError("a Producer can be entered only once")
        group = self._group = anyio.create_task_group()
        await group.__aenter__()
        try:
            if self._member:
                settings = self._settings
                self._flow_actor = FlowControl(
                    self._id,
                    window=settings.window,
                    max_in_flight=settings.max_in_flight,
                    max_backlog=settings.max_backlog,
                    batch_max_jobs=settings.batch_max_jobs,
                    queue=self._work,
                )
                self._flow = await group.start(self._flow_actor.run)
            await group.start(self._sessions_loop)
        except BaseException:
            group.cancel_scope.cancel()
            await group.__aexit__(None, None, None)
            raise
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group = self._group
        assert group is not None
        self._closing = True
        self._wake.set()
        if exc_type is None:
            with anyio.move_on_after(self._close_timeout):
                await self._flush()
        self._shutdown(ConnectionLost(CloseReason.CLOSED_LOCALLY, "the producer was closed"))
        group.cancel_scope.cancel()
        await group.__aexit__(None, None, None)

    async def flush(self) -> None:
        """Wait until every job put so far has been multicast (not confirmed: await the
        receipts for that). Jobs held while no consumer is present keep it waiting;
        bound it with ``anyio.fail_after``.

        Raises:
            ConnectionLost: the producer is closed, or closes while waiting.
        """
        self._check_open()
        await self._flush()
        self._check_open()

    async def _flush(self) -> None:
        self._flushing += 1
        self._wake.set()
        try:
            while self._open and self._outbox.unsent:
                self._flushed = anyio.Event()
                await self._flushed.wait()
            if self._open and self._conn is not None:
                with contextlib.suppress(ConnectionLost):
                    await self._conn.flush()
        finally:
            self._flushing -= 1

    def _shutdown(self, error: ConnectionLost) -> None:
        self._open = False
        self._flushed.set()
        if self._error is None:
            self._error = error
        if self._flow_actor is not None:
            self._flow_actor.stop(error)
        left = self._outbox.fail_all(error)
        self._room.set()
        self._consumers_changed.set()
        if left:
            self._log.info("producer_closed_with_pending", pending=left)

    # -- put -------------------------------------------------------------------------

    @overload
    async def put(
        self,
        handler: Handler[PayloadT, ResultT],
        payload: PayloadT,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
    ) -> Receipt[ResultT]: ...

    @overload
    async def put(
        self,
        handler: str,
        payload: object,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
    ) -> Receipt[Any]: ...

    async def put(
        self,
        handler: Handler[Any, Any] | str,
        payload: object,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
    ) -> Receipt[Any]:
        """Put one job on the queue; return its receipt.

        ``handler`` is a registered :class:`~spreadq.handlers.Handler` (the payload is
        checked against its payload type and the receipt is typed with its result) or a
        kind name. ``key`` routes the job under the ``key_affinity`` rule; ``headers``
        travel with it; ``delay`` (seconds) sets the ``not_before`` header, which workers
        honour by starting the job no earlier.

        Waits while flow control holds the producer back (a consumer a window behind,
        ``max_in_flight`` jobs unconfirmed, a consumer's backlog over its bound); never
        polls. Cancellation-safe: a cancelled put leaves no job behind and no slot taken.

        Raises:
            PayloadError: the payload cannot be encoded (nothing was queued).
            ConfigurationError: a bad kind, a negative delay, an unknown codec.
            LocalProtocolError: a key, kind or headers the envelope cannot carry.
            ConnectionLost: the producer is closed or closing.
        """
        self._check_open()
        if isinstance(handler, Handler):
            route = self._routes.for_handler(handler.spec)
        else:
            route = self._routes.for_kind(handler, isinstance(payload, _BYTES_LIKE))
        data = route.codec.encode(payload, route.adapter)
        kind = route.kind
        header_items = tuple(headers.items()) if headers else ()
        if delay is not None:
            if not (delay >= 0 and math.isfinite(delay)):
                raise ConfigurationError(f"delay must be >= 0 seconds, not {delay!r}")
            header_items += ((NOT_BEFORE_HEADER, f"{time.time() + delay:.6f}"),)

        flow = self._flow
        if flow is not None:
            if not flow.take_credit():
                await flow.admit()
        else:
            while len(self._outbox.queue) >= self._settings.max_in_flight and self._open:
                self._room = anyio.Event()
                await self._room.wait()
        if not self._open or self._closing:  # closed while waiting
            if self._flow is not None:
                self._flow.refund()
            self._check_open()
        seq = self._seq
        try:
            spec_ = JobSpec(seq, kind, data, key, header_items)
        except BaseException:
            if self._flow is not None:
                self._flow.refund()
            raise
        self._seq = seq + 1
        receipt: Receipt[Any] = Receipt(kind, seq, key, decode=route.decode, confirmed=self._member)
        job = HeldJob(spec_, route.codec.name, route, receipt, time.monotonic())
        if self._outbox.add(job):
            self._wake.set()
        return receipt

    def _check_open(self) -> None:
        if not self._open or self._closing:
            raise self._error or ConnectionLost(
                CloseReason.CLOSED_LOCALLY, "the producer is not open (use 'async with')"
            )

    # -- sessions --------------------------------------------------------------------

    async def _sessions_loop(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        settings = self._settings
        limit = settings.reconnect_max_attempts
        delay = settings.reconnect_backoff_initial
        started = False
        attempts = 0  # reconnection tries since the last session opened
        lost: ConnectionLost | None = None
        while True:
            try:
                async with connect(self._spread, name=self._name, membership=self._member) as conn:
                    if self._member:
                        await conn.join(self._feedback)
                    self._sessions += 1
                    self._conn = conn
                    self._witnesses.me = conn.private_group
                    self._log.info("producer_connected", member=conn.private_group)
                    if not started:
                        task_status.started()
                        started = True
                    delay = settings.reconnect_backoff_initial
                    attempts = 0
                    error = await self._run_session(conn)
            except (ConnectError, ConnectionLost) as exc:
                if not started:
                    raise
                error = exc if isinstance(exc, ConnectionLost) else None
                self._log.debug("producer_connect_failed", error=str(exc))
            self._conn = None
            await self._session_ended()
            if error is not None:
                lost = error
                self._log.warning("producer_disconnected", reason=error.reason.value)
            if limit is not None and attempts >= limit:
                lost = lost or ConnectionLost(CloseReason.EOF, "the session ended")
                self._log.error("producer_gave_up", attempts=attempts, reason=lost.reason.value)
                self._shutdown(lost)
                return
            await anyio.sleep(delay)
            delay = min(delay * 2, settings.reconnect_backoff_max)
            attempts += 1

    async def _run_session(self, conn: Connection) -> ConnectionLost | None:
        lost: list[ConnectionLost] = []

        async def guard(part: Callable[[Connection], Any], scope: anyio.CancelScope) -> None:
            try:
                await part(conn)
            except ConnectionLost as error:
                lost.append(error)
            scope.cancel()

        async with anyio.create_task_group() as session:
            session.start_soon(guard, self._sender, session.cancel_scope)
            session.start_soon(guard, self._reader, session.cancel_scope)
        return lost[0] if lost else None

    async def _session_ended(self) -> None:
        """The session is gone, and with it every consumer's witness: queue everything again."""
        # the daemon may have dropped the consumers one by one before our own session:
        # expect as many as were there at once
        self._expect_back = max(self._expect_back, self._peak)
        self._peak = 0
        self._drop_held(lambda sender: True, "the session ended")
        self._witnesses.reset()
        await self._set_consumers(())
        self._requeued(self._outbox.put_back())

    # -- sending ---------------------------------------------------------------------

    async def _sender(self, conn: Connection) -> None:
        outbox = self._outbox
        queue = outbox.queue
        await self._await_consumers_back()
        while True:
            while not queue:
                self._flushed.set()
                self._wake = anyio.Event()
                await self._wake.wait()
            if len(queue) < self._batch_jobs and self._batch_delay and not self._flushing:
                remaining = queue[0].at + self._batch_delay - time.monotonic()
                if remaining > 0:
                    self._wake = anyio.Event()
                    with anyio.move_on_after(remaining):
                        await self._wake.wait()
            first = outbox.head()
            if first is None:
                continue
            if batch_size(first.codec, (first.spec,)) > MAX_ENVELOPE_SIZE:
                await self._send_fragments(conn, outbox.take_one())
            else:
                await self._send_batch(conn, outbox.take_batch())
            if not self._member:
                self._room.set()

    async def _await_consumers_back(self) -> None:
        """After a lost session, give the consumers known then (the most known at once)
        time to come back before re-sending: at most twice ``reconnect_backoff_max`` after
        the first is back. Workers retry at most ``reconnect_backoff_max`` apart, so the
        last is back within that of the first, and the second period covers its connect,
        its join and the VIEW that tells us (one period was too short against a real
        Spread daemon: 1 run in 6 re-sent before the second worker was seen).

        Workers reconnect on the same backoff schedule and each announces, as it joins,
        the outcomes its handlers reached that no delivered ACK confirmed (see
        :mod:`spreadq.worker.runtime`). Jobs re-sent after that announcement are answered from
        memory; jobs re-sent before a worker is back may run again elsewhere.
        """
        expect = self._expect_back  # kept until the wait ends: this session may end too
        if not self._member or expect <= 1:
            self._expect_back = 0
            return
        witnesses = self._witnesses
        while not witnesses.consumers:
            await self._consumers_event().wait()
        with anyio.move_on_after(2 * self._settings.reconnect_backoff_max):
            while len(witnesses.consumers) < expect:
                await self._consumers_event().wait()
        self._expect_back = 0
        if len(witnesses.consumers) < expect:
            self._log.info(
                "consumers_not_back", expected=expect, consumers=len(witnesses.consumers)
            )

    async def _clear(self, mseq: int, jobs: int) -> None:
        if self._flow is not None:
            await self._flow.clear_to_send(mseq, jobs)
        self._mseq = mseq

    async def _send_batch(self, conn: Connection, jobs: list[HeldJob]) -> None:
        outbox = self._outbox
        mseq = self._mseq + 1
        await self._clear(mseq, sum(1 for job in jobs if not job.counted))
        for job in jobs:
            job.counted = True
        live = [job for job in jobs if not job.settled]
        if live:
            data = encode_batch(self._id, mseq, live[0].codec, [job.spec for job in live])
            if self._seal is not None:
                data = self._seal.seal(data, conn.private_group)
            await conn.multicast(self._work, data, ServiceType.AGREED, MESS_TYPE)
            outbox.messages += 1
            outbox.sent += len(live)
        outbox.on_wire(live, self._witnesses.epoch)

    async def _send_fragments(self, conn: Connection, job: HeldJob) -> None:
        outbox = self._outbox
        try:
            parts = encode_fragments(self._id, self._mseq + 1, job.codec, job.spec)
        except MessageTooLarge as error:  # pragma: no cover - a 9 GB payload
            outbox.on_wire([], self._witnesses.epoch)
            outbox.settle(job, error, time.monotonic())
            return
        last = len(parts) - 1
        for index, data in enumerate(parts):
            # fragments were numbered from the first mseq; clearances keep them
            # consecutive because only this task advances mseq
            final = index == last
            await self._clear(self._mseq + 1, int(final and not job.counted))
            job.counted = job.counted or final
            if job.settled:
                outbox.on_wire([], self._witnesses.epoch)
                return
            if self._seal is not None:
                data = self._seal.seal(data, conn.private_group)
            await conn.multicast(self._work, data, ServiceType.AGREED, MESS_TYPE)
            outbox.messages += 1
        outbox.sent += 1
        outbox.on_wire([job], self._witnesses.epoch)

    # -- reading FEEDBACK --------------------------------------------------------------

    async def _reader(self, conn: Connection) -> None:
        feedback = self._feedback
        while True:
            for event in await conn.receive_batch():
                if type(event) is DataMessage:
                    if feedback in event.groups:  # not a private message
                        await self._on_data(event)
                elif type(event) is RegularMembership and event.group == feedback:
                    await self._on_feedback_view(event)

    async def _on_data(self, event: DataMessage) -> None:
        try:
            data = event.data
            if self._seal is not None:
                data = self._seal.unseal(data, event.sender)
            message = decode(data)
        except EnvelopeError as error:
            self._log.warning("feedback_dropped", sender=event.sender, reason=str(error))
            return
        if type(message) is Ack:
            trust = self._witnesses.judge_ack(event.sender)
            if trust is Trust.TRUSTED:
                await self._on_ack(event.sender, message)
            elif trust is not Trust.NOT_FIRST and self._held_count < MAX_HELD_ACKS:
                self._held.setdefault(event.sender, []).append(message)
                self._held_count += 1
            else:
                self._dropped(event.sender, "ack", trust.value)
        elif type(message) is View:
            trust = self._witnesses.judge_view(message, event.sender)
            if trust is Trust.TRUSTED:
                await self._on_view(message)
            else:
                self._dropped(event.sender, "view", trust.value)

    def _dropped(self, sender: str, kind: str, reason: str, count: int = 1) -> None:
        """One warning per envelope (or held batch) dropped: it settles nothing."""
        self._log.warning("feedback_dropped", sender=sender, kind=kind, reason=reason, count=count)

    def _settle_held(self) -> list[tuple[str, Ack, int]]:
        """Settle, in the outbox and at once, the held ACKs of senders now trusted: done
        before the consumer list changes, so jobs they settle are never re-sent. Their
        reports to flow control follow (:meth:`_report_released`)."""
        witnesses = self._witnesses
        released: list[tuple[str, Ack, int]] = []
        for sender in [s for s in self._held if witnesses.judge_ack(s) is Trust.TRUSTED]:
            acks = self._held.pop(sender)
            self._held_count -= len(acks)
            for ack in acks:
                released.append((sender, ack, self._settle(ack)))
        return released

    async def _report_released(self, released: list[tuple[str, Ack, int]]) -> None:
        for sender, ack, settled in released:
            await self._report(sender, ack, settled)

    def _drop_held(self, gone: Callable[[str], bool], reason: str) -> None:
        """Drop the held ACKs of the senders ``gone`` says are gone."""
        for sender in [sender for sender in self._held if gone(sender)]:
            acks = self._held.pop(sender)
            self._held_count -= len(acks)
            self._dropped(sender, "ack", reason, len(acks))

    async def _on_ack(self, sender: str, ack: Ack) -> None:
        await self._report(sender, ack, self._settle(ack))

    def _settle(self, ack: Ack) -> int:
        """Settle the receipts ``ack`` reports; how many jobs that settled."""
        return self._outbox.on_outcomes(ack.outcomes, time.monotonic())

    async def _report(self, sender: str, ack: Ack, settled: int) -> None:
        """Tell flow control what an ACK said: read positions, backlog, jobs settled."""
        flow = self._flow
        assert flow is not None
        await flow.ack_seen(sender, ack.positions, ack.backlog)
        await flow.settled(settled)

    async def _on_view(self, view: View) -> None:
        consumers = self._witnesses.on_view(view)
        if consumers is not None:  # else an older view of this lifetime, overtaken
            released = self._settle_held()
            await self._set_consumers(consumers)
            await self._report_released(released)

    async def _on_feedback_view(self, event: RegularMembership) -> None:
        witnesses = self._witnesses
        # held ACKs of senders that were members and left are dropped; those of senders
        # not yet members wait for their join (bounded by MAX_HELD_ACKS)
        was_member = {sender for sender in self._held if witnesses.is_member(sender)}
        consumers = witnesses.on_feedback(event.members)
        released: list[tuple[str, Ack, int]] = []
        if self._held:
            self._drop_held(
                lambda sender: sender in was_member and not witnesses.is_member(sender),
                "left FEEDBACK",
            )
            released = self._settle_held()
        await self._set_consumers(consumers)
        await self._report_released(released)

    async def _set_consumers(self, members: Sequence[str]) -> None:
        if not self._member:
            return
        witnesses = self._witnesses
        flow = self._flow
        assert flow is not None
        await flow.peers_seen(witnesses.peers(members))
        change = witnesses.change(members)
        if change is None:
            return
        self._consumers_changed.set()
        self._peak = max(self._peak, len(change.consumers))
        await flow.consumers_seen(change.consumers)
        self._log.info("consumers_changed", consumers=len(change.consumers), gone=len(change.gone))
        self._requeued(self._outbox.lost(change.lost))
        witnesses.forget(self._outbox.live_epochs())

    def _requeued(self, jobs: list[HeldJob]) -> None:
        """``jobs`` went back to the queue (to be sent again): wake the batcher."""
        if jobs:
            self._wake.set()
            self._log.info("jobs_requeued", jobs=len(jobs), first_seq=jobs[0].spec.seq)
