"""The distribution version, read by the build backend and by ``spreadq --version``."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
