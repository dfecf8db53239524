"""benchmarks/bench_observe.py runs and reports every case (its shape, not its speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_observe.py"


def test_the_benchmark_reports_every_case() -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--events", "2000", "--repeat", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    figures = json.loads(completed.stdout)
    figures.pop("job_with_prometheus", None)  # with the plugin installed
    assert set(figures) == {
        "guarded_empty",
        "publish_empty",
        "publish_noop",
        "build_event",
        "counters_direct",
        "counters_observer",
        "empty_loop",
    }
    assert all(isinstance(value, float) for value in figures.values())
