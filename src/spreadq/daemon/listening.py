"""Where a virtual daemon of the embedded daemon listens."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Listening"]


@dataclass(frozen=True, slots=True)
class Listening:
    """Where one virtual daemon listens."""

    daemon: str
    host: str
    port: int
    unix_path: str | None = None

    @property
    def address(self) -> str:
        """``"PORT@HOST"``, the Spread address of the TCP listener."""
        return f"{self.port}@{self.host}"
