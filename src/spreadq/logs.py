"""structlog configuration; called only by the CLI and by ``App.run()``.

Library code never configures logging: it only does ``structlog.get_logger(__name__)``.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

__all__ = ["configure_logging"]

LogFormat = Literal["console", "json"]


def configure_logging(
    level: str = "info", fmt: LogFormat | None = None, *, cache: bool = True
) -> None:
    """Route structlog to stderr: coloured key=value on a terminal, JSON lines otherwise.

    ``App.run()`` calls it (with ``cache=False``, so ``structlog.testing.capture_logs``
    keeps working) only when the program has not configured structlog itself.

    Raises:
        ValueError: ``level`` is not a standard logging level name.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=cache,
    )
