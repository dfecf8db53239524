"""``spreadq demo`` end to end: worker processes, a SIGKILL mid-run, every job confirmed."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

DEMO_ARGS = ("--workers", "3", "--jobs", "600", "--kill-at", "0.3", "--no-live")


def test_demo_confirms_every_job_after_a_worker_is_killed() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "spreadq", "demo", *DEMO_ARGS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "all 600 of 600 jobs confirmed" in out
    assert "0 failed" in out
    assert "was killed with" in out
    # three workers ran jobs, and the killed one stopped partway
    assert out.count("#localhost: ") == 3, out
    # stdout is not a terminal: progress lines, from the start to the end
    progress = [line for line in out.splitlines() if line.startswith("progress ")]
    assert ": 0 of 600 jobs put, 0 confirmed" in progress[0], out
    assert "600 of 600 jobs put, 600 confirmed" in progress[-1], out
