"""The runner pool: the long-lived tasks that run the jobs a worker session starts.

Theory of operation. The dispatcher's loop decides which job starts when (with the
:class:`~spreadq.worker.scheduler.Scheduler`) and hands each to the pool with
:meth:`RunnerPool.start_all`; the pool runs it through the
:class:`~spreadq.worker.runner.JobRunner` (decode, context, middleware, retries, hooks;
nothing a handler does crashes the worker) and keeps its end as :class:`Ended` (the
outcome; None when it was cancelled) until the loop takes the ends with
:meth:`RunnerPool.take_ended`: the first end kept since the last take posts
:data:`ENDED` to the loop's inbox, so the jobs that end in one turn of the loop reach it
as one item.

Runner tasks live as long as the session, one per job running at once (at most
``settings.concurrency``); each takes the jobs handed to it one at a time from one
stream: a task per job would cost more than a no-op handler. A runner is added only
when jobs wait with every runner busy: the pool posts :class:`Help` to the loop's inbox
and, at the loop's next turn (:meth:`RunnerPool.help`), starts one if jobs are still
waiting. With handlers that never wait one runner does everything, and a burst of jobs
wakes one task, not one per job.

Refills: the loop frees a job's slot when it takes its end, so with every slot taken a
runner that runs out of jobs would wait for a turn of the loop, and under a backlog a
turn per ``concurrency`` jobs (16 by default) cost a worker 15% of its time a job
(``benchmarks/bench_dispatcher.py --members 1``). So a runner that finds nothing handed
over, while ends it kept have slots still held, calls the loop's ``refill`` in its own
turn: it frees those slots (:meth:`RunnerPool.release_ended`) and starts what the
scheduler lets start, and the runner goes on. It does so only while fewer than
``refill_limit`` ends wait for the loop (``settings.ack_every``): their outcomes reach
the table, and its ACKs, at the loop's next turn.

Time limits: each runner writes its current attempt's deadline
(:class:`~spreadq.worker.runner.AttemptWatch`); an earlier deadline than the loop
knows posts :class:`Rescan`. :meth:`RunnerPool.scan`, called when
:attr:`RunnerPool.next_scan` comes, cancels attempts past their deadline (the runner
goes on with that job in a new scope: another attempt, or its failure) and logs
``job_still_running`` once for each job running ``settings.running_warning`` seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final, NamedTuple

import anyio
import anyio.abc
import structlog

from spreadq.actors.channel import Channel
from spreadq.queue import GiveUpJob, JobRef, Outcome, RunJob, View
from spreadq.settings import Settings
from spreadq.worker.deadletter import DeadLetters
from spreadq.worker.runner import AttemptWatch, JobRunner, TimedOut, failure, worker_cancelled

__all__ = [
    "ENDED",
    "SCAN_GAP",
    "Ended",
    "EndedReady",
    "Help",
    "QueuedJob",
    "Rescan",
    "RunnerPool",
]

SCAN_GAP: Final = 0.01
"""Seconds at least between two scans of the running jobs (timeouts and warnings)."""


class QueuedJob(NamedTuple):
    """A job we own, from the table's effect to its runner; ``run`` is a
    :class:`~spreadq.queue.GiveUpJob` for a job to fail without running it. ``ref``
    and ``key`` are the job's, read once for the scheduler."""

    run: RunJob | GiveUpJob
    view: View
    ref: JobRef
    key: str | None

    @staticmethod
    def of(run: RunJob | GiveUpJob, view: View) -> QueuedJob:
        """The queued form of the table's effect ``run``, assigned in ``view`` (built
        without the named tuple's Python ``__new__``: one per job we own)."""
        job = run.job
        return _new_queued((run, view, job.ref, job.key))


class Ended(NamedTuple):
    """A job handed to the pool ended; ``outcome`` is None when it was cancelled."""

    ref: JobRef
    outcome: Outcome | None


_new_queued: Callable[[tuple[RunJob | GiveUpJob, View, JobRef, str | None]], QueuedJob] = partial(
    tuple.__new__, QueuedJob
)
_new_ended: Callable[[tuple[JobRef, Outcome | None]], Ended] = partial(tuple.__new__, Ended)


@dataclass(frozen=True, slots=True)
class EndedReady:
    """Jobs handed to the pool ended: :meth:`RunnerPool.take_ended` has them."""


ENDED: Final = EndedReady()


@dataclass(frozen=True, slots=True)
class Help:
    """Jobs handed to the runners may wait with no runner free to take them."""


@dataclass(frozen=True, slots=True)
class Rescan:
    """A runner armed a deadline earlier than the next scan of the running jobs."""


class _Runner(AttemptWatch):
    """What one runner task is doing: the job it runs now, in which cancel scope, and
    until when its current attempt may run (the :class:`AttemptWatch`).

    A runner runs job after job in one scope and makes a new one only after a
    cancellation: a scope per job costs more than a no-op handler.
    """

    __slots__ = ("_pool", "ref", "scope")

    def __init__(self, pool: RunnerPool) -> None:
        super().__init__()
        self.ref: JobRef | None = None
        self.scope: anyio.CancelScope | None = None
        self._pool = pool

    def arm(self, deadline: float) -> None:
        """An attempt starts that must end by ``deadline``: the pool watches it (it
        looks only when that is before its next scan: a handler's timeout is
        usually long, and every attempt arms one)."""
        self.deadline = deadline
        pool = self._pool
        if deadline < pool._next_scan:
            pool._scan_by(deadline)


@dataclass(slots=True)
class _Running:
    """A job handed to the runners, until its end is reported."""

    kind: str
    since: float  # when it was handed over (clock)
    warned: bool = False  # job_still_running logged
    runner: _Runner | None = None  # once a runner has taken it
    cancelled: bool = False  # cancelled before a runner took it: the runner skips it


class RunnerPool:
    """Runs the jobs handed to it in long-lived runner tasks; reports their ends.

    Args:
        runner: runs one job (decode, context, middleware, retries, hooks).
        settings: ``concurrency`` (runners at most) and ``running_warning``.
        report: puts :data:`ENDED`, :class:`Help` and :class:`Rescan` in the loop's inbox.
        clock: monotonic seconds.
        log: where ``job_crashed`` and ``job_still_running`` go (reassignable).
        dead_letters: where a job that failed for good is put before its failure is
            reported (None: nowhere).
        refill: called (synchronously, in a runner) by a runner that finds nothing
            handed over while ends kept hold slots: the loop frees them
            (:meth:`release_ended`) and hands over what may start now. None: runners
            wait for the loop's turn.
        refill_limit: runners refill only while fewer ends than this wait for the loop.
    """

    def __init__(
        self,
        runner: JobRunner,
        settings: Settings,
        *,
        report: Callable[[EndedReady | Help | Rescan], None],
        clock: Callable[[], float],
        log: structlog.stdlib.BoundLogger,
        dead_letters: DeadLetters | None = None,
        refill: Callable[[], None] | None = None,
        refill_limit: int = 1,
    ) -> None:
        self._runner = runner
        self._refill = refill
        self._refill_limit = refill_limit
        self._dead_letters = dead_letters
        self._limit = settings.concurrency
        self._warn_after = settings.running_warning
        self._report = report
        self._clock = clock
        self.log = log
        self._tasks: anyio.abc.TaskGroup | None = None
        self._handover: Channel[QueuedJob] = Channel()
        self._running: dict[JobRef, _Running] = {}
        self._runners = 0  # started, at most settings.concurrency
        self._starting = 0  # started and not yet running
        self._waiting_runners = 0  # blocked on the stream: a job handed over goes to one
        self._buffered = 0  # jobs handed over that no runner has taken yet
        self._help_asked = False  # a Help is in the inbox
        self._next_scan = math.inf  # when a running job may time out or need a warning
        self._ended: list[Ended] = []  # ends not yet taken by the loop (ENDED is posted)
        self._released = 0  # how many of those have had their slots freed (release_ended)

    # -- state -------------------------------------------------------------------------

    def __len__(self) -> int:
        """How many jobs are handed over and not yet reported ended."""
        return len(self._running)

    @property
    def next_scan(self) -> float:
        """When :meth:`scan` is next due (infinite: no job needs it)."""
        return self._next_scan

    # -- lifecycle ---------------------------------------------------------------------

    def attach(self, tasks: anyio.abc.TaskGroup) -> None:
        """Start runners in ``tasks`` (the session's task group) from now on."""
        self._tasks = tasks

    def close(self) -> None:
        """Close the handover stream (the session is over)."""
        self._handover.close()

    # -- the loop's calls ----------------------------------------------------------------

    def start_all(self, jobs: Sequence[QueuedJob], now: float) -> None:
        """Hand ``jobs`` to the runners, in order (slots are free: the scheduler said
        so); the jobs that start in one turn of the loop come in one call."""
        if not jobs:
            return
        running, send = self._running, self._handover.send_nowait
        warn_after = self._warn_after
        if warn_after is not None and self._next_scan == math.inf:
            self._next_scan = now + warn_after  # the others' are earlier
        for queued in jobs:
            running[queued.ref] = _Running(queued.run.job.kind, now)
            send(queued)
            if self._waiting_runners:  # the stream gave it to a waiting runner
                self._waiting_runners -= 1
            else:
                self._buffered += 1
        if self._buffered:
            self._ask_for_help()

    def take_ended(self) -> list[Ended]:
        """The jobs that ended since the last call, in the order they ended."""
        ended, self._ended = self._ended, []
        self._released = 0
        return ended

    def release_ended(self) -> list[JobRef]:
        """The jobs that ended since the last :meth:`take_ended` whose slots no call
        has freed yet: the caller frees them in the scheduler. Each end is given once,
        whether by a refill or by the loop before it takes the ends."""
        ended, start = self._ended, self._released
        self._released = len(ended)
        return [ref for ref, _ in ended[start:]]

    def ended_all(self, refs: Iterable[JobRef]) -> None:
        """The loop took the :class:`Ended` of ``refs`` (what one :meth:`take_ended`
        gave): forget them."""
        running = self._running
        for ref in refs:
            running.pop(ref, None)

    def cancel(self, ref: JobRef) -> bool:
        """Cancel a job handed over: its runner's scope if it runs now, else the runner
        skips it. Returns whether ``ref`` was handed over."""
        running = self._running.get(ref)
        if running is None:
            return False
        self._cancel(ref, running)
        return True

    def cancel_all(self) -> None:
        """Cancel every job handed over (each still reports its :class:`Ended`)."""
        for ref, running in self._running.items():
            self._cancel(ref, running)

    def help(self) -> None:
        """Start a runner if jobs handed over still wait and every runner is busy.

        Asked for (:class:`Help`) when a job is handed over with no runner waiting, and
        by a runner that takes a job with others behind it. By the time this runs,
        runners that were free have taken what they could, so with handlers that never
        wait one runner does everything; with handlers that wait, runners are added one
        per turn up to ``settings.concurrency``.
        """
        self._help_asked = False
        if self._buffered > self._starting and self._runners < self._limit:
            assert self._tasks is not None
            self._runners += 1
            self._starting += 1
            self._tasks.start_soon(self._run_jobs, name="spreadq.dispatcher.runner")

    def scan(self, now: float) -> None:
        """Time out the attempts past their deadline (cancel the runner's scope, the
        watch ``expired``); log ``job_still_running`` once for each job running past
        ``settings.running_warning``; find when the next of either is due.

        One pass over the running jobs (at most ``concurrency``), at most once per
        :data:`SCAN_GAP`, so a timeout or a warning may come that much late.
        """
        if now < self._next_scan:
            return
        threshold = self._warn_after
        self._next_scan = math.inf
        due = math.inf
        for ref, entry in self._running.items():
            runner = entry.runner
            if runner is not None and runner.ref == ref:
                deadline = runner.deadline
                if deadline <= now:
                    if not runner.expired and runner.scope is not None:
                        runner.expired = True
                        runner.scope.cancel()
                elif deadline < due:
                    due = deadline
            if threshold is None or entry.warned:
                continue
            if entry.since + threshold <= now:
                entry.warned = True
                self.log.warning(
                    "job_still_running",
                    job=str(ref),
                    kind=entry.kind,
                    seconds=round(now - entry.since, 3),
                    threshold=threshold,
                )
            else:
                due = min(due, entry.since + threshold)
        if due < math.inf:
            self._next_scan = max(due, now + SCAN_GAP)

    # -- inside ------------------------------------------------------------------------

    @staticmethod
    def _cancel(ref: JobRef, running: _Running) -> None:
        running.cancelled = True  # a runner skips it, or does not resume it after a timeout
        runner = running.runner
        if runner is not None and runner.ref == ref and runner.scope is not None:
            runner.expired = False  # a cancellation, not a timeout
            runner.scope.cancel()

    def _end(self, ended: Ended) -> None:
        """Keep ``ended`` for the loop; the first kept since its last take wakes it."""
        if not self._ended:
            self._report(ENDED)
        self._ended.append(ended)

    def _ask_for_help(self) -> None:
        """Look again, at the loop's next turn, whether jobs wait with no runner free."""
        if not self._help_asked and self._runners < self._limit:
            self._help_asked = True
            self._report(Help())

    def _scan_by(self, deadline: float) -> None:
        """A runner armed an attempt's deadline before :attr:`next_scan` (it checks):
        scan by then."""
        self._next_scan = deadline
        self._report(Rescan())  # the loop may wait for a later time

    async def _run_jobs(self) -> None:
        """A runner: run the jobs :meth:`start_all` hands over, one at a time, forever.

        Runners live as long as the session (at most ``settings.concurrency`` of them,
        started as the number of running jobs grows): a task per job would cost more
        than a no-op handler. Jobs run one after another in one cancel scope; cancelling
        the job a runner runs (and only then) cancels that scope, and the runner reports
        the job ended without an outcome and goes on in a new scope. A job taken ready
        is run without waiting: a runner yields to others only inside handlers and when
        nothing is handed over, after a refill if it may (so handlers that never wait run
        at most ``refill_limit`` jobs in a row, ``concurrency`` when it is larger). Runners
        are added only when jobs wait with every runner busy (:meth:`help`): with
        handlers that never wait, one runner takes them all, and a burst of jobs wakes
        one task, not one per job.

        An attempt that runs past its timeout is cancelled by :meth:`scan`
        through the same scope; the runner then goes on with that job (another attempt,
        or its failure) in a new scope.
        """
        runner = _Runner(self)
        job_runner = self._runner
        take, wait = self._handover.take, self._handover.receive
        running_jobs, end, refill = self._running, self._end, self._refill
        refill_limit = self._refill_limit
        dead_letters = self._dead_letters
        resume: tuple[QueuedJob, TimedOut] | None = None  # a job whose attempt timed out
        self._starting -= 1
        while True:
            with anyio.CancelScope() as scope:
                runner.scope = scope
                while not scope.cancel_called:
                    timed_out: TimedOut | None = None
                    if resume is not None:
                        (queued, timed_out), resume = resume, None
                    else:
                        taken = take()
                        if (
                            taken is None
                            and refill is not None
                            and self._released < len(self._ended) < refill_limit
                        ):  # slots held by ends the loop has not seen: free them, go on
                            refill()
                            taken = take()
                        if taken is None:
                            self._waiting_runners += 1  # start_all takes it back as it hands over
                            queued = await wait()
                        else:
                            queued = taken
                            self._buffered -= 1
                            if self._buffered:  # more behind it: if this one waits, who takes them?
                                self._ask_for_help()
                    ref = queued.ref
                    running = running_jobs.get(ref)
                    if running is None or running.cancelled:
                        runner.ref = None
                        end(Ended(ref, None))
                        continue
                    running.runner, runner.ref = runner, ref
                    run = queued.run
                    outcome: Outcome | TimedOut | None
                    try:  # (inline: a coroutine per job costs more than a no-op handler's run)
                        if type(run) is GiveUpJob:
                            outcome = await job_runner.give_up(
                                run.job, queued.view, scope, run.failovers, run.limit
                            )
                        else:
                            outcome = await job_runner.run(
                                run.job,
                                queued.view,
                                scope,
                                runner,
                                timed_out,
                                redelivered=run.failover or run.duplicate,
                            )
                    except BaseException as bug:  # a fault of ours, not the handler's
                        outcome = self._crashed(run, bug, scope)
                    if isinstance(outcome, TimedOut):  # our scope is cancelled: on in a new one
                        resume = (queued, outcome)
                        continue
                    if dead_letters is not None and outcome is not None and not outcome.ok:
                        await dead_letters.put(queued.run.job, outcome)  # before the ACK
                    runner.ref = None
                    end(_new_ended((ref, outcome)))
            if runner.ref is not None and resume is None:  # its job was cancelled
                end(Ended(runner.ref, None))
                runner.ref = None

    def _crashed(
        self, run: RunJob | GiveUpJob, bug: BaseException, scope: anyio.CancelScope
    ) -> Outcome | None:
        """The end of a job whose run raised ``bug``: None when the worker cancelled it (a
        cancellation passes through), else its failure, logged as ``job_crashed``.

        Raises:
            anyio.get_cancelled_exc_class(): ``bug``, a cancellation the worker made.
        """
        if worker_cancelled(scope):
            if isinstance(bug, anyio.get_cancelled_exc_class()):
                raise bug
            return None
        self.log.exception("job_crashed", job=str(run.ref), kind=run.job.kind)
        return failure(bug)
