"""The put path of a :class:`~spreadq.producer.facade.Producer`: ``put()`` and
``put_many()``, and what they share.

A put encodes its payloads (a failure raises to the caller before anything is queued),
waits while the producer's core has no room for its jobs, and gives them to the core
with no await between the room seen and the room taken: a cancelled put leaves nothing
behind. Waiting is the facade's condition over the core (``_room``), which every input
that may open room notifies.

Puts are admitted in the order they were called. While any put waits, a new one waits
behind it even if the core has room for it now, and only the first in line may take
room: so a group that needs room for many jobs is not passed, again and again, by
single puts that each fit in the room one ACK frees (which could keep it waiting for as
long as they come). The line is :attr:`Putting._admission`: only its first put waits
for the core's room, and a first put that leaves the line, admitted or cancelled, wakes
the next one, so that room for many puts admits them one wake each. The methods live in
:class:`Putting`, which
:class:`~spreadq.producer.facade.Producer` inherits; they use the producer's state, named
below, and nothing else.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, TypeVar, overload

from structlog.stdlib import BoundLogger

from spreadq.errors import (
    CloseReason,
    ConfigurationError,
    ConnectionLost,
    LocalProtocolError,
    PayloadError,
)
from spreadq.handlers import Handler, check_kind
from spreadq.observe import EventBus, WindowBlocked, WindowOpened
from spreadq.plugins import PutHook
from spreadq.producer.condition import Changed
from spreadq.producer.core import ProducerCore
from spreadq.producer.hooks import hooked_headers
from spreadq.producer.receipt import Receipt
from spreadq.producer.routes import Route, Routes
from spreadq.producer.sender import Sender
from spreadq.producer.sessions import SessionKeeper
from spreadq.queue.envelope import JobSpec
from spreadq.queue.periodic import TICK_KEY_PREFIX
from spreadq.queue.protocol import NOT_BEFORE_HEADER, PRIORITY_HEADER, check_priority

__all__ = ["Putting"]

PayloadT = TypeVar("PayloadT")
ResultT = TypeVar("ResultT")

_BYTES_LIKE: Final = (bytes, bytearray, memoryview)
"""Payloads put by kind name that go with the ``raw`` codec."""


class Putting:
    """``put()``, ``put_many()`` and their helpers, for
    :class:`~spreadq.producer.facade.Producer` to inherit (it sets every attribute
    declared here)."""

    _core: ProducerCore
    _routes: Routes
    _put_hooks: tuple[PutHook, ...]
    _work: str
    _log: BoundLogger
    _events: EventBus
    _room: Changed
    _changed: Changed
    _sender: Sender
    _sessions: SessionKeeper
    _cancel: Callable[[Receipt[Any], int], Awaitable[bool]]
    _id_hex: str
    _member: bool
    _admission: deque[Changed]
    """The puts waiting for room, first called first: each one's "your turn"."""
    _open: bool
    _closing: bool
    _error: ConnectionLost | None

    @overload
    async def put(
        self,
        handler: Handler[PayloadT, ResultT],
        payload: PayloadT,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        priority: int = 0,
        dedupe_key: str | None = None,
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
        priority: int = 0,
        dedupe_key: str | None = None,
    ) -> Receipt[Any]: ...

    async def put(
        self,
        handler: Handler[Any, Any] | str,
        payload: object,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        priority: int = 0,
        dedupe_key: str | None = None,
    ) -> Receipt[Any]:
        """Put one job on the queue; return its receipt.

        ``handler`` is a registered :class:`~spreadq.handlers.Handler` (the payload is
        checked against its payload type and the receipt is typed with its result) or a
        kind name. ``key`` routes the job under the ``key_affinity`` rule; ``headers``
        travel with it; ``delay`` (seconds) sets the ``not_before`` header, which workers
        honour by starting the job no earlier. ``priority`` (-100..100, default 0)
        orders the owner's own ready jobs: higher first, taken-over jobs still first
        and a key's jobs still in order (owner-local: it does not reorder the queue);
        a job of priority 0 carries no ``priority`` header. The loaded plugins' put
        hooks run first (``hook(queue, kind)``); the headers they return are added,
        under the caller's (a hook that raises or returns something else is logged and
        skipped).
        ``dedupe_key`` is an idempotency key:
        while the queue's workers remember the key (the last ``Settings.dedupe_keys``
        keys; a worker joining or a partition healing makes them forget,
        docs/design/dedupe.md), a job put with it again never runs and its receipt
        resolves with the first job's outcome, whichever producer put either.

        Waits while flow control holds the producer back (a consumer a window behind,
        ``max_in_flight`` jobs unconfirmed, a consumer's backlog over its bound), and
        behind any earlier put still waiting: puts are admitted in the order they were
        called. Never polls. Cancellation-safe: a cancelled put leaves no job behind and
        no slot taken.

        Raises:
            PayloadError: the payload cannot be encoded (nothing was queued).
            ConfigurationError: a bad kind, a negative delay, a priority that is not an
                int in -100..100, an unknown codec.
            LocalProtocolError: a key, kind, headers or dedupe key the envelope cannot
                carry (an empty dedupe key, or one over 255 UTF-8 bytes), or a dedupe
                key starting ``periodic:`` (reserved for periodic ticks).
            ConnectionLost: the producer is closed or closing.
        """
        self._check_open()
        if dedupe_key is not None and dedupe_key.startswith(TICK_KEY_PREFIX):
            raise LocalProtocolError(
                f"dedupe key {dedupe_key!r}: keys starting {TICK_KEY_PREFIX!r} are periodic ticks"
            )
        if isinstance(handler, Handler):
            route = self._routes.for_handler(handler.spec)
        else:
            route = self._routes.for_kind(handler, isinstance(payload, _BYTES_LIKE))
        header_items = self._header_items(route.kind, headers, delay, priority)
        data = route.codec.encode(payload, route.adapter)
        core = self._core
        if self._admission or not core.room():
            await self._wait_for_room(1)
        # from here on nothing awaits: the room seen is the room taken
        spec, codec, receipt = self._build(
            route, data, key, header_items, dedupe_key, core.next_seq
        )
        if core.put_job(spec, codec, receipt, time.monotonic()):
            self._sender.queued.notify()
        if self._changed.waiting:  # a put may end a result() call's wait
            self._changed.notify()
        return receipt

    @overload
    async def put_many(
        self,
        handler: Handler[PayloadT, ResultT],
        payloads: Iterable[PayloadT],
        *,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        priority: int = 0,
    ) -> list[Receipt[ResultT]]: ...

    @overload
    async def put_many(
        self,
        handler: str,
        payloads: Iterable[object],
        *,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        priority: int = 0,
    ) -> list[Receipt[Any]]: ...

    async def put_many(
        self,
        handler: Handler[Any, Any] | str,
        payloads: Iterable[object],
        *,
        headers: Mapping[str, str] | None = None,
        delay: float | None = None,
        priority: int = 0,
    ) -> list[Receipt[Any]]:
        """Put a job for each of ``payloads``, in order, all or none; return their
        receipts in the same order.

        What a loop of :meth:`put` calls would do, for jobs that share a handler (or
        kind name), headers, ``delay`` and ``priority`` and have no key or dedupe key
        (put those one by one), at about two thirds of the CPU a :meth:`put` takes
        (``benchmarks/bench_put.py --many``): the arguments are checked and the put
        hooks run once for the call, and the jobs are queued together. Every payload
        is encoded before any job is queued, so a payload that fails leaves nothing
        queued. Then the call waits, as :meth:`put` does, until the producer has room
        for all of them at once (``max_in_flight`` not passed, the window open) and no
        earlier put is waiting (puts are admitted in the order they were called, so
        single puts do not pass a waiting group), and queues them in one step: a
        cancelled ``put_many()`` leaves no job behind and takes no room. The jobs go
        out in as few messages as the batching settings allow (``batch_max_jobs`` a
        message).

        Raises:
            PayloadError: a payload cannot be encoded (its index is in the message;
                nothing was queued).
            ConfigurationError: ``payloads`` is one ``str`` or ``bytes``, not an iterable
                of payloads; more payloads than ``settings.max_in_flight`` (they could
                never be admitted together: split them); a bad kind, a negative delay, a
                priority that is not an int in -100..100, an unknown codec.
            LocalProtocolError: a kind or headers the envelope cannot carry, or a job
                it cannot carry (a payload over 4 GiB; nothing was queued).
            ConnectionLost: the producer is closed or closing.
        """
        self._check_open()
        if isinstance(payloads, (str, *_BYTES_LIKE)):  # iterating one would put its pieces
            raise ConfigurationError(
                f"put_many() takes an iterable of payloads, not one {type(payloads).__name__}"
            )
        items = list(payloads)
        count, limit = len(items), self._core.max_in_flight
        if count > limit:
            raise ConfigurationError(
                f"put_many() of {count} jobs: more than max_in_flight ({limit}) "
                "are never admitted together; put them in smaller groups"
            )
        routes = self._routes
        fixed: Route | None = None
        if isinstance(handler, Handler):
            fixed = routes.for_handler(handler.spec)
            kind = fixed.kind
        else:
            kind = check_kind(handler)  # refused before any payload is looked at
        header_items = self._header_items(kind, headers, delay, priority)
        encoded: list[tuple[Route, bytes]] = []
        for index, payload in enumerate(items):
            route = fixed or routes.for_kind(kind, isinstance(payload, _BYTES_LIKE))
            try:
                encoded.append((route, route.codec.encode(payload, route.adapter)))
            except PayloadError as error:
                raise PayloadError(f"payload {index} of {count}: {error}") from error
        if not encoded:
            return []
        if self._admission or not self._core.room_for(count):
            await self._wait_for_room(count)
        # from here on nothing awaits: the room seen is the room taken, for every job.
        # Every job's envelope is built before the first goes to the core, so one the
        # envelope cannot carry (a payload over 4 GiB) leaves none of them queued.
        core, build, first = self._core, self._build, self._core.next_seq
        built = [
            build(route, data, None, header_items, None, first + index)
            for index, (route, data) in enumerate(encoded)
        ]
        now, ready = time.monotonic(), False
        for spec, codec, receipt in built:
            ready = core.put_job(spec, codec, receipt, now) or ready
        if ready:
            self._sender.queued.notify()
        if self._changed.waiting:
            self._changed.notify()
        return [receipt for _, _, receipt in built]

    def _header_items(
        self,
        kind: str,
        headers: Mapping[str, str] | None,
        delay: float | None,
        priority: int,
    ) -> tuple[tuple[str, str], ...]:
        """The header block of a put's jobs: the put hooks' headers under the caller's,
        then ``not_before`` for a ``delay`` and ``priority`` when it is not 0.

        Raises:
            ConfigurationError: a negative or infinite delay, a bad priority.
        """
        if self._put_hooks:
            headers = hooked_headers(self._put_hooks, self._work, kind, headers, self._log)
        items = tuple(headers.items()) if headers else ()
        if delay is not None:
            if not (delay >= 0 and math.isfinite(delay)):
                raise ConfigurationError(f"delay must be >= 0 seconds, not {delay!r}")
            items += ((NOT_BEFORE_HEADER, f"{time.time() + delay:.6f}"),)
        if priority or type(priority) is not int:  # check_priority refuses a non-int
            items += ((PRIORITY_HEADER, str(check_priority(priority))),)
        return items

    async def _wait_for_room(self, count: int) -> None:
        """Wait in line until this put is first and the core may admit its ``count``
        jobs together, telling observers (``WindowBlocked``, then ``WindowOpened``);
        never polls.

        Raises:
            ConnectionLost: the producer closed meanwhile.
        """
        core, line = self._core, self._admission
        blocked_at = time.monotonic()
        if WindowBlocked in self._events.routes:
            self._publish_blocked(count)
        turn = Changed()  # notified when this put becomes the first in line
        line.append(turn)
        try:
            if line[0] is not turn:  # only the first in line looks at the room
                await turn.wait_for(lambda: not self._open or line[0] is turn)
            await self._room.wait_for(lambda: not self._open or core.room_for(count))
        finally:
            if line[0] is turn:
                line.popleft()
                if line:  # the next may fit in the room left (one wake a put, not a herd)
                    line[0].notify()
            else:  # cancelled behind others: nobody's turn changes
                line.remove(turn)
        self._check_open()  # closed while waiting
        if WindowOpened in self._events.routes:
            self._events.publish(
                WindowOpened(self._work, self._member_name(), time.monotonic() - blocked_at)
            )

    def _build(
        self,
        route: Route,
        data: bytes,
        key: str | None,
        header_items: tuple[tuple[str, str], ...],
        dedupe_key: str | None,
        seq: int,
    ) -> tuple[JobSpec, str, Receipt[Any]]:
        """Job ``seq``'s envelope, codec name and receipt, for the core to take.

        Raises:
            LocalProtocolError: the envelope cannot carry the job (a payload over 4 GiB).
        """
        spec = JobSpec(seq, route.kind, data, key, header_items, dedupe_key)
        job_id = f"{self._id_hex}:{seq}"  # JobRef(self._id, seq).id, without the ref
        receipt: Receipt[Any] = Receipt(
            route.kind, seq, key, decode=route.decode, confirmed=self._member, job_id=job_id
        )
        receipt._route = route
        if self._member:
            receipt._cancel = self._cancel  # called with the receipt: no cycle through it
        return spec, route.codec.name, receipt

    def _member_name(self) -> str:
        conn = self._sessions.conn
        return "" if conn is None else conn.private_group

    def _publish_blocked(self, count: int) -> None:
        """Publish ``WindowBlocked`` for a put of ``count`` jobs that must wait (called
        before it joins the line)."""
        core = self._core
        state = core.flow_state(waiting_puts=len(self._admission), waiting_send=False)
        if self._admission and core.room_for(count):
            reason = "behind"  # it would fit, but an earlier put waits
        elif not core.member or core.max_in_flight - state.in_flight - state.admitted < count:
            reason = "in_flight"
        else:
            reason = "window" if state.blocked is None else state.blocked.value
        self._events.publish(WindowBlocked(self._work, self._member_name(), reason))

    def _check_open(self) -> None:
        if not self._open or self._closing:
            raise self._error or ConnectionLost(
                CloseReason.CLOSED_LOCALLY, "the producer is not open (use 'async with')"
            )
