"""What the conformance suite knows about the daemons it tests (shared by its modules)."""

from __future__ import annotations

from dataclasses import dataclass

from spreadq.daemon import Daemon

__all__ = ["DAEMON_NAME", "ENV", "SESSION_LIMIT", "Target"]

SESSION_LIMIT = 100
"""``max_session_messages`` of both daemons (``MaxSessionMessages`` for the real one)."""
DAEMON_NAME = "localhost"
ENV = "SPREADQ_SPREAD_DAEMON"


@dataclass(frozen=True)
class Target:
    """A daemon under test."""

    kind: str
    host: str
    port: int
    embedded: Daemon | None = None

    @property
    def address(self) -> str:
        return f"{self.port}@{self.host}"
