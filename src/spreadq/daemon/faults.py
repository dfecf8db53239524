"""Fault injection for the embedded daemon: kill, pause, partition and merge.

Theory of operation
-------------------
Tests reach a running daemon's faults through ``daemon.faults``. Every method acts at
once and synchronously, between two events of the daemon's one total order: it changes
the engine (which queues the membership messages the fault causes) and then the server
applies the I/O side (closing sockets, pausing or waking a session's writer). Sessions
are named by private group (``"#alice#localhost"``) or by private name (``"alice"``).

* :meth:`Faults.kill` closes a session's socket without a word, as ``kill -9`` of the
  client would: its groups see ``CAUSED_BY_DISCONNECT`` (docs/design/membership.md#disconnect).
* :meth:`Faults.pause` stops writing to one session, as if its client had stopped
  reading; its messages queue up in the daemon until :meth:`Faults.resume`, or until the
  queue passes ``max_session_messages`` and the session is dropped.
* :meth:`Faults.partition` and :meth:`Faults.merge` change which virtual daemons reach
  each other (``serve(daemons=(...))``): members see transitional and
  ``CAUSED_BY_NETWORK`` memberships, and traffic stays inside each component
  (docs/design/membership.md#network).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from spreadq.daemon.engine import Engine, SessionId

__all__ = ["FaultTarget", "Faults"]


class FaultTarget(Protocol):
    """What :class:`Faults` needs from a running server."""

    @property
    def engine(self) -> Engine:
        """The server's engine."""
        ...

    def now(self) -> int:
        """The current time in Unix seconds (for new ring ids)."""
        ...

    def abort(self, session_id: SessionId) -> None:
        """Close the session's socket now, without writing anything more."""
        ...

    def set_paused(self, session_id: SessionId, paused: bool) -> None:
        """Stop or restart writing to a session."""
        ...

    def flush(self) -> None:
        """Apply the engine's pending effects: wake writers, close dropped sessions."""
        ...


class Faults:
    """Fault injection on one running daemon (its ``faults`` attribute)."""

    def __init__(self, target: FaultTarget) -> None:
        self._target = target

    def sessions(self) -> tuple[str, ...]:
        """The private groups of every open session, oldest first."""
        return tuple(info.private_group for info in self._target.engine.sessions())

    def components(self) -> tuple[tuple[str, ...], ...]:
        """Which virtual daemons reach each other now."""
        return self._target.engine.components()

    def _find(self, member: str) -> SessionId:
        try:
            return self._target.engine.find_session(member).id
        except KeyError:
            raise LookupError(f"no session {member!r} on this daemon") from None

    def kill(self, member: str) -> None:
        """Close ``member``'s socket abruptly; its groups see a disconnect.

        Raises:
            LookupError: no such session.
        """
        session_id = self._find(member)
        self._target.engine.close_session(session_id)
        self._target.abort(session_id)
        self._target.flush()

    def pause(self, member: str) -> None:
        """Stop delivering to ``member``: its messages queue up in the daemon.

        Raises:
            LookupError: no such session.
        """
        self._target.set_paused(self._find(member), True)

    def resume(self, member: str) -> None:
        """Deliver to ``member`` again, starting with everything queued.

        Raises:
            LookupError: no such session.
        """
        self._target.set_paused(self._find(member), False)
        self._target.flush()

    def queued(self, member: str) -> int:
        """How many messages wait in the daemon for ``member``.

        Raises:
            LookupError: no such session.
        """
        return self._target.engine.queued(self._find(member))

    def partition(self, components: Sequence[Sequence[str]]) -> None:
        """Split the virtual daemons into ``components`` (each daemon named once).

        Raises:
            ConfigurationError: a daemon is missing, unknown or named twice.
        """
        self._target.engine.reconfigure(components, now=self._target.now())
        self._target.flush()

    def merge(self) -> None:
        """Join every virtual daemon into one component again."""
        engine = self._target.engine
        engine.reconfigure([engine.daemons], now=self._target.now())
        self._target.flush()
