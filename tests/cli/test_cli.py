"""The ``spreadq`` command line: help on every command, the daemon's lifecycle, bad input."""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

import spreadq
from spreadq.cli import app
from spreadq.wire import RegularMembership

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))
from daemon_process import daemon_process

COMMANDS = ["daemon", "demo", "worker", "put", "bench", "top", "result"]
WAIT = 20


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("command", [[], *([name] for name in COMMANDS)])
def test_every_command_has_help(command: list[str], flag: str) -> None:
    result = CliRunner().invoke(app, [*command, flag])
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


def test_result_with_a_bad_job_id_exits_2_before_connecting() -> None:
    result = CliRunner().invoke(app, ["result", "q", "12:x", "--spread", "1@127.0.0.1"])
    assert result.exit_code == 2, result.output
    assert "is not a job id" in result.output


def test_put_with_bad_json_exits_2() -> None:
    result = CliRunner().invoke(app, ["put", "q", "kind", "{not json", "--spread", "1@127.0.0.1"])
    assert result.exit_code == 2, result.output
    assert "not JSON" in result.output


async def test_the_daemon_command_serves_clients_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    socket_path = tmp_path / "spread.sock"
    async with daemon_process("--unix", str(socket_path)) as daemon:
        assert f"and {socket_path}" in daemon.banner
        # Each client joins a group of its own: nothing orders one client's disconnect
        # before another client's join (a TCP client's goodbye can reach the daemon after
        # a Unix socket client's join), so a shared group could still list the first.
        for group, target in (("tcp", daemon.address), ("unix", f"unix:{socket_path}")):
            with anyio.fail_after(WAIT):
                async with spreadq.connect(target) as conn:
                    await conn.join(group)
                    view = await conn.receive()
                    assert isinstance(view, RegularMembership)
                    assert view.members == (conn.private_group,)
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
        daemon.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(WAIT):
            assert await daemon.process.wait() == 0
    assert not socket_path.exists()


async def test_the_daemon_listens_on_tcp_and_on_tmp_port_like_spread() -> None:
    async with daemon_process() as daemon:
        spread_socket = anyio.Path(f"/tmp/{daemon.port}")
        assert daemon.banner.rstrip().endswith(f"listening on {daemon.address} and {spread_socket}")
        with anyio.fail_after(WAIT):
            async with spreadq.connect(str(daemon.port)) as conn:  # Spread's "PORT" address
                await conn.join("local")
                view = await conn.receive()
                assert isinstance(view, RegularMembership)
        daemon.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(WAIT):
            assert await daemon.process.wait() == 0
    assert not await spread_socket.exists()


async def test_no_unix_socket_listens_on_tcp_only() -> None:
    async with daemon_process("--no-unix-socket", "--socket-mode", "0666") as daemon:
        assert daemon.banner.rstrip().endswith(f"listening on {daemon.address}")
        assert not await anyio.Path(f"/tmp/{daemon.port}").exists()


def run_daemon_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spreadq", "daemon", *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def test_a_busy_port_is_one_line_naming_the_address_and_exit_3() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        completed = run_daemon_command("--port", str(port), "--no-unix-socket")
    assert completed.returncode == 3, completed.stderr
    assert completed.stderr.splitlines() == [
        f"spreadq daemon: cannot listen on {port}@127.0.0.1: "
        "the port is already in use (another Spread daemon?)"
    ]


def test_a_live_unix_socket_is_one_line_exit_3_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        completed = run_daemon_command("--port", "0", "--unix", str(path))
        assert completed.returncode == 3, completed.stderr
        assert completed.stderr.splitlines() == [
            f"spreadq daemon: cannot listen on {path}: a daemon is listening on this socket"
        ]
        assert path.exists()
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(path))  # still the live listener's socket
        client.close()


def test_bad_socket_options_exit_2() -> None:
    assert run_daemon_command("--socket-mode", "rw").returncode == 2
    assert run_daemon_command("--socket-mode", "1777").returncode == 2
    both = run_daemon_command("--unix", "/tmp/x.sock", "--no-unix-socket")
    assert both.returncode == 2
    assert "contradict" in both.stderr


async def test_listening_beyond_loopback_warns_about_null_authentication() -> None:
    async with daemon_process("--host", "0.0.0.0", "--no-unix-socket") as daemon:
        warnings = [line for line in daemon.banner.splitlines() if "warning:" in line]
        assert len(warnings) == 1, daemon.banner
        assert warnings[0].startswith("spreadq daemon: warning: listening on 0.0.0.0")
        assert "NULL authentication" in warnings[0]
        assert "join any group and send anything" in warnings[0]
