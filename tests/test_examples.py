"""Every script in ``examples/`` runs against the embedded daemon with a small count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_examples_folder_is_not_empty() -> None:
    assert sorted(EXAMPLES.glob("*.py")), "examples/ has no scripts"


def test_quickstart_confirms_every_job() -> None:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py"), "7"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()  # the program's own output only
    assert [line.split(" made by ")[0] for line in lines] == [
        f"photo{i}.png@128px" for i in range(7)
    ]
    assert all(line.endswith("#localhost") for line in lines)
    # spreadq's lines go to logging, which the program set up on stderr at info
    assert "INFO spreadq.worker.runtime: worker_joined " in completed.stderr
    assert "DEBUG" not in completed.stderr


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_the_example_handler_tests_pass(mode: str) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(EXAMPLES / "test_thumbnails.py"),
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            f"asyncio_mode={mode}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "3 passed" in completed.stdout
