"""Where a real worker's CPU goes, step by step, under a flood and at a paced rate.

py-spy samples wall time: a worker preempted inside a socket write (the daemon it woke
took the core) shows up as time in the write. This script measures CPU instead. It
runs ``spreadq bench`` with a ``sitecustomize`` module (written to a temporary folder
and put on ``PYTHONPATH``) that wraps a worker's main steps (the table's handling of a
message and of an ACK, the runner, the dispatcher's per-turn bookkeeping and its
decision to rest, the connection's reading, decoding, encoding and writing, the
translation of the daemon's events) in ``time.thread_time()`` and writes each worker's
totals once a second. It prints, per second, the CPU each step took in one worker
(``--worker``: the first started, or the one that spent the least or the most CPU), and
for the whole run each step's share of that worker's CPU, its calls and its CPU per
call. ``--rule fill_first --worker idlest`` shows a worker standing by.

The steps are private methods, so this is a diagnostic tied to the code it measures: a
step that no longer exists is reported as missing, not measured.

    .venv/bin/python benchmarks/worker_steps.py --spread 4803@127.0.0.1 --jobs 300000 --rate 18000
    .venv/bin/python benchmarks/worker_steps.py --spread 4803@127.0.0.1 --jobs 100000 \
        --rate 13000 --rule fill_first --worker idlest
    .venv/bin/python benchmarks/worker_steps.py --jobs 400          # a smoke, embedded daemon
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Final, TypedDict

from rich.console import Console
from rich.table import Table
from stamped_bench import add_bench_options, bench_args, stamped_run

__all__ = ["STEPS", "Record", "main", "measure", "report"]

STEPS: tuple[tuple[str, str, str, bool], ...] = (
    # module, class, method, is it a coroutine function
    ("spreadq.queue.table", "OutstandingTable", "_on_message", False),
    ("spreadq.queue.table", "OutstandingTable", "_on_ack", False),
    ("spreadq.worker.runner", "JobRunner", "run", True),
    ("spreadq.worker.dispatcher", "Dispatcher", "_on_runs", False),
    ("spreadq.worker.dispatcher", "Dispatcher", "_pump", False),
    ("spreadq.worker.dispatcher", "Dispatcher", "_on_ended", True),
    ("spreadq.worker.dispatcher", "Dispatcher", "_on_send_ack", True),
    ("spreadq.worker.dispatcher", "Dispatcher", "_on_send_notice", True),
    ("spreadq.worker.dispatcher", "Dispatcher", "_note_idle", True),
    ("spreadq.worker.dispatcher", "Dispatcher", "_timer", True),
    ("spreadq.worker.dispatcher", "Dispatcher", "_wait_time", False),
    ("spreadq.worker.dispatcher", "Dispatcher", "_set_alarm", False),
    ("spreadq.worker.dispatcher", "Dispatcher", "_standby_wait", False),
    ("spreadq.actors.connection", "SpreadConnection", "_decode", False),
    ("spreadq.wire.session", "ClientSession", "receive_data", False),
    ("spreadq.wire.session", "ClientSession", "send_many", False),
    ("spreadq.client", "_LoopStream", "send", True),
    ("spreadq.session.translate", "GroupTranslator", "translate", False),
)
"""The steps timed. ``_on_ack`` runs inside ``_on_message``; the others do not nest.
What no step covers is the event loop and task switching, the channels between the
tasks, and the glue of the dispatcher's, the runners' and the writer's loops."""

_SITECUSTOMIZE = """
import atexit, importlib, json, os, sys, threading, time

def _install(folder, steps):
    totals = {}

    def timed(name, original, coroutine):
        if coroutine:
            async def step(*args, **kwargs):
                started = time.thread_time()
                try:
                    return await original(*args, **kwargs)
                finally:
                    entry = totals.setdefault(name, [0.0, 0])
                    entry[0] += time.thread_time() - started
                    entry[1] += 1
        else:
            def step(*args, **kwargs):
                started = time.thread_time()
                try:
                    return original(*args, **kwargs)
                finally:
                    entry = totals.setdefault(name, [0.0, 0])
                    entry[0] += time.thread_time() - started
                    entry[1] += 1
        return step

    missing = []
    for module_name, class_name, method, coroutine in steps:
        owner = getattr(importlib.import_module(module_name), class_name, None)
        original = getattr(owner, method, None)
        if original is None:
            missing.append(f"{class_name}.{method}")
            continue
        setattr(owner, method, timed(f"{class_name}.{method}", original, coroutine))
    out = open(os.path.join(folder, f"worker-{os.getpid()}.jsonl"), "a", encoding="utf-8")
    lock = threading.Lock()

    def write():
        line = {"t": time.time(), "cpu": time.process_time(), "missing": missing,
                "steps": {k: list(v) for k, v in totals.items()}}
        with lock:
            if not out.closed:
                out.write(json.dumps(line) + "\\n")
                out.flush()

    def every_second():
        while True:
            time.sleep(1.0)
            write()

    def last():
        write()
        with lock:
            out.close()

    write()  # the baseline: imports done, no job yet
    atexit.register(last)
    threading.Thread(target=every_second, daemon=True).start()

if os.environ.get("SPREADQ_STEPS_DIR") and "--role" in sys.argv and "worker" in sys.argv:
    _install(os.environ["SPREADQ_STEPS_DIR"], json.loads(os.environ["SPREADQ_STEPS"]))
"""


class Record(TypedDict):
    """One worker's totals at one moment (written once a second, and at exit)."""

    t: float
    cpu: float
    missing: list[str]
    steps: dict[str, list[float]]  # step -> [CPU seconds, calls]


WORKERS: Final = ("first", "idlest", "busiest")
"""Which worker :func:`measure` reports: the first started, or the one that spent the
least (a member standing by, under ``fill_first``) or the most CPU."""


def measure(bench_args: Sequence[str], worker: str = "first") -> list[Record]:
    """Run ``spreadq bench`` with ``bench_args`` and the steps timed; return one worker's
    records (cumulative CPU seconds and calls per step), chosen by ``worker`` (one of
    :data:`WORKERS`)."""
    variables = {"SPREADQ_STEPS": json.dumps(STEPS)}
    with stamped_run(_SITECUSTOMIZE, "SPREADQ_STEPS_DIR", bench_args, variables) as folder:
        files = sorted(folder.glob("worker-*.jsonl"))
        if not files:
            raise SystemExit("no worker wrote its steps (did the bench start workers?)")
        runs: list[list[Record]] = []
        for file in files:
            lines = file.read_text(encoding="utf-8").splitlines()
            runs.append([json.loads(line) for line in lines if line.strip()])
        if worker == "first":
            return runs[0]
        pick = min if worker == "idlest" else max
        return pick(runs, key=lambda run: run[-1]["cpu"] - run[0]["cpu"])


def _delta(after: Record, before: Record) -> dict[str, tuple[float, int]]:
    then = before["steps"]
    return {
        name: (seconds - then.get(name, [0.0, 0])[0], int(calls - then.get(name, [0.0, 0])[1]))
        for name, (seconds, calls) in after["steps"].items()
    }


def report(records: list[Record], console: Console, worker: str = "first") -> None:
    """Print the per-second table and the whole run's shares of the ``worker`` worker."""
    if len(records) < 2:
        console.print("the worker wrote fewer than two records")
        return
    first, last = records[0], records[-1]
    if last["missing"]:
        console.print(f"[yellow]not measured (no such method): {', '.join(last['missing'])}")
    names = sorted(last["steps"])
    table = Table(title=f"{worker} worker, CPU ms per second of each step")
    table.add_column("s", justify="right")
    table.add_column("CPU", justify="right")
    for name in names:
        table.add_column(name.split(".")[-1].lstrip("_"), justify="right")
    previous = first
    for record in records[1:]:
        steps = _delta(record, previous)
        cells = [f"{steps.get(name, (0.0, 0))[0] * 1e3:.1f}" for name in names]
        cpu = (record["cpu"] - previous["cpu"]) * 1e3
        table.add_row(f"{record['t'] - first['t']:.0f}", f"{cpu:.0f}", *cells)
        previous = record
    console.print(table)
    total = _delta(last, first)
    cpu_all = last["cpu"] - first["cpu"]
    summary = Table(
        title=f"{worker} worker, whole run: {cpu_all:.2f} s of CPU since its steps were wrapped"
    )
    summary.add_column("step")
    for column in ("share of CPU", "calls", "µs a call"):
        summary.add_column(column, justify="right")
    for name in names:
        seconds, calls = total[name]
        per_call = seconds / calls * 1e6 if calls else 0.0
        share = seconds / cpu_all * 100 if cpu_all else 0.0
        summary.add_row(name, f"{share:.1f}%", f"{calls:,}", f"{per_call:.1f}")
    console.print(summary)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_options(parser, loop="asyncio")
    parser.add_argument("--worker", choices=WORKERS, default="first", help="whose steps to report")
    args = parser.parse_args(argv)
    bench = bench_args(args)
    report(measure(bench, args.worker), Console(width=max(Console().width, 180)), args.worker)


if __name__ == "__main__":
    main()
