"""Producer: put jobs on a queue and await their outcomes through receipts.

::

    async with Producer("thumbnails", spread="4803@localhost") as producer:
        receipt = await producer.put(resize, ResizeJob(url=...))   # typed by the handler
        thumbnail = await receipt                                   # or raises JobFailed

Theory of operation
-------------------
The producer is an I/O shell around a :class:`~spreadq.producer.core.ProducerCore`,
which holds the jobs, the consumer list, the flow-control windows and the trust rules
(see its module for what it decides and why). The shell opens the daemon session, turns
what the FEEDBACK group delivers into the core's inputs, carries out the effects it
returns (resolving receipts, logging, waking its tasks), and does all the waiting.

``put()`` encodes the payload with the job's codec (a failure raises
:class:`~spreadq.errors.PayloadError` to the caller, before anything is queued), waits
while the core has no room (a consumer a window behind, ``max_in_flight`` jobs held, a
consumer's backlog over its bound), and feeds the job to the core; ``put_many()`` does
the same for a group, all or none (both in :mod:`spreadq.producer.putting`, which
:class:`Producer` inherits). Waiting is a plain condition over the core
(:class:`~spreadq.producer.condition.Changed`): every input that may open room wakes
the waiting puts, which ask the core again; nothing polls, and a cancelled put leaves
nothing behind and takes no room.

A *sender* task (:mod:`spreadq.producer.sender`) takes batches from the core (up to
``batch_max_jobs`` jobs, one codec, under the message size cap, after waiting at most
``batch_max_delay`` for company, and no sooner than ``batch_max_rate`` allows another
message), waits until the core clears each message, and
multicasts it to the WORK group (AGREED). A job too big for one message goes alone as
FRAGMENT messages, each cleared on its own.

A *member* producer (the default) joins the FEEDBACK group and reads it: VIEW and ACK
envelopes and FEEDBACK memberships go to the core, which settles receipts from ACK
outcomes, requeues jobs whose every witness left, and drops (with one
``feedback_dropped`` warning naming the sender) envelopes from senders it does not
trust. A producer that joins FEEDBACK after the last VIEW is not left in the dark: the
first consumer of the current WORK view announces it again when a member that is not
a consumer joins FEEDBACK (see :mod:`spreadq.worker.dispatcher`).

A lost connection loses every witness: after reconnecting (with exponential backoff)
every unconfirmed job is re-sent, so every receipt still resolves. Workers that lost
their session too announce the outcomes they had not reported as they rejoin, so after
a lost session the producer waits (at most twice ``reconnect_backoff_max`` after the
first consumer is back) for as many consumers as it knew before re-sending.

With ``settings.secret`` set, JOB messages go out sealed and only FEEDBACK messages
whose seal verifies are read at all (:mod:`spreadq.queue.seal`); the checks above
still apply.

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
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, cast

import anyio
import anyio.abc

from spreadq.codecs import Codec, CodecRegistry, default_codecs
from spreadq.errors import (
    CloseReason,
    ConfigurationError,
    ConnectionLost,
    InvalidName,
    JobCancelled,
    JobFailed,
)
from spreadq.logs import get_logger
from spreadq.observe import (
    Counters,
    EventBus,
    ObserversArg,
    ObserveScope,
    check_observer,
)
from spreadq.plugins import (
    LoadedPlugin,
    Plugin,
    PutHook,
    plugin_observers,
    plugin_put_hooks,
    select_plugins,
)
from spreadq.producer.asking import Asking
from spreadq.producer.condition import Changed
from spreadq.producer.core import FlowState, ProducerCore
from spreadq.producer.effects import ConsumersSet, Dropped, Ready, Requeued, Resolve, Settle
from spreadq.producer.feedback import FeedbackReader
from spreadq.producer.inputs import (
    Closed,
    Input,
)
from spreadq.producer.jobs import Job
from spreadq.producer.putting import Putting
from spreadq.producer.receipt import Receipt
from spreadq.producer.results import Asks
from spreadq.producer.routes import Route, Routes
from spreadq.producer.sender import Sender
from spreadq.producer.sessions import SessionKeeper
from spreadq.queue.jobs import STATUS_OK, OutcomeRecord, Status, outcome_of
from spreadq.queue.protocol import (
    OBSERVER_PREFIX,
    queue_groups,
)
from spreadq.queue.seal import Seal
from spreadq.settings import Settings
from spreadq.wire.events import check_private_name

__all__ = ["Producer", "ProducerStatistics"]

log = get_logger("spreadq.producer")  # the package's name: what users configure and filter on

_Tag = Receipt[Any]
"""What the producer attaches to each job in the core: its receipt (which holds its
route in ``_route``: one object a job, not a tuple of two, for the collector to walk)."""


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
    batches_held: int
    """Batches that waited for company before they went: for ``batch_max_delay``, or
    for ``batch_max_rate`` when jobs came one at a time faster than that."""
    sent: int
    """Jobs multicast, re-sends included."""
    resent: int
    """Jobs queued again because every consumer that held them left or the session ended."""
    succeeded: int
    failed: int
    consumers: tuple[str, ...]
    sessions: int
    """Sessions opened with the daemon (1 + reconnections)."""


class Producer(Putting):
    """Puts jobs on a queue; an async context manager holding one daemon session.

    Args:
        queue: the queue name (its WORK group; the FEEDBACK group is ``<queue>~fb``).
        spread: the daemon address (``"4803"``, ``"4803@host"``, ``"unix:/path"``);
            None means Spread's default, ``"4803"``.
        member: join the FEEDBACK group to get confirmations, flow control and
            re-sending (the default); False is fire-and-forget.
        settings: tunables (``window``, ``max_in_flight``, ``max_backlog``,
            ``batch_max_jobs``, ``batch_max_delay``, ``batch_max_rate``,
            ``reconnect_backoff_*``,
            ``reconnect_max_attempts``);
            ``Settings()`` when None.
        codec: the codec of payloads put by kind name (``bytes`` always go ``raw``); a
            payload put by handler uses the handler's codec.
        codecs: codecs beyond the built-in ``json`` and ``raw``.
        name: the private name of the daemon session (up to 10 bytes, not starting
            with ``~``, which marks watchers such as ``spreadq top``); None lets the
            daemon choose.
        close_timeout: how long closing waits for queued jobs to be sent (seconds).
        observers: event observers (:class:`~spreadq.observe.Observer`) for this
            producer's :attr:`events`, after the plugins'.
        plugins: ``True`` loads every installed plugin not blocked by
            ``SPREADQ_DISABLE_PLUGINS`` (for their codecs, observers and put hooks);
            ``False`` none; a sequence names installed plugins or gives
            :class:`~spreadq.plugins.Plugin` objects, as for ``App``.

    Raises:
        ConfigurationError: a bad queue name, private name, close_timeout or observer,
            or an unknown codec.
        PluginError: a plugin that cannot be loaded or fails validation.
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
        observers: ObserversArg = None,
        plugins: bool | Sequence[str | Plugin] = True,
    ) -> None:
        self._work, self._feedback = queue_groups(queue)
        self._spread = spread
        self._member = member
        self._settings = settings = Settings() if settings is None else settings
        self._plugins = select_plugins(plugins)
        self._codecs: CodecRegistry = default_codecs().with_codecs(
            *(codec for loaded in self._plugins for codec in loaded.plugin.codecs), *codecs
        )
        self._put_hooks: tuple[PutHook, ...] = plugin_put_hooks(self._plugins)
        given = tuple(check_observer(observer) for observer in observers or ())
        self._counters = Counters()
        self._events = EventBus((self._counters, *plugin_observers(self._plugins), *given))
        self._routes = Routes(self._codecs, codec)
        if name is not None:
            try:
                check_private_name(name)
            except InvalidName as error:
                raise ConfigurationError(
                    f"invalid producer name {name!r}: {error.reason}"
                ) from None
            if name.startswith(OBSERVER_PREFIX):
                raise ConfigurationError(
                    f"invalid producer name {name!r}: names starting with {OBSERVER_PREFIX!r} "
                    "are for watchers (spreadq top), which producers do not count"
                )
        self._name = name
        if not (close_timeout >= 0 and math.isfinite(close_timeout)):
            raise ConfigurationError(f"close_timeout must be >= 0 seconds, not {close_timeout!r}")
        self._close_timeout = close_timeout
        self._id = os.urandom(16)
        self._id_hex = self._id.hex()  # every job id starts with it (JobRef.id)
        self._log = log.bind(queue=queue, producer=self._id[:4].hex())
        secret = settings.secret
        self._seal = None if secret is None else Seal(secret.get_secret_value().encode())
        self._core = ProducerCore(
            self._id,
            member=member,
            window=settings.window,
            max_in_flight=settings.max_in_flight,
            max_backlog=settings.max_backlog,
            batch_max_jobs=settings.batch_max_jobs,
            batch_max_delay=settings.batch_max_delay,
            batch_max_rate=settings.batch_max_rate,
        )

        # lifecycle
        self._group: anyio.abc.TaskGroup | None = None
        self._open = False
        self._closing = False
        self._error: ConnectionLost | None = None

        # waiting: every wait is a condition over the core, woken by one of these
        self._room = Changed()  # put(): the core may have room
        self._consumers = Changed()  # the consumer list changed
        self._changed = Changed()  # any input was applied (cancel and result waits)
        self._asks = Asks(self._changed)  # open result() calls
        self._admission: deque[Changed] = deque()  # puts waiting for room, in call order
        self._sender = Sender(
            self._core,
            self._apply,
            self._consumers,
            producer_id=self._id,
            work_group=self._work,
            seal=self._seal,
            member=member,
            backoff_max=settings.reconnect_backoff_max,
            log=self._log,
        )
        self._feedback_reader = FeedbackReader(
            self._core,
            self._asks,
            self._apply,
            feedback_group=self._feedback,
            seal=self._seal,
            log=self._log,
        )
        self._asking = Asking(
            self._core,
            self._asks,
            self._changed,
            self._routes,
            apply=self._apply,
            connection=lambda: self._sessions.conn,
            is_open=lambda: self._open,
            error=lambda: self._error,
            check_open=self._check_open,
            producer_id=self._id,
            work_group=self._work,
            feedback_group=self._feedback,
            member=member,
            seal=self._seal,
            log=self._log,
        )
        self._cancel = self._asking.cancel  # bound once: every member put hands it out
        self._sessions = SessionKeeper(
            (self._sender.run, self._feedback_reader.run),
            apply=self._apply,
            shutdown=self._shutdown,
            spread=spread,
            name=self._name,
            member=member,
            work_group=self._work,
            feedback_group=self._feedback,
            settings=settings,
            events=self._events,
            log=self._log,
        )

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
    def events(self) -> EventBus:
        """The producer's event bus: its :attr:`counters`, the plugins' observers, then
        those given; ``events.subscribe(observer)`` adds one."""
        return self._events

    @property
    def counters(self) -> Counters:
        """The producer's always-on totals (time blocked by flow control, sessions lost)."""
        return self._counters

    @property
    def plugins(self) -> tuple[LoadedPlugin, ...]:
        """The plugins this producer loaded, with their provenance."""
        return self._plugins

    @property
    def consumers(self) -> tuple[str, ...]:
        """The consumers this producer knows to be present (member producers only)."""
        return self._core.consumers

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
        core = self._core
        await self._consumers.wait_for(
            lambda: self._error is not None or len(core.consumers) >= count
        )
        if len(core.consumers) < count and self._error is not None:
            raise self._error
        return core.consumers

    async def settled(self) -> None:
        """Wait until every job put so far is settled: an ACK confirmed it (or it was
        cancelled), so :meth:`statistics` counts it and it holds no room in flow control
        any more. A receipt may resolve sooner, from an outcome notice; the ACK that
        settles its job everywhere can come up to ``Settings.ack_interval`` later. Jobs
        held while no consumer is present keep it waiting; bound it with
        ``anyio.fail_after``.

        Raises:
            ConfigurationError: the producer is fire-and-forget (nothing is confirmed).
            ConnectionLost: the producer is closed, or closes while waiting.
        """
        if not self._member:
            raise ConfigurationError("a fire-and-forget producer (member=False) settles nothing")
        self._check_open()
        core = self._core
        await self._changed.wait_for(lambda: not self._open or not core.held)
        self._check_open()

    async def flow_state(self) -> FlowState | None:
        """The flow-control accounting now (None for a fire-and-forget producer).

        Raises:
            ConnectionLost: the producer has closed.
        """
        if not self._member:
            return None
        if self._error is not None:
            raise self._error
        return self._core.flow_state(
            waiting_puts=len(self._admission), waiting_send=self._sender.waiting
        )

    def statistics(self) -> ProducerStatistics:
        """The producer's counters now."""
        core = self._core
        return ProducerStatistics(
            put=core.put,
            pending=core.held,
            queued=core.unsent,
            messages=core.messages,
            batches_held=self._sender.held,
            sent=core.sent,
            resent=core.resent,
            succeeded=core.succeeded,
            failed=core.failed,
            consumers=core.consumers,
            sessions=core.sessions,
        )

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._group is not None:
            raise RuntimeError("a Producer can be entered only once")
        group = self._group = anyio.create_task_group()
        self._events.open(
            ObserveScope(
                "producer", self._work, self._settings.metrics_port, counters=self._counters
            )
        )
        await group.__aenter__()
        try:
            await group.start(self._sessions.run)
        except BaseException:
            group.cancel_scope.cancel()
            await group.__aexit__(None, None, None)
            self._events.close()
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
        self._sender.queued.notify()
        if exc_type is None:
            with anyio.move_on_after(self._close_timeout):
                await self._flush()
        self._shutdown(ConnectionLost(CloseReason.CLOSED_LOCALLY, "the producer was closed"))
        group.cancel_scope.cancel()
        try:
            await group.__aexit__(None, None, None)
        finally:
            self._events.close()

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
        sender = self._sender
        sender.flushing += 1
        sender.queued.notify()
        try:
            core = self._core
            await sender.idle.wait_for(lambda: not self._open or not core.unsent)
            conn = self._sessions.conn
            if self._open and conn is not None:
                with contextlib.suppress(ConnectionLost):
                    await conn.flush()
        finally:
            sender.flushing -= 1

    def _shutdown(self, error: ConnectionLost) -> None:
        self._open = False
        if self._error is None:
            self._error = error
        left = self._apply(Closed(self._error))
        sender = self._sender
        for changed in (self._room, sender.clearance, sender.queued, sender.idle, self._consumers):
            changed.notify()
        if left:
            self._log.info("producer_closed_with_pending", pending=left)

    # -- the core ----------------------------------------------------------------------

    def _apply(self, event: Input) -> int:
        """Feed ``event`` to the core and carry out its effects; wake whoever may now go
        on. Returns how many receipts it resolved."""
        core = self._core
        resolved = 0
        now = time.monotonic()
        for effect in core.apply(event, now):
            # the most frequent: one per job an ACK settles, or a NOTICE resolves early
            if type(effect) is Settle or type(effect) is Resolve:
                resolved += self._resolve(effect[0], effect[1], now)
                continue
            match effect:
                case Ready():
                    self._sender.queued.notify()
                case Requeued(jobs=jobs):
                    self._sender.queued.notify()
                    self._log.info("jobs_requeued", jobs=len(jobs), first_seq=jobs[0].spec.seq)
                case ConsumersSet(consumers=consumers, gone=gone):
                    self._consumers.notify()
                    self._log.info("consumers_changed", consumers=len(consumers), gone=len(gone))
                case Dropped(sender=sender, kind=kind, reason=reason, count=count):
                    self._log.warning(
                        "feedback_dropped", sender=sender, kind=kind, reason=reason, count=count
                    )
        self._sender.clearance.notify()
        if self._room.waiting and core.room():
            self._room.notify()
        if self._changed.waiting:
            self._changed.notify()
        return resolved

    def _resolve(self, job: Job[Any], outcome: OutcomeRecord | BaseException, now: float) -> int:
        """Resolve ``job``'s receipt (at ``now``); 1 if it was still pending, else 0."""
        receipt: _Tag = job.tag
        if receipt.done:  # a NOTICE resolved it: the ACK's record is not read
            return 0
        if isinstance(outcome, bytes):
            outcome = outcome_of(outcome)
        if isinstance(outcome, BaseException):
            receipt._fail(outcome)
        elif outcome.status is STATUS_OK:
            decode = self._routes.result_decoder(cast(Route, receipt._route), job.codec, outcome)
            receipt._succeed(outcome.result, now, decode)
        elif outcome.status is Status.CANCELLED:
            receipt._fail(JobCancelled(receipt.job_id))
        else:
            receipt._fail(JobFailed(outcome.error_type, outcome.error_message, outcome.attempts))
        return 1

    # -- result ----------------------------------------------------------------------

    async def result(self, job_id: str, *, timeout: float = 5.0) -> Any:  # noqa: ASYNC109
        """The outcome of any job on this queue, put by any producer, as long as a
        consumer still remembers it: its result, decoded as for a job put by kind name.

        Asks the consumers with RESULT queries (see :mod:`spreadq.producer.results`):
        exactly one member answers each, and on "unknown" the next member is asked, up to
        the number of consumers. A job still outstanding is waited for. Consumers
        remember the last ``Settings.completed_history`` outcomes each (100,000 by
        default), in memory: a job older than that, or whose consumers have all
        restarted since, is unknown. A result encoded with the job's own payload codec
        is decoded with this producer's ``codec``.

        Args:
            job_id: the job's printable id (``Receipt.job_id``, ``Context.job.id``).
            timeout: the bound on the whole call, in seconds.

        Raises:
            OutcomeUnknown: no consumer remembers the job, none answered, or it was
                still outstanding when ``timeout`` passed.
            JobFailed: the job failed (as awaiting its receipt would raise).
            JobCancelled: the job was cancelled.
            PayloadError: the result cannot be decoded.
            ConfigurationError: a malformed job id or timeout, or a fire-and-forget
                producer (it does not watch FEEDBACK for a pending job's ACK).
            ConnectionLost: the producer is closed or closing.
        """
        return await self._asking.result(job_id, timeout=timeout)
