"""pytest fixtures for spreadq users, registered through the ``pytest11`` entry point.

Every fixture name starts with ``spreadq_``.
"""

from __future__ import annotations

__all__: list[str] = []
