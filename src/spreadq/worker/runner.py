"""JobRunner: everything between "we own this job" and its outcome, for one job.

The Dispatcher starts a task per job it runs and calls :meth:`JobRunner.run` in it,
inside the job's cancel scope. The runner decodes the payload with the job's codec and
the handler's adapter, builds the :class:`~spreadq.context.Context`, calls the
middleware chain, retries, and turns whatever happens into an
:class:`~spreadq.queue.Outcome`:

=============================================  ==========================================
what happens                                   outcome
=============================================  ==========================================
the chain returns a value                      ok, the value encoded with the handler's
                                               result codec (named in the outcome when
                                               it is not the job's; ``attempts`` = this
                                               attempt)
no handler for the kind, a bad header block,   failed at once (attempt 1): the error's
a payload that does not decode                 type and message; no retry
the chain raises ``Retry(delay)``              another attempt after ``delay`` (or the
                                               backoff), whatever ``retry_on`` says
the chain raises an exception in ``retry_on``  another attempt after the backoff
(or any, when ``retry_on`` is empty), or the
attempt's timeout passes
the last attempt fails, or an exception        failed, after the ``on_failure`` hooks
outside ``retry_on``
a result that does not encode, or encodes to   failed (``PayloadError``), after the
more than ``settings.result_max_bytes``        hooks; the handler is not run again
the table gave the job up (:meth:`give_up`)    failed (``WorkerLost``), after the hooks;
                                               the handler is not run
=============================================  ==========================================

"An exception" is any: ``BaseException`` s a handler raises itself
(``KeyboardInterrupt``, ``SystemExit``, even ``asyncio.CancelledError``) fail its job
like the others and never reach the worker. Only a cancellation the worker made stops
a handler without an outcome: the job's own cancel scope (the job completed
elsewhere, a drain that timed out), a scope around it (the worker stopping or losing
its daemon), or a cancellation of the task itself. What the handler raised then,
cancellation or not, ends the task without an outcome.

An attempt's timeout is the handler's ``timeout`` option, else
``settings.handler_timeout`` (None: no limit); when it passes, the attempt fails with
``TimeoutError: handler 'kind' exceeded its N s timeout``. The runner does not time
attempts itself (a cancel scope with a deadline per job cost forty times a no-op
handler): it writes each attempt's deadline on its :class:`AttemptWatch`, and its
dispatcher, which looks at its running jobs anyway, cancels the job's scope once the
deadline passes and marks the watch ``expired``. :meth:`JobRunner.run` then returns
:class:`TimedOut` from the cancelled scope, and the dispatcher calls it again in a new
scope with ``resume=`` to retry or fail the job as for any other failure.

The backoff after attempt ``n`` is ``retry_backoff_base * 2**(n-1)``, capped at
``retry_backoff_max``, spread at random by ``retry_jitter`` of itself.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NamedTuple, cast

import anyio

from spreadq.context import Context
from spreadq.errors import ConfigurationError, EnvelopeError, PayloadError, Retry, WorkerLost
from spreadq.logs import get_logger
from spreadq.middleware import CallNext, FailureHook
from spreadq.observe import Counters, EventBus, JobFailed, JobRetried, JobStarted, JobSucceeded
from spreadq.queue import Job, JobRef, Outcome, View
from spreadq.settings import Settings
from spreadq.worker.spec import PreparedHandler

__all__ = [
    "MAX_ERROR_MESSAGE",
    "AttemptWatch",
    "JobRunner",
    "TimedOut",
    "error_type_name",
    "worker_cancelled",
]

log = get_logger(__name__)

MAX_ERROR_MESSAGE: Final = 4096
"""A failure outcome carries at most this many characters of the error message."""


_NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})
"""The headers of a job that carries none (one shared, read-only mapping)."""


class _Plan(NamedTuple):
    """What an attempt reads of a handler and the settings, read once per kind."""

    prepared: PreparedHandler
    chain: CallNext
    direct: Callable[[Any], Awaitable[object]] | None
    max_attempts: int
    retry_on: tuple[type[Exception], ...]
    timeout: float | None
    result_codec: str


def _plan(prepared: PreparedHandler, settings: Settings) -> _Plan:
    options = prepared.spec.options
    return _Plan(
        prepared,
        prepared.chain,
        prepared.direct,
        options.max_attempts or settings.max_attempts,
        options.retry_on,
        options.timeout if options.timeout is not None else settings.handler_timeout,
        prepared.spec.result_codec,
    )


class AttemptWatch:
    """The deadline of the attempt a runner task runs now, shared with its dispatcher.

    The runner sets :attr:`deadline` (on the dispatcher's clock) when an attempt with a
    timeout starts, and ``math.inf`` when it ends; the dispatcher, past the deadline,
    sets :attr:`expired` and cancels the runner's scope.
    """

    __slots__ = ("deadline", "expired")

    def __init__(self) -> None:
        self.deadline = math.inf
        self.expired = False

    def arm(self, deadline: float) -> None:
        """An attempt starts that must end by ``deadline``."""
        self.deadline = deadline


@dataclass(frozen=True, slots=True)
class TimedOut:
    """:meth:`JobRunner.run` ran out of ``attempt``'s time; its scope is cancelled.

    Call ``run`` again, in a new scope, with ``resume=`` this value: it goes on as after
    any failure of that attempt (another attempt, or the hooks and the failure).
    """

    attempt: int
    error: TimeoutError
    started: float = 0.0
    """When the attempt started (the runner's clock), for its duration."""


def error_type_name(error: BaseException) -> str:
    """The name an outcome gives an exception's type: ``ValueError``, ``pkg.mod.Error``."""
    kind = type(error)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def failure(error: BaseException, attempts: int = 1) -> Outcome:
    """The failure outcome of ``error`` (its message cut to :data:`MAX_ERROR_MESSAGE`)."""
    return Outcome.failure(error_type_name(error), _message(error), attempts)


def _message(error: BaseException) -> str:
    """``str(error)``, cut to :data:`MAX_ERROR_MESSAGE`; for an exception without a
    message (``KeyboardInterrupt()``, ``CancelledError()``), what it is."""
    text = str(error)
    if not text:
        text = f"{error_type_name(error)} raised by the handler"
    return text[:MAX_ERROR_MESSAGE]


def worker_cancelled(scope: anyio.CancelScope) -> bool:
    """True when the worker is cancelling the current task: ``scope`` (the job's) or a
    scope around it was cancelled, or the task itself was (``Task.cancel``).

    A ``CancelledError`` that a handler raises of its own accord leaves all three
    untouched, which is how it is told apart from a cancellation the worker made.
    """
    if scope.cancel_called or anyio.current_effective_deadline() == -math.inf:
        return True
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class JobRunner:
    """Runs jobs' attempts for one worker session; one instance serves every job.

    Args:
        handlers: prepared handlers by kind.
        settings: max_attempts, retry backoff and jitter, result_max_bytes.
        failure_hooks: ``async hook(ctx, error)`` after a job's last failure; an
            exception in a hook is logged, never propagated.
        state: the lifespan's state, for contexts (``ctx.state``).
        queue: the queue name, for contexts.
        member: our private group, for contexts.
        rng: randomness for the jitter.
        clock: monotonic seconds (attempt deadlines and durations).
        events: the worker's event bus; job events are built only for observers that
            take them.
        counters: the always-on counters, fed directly for each attempt.
    """

    def __init__(
        self,
        *,
        handlers: Mapping[str, PreparedHandler],
        settings: Settings,
        failure_hooks: Sequence[FailureHook],
        queue: str,
        member: str,
        rng: random.Random,
        clock: Callable[[], float],
        state: object = None,
        events: EventBus | None = None,
        counters: Counters | None = None,
    ) -> None:
        # what an attempt reads of each handler, read once here: a job looks up one tuple
        self._plans: dict[str, _Plan] = {
            kind: _plan(prepared, settings) for kind, prepared in handlers.items()
        }
        self._state = state
        self._settings = settings
        self._hooks = tuple(failure_hooks)
        self._queue = queue
        self._member = member
        self._rng = rng
        self._clock = clock
        self._result_max = settings.result_max_bytes
        self._counters = Counters(clock) if counters is None else counters
        self._events = EventBus() if events is None else events

    async def run(
        self,
        job: Job,
        view: View,
        scope: anyio.CancelScope,
        watch: AttemptWatch,
        resume: TimedOut | None = None,
        *,
        redelivered: bool = False,
    ) -> Outcome | TimedOut | None:
        """Run ``job`` (assigned in ``view``) until it succeeds or fails for good.

        ``redelivered`` (the job was taken over, or is a re-sent copy) reaches the
        handler as ``ctx.redelivered``.

        Each attempt with a timeout arms ``watch``; when the dispatcher expires it,
        this returns :class:`TimedOut` (from the then cancelled ``scope``), and the
        dispatcher calls it again with ``resume=`` in a new scope.

        Returns None when the worker cancelled the job and the handler answered the
        cancellation with another exception (nothing to report, as for a cancellation).

        Raises:
            anyio.get_cancelled_exc_class(): the job was cancelled (no outcome).
        """
        ref, kind = job.ref, job.kind
        plan = self._plans.get(kind)
        if plan is None:
            missing = ConfigurationError(f"no handler for kind {kind!r} on worker {self._member!r}")
            return await self._failed(
                self._context(job, view, 1, _NO_HEADERS, scope, redelivered), missing, scope
            )
        prepared, chain, direct, max_attempts, retry_on, timeout, result_codec = plan
        try:
            headers = job.headers() if job.header_block else _NO_HEADERS
        except EnvelopeError as problem:
            return await self._failed(
                self._context(job, view, 1, _NO_HEADERS, scope, redelivered), problem, scope
            )
        try:
            payload = prepared.decode_payload(job.payload, codec=job.codec, job=ref)
        except PayloadError as problem:
            context = self._context(job, view, 1, headers, scope, redelivered)
            return await self._failed(context, problem, scope)
        attempt = 1 if resume is None else resume.attempt
        counters, events, clock = self._counters, self._events, self._clock

        while True:
            # a handler called directly sees no context: one is built only if needed
            ctx: Context | None = None
            if direct is None:
                ctx = self._context(job, view, attempt, headers, scope, redelivered)
            delay: float | None = None
            error: BaseException
            if resume is not None:  # this attempt ran out of time before
                error, started, resume = resume.error, resume.started, None
                retriable = not retry_on or isinstance(error, retry_on)
            else:
                watch.expired = False
                started = clock()
                if timeout is not None:
                    watch.arm(started + timeout)
                counters.job_started(ref, started)
                if JobStarted in events.routes:
                    events.publish(JobStarted(self._queue, ref, job.kind, attempt))
                try:
                    if ctx is None:
                        assert direct is not None
                        result = await direct(payload)
                    else:
                        result = await chain(ctx, payload)
                except BaseException as problem:  # the handler's, BaseExceptions included
                    if worker_cancelled(scope):  # whatever it raised (Retry too)
                        if watch.expired:  # the dispatcher's doing: the attempt's time is up
                            message = f"handler {job.kind!r} exceeded its {timeout:g} s timeout"
                            return TimedOut(attempt, TimeoutError(message), started)
                        counters.job_cancelled(ref)
                        if isinstance(problem, anyio.get_cancelled_exc_class()):
                            raise
                        if ctx is None:
                            ctx = self._context(job, view, attempt, headers, scope, redelivered)
                        ctx.log.debug("job_cancelled", error=error_type_name(problem))
                        return None  # cancelled, and the handler raised something else
                    if isinstance(problem, Retry):
                        error, retriable, delay = problem, True, problem.delay
                    else:
                        error, retriable = problem, not retry_on or isinstance(problem, retry_on)
                else:
                    try:
                        data = prepared.encode_result(result, job=ref)
                    except PayloadError as problem:  # the result does not go: fail, no retry
                        error, retriable = problem, False
                    else:
                        if len(data) <= self._result_max:
                            seconds = clock() - started
                            counters.job_ended(ref, kind, "succeeded", seconds)
                            if JobSucceeded in events.routes:
                                events.publish(
                                    JobSucceeded(self._queue, ref, kind, attempt, seconds)
                                )
                            codec = "" if result_codec == job.codec else result_codec
                            return Outcome.success(data, attempt, codec)
                        error, retriable = self._too_big(kind, len(data), ref), False
                finally:
                    watch.deadline = math.inf
            if ctx is None:
                ctx = self._context(job, view, attempt, headers, scope, redelivered)
            if not retriable or attempt >= max_attempts:
                return await self._failed(ctx, error, scope, started)
            if delay is None:
                delay = self.backoff(attempt)
            ctx.log.info("job_retry", error=error_type_name(error), delay=round(delay, 4))
            seconds = clock() - started
            counters.job_ended(ref, job.kind, "retried", seconds)
            if JobRetried in events.routes:
                events.publish(
                    JobRetried(
                        self._queue,
                        ref,
                        job.kind,
                        attempt,
                        seconds,
                        delay,
                        error_type_name(error),
                    )
                )
            await anyio.sleep(delay)
            attempt += 1

    def _context(
        self,
        job: Job,
        view: View,
        attempt: int,
        headers: Mapping[str, str],
        scope: anyio.CancelScope,
        redelivered: bool,
    ) -> Context:
        """The context of ``job``'s attempt ``attempt``."""
        return Context(
            job=job.ref,
            kind=job.kind,
            queue=self._queue,
            member=self._member,
            view=view,
            attempt=attempt,
            key=job.key,
            headers=headers,
            cancel_scope=scope,
            state=self._state,
            redelivered=redelivered,
        )

    async def give_up(
        self, job: Job, view: View, scope: anyio.CancelScope, failovers: int, limit: int
    ) -> Outcome | None:
        """Fail ``job`` without running it: its owners left it ``failovers`` times, more
        than ``limit`` (``settings.max_failovers``). The ``on_failure`` hooks get a
        :class:`~spreadq.errors.WorkerLost`; the outcome says the same.

        Raises:
            anyio.get_cancelled_exc_class(): the job was cancelled (no outcome).
        """
        try:
            headers = job.headers() if job.header_block else {}
        except EnvelopeError:
            headers = {}
        ctx = Context(
            job=job.ref,
            kind=job.kind,
            queue=self._queue,
            member=self._member,
            view=view,
            attempt=1,
            key=job.key,
            headers=headers,
            cancel_scope=scope,
            state=self._state,
            redelivered=True,
        )
        return await self._failed(ctx, WorkerLost(job.kind, failovers, limit), scope)

    def backoff(self, attempt: int) -> float:
        """The delay after failed attempt ``attempt``: doubling, capped, jittered."""
        settings = self._settings
        delay: float = min(
            settings.retry_backoff_base * 2.0 ** (attempt - 1), settings.retry_backoff_max
        )
        spread = settings.retry_jitter
        return max(0.0, delay * (1.0 + self._rng.uniform(-spread, spread)))

    def _too_big(self, kind: str, size: int, ref: JobRef) -> PayloadError:
        """The error of a result of ``size`` bytes, more than
        ``settings.result_max_bytes``: the job fails with it, and is not run again."""
        return PayloadError(
            f"{kind}: the result takes {size} bytes, more than "
            f"settings.result_max_bytes ({self._result_max})",
            job=ref,
        )

    async def _failed(
        self,
        ctx: Context,
        error: BaseException,
        scope: anyio.CancelScope,
        started: float | None = None,
    ) -> Outcome | None:
        """Log the failure once, run the hooks, return the failure outcome (None when the
        worker cancelled the job meanwhile and a hook answered with another exception).
        ``started`` is when the last attempt started (None: the handler never ran)."""
        ctx.log.warning("job_failed", error=error_type_name(error), message=_message(error))
        for hook in self._hooks:
            try:
                await hook(ctx, error)
            except BaseException as problem:  # a hook's, as a handler's: never fatal
                if worker_cancelled(scope):
                    self._counters.job_cancelled(cast(JobRef, ctx.job))
                    if isinstance(problem, anyio.get_cancelled_exc_class()):
                        raise
                    return None
                ctx.log.exception("on_failure_hook_failed", hook=repr(hook))
        seconds = 0.0 if started is None else self._clock() - started
        ref = cast(JobRef, ctx.job)  # the runner builds every context with a JobRef
        self._counters.job_ended(ref, ctx.kind, "failed", seconds)
        if JobFailed in self._events.routes:
            self._events.publish(
                JobFailed(ctx.queue, ref, ctx.kind, ctx.attempt, seconds, error_type_name(error))
            )
        return failure(error, ctx.attempt)
