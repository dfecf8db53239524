"""Run ``spreadq bench`` with a ``sitecustomize`` module that instruments its processes.

``worker_steps.py`` and ``one_way_legs.py`` measure a real run from inside: each writes
a ``sitecustomize`` module into a temporary folder, puts the folder on ``PYTHONPATH`` for
``spreadq bench`` and the worker processes it starts, and reads back what the module
wrote there. This module holds what they share: the benchmark's options and the run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

__all__ = ["add_bench_options", "bench_args", "stamped_run"]


def add_bench_options(parser: argparse.ArgumentParser, *, loop: str = "auto") -> None:
    """Add the options passed on to ``spreadq bench`` (``loop``: the default loop)."""
    parser.add_argument("--spread", help="a running daemon (default: the embedded one)")
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in the flood")
    parser.add_argument("--rate", type=float, help="pace the second run at this many jobs/s")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default=loop)
    parser.add_argument("--rule", default="round_robin", help="the workers' ownership rule")


def bench_args(args: argparse.Namespace) -> list[str]:
    """``spreadq bench``'s arguments for the options :func:`add_bench_options` added."""
    bench = ["--jobs", str(args.jobs), "-w", str(args.workers), "--loop", args.loop]
    bench += ["--rule", args.rule]
    if args.spread:
        bench += ["--spread", args.spread]
    if args.rate:
        bench += ["--rate", str(args.rate)]
    return bench


@contextmanager
def stamped_run(
    sitecustomize: str, folder_variable: str, bench: Sequence[str], env: Mapping[str, str] = {}
) -> Iterator[Path]:
    """Run ``spreadq bench`` with ``bench`` and ``sitecustomize`` on ``PYTHONPATH``; yield
    the folder (named in the environment variable ``folder_variable``, with ``env``
    added) where the module wrote, until the block ends.

    Raises:
        subprocess.CalledProcessError: the benchmark failed.
    """
    with tempfile.TemporaryDirectory(prefix="spreadq-stamped-") as folder:
        Path(folder, "sitecustomize.py").write_text(sitecustomize, encoding="utf-8")
        path = os.pathsep.join(filter(None, [folder, os.environ.get("PYTHONPATH")]))
        environment = {**os.environ, **env, "PYTHONPATH": path, folder_variable: folder}
        command = [sys.executable, "-m", "spreadq", "bench", "--raw", "0", "--json", *bench]
        subprocess.run(command, env=environment, check=True, capture_output=True, timeout=3600)
        yield Path(folder)
