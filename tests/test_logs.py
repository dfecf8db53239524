"""spreadq logs like a guest: nothing unless the program configured output, and then
through stdlib ``logging`` (``spreadq.*`` loggers) or the program's structlog setup."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from spreadq.logs import EventMessage, configure_logging, get_logger

# A producer-only program: its daemon stops under it, so spreadq has a warning
# (producer_disconnected) and an error (producer_gave_up) to log, and info and debug
# lines before them. It prints one line of its own on stdout.
PRODUCER_PROGRAM = """
import logging, sys
import anyio
import spreadq
from spreadq.daemon import serve

if sys.argv[1] != "none":
    logging.basicConfig(level=getattr(logging, sys.argv[1].upper()))

async def main() -> None:
    async with serve(port=0) as daemon:
        settings = spreadq.Settings(reconnect_max_attempts=0)
        async with spreadq.Producer("quiet", daemon.address, settings=settings) as producer:
            receipt = await producer.put("anything", {"n": 1})  # held: no consumer
            daemon.stop()
            try:
                with anyio.fail_after(10):
                    await receipt
            except spreadq.ConnectionLost as error:
                print("receipt failed:", type(error).__name__)

anyio.run(main)
"""


def run_producer(tmp_path: Path, level: str) -> subprocess.CompletedProcess[str]:
    program = tmp_path / "producer_only.py"
    program.write_text(PRODUCER_PROGRAM)
    return subprocess.run(
        [sys.executable, str(program), level],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_a_producer_only_program_prints_nothing_of_spreadq(tmp_path: Path) -> None:
    completed = run_producer(tmp_path, "none")
    assert completed.stdout == "receipt failed: ConnectionLost\n"
    assert completed.stderr == ""


def test_logging_basic_config_at_warning_shows_only_warnings_and_errors(tmp_path: Path) -> None:
    completed = run_producer(tmp_path, "warning")
    assert completed.stdout == "receipt failed: ConnectionLost\n"
    lines = completed.stderr.splitlines()
    assert any(line.startswith("WARNING:spreadq.producer:producer_disconnected ") for line in lines)
    assert any(line.startswith("ERROR:spreadq.producer:producer_gave_up ") for line in lines)
    assert all(line.split(":")[0] in {"WARNING", "ERROR"} for line in lines), lines
    assert "\x1b[" not in completed.stderr  # no colour codes in stdlib records


def test_logging_basic_config_at_debug_shows_spreadq_debug_lines(tmp_path: Path) -> None:
    completed = run_producer(tmp_path, "debug")
    assert "INFO:spreadq.producer:producer_connected " in completed.stderr
    assert "DEBUG:spreadq." in completed.stderr


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger, put back as it was after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_capture_logs_captures_spreadq_loggers_at_every_level(
    root_logging: logging.Logger,
) -> None:
    root_logging.setLevel(logging.ERROR)  # stdlib levels do not hide events from tests
    log = get_logger("spreadq.test").bind(queue="q")
    with capture_logs() as logs:
        log.debug("debug_line", n=1)
    assert logs == [{"queue": "q", "n": 1, "event": "debug_line", "log_level": "debug"}]


def test_a_plain_formatter_shows_event_and_keys(root_logging: logging.Logger) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root_logging.addHandler(handler)
    root_logging.setLevel(logging.INFO)
    log = get_logger("spreadq.test")
    log.debug("hidden")
    log.info("window_blocked", producer="ab12", behind=3)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("job_crashed", job="j1")
    text = stream.getvalue()
    assert text.startswith("INFO spreadq.test window_blocked producer='ab12' behind=3\n")
    assert "ERROR spreadq.test job_crashed job='j1'\nTraceback" in text
    assert "ValueError: boom" in text
    assert "hidden" not in text


def test_structlog_defaults_put_back_by_capture_logs_are_not_used(
    root_logging: logging.Logger,
) -> None:
    # capture_logs() marks structlog configured and restores its default processors,
    # which end in a console renderer: spreadq keeps handing events over unrendered.
    with capture_logs():
        pass
    assert structlog.is_configured()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root_logging.addHandler(handler)
    root_logging.setLevel(logging.INFO)
    get_logger("spreadq.test").info("worker_joined", member="#w1#h")
    assert stream.getvalue() == "worker_joined member='#w1#h'\n"


def test_event_message_renders_without_internal_keys() -> None:
    message = EventMessage(event="e", a=1, exc_info=True, _record=None)
    assert str(message) == "e a=1"


def test_a_program_configured_for_structlog_stdlib_gets_spreadq_events_structured(
    root_logging: logging.Logger,
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=structlog.processors.JSONRenderer())
    )
    root_logging.addHandler(handler)
    root_logging.setLevel(logging.INFO)
    structlog.configure(
        processors=[
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
    )
    get_logger("spreadq.test").bind(queue="q").info("worker_joined", handlers=["a"])
    assert json.loads(stream.getvalue()) == {
        "queue": "q",
        "handlers": ["a"],
        "event": "worker_joined",
        "logger": "spreadq.test",
    }


def test_spreadq_events_reach_process_formatter_unrendered_without_structlog_config(
    root_logging: logging.Logger,
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=structlog.processors.JSONRenderer())
    )
    root_logging.addHandler(handler)
    root_logging.setLevel(logging.INFO)
    get_logger("spreadq.test").warning("session_dropped", session=3)
    assert json.loads(stream.getvalue()) == {"session": 3, "event": "session_dropped"}


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_configure_logging_writes_one_format_on_stderr(
    root_logging: logging.Logger, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    configure_logging("info", "json" if fmt == "json" else "console")
    configure_logging("info", "json" if fmt == "json" else "console")  # replaces, no twin
    get_logger("spreadq.test").debug("hidden")
    get_logger("spreadq.test").info("worker_joined", member="#w1#h")
    structlog.get_logger("user").info("user_line", k=1)
    logging.getLogger("plain").warning("plain %s", "record")
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 3
    if fmt == "json":
        records = [json.loads(line) for line in lines]
        assert [(r["event"], r["level"], r["logger"]) for r in records] == [
            ("worker_joined", "info", "spreadq.test"),
            ("user_line", "info", "user"),
            ("plain record", "warning", "plain"),
        ]
        assert records[0]["member"] == "#w1#h"
    else:
        assert "worker_joined" in lines[0]
        assert "member=#w1#h" in lines[0]
        assert "\x1b[" not in err  # stderr is not a terminal here


def test_configure_logging_refuses_unknown_levels_and_formats() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud")
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        configure_logging("info", "xml")  # type: ignore[arg-type]


SRC = Path(__file__).resolve().parent.parent / "src" / "spreadq"


@pytest.mark.parametrize(
    "path", sorted(SRC.rglob("*.py")), ids=lambda path: str(path.relative_to(SRC))
)
def test_no_module_but_logs_uses_structlog_loggers_or_configuration(path: Path) -> None:
    """``structlog.get_logger`` would print on stdout in a program that configured
    nothing; modules take ``spreadq.logs.get_logger(__name__)``."""
    if path == SRC / "logs.py":
        return
    text = path.read_text()
    for call in ("structlog.get_logger(", "structlog.configure(", "structlog.wrap_logger("):
        assert call not in text, f"{path.relative_to(SRC)} calls {call}...)"
