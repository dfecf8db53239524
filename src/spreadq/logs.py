"""How spreadq logs: structlog events on stdlib ``logging`` loggers named ``spreadq.*``.

Theory of operation. spreadq is a library first, so it writes nothing unless the program
configured output. Every module takes its logger from :func:`get_logger`: a
:class:`structlog.stdlib.BoundLogger` wrapping ``logging.getLogger(name)``, whose
processors are chosen at each event:

* when the program has configured structlog (``structlog.configure``, and so
  ``structlog.testing.capture_logs()``), its processors run, as for any structlog logger;
  a program set up for structlog's stdlib integration gets spreadq's events like its own;
* otherwise a short chain of spreadq's own hands the event, unrendered, to the stdlib
  logger: nothing is printed unless a ``logging`` handler takes it, a level set with
  ``logging`` filters it before anything is formatted, a plain ``logging.Formatter``
  shows ``event key=value ...``, and :class:`structlog.stdlib.ProcessorFormatter` gets
  the event dict itself. (structlog's own defaults would render coloured console lines
  into the stdlib records.)

A :class:`logging.NullHandler` on the ``spreadq`` logger keeps Python's last-resort
handler from printing spreadq's warnings in a program that configured no logging.

:func:`configure_logging` is the other half, for programs: the ``spreadq`` command line
and the demo call it (never the library, ``App.run()`` included). It installs one stderr
handler on the root logger with a :class:`~structlog.stdlib.ProcessorFormatter`
(coloured console lines or JSON lines) and configures structlog for the stdlib, so a
handler's own ``structlog.get_logger()`` lines come out the same way.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Any, Final, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ROOT_LOGGER",
    "EventMessage",
    "LogFormat",
    "configure_logging",
    "get_logger",
]

LogFormat = Literal["console", "json"]
"""How :func:`configure_logging` renders: key=value lines (coloured) or JSON lines."""

LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("console", "json")
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
ROOT_LOGGER: Final = "spreadq"
"""The stdlib logger every spreadq logger is a child of."""

logging.getLogger(ROOT_LOGGER).addHandler(logging.NullHandler())


class EventMessage(dict[str, Any]):
    """A structlog event dict as a stdlib log message: ``str()`` renders ``event k=v ...``.

    :class:`structlog.stdlib.ProcessorFormatter` copies it as the dict it is; any other
    formatter calls ``record.getMessage()`` and gets the one-line rendering.
    """

    __slots__ = ()

    def __str__(self) -> str:
        parts = [str(self.get("event", ""))]
        parts.extend(
            f"{key}={value!r}"
            for key, value in self.items()
            if key not in _NOT_RENDERED and not key.startswith("_")
        )
        return " ".join(parts)


_NOT_RENDERED: Final = frozenset({"event", "exc_info", "stack_info"})


def _to_stdlib(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
    """The last processor of spreadq's own chain: the arguments of the stdlib call.

    ``exc_info`` stays in the event (ProcessorFormatter renders it from there) and is
    also passed to ``logging``, so that plain formatters print the traceback.
    """
    kwargs: dict[str, Any] = {"extra": {"_logger": logger, "_name": method_name}}
    exc_info = event_dict.get("exc_info")
    if exc_info:
        kwargs["exc_info"] = exc_info
    return (EventMessage(event_dict),), kwargs


_OWN_CHAIN: Final[tuple[Processor, ...]] = (
    structlog.stdlib.filter_by_level,
    structlog.contextvars.merge_contextvars,
    _to_stdlib,
)
# structlog's built-in defaults, as they are before anything configures it (and again
# after ``structlog.reset_defaults()``): ``capture_logs()`` marks structlog configured
# and then puts these back, and they end in a console renderer meant for stdout.
_STRUCTLOG_DEFAULTS: Final = (
    None if structlog.is_configured() else tuple(structlog.get_config()["processors"])
)


class _Processors:
    """The processors of a spreadq logger, chosen at each event (see the module doc)."""

    __slots__ = ()

    def current(self) -> Sequence[Processor]:
        """The program's structlog processors if it configured any, else spreadq's own."""
        if structlog.is_configured():
            configured: list[Processor] = structlog.get_config()["processors"]
            if _STRUCTLOG_DEFAULTS is None or tuple(configured) != _STRUCTLOG_DEFAULTS:
                return configured
        return _OWN_CHAIN

    def __iter__(self) -> Iterator[Processor]:
        return iter(self.current())


_PROCESSORS: Final = _Processors()
_FILTER_BY_LEVEL: Final = structlog.stdlib.filter_by_level


class _Logger(structlog.stdlib.BoundLogger):
    """spreadq's bound logger: when the processors in use start by filtering on the
    stdlib level (spreadq's own chain, and the command line's), an event below that
    level is dropped before any processor runs (2.5 µs instead of 6 per dropped call)."""

    def _proxy_to_logger(
        self, method_name: str, event: str | None = None, *event_args: str, **event_kw: Any
    ) -> Any:
        processors = _PROCESSORS.current()
        if (
            processors
            and processors[0] is _FILTER_BY_LEVEL
            and not self._logger.isEnabledFor(_LEVELS.get(method_name, logging.NOTSET))
        ):
            return None
        return super()._proxy_to_logger(method_name, event, *event_args, **event_kw)


_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger over the stdlib logger ``name`` (a ``spreadq.*`` name).

    It writes nothing by itself: output needs a ``logging`` handler (the program's, or
    :func:`configure_logging`'s), or a structlog configuration of the program's own.
    ``structlog.testing.capture_logs()`` captures its events.
    """
    return _Logger(
        logging.getLogger(name),
        processors=_PROCESSORS,  # an iterable, read at each event
        context={},
    )


def configure_logging(level: str = "info", fmt: LogFormat | None = None) -> None:
    """Log to stderr, for a program: console lines on a terminal, JSON lines otherwise.

    Sets the root logger's level and gives it one stderr handler (replacing the one an
    earlier call installed), formatted by :class:`structlog.stdlib.ProcessorFormatter`,
    and configures structlog to hand its events to ``logging``, so that spreadq's events,
    a handler's ``ctx.log`` and ``structlog.get_logger()``, and plain ``logging`` records
    all come out in one format. The library never calls it.

    Args:
        level: ``debug``, ``info``, ``warning``, ``error`` or ``critical`` (any case).
        fmt: ``console`` or ``json``; None picks console when stderr is a terminal.

    Raises:
        ValueError: an unknown level or format.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None or level.lower() not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r} (use one of {', '.join(LOG_LEVELS)})")
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (use console or json)")
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    rendering: list[Processor]
    if fmt == "console":
        console = structlog.dev.ConsoleRenderer(
            colors=_stderr().isatty(),
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False),
        )
        rendering = [console]
    else:  # a traceback as one string; no local variables (they may hold secrets)
        rendering = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def _stderr() -> TextIO:
    return sys.stderr


class _StderrHandler(logging.StreamHandler[TextIO]):
    """A stream handler on whatever ``sys.stderr`` is at each record: a test runner's
    captured stream can be closed long before the process ends."""

    def __init__(self) -> None:
        super().__init__(_stderr())

    @property
    def stream(self) -> TextIO:
        return _stderr()

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass
