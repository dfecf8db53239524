"""Every script in ``examples/`` runs against the embedded daemon with a small count."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    lines = [line for line in completed.stdout.splitlines() if " made by #" in line]
    assert [line.split(" made by ")[0] for line in lines] == [
        f"photo{i}.png@128px" for i in range(7)
    ]
    assert all(line.endswith("#localhost") for line in lines)
