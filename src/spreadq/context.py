"""The :class:`Context` a handler receives next to its payload.

The dispatcher builds one per attempt of a job it runs; a handler asks for it by
declaring a second parameter (annotated :class:`Context`, or named ``ctx`` or
``context``). A context is read-only once built. Tests may build one directly::

    ctx = Context(job="test-1", kind="resize", queue="images", member="#w1#host")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, NoReturn, Protocol, cast, final

from spreadq.logs import get_logger

if TYPE_CHECKING:
    from anyio import CancelScope
    from structlog.typing import FilteringBoundLogger

__all__ = ["Context", "StaticView", "WorkView"]

NO_HEADERS: Final[Mapping[str, str]] = MappingProxyType({})


class WorkView(Protocol):
    """What a handler may know of the WORK group's current view."""

    @property
    def members(self) -> tuple[str, ...]:
        """The consumers' private group names, in Spread's order."""
        ...

    @property
    def group_id(self) -> object:
        """The daemon's id of this view of the group."""
        ...


@dataclass(frozen=True, slots=True)
class StaticView:
    """A fixed :class:`WorkView`, for contexts built outside a running worker."""

    members: tuple[str, ...]
    group_id: object = None


@final
class Context:
    """Everything a handler may want to know about the job it runs, read-only.

    Attributes:
        job: the job's stable reference (printable; the same on every replica); its
            ``id`` is the full job id that ``Receipt.job_id`` gives and
            ``Producer.result`` takes.
        kind: the handler kind the job was put for (``"raw:<mess_type>"`` for RAW jobs).
        queue: the queue name.
        member: this worker's private group name (e.g. ``#w1#host``).
        view: the WORK view the job was assigned in: ``view.members`` in Spread's order.
        attempt: 1 for the first run of the job, 2 for the first retry, ...
        key: the job's key, if it was put with one.
        headers: the job's headers (deadline, trace context, ...).
        state: what the app's ``lifespan`` yielded for this worker (a database pool,
            a client ...), or None without a lifespan. One object is shared by every
            handler of the worker, sync handlers' threads included: what is in it must
            be safe to use from several tasks, and from several threads when sync
            handlers use it.
        redelivered: True when this run is not the job's first delivery to a handler
            as far as this member knows: the job was taken over from a member that
            left (it may have run there, partly or fully), or it is a copy a producer
            sent again. False for a first delivery; retries of one delivery keep
            its value (see :attr:`attempt`).
    """

    __slots__ = (
        "_base_log",
        "_cancel_scope",
        "_log",
        "attempt",
        "headers",
        "job",
        "key",
        "kind",
        "member",
        "queue",
        "redelivered",
        "state",
        "view",
    )

    job: object
    kind: str
    queue: str
    member: str
    view: WorkView
    attempt: int
    key: str | None
    headers: Mapping[str, str]
    state: object
    redelivered: bool
    _base_log: FilteringBoundLogger | None
    _log: FilteringBoundLogger | None
    _cancel_scope: CancelScope | None

    def __init__(
        self,
        *,
        job: object,
        kind: str,
        queue: str,
        member: str,
        view: WorkView | None = None,
        attempt: int = 1,
        key: str | None = None,
        headers: Mapping[str, str] = NO_HEADERS,
        log: FilteringBoundLogger | None = None,
        cancel_scope: CancelScope | None = None,
        state: object = None,
        redelivered: bool = False,
    ) -> None:
        """Build a context; ``log`` is bound with the job's identity on first use.

        Args:
            view: defaults to a one-member view of ``member``.
            log: the logger to bind; ``spreadq.logs.get_logger("spreadq.handler")`` if None.
            cancel_scope: the scope the handler runs in, for :attr:`cancelled`.

        Raises:
            ValueError: ``attempt`` is less than 1.
        """
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        setter = object.__setattr__
        setter(self, "job", job)
        setter(self, "kind", kind)
        setter(self, "queue", queue)
        setter(self, "member", member)
        setter(self, "view", StaticView((member,)) if view is None else view)
        setter(self, "attempt", attempt)
        setter(self, "key", key)
        setter(self, "headers", headers)
        setter(self, "state", state)
        setter(self, "redelivered", redelivered)
        setter(self, "_base_log", log)
        setter(self, "_log", None)
        setter(self, "_cancel_scope", cancel_scope)

    @property
    def log(self) -> FilteringBoundLogger:
        """A structlog logger bound with ``queue``, ``member``, ``job``, ``kind``, ``attempt``.

        Its events go to the stdlib logger ``spreadq.handler`` (see :mod:`spreadq.logs`).

        Bound on first use, so a handler that does not log does not pay for it.
        """
        bound = self._log
        if bound is None:
            # spreadq's stdlib-backed logger has every method of FilteringBoundLogger.
            base: FilteringBoundLogger = (
                cast("FilteringBoundLogger", get_logger("spreadq.handler"))
                if self._base_log is None
                else self._base_log
            )
            bound = base.bind(
                queue=self.queue,
                member=self.member,
                job=str(self.job),
                kind=self.kind,
                attempt=self.attempt,
            )
            object.__setattr__(self, "_log", bound)
        return bound

    @property
    def ref(self) -> object:
        """The job's reference; the same object as :attr:`job`."""
        return self.job

    @property
    def cancelled(self) -> bool:
        """True once the handler's run has been cancelled (the worker lost its daemon,
        the job was completed elsewhere, or the worker is stopping)."""
        scope = self._cancel_scope
        return scope is not None and scope.cancel_called

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Context is read-only; cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Context is read-only; cannot delete {name!r}")

    def __repr__(self) -> str:
        return (
            f"Context(queue={self.queue!r}, kind={self.kind!r}, job={self.job!s}, "
            f"attempt={self.attempt}, member={self.member!r})"
        )
