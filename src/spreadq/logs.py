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
    level: str = "info", fmt: LogFormat | None = None, *, cache: bool = False
) -> None:
    """Route structlog to stderr: coloured key=value on a terminal, JSON lines otherwise.

    ``App.run()`` calls it only when the program has not configured structlog itself.
    Loggers are not cached unless ``cache`` is true: a cached logger keeps this
    configuration for good, which breaks ``structlog.testing.capture_logs`` in a
    process (a test run) that configures logging more than once.

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
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=cache,
    )


def _stderr_logger(*args: object) -> structlog.PrintLogger:
    """A logger on whatever ``sys.stderr`` is when the logger is made, not at configure
    time: a test runner's captured stream can be closed long before the process ends."""
    return structlog.PrintLogger(sys.stderr)
