"""The worker runtime behind :meth:`spreadq.App.run`: sessions, reconnection, signals.

Theory of operation. One :class:`WorkerRuntime` lives for one ``App.run()``. It opens a
session with the daemon, runs a :class:`~spreadq.worker.dispatcher.Dispatcher` on it
until the session drains or is lost, and (through the shared reconnect loop,
:class:`~spreadq.session.reconnect.Reconnect`, logging as ``worker_*``) on a loss
(``ConnectionLost``, or a connect that fails or is refused with a code retrying can
mend) waits and tries again: the delay starts at ``settings.reconnect_backoff_initial``,
doubles up to ``settings.reconnect_backoff_max``, and starts over once a session has
joined the WORK group. Each session is a new member; the other workers have taken over
its jobs meanwhile. The outcome history survives the loss, and so do the outcomes its
handlers reached that no delivered ACK confirmed: the next session announces them as it
joins (and again when others join, for a while), so jobs a producer re-sends after a
daemon restart are answered from memory, not run again. After
``settings.reconnect_max_attempts`` tries in a row that bring no session back (None: no
limit), the loop gives up and raises the last :class:`~spreadq.errors.ConnectionLost`
(the connect error, when no session was ever lost); so does ``settings.connect_timeout``
seconds without a session (from the start, or from the loss of one). Every failed try is
a warning naming the address, the error and the delay; every session that joins is an
info line naming the member and the handlers. :meth:`WorkerRuntime.stop` drains the
current session and ends the loop, also in the middle of a backoff; a second
SIGTERM/SIGINT cancels everything at once, and :meth:`WorkerRuntime.serve` raises
:class:`~spreadq.errors.ForcedStop` (``spreadq worker`` exits with its code: 130 after
SIGINT, 143 after SIGTERM, the shell's 128 + signal number), so whoever started the
worker can tell a forced stop, which cancelled running handlers, from a clean drain.
"""

from __future__ import annotations

import gc
import signal
import time
from dataclasses import replace
from typing import Final

import anyio
import anyio.abc

from spreadq.client import connect
from spreadq.errors import ConnectError, ConnectionLost, ForcedStop
from spreadq.logs import get_logger
from spreadq.observe import Counters, EventBus, ObserveScope, SessionLost, SessionRegained
from spreadq.queue.jobs import JobRef, Outcome, OutcomeHistory
from spreadq.session.reconnect import Backoff, Reconnect, describe_address
from spreadq.settings import Settings
from spreadq.worker.dispatcher import Dispatcher, DispatcherHandle
from spreadq.worker.spec import WorkerSpec

__all__ = ["COLLECTOR_THRESHOLDS", "WorkerRuntime", "tune_collector"]

log = get_logger(__name__)


COLLECTOR_THRESHOLDS: Final = (100_000, 10, 10)
"""``gc.set_threshold`` for a worker process (the default is ``(700, 10, 10)``)."""


def tune_collector() -> None:
    """Tune the cyclic garbage collector for a worker process (called by ``App.run``),
    or a program that puts jobs at a high rate (``spreadq bench`` calls it).

    A worker makes a few short-lived objects per job it reads and keeps the table's
    entries until their ACK, and the default thresholds ran a young collection every
    few hundred jobs and full ones that walked every module and schema loaded at
    startup: a quarter of a worker's CPU under load (measured with
    ``benchmarks/bench_queue.py``). So the objects alive now are frozen out of the
    collector's passes (:func:`gc.freeze`) and the young generation is let grow to
    ``COLLECTOR_THRESHOLDS[0]`` objects. A producer holding thousands of pending
    receipts stalled its puts for 30 to 60 ms in each full collection without it.

    The young threshold counts tracked objects made less those freed, whatever their
    generation, so what starts a young pass is a swing in what a process holds, and the
    pass then walks everything made since the last one that is still alive. A producer
    under a flood holds up to ``max_in_flight`` jobs (10,000; a receipt and three more
    tracked objects each), and its pending count swings by thousands as ACKs come: with
    a threshold of 10,000 it ran a young pass every third of a second over 30,000 to
    50,000 live objects, 20 to 55 ms each. At 100,000 the swing stays under the
    threshold and a flood of 200,000 jobs ran 16 young passes of 0.2 ms at most.

    It changes the settings of the whole process: only a program's own code (never a
    library that merely imports spreadq) should call it, once it has imported what it
    needs.
    """
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


class WorkerRuntime:
    """One ``App.run()``: the reconnect loop, the current session's dispatcher, signals.

    Args:
        spec: what the worker serves (:meth:`spreadq.App.spec`).
        address: the daemon address.
        settings: the settings of this run.
        drain_timeout: how long a drain may take before running jobs are cancelled.
        events: the worker's event bus, opened for the run (a new one when None).
        counters: the always-on counters its dispatchers feed (new ones when None).
    """

    def __init__(
        self,
        spec: WorkerSpec,
        address: str | None,
        settings: Settings,
        drain_timeout: float,
        *,
        events: EventBus | None = None,
        counters: Counters | None = None,
    ):
        self._spec = spec
        self._address = address
        self._settings = settings
        self._drain_timeout = drain_timeout
        self._stopping = False
        self._stop_requested = anyio.Event()
        self._scope = anyio.CancelScope()
        self._handle: DispatcherHandle | None = None
        self._forced: ForcedStop | None = None
        self._log = log.bind(queue=spec.queue)
        self._reconnect = Reconnect(
            Backoff.from_settings(settings),
            address=address,
            log=self._log,
            event_prefix="worker",
            stop=self._stop_requested,
        )
        # what survives a lost session: the outcomes seen, and our own unconfirmed ones
        self._history = OutcomeHistory(settings.completed_history)
        self._recovered: list[tuple[JobRef, Outcome]] = []
        self._counters = Counters() if counters is None else counters
        self._events = EventBus((self._counters,)) if events is None else events
        self._dispatcher: Dispatcher | None = None
        self._lost_at: float | None = None  # when the last session was lost

    @property
    def settings(self) -> Settings:
        """The settings of this run."""
        return self._settings

    def stop(self) -> None:
        """Drain the current session and stop reconnecting."""
        if self._stopping:
            return
        self._stopping = True
        self._stop_requested.set()
        self._log.info("worker_stop_requested")
        if self._handle is not None:
            self._handle.drain()

    async def watch_signals(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """First SIGTERM/SIGINT: drain. The next one: stop at once."""
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                if self._stopping:
                    self._log.warning("worker_forced_stop", signal=signum.name)
                    if self._forced is None:
                        self._forced = ForcedStop(signum.name, int(signum))
                    self._scope.cancel()
                else:
                    self._log.info("worker_signal", signal=signum.name)
                    self.stop()

    async def serve(self, task_status: anyio.abc.TaskStatus[None], state: object = None) -> None:
        """Connect, serve a session, reconnect with backoff, until stopped.

        ``state`` (the app's lifespan state) reaches every handler as ``ctx.state``.

        Raises:
            ConnectionLost: the last session lost, once ``reconnect_max_attempts`` tries
                in a row brought none back.
            ConnectError: the daemon could not be reached, and no session was ever lost
                (or it refused us for good: a reject code retrying cannot mend).
            ForcedStop: a second SIGTERM/SIGINT stopped the worker at once.
        """
        if state is not None:
            self._spec = replace(self._spec, state=state)
        self._events.open(
            ObserveScope(
                "worker",
                self._spec.queue,
                self._settings.metrics_port,
                counters=self._counters,
                backlog=self._backlog,
            )
        )
        try:
            await self._serve(_Joined(self, task_status))
        finally:
            self._events.close()
        if self._forced is not None:  # the scope's cancellation ended _serve quietly
            raise self._forced

    async def _serve(self, joined: _Joined) -> None:
        spec = self._spec
        settings = self._settings
        reconnect = self._reconnect
        with self._scope:
            async for _ in reconnect:
                if self._stopping:
                    return
                try:
                    lost: ConnectionLost | None = None
                    async with connect(self._address, name=spec.name) as conn:
                        dispatcher = Dispatcher(
                            conn,
                            spec,
                            settings=settings,
                            drain_timeout=self._drain_timeout,
                            history=self._history,
                            recovered=self._recovered,
                            events=self._events,
                            counters=self._counters,
                        )
                        self._dispatcher = dispatcher
                        self._handle = dispatcher.handle
                        joined.member = conn.private_group
                        if self._stop_requested.is_set():  # stop() came while connecting
                            dispatcher.handle.drain()
                        try:
                            await dispatcher.run(task_status=joined)
                        except ConnectionLost as error:
                            lost = error  # raised outside: connect() must not see it
                            self._carry_over(dispatcher)
                            self._session_lost(conn.private_group, error)
                    if lost is not None:
                        raise lost
                    return
                except (ConnectionLost, ConnectError) as error:
                    reconnect.failed(error)  # raises a refusal retrying cannot mend
                finally:
                    self._handle = None
                    self._dispatcher = None

    def _backlog(self) -> int:
        """The jobs the current session owns and has not finished (0 between sessions);
        read from a metrics scrape, possibly on another thread."""
        dispatcher = self._dispatcher
        return 0 if dispatcher is None else dispatcher.table.backlog

    def _session_lost(self, member: str, error: ConnectionLost) -> None:
        self._lost_at = time.monotonic()
        if SessionLost in self._events.routes:
            self._events.publish(SessionLost(self._spec.queue, member, "worker", error.reason.name))

    def _carry_over(self, dispatcher: Dispatcher) -> None:
        """Keep what a lost session's handlers reached and never saw confirmed: it is
        remembered and announced by the next session (a re-sent copy is answered)."""
        self._recovered = dispatcher.unconfirmed_outcomes()
        for ref, outcome in self._recovered:
            self._history.add(ref, outcome)

    def joined(self, member: str | None = None) -> None:
        """A session joined the WORK group as ``member``: say so; reconnect quickly next time."""
        self._reconnect.joined()
        lost_at, self._lost_at = self._lost_at, None
        if lost_at is not None and SessionRegained in self._events.routes:
            self._events.publish(
                SessionRegained(
                    self._spec.queue, member or "", "worker", time.monotonic() - lost_at
                )
            )
        self._log.info(
            "worker_joined",
            address=describe_address(self._address),
            member=member,
            handlers=sorted(self._spec.handlers),
            rule=self._spec.rule.name,
            concurrency=self._settings.concurrency,
        )


class _Joined:
    """The task status a session's dispatcher starts: resets the backoff, and starts
    ``App.run``'s own task status the first time."""

    def __init__(self, worker: WorkerRuntime, task_status: anyio.abc.TaskStatus[None]) -> None:
        self._worker = worker
        self._task_status: anyio.abc.TaskStatus[None] | None = task_status
        self.member: str | None = None  # the current session's private group

    def started(self, value: DispatcherHandle | None = None) -> None:
        self._worker.joined(self.member)
        if self._task_status is not None:
            first, self._task_status = self._task_status, None
            first.started()
