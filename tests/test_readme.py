"""The README's example runs exactly as printed (``scripts/check`` also type-checks it).

Every Python block of README.md starts with a ``# NAME.py: ...`` line. The test writes
the blocks to those files in a temporary folder, starts an embedded daemon, sets
``SPREADQ_SPREAD`` to it (the README's code reads the address from there), runs the
commands of the README's console block in that folder, and checks the printed result.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import anyio
import pytest

from spreadq.daemon import Daemon

README = Path(__file__).resolve().parent.parent / "README.md"
WAIT = 30
NAMED = re.compile(r"# (?P<name>[\w.]+\.py): ")


def readme_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def readme_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for block in readme_blocks("python"):
        named = NAMED.match(block)
        assert named, f"a README python block does not start with '# NAME.py: ':\n{block}"
        files[named["name"]] = block
    return files


def example_session() -> list[str]:
    """The console block that runs the example: commands and printed lines."""
    (session,) = [b for b in readme_blocks("console") if "$ spreadq worker" in b]
    return session.splitlines()


def test_every_python_block_is_a_named_file() -> None:
    assert set(readme_files()) == {"images.py", "produce.py"}


async def test_the_readme_example_runs_as_printed(tmp_path: Path, spreadq_daemon: Daemon) -> None:
    for name, text in readme_files().items():
        (tmp_path / name).write_text(text)
    session = example_session()
    commands = [line[2:] for line in session if line.startswith("$ ")]
    assert commands == ["spreadq daemon", "spreadq worker images:app", "python produce.py"]
    printed = session[session.index("$ python produce.py") + 1 :]
    # the member name is the daemon's choice: match it as a pattern
    expected = [re.escape(line).replace(re.escape("#r1-2#"), "#[^#]+#") for line in printed]
    env = {**os.environ, "SPREADQ_SPREAD": spreadq_daemon.address, "PYTHONUNBUFFERED": "1"}
    env.pop("SPREADQ_LOG_LEVEL", None)
    env.pop("SPREADQ_LOG_FORMAT", None)

    def command(line: str) -> list[str]:  # the README's commands, with this interpreter
        program, *args = line.split()
        prefix = [sys.executable] if program == "python" else [sys.executable, "-m", program]
        return [*prefix, *args]

    worker = await anyio.open_process(command(commands[1]), cwd=tmp_path, env=env)
    try:
        with anyio.fail_after(WAIT):
            assert worker.stderr is not None
            seen = b""
            while b'"worker_joined"' not in seen:
                seen += await worker.stderr.receive()
            produced = await anyio.run_process(command(commands[2]), cwd=tmp_path, env=env)
            lines = produced.stdout.decode().splitlines()
            assert len(lines) == len(expected), lines
            for line, pattern in zip(lines, expected, strict=True):
                assert re.fullmatch(pattern, line), (line, pattern)
            assert produced.stderr == b""  # the producer program configured no logging
            worker.send_signal(signal.SIGTERM)
            while worker.returncode is None:
                try:
                    seen += await worker.stderr.receive()
                except anyio.EndOfStream:
                    break
            assert await worker.wait() == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        await worker.aclose()
    records = [json.loads(line) for line in seen.decode().splitlines() if line.startswith("{")]
    (resizing,) = [r for r in records if r["event"] == "resizing"]
    assert (resizing["path"], resizing["attempt"], resizing["level"]) == ("cat.png", 1, "info")


@pytest.mark.parametrize("name", ["images.py", "produce.py"])
def test_the_readme_files_default_to_the_daemon_the_readme_starts(name: str) -> None:
    text = readme_files()[name]
    if name == "images.py":
        assert 'os.environ.get("SPREADQ_SPREAD", "4803@localhost")' in text
    else:
        assert "anyio.run(main)" in text
