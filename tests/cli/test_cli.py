"""The ``spreadq`` command line: help on every command, the daemon's lifecycle, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

import spreadq
from spreadq.cli import app
from spreadq.wire import RegularMembership

COMMANDS = ["daemon", "demo", "worker", "put", "bench"]
WAIT = 20


@pytest.mark.parametrize("command", [[], *([name] for name in COMMANDS)])
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_root_help_lists_every_command() -> None:
    output = CliRunner().invoke(app, ["--help"]).output
    for name in COMMANDS:
        assert f" {name} " in output


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"spreadq {spreadq.__version__}"


def test_worker_with_a_bad_target_exits_2_and_says_why() -> None:
    result = CliRunner().invoke(app, ["worker", "no_such_module_xyz:app"])
    assert result.exit_code == 2
    assert "no_such_module_xyz" in result.output


def test_put_with_bad_json_exits_2() -> None:
    result = CliRunner().invoke(app, ["put", "q", "kind", "{not json", "--spread", "1@127.0.0.1"])
    assert result.exit_code == 2, result.output
    assert "not JSON" in result.output


async def test_the_daemon_command_serves_clients_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    socket_path = tmp_path / "spread.sock"
    process = await anyio.open_process(
        [sys.executable, "-m", "spreadq", "daemon", "--port", "0", "--unix", str(socket_path)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stderr is not None
        with anyio.fail_after(WAIT):
            banner = b""
            while b"listening on " not in banner or not banner.endswith(b"\n"):
                banner += await process.stderr.receive()
        address = banner.decode().split("listening on ")[1].split()[0]
        # one group per client: leaving `connect` writes the Disconnect, but the daemon
        # may take the next client's join first, as Spread orders no two sessions
        for group, target in (("cli-tcp", address), ("cli-unix", f"unix:{socket_path}")):
            with anyio.fail_after(WAIT):
                async with spreadq.connect(target) as conn:
                    await conn.join(group)
                    view = await conn.receive()
                    assert isinstance(view, RegularMembership)
                    assert view.members == (conn.private_group,)
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(WAIT):
            assert await process.wait() == 0
        assert not socket_path.exists()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()


def test_python_dash_m_spreadq_runs_the_cli() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "spreadq", "--version"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert completed.returncode == 0
    assert completed.stdout.strip() == f"spreadq {spreadq.__version__}"
