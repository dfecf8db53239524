"""The command line's shared conventions: environment fallbacks shown in ``--help``,
root options before or after the subcommand, short flags, documented exit statuses, and
what ``spreadq worker`` logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import typer
from typer.testing import CliRunner

import spreadq
from spreadq.cli import app, hoist_root_options
from spreadq.cli.exits import EXIT_UNREACHABLE, EXIT_USAGE
from spreadq.cli.worker import setting_from_text
from spreadq.daemon import Daemon

WAIT = 20
# Every command gives each option an environment variable and documents its exit
# statuses (the daemon's own: it is the one thing that is never "unreachable").
WITH_ENVVARS = ["worker", "put", "bench", "demo", "daemon", "result"]
CLIENTS = ["worker", "put", "bench", "demo", "result"]


def command(name: str) -> Any:  # Typer's vendored click Command (a private module)
    root: Any = typer.main.get_command(app)
    return root.commands[name]


@pytest.mark.parametrize("name", [None, *WITH_ENVVARS])
def test_every_option_has_an_environment_variable_shown_in_help(name: str | None) -> None:
    cmd: Any = typer.main.get_command(app) if name is None else command(name)
    options = [
        param
        for param in cmd.params
        if param.param_type_name == "option"
        and not param.hidden
        and param.name not in {"help", "version"}
    ]
    assert options
    missing = [param.name for param in options if not param.envvar]
    assert not missing, f"options without an environment variable: {missing}"
    # wide enough that rich shows every variable name whole
    text = (
        CliRunner()
        .invoke(app, [*([name] if name else []), "--help"], env={"COLUMNS": "250"})
        .output
    )
    for param in options:
        assert str(param.envvar) in text.replace("│", "").replace(" ", "").replace("\n", "")


def test_the_daemon_address_variable_is_shared() -> None:
    for name in ("worker", "put", "bench"):
        (spread,) = [p for p in command(name).params if p.name == "spread"]
        assert spread.envvar == "SPREADQ_SPREAD"
        assert "-s" in spread.opts


@pytest.mark.parametrize("name", CLIENTS)
def test_every_command_documents_its_exit_statuses(name: str) -> None:
    output = " ".join(CliRunner().invoke(app, [name, "-h"]).output.split())
    assert "Exit status: 0 " in output
    assert "2 bad usage" in output
    assert "3 no daemon reached" in output


def test_the_daemon_documents_its_exit_statuses() -> None:
    output = " ".join(CliRunner().invoke(app, ["daemon", "-h"]).output.split())
    assert "Exit status: 0 when stopped" in output
    assert "3 when the port or the Unix socket is already in use" in output


def test_root_options_move_before_the_subcommand() -> None:
    args = ["put", "q", "--log-level", "debug", "k", "--log-format=json", "{}", "-l", "info"]
    assert hoist_root_options(args) == [
        "--log-level",
        "debug",
        "--log-format=json",
        "-l",
        "info",
        "put",
        "q",
        "k",
        "{}",
    ]
    assert hoist_root_options(["put", "--", "--log-level"]) == ["put", "--", "--log-level"]


def test_a_bad_log_level_after_the_subcommand_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["put", "q", "k", "{}", "--log-level", "loud"])
    assert result.exit_code == EXIT_USAGE
    assert "--log-level" in result.output


def test_put_to_an_unreachable_daemon_exits_3() -> None:
    result = CliRunner().invoke(app, ["put", "q", "k", "{}", "-s", "1@127.0.0.1", "-t", "5"])
    assert result.exit_code == EXIT_UNREACHABLE, result.output
    assert "could not connect to 1@127.0.0.1" in result.output


WORKER_APP = """
import spreadq

app = spreadq.App("clijobs", plugins=False)


@app.handler("double")
async def double(n: int, ctx: spreadq.Context) -> int:
    ctx.log.info("doubling", n=n)
    return 2 * n
"""


def test_a_worker_without_a_daemon_gives_up_after_connect_timeout_with_status_3(
    tmp_path: Path,
) -> None:
    (tmp_path / "cli_jobs.py").write_text(WORKER_APP)
    completed = subprocess.run(
        [sys.executable, "-m", "spreadq", "worker", "cli_jobs:app", "--log-format", "json"],
        env={**os.environ, "SPREADQ_SPREAD": "1@127.0.0.1", "SPREADQ_CONNECT_TIMEOUT": "0.3"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert completed.returncode == EXIT_UNREACHABLE, completed.stderr
    assert completed.stdout == ""
    records = [json.loads(line) for line in completed.stderr.splitlines()[:-1]]
    tries = [r for r in records if r["event"] == "worker_reconnecting"]
    assert tries
    assert tries[0]["level"] == "warning"
    assert tries[0]["address"] == "1@127.0.0.1"
    assert records[-1]["event"] == "worker_gave_up"
    assert completed.stderr.splitlines()[-1].startswith("error: could not connect to 1@127.0.0")


async def test_the_worker_command_logs_its_session_and_the_handlers_lines_at_info(
    tmp_path: Path, spreadq_daemon: Daemon
) -> None:
    (tmp_path / "cli_jobs.py").write_text(WORKER_APP)
    env = {
        **os.environ,
        "SPREADQ_SPREAD": spreadq_daemon.address,
        "SPREADQ_CONCURRENCY": "3",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("SPREADQ_LOG_LEVEL", None)
    process = await anyio.open_process(
        # the log format after the subcommand, the level left to its default (info)
        [sys.executable, "-m", "spreadq", "worker", "cli_jobs:app", "--log-format", "json"],
        env=env,
        cwd=tmp_path,
    )
    records: list[dict[str, object]] = []
    buffer = b""

    async def until(event: str) -> dict[str, object]:
        nonlocal buffer
        assert process.stderr is not None
        while True:
            for record in records:
                if record["event"] == event:
                    return record
            chunk = await process.stderr.receive()
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            records.extend(json.loads(line) for line in lines if line.strip())

    try:
        with anyio.fail_after(WAIT):
            joined = await until("worker_joined")
            assert joined["level"] == "info"
            assert joined["handlers"] == ["double"]
            assert joined["concurrency"] == 3  # SPREADQ_CONCURRENCY reached the worker
            assert joined["address"] == spreadq_daemon.address
            async with spreadq.Producer("clijobs", spreadq_daemon.address) as producer:
                assert await (await producer.put("double", 21)) == 42
            line = await until("doubling")
            assert (line["level"], line["logger"], line["n"]) == ("info", "spreadq.handler", 21)
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("connect_timeout", "none", None),
        ("metrics_port", " OFF ", None),
        ("connect_timeout", "2.5", 2.5),
        ("connect_timeout", "0.0005", 0.0005),  # Settings takes any timeout above 0
        ("metrics_port", "0", 0),
    ],
)
def test_a_setting_option_reads_none_off_and_numbers_as_settings_does(
    name: str, text: str, expected: float | None
) -> None:
    assert setting_from_text(name, text, "--x") == expected
    if expected is not None:  # the same value as from the variable
        environ = {f"SPREADQ_{name.upper()}": text}
        assert getattr(spreadq.Settings.from_env(environ=environ), name) == expected


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("connect_timeout", "abc", "'abc': Input should be a valid number"),
        ("metrics_port", "1.5", "'1.5': Input should be a valid integer"),
        ("metrics_port", "70000", "less than or equal to 65535, or none"),
        ("connect_timeout", "0", "greater than 0, or none"),
        ("connect_timeout", "nan", "finite number"),
        ("connect_timeout", "inf", "finite number"),
    ],
)
def test_a_bad_setting_option_is_a_usage_error_that_says_why(
    name: str, text: str, says: str
) -> None:
    with pytest.raises(typer.BadParameter, match=says) as raised:
        setting_from_text(name, text, "--x")
    assert raised.value.param_hint == "--x"
    with pytest.raises(spreadq.ConfigurationError):  # the variable is refused too
        spreadq.Settings.from_env(environ={f"SPREADQ_{name.upper()}": text})


NONE_APP = """
import spreadq

app = spreadq.App(
    "clinone", plugins=False, settings=spreadq.Settings(connect_timeout=5, metrics_port=9100)
)
"""


@pytest.mark.parametrize(
    ("args", "env", "timeout", "port"),
    [
        ([], {"SPREADQ_CONNECT_TIMEOUT": "none", "SPREADQ_METRICS_PORT": "off"}, None, None),
        (["--connect-timeout", "none", "--metrics-port", "None"], {}, None, None),
        (["-t", "0.5", "--metrics-port", "9200"], {}, 0.5, 9200),
        ([], {}, 5.0, 9100),  # the app's own
    ],
)
def test_the_worker_command_turns_a_timeout_and_the_metrics_port_off_with_none(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    timeout: float | None,
    port: int | None,
) -> None:
    # As Settings reads SPREADQ_CONNECT_TIMEOUT=none, so does the command (it used to
    # refuse the word as "not a valid number" and exit 2).
    from spreadq.worker.app import App

    (tmp_path / "cli_none_jobs.py").write_text(NONE_APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "cli_none_jobs", raising=False)
    for name in ("SPREADQ_CONNECT_TIMEOUT", "SPREADQ_METRICS_PORT", "SPREADQ_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    ran: list[spreadq.Settings] = []

    async def run(self: App, **kwargs: Any) -> None:
        ran.append(kwargs["settings"])

    monkeypatch.setattr(App, "run", run)
    result = CliRunner().invoke(app, ["worker", "cli_none_jobs:app", *args], env=env)
    assert result.exit_code == 0, result.output
    assert [(s.connect_timeout, s.metrics_port) for s in ran] == [(timeout, port)]
