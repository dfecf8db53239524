"""Middleware: async code wrapped around every handler call, built into a chain once.

One shape only, the "around" shape of Starlette and aiohttp: a middleware is an async
callable ``(ctx, payload, call_next) -> result``. It may act before the handler, call
``await call_next(ctx, payload)`` (at most once; zero times to short-circuit), act
after it, catch or raise, and change the payload or the result::

    async def timing(ctx: Context, payload: object, call_next: CallNext) -> object:
        started = time.perf_counter()
        try:
            return await call_next(ctx, payload)
        finally:
            ctx.log.info("job_timed", seconds=time.perf_counter() - started)

Dramatiq's named hooks are each one of these: "before" is code ahead of
``call_next``, "after" is code behind it, "on failure" is an ``except`` around it.
The only separate hook is the app's ``on_failure`` (:class:`FailureHook`): it runs once,
when a job fails for the last time, where no single attempt's chain can see it.

The payload a middleware sees is already decoded (an instance of the handler's
payload type), and the result it returns is encoded after the chain. The first
middleware in a list is the outermost. :func:`build_chain` runs when the app freezes,
so the per-job cost is one call per middleware and nothing else.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, cast, runtime_checkable

from spreadq.context import Context
from spreadq.errors import ConfigurationError

__all__ = [
    "CallNext",
    "FailureHook",
    "Middleware",
    "build_chain",
    "check_failure_hook",
    "check_middleware",
    "describe_callable",
]

CallNext = Callable[[Context, object], Awaitable[object]]
"""The rest of the chain: ``await call_next(ctx, payload)`` runs it and returns the result."""


@runtime_checkable
class Middleware(Protocol):
    """An async callable wrapped around each handler call (see the module docstring)."""

    def __call__(self, ctx: Context, payload: object, call_next: CallNext, /) -> Awaitable[object]:
        """Run around the rest of the chain and return the job's result."""
        ...


@runtime_checkable
class FailureHook(Protocol):
    """``async def hook(ctx, error)``: called once when a job fails for the last time."""

    def __call__(self, ctx: Context, error: BaseException, /) -> Awaitable[None]:
        """React to the final failure; exceptions it raises are logged, not propagated."""
        ...


def describe_callable(candidate: object) -> str:
    """Name a function the way error messages do: ``qualname (file:line)``.

    Objects that are not functions are described by their ``repr``.
    """
    target = inspect.unwrap(candidate) if callable(candidate) else candidate
    code = getattr(target, "__code__", None)
    name = getattr(target, "__qualname__", None)
    if code is None or name is None:
        return repr(candidate)
    return f"{name} ({code.co_filename}:{code.co_firstlineno})"


def build_chain(middleware: Sequence[Middleware], endpoint: CallNext) -> CallNext:
    """Return one callable that runs ``middleware`` (first = outermost) around ``endpoint``.

    The chain is fixed at build time: changing ``middleware`` afterwards does not
    change it.
    """
    chain = endpoint
    for layer in reversed(tuple(middleware)):
        chain = _link(layer, chain)
    return chain


def _link(layer: Middleware, call_next: CallNext) -> CallNext:
    def call(ctx: Context, payload: object) -> Awaitable[object]:
        return layer(ctx, payload, call_next)

    call.__qualname__ = f"chain[{getattr(layer, '__qualname__', type(layer).__qualname__)}]"
    return call


def check_middleware(candidate: object) -> Middleware:
    """Return ``candidate`` as :class:`Middleware` after checking its shape.

    Raises:
        ConfigurationError: not callable, not ``async``, or not callable with
            ``(ctx, payload, call_next)``; the message names the object.
    """
    _check_async_callable(candidate, "middleware", ("ctx", "payload", "call_next"))
    return cast(Middleware, candidate)


def check_failure_hook(candidate: object) -> FailureHook:
    """Return ``candidate`` as a :class:`FailureHook` after checking its shape.

    Raises:
        ConfigurationError: not callable, not ``async``, or not callable with
            ``(ctx, error)``; the message names the function and where it is defined.
    """
    _check_async_callable(candidate, "on_failure hook", ("ctx", "error"))
    return cast(FailureHook, candidate)


def _check_async_callable(candidate: object, what: str, params: tuple[str, ...]) -> None:
    if not callable(candidate):
        raise ConfigurationError(f"{what} {candidate!r} is not callable")
    call = candidate if inspect.isroutine(candidate) else type(candidate).__call__
    if not (inspect.iscoroutinefunction(candidate) or inspect.iscoroutinefunction(call)):
        raise ConfigurationError(
            f"{what} {describe_callable(candidate)} must be an async function (async def)"
        )
    try:
        inspect.signature(candidate).bind(*params)
    except (TypeError, ValueError) as error:
        wanted = ", ".join(params)
        raise ConfigurationError(
            f"{what} {describe_callable(candidate)} must accept ({wanted}): {error}"
        ) from None
