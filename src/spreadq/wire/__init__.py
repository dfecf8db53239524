"""The Spread client protocol, sans-IO: bytes in, typed events out, and back.

This package imports nothing that does I/O or reads a clock.
"""

from __future__ import annotations

__all__: list[str] = []
