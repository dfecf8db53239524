"""Where a job's one-way time goes: put → handler start, split into legs, per job.

``spreadq bench`` measures the one-way time from the producer's ``put()`` to the
handler's start. This script runs it with a ``sitecustomize`` module (written to a
temporary folder and put on ``PYTHONPATH``, as ``worker_steps.py`` does) that stamps
``time.time()`` in every process at the points a job passes: the producer's put, the
encoding of its batch, the next socket write; in the worker that runs it, the event
loop reading the bytes, the connection's reader taking them, the table beginning and
ending the message, and the handler starting. For each job of the paced run it prints
the legs between those points: their medians, their p99s, and their means over the
jobs whose whole one-way time is above its p99 (where the tail waited). A message's
read and take are the worker's latest before its table's turn.

Every worker reads every message, so the same stamps also say, for each JOB message of
the paced run, when each worker's loop read it after the producer's write: ranked
first to last, their p50/p90/p99, and which rank the workers running the jobs had, over
all jobs and over those above the one-way p99 (:func:`readers_of`). On two cores four
workers woken by one message read it one after another, and the tail's jobs are mostly
those of the last to read (``docs/performance-log.md#which-worker-the-slow-jobs-wait-in``).

The stamps are private functions wrapped from outside, so this is a diagnostic tied to
the code it measures, and it slows what it measures a little (a few µs a stamp). All
processes run on one machine, so one clock serves them all.

    .venv/bin/python benchmarks/one_way_legs.py --spread 4803@127.0.0.1 --jobs 100000 \\
        --rate 13000 --rule fill_first
    .venv/bin/python benchmarks/one_way_legs.py --jobs 1000 --workers 2   # a smoke
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
from collections.abc import Sequence
from itertools import pairwise
from typing import Any, Final

from rich.console import Console
from rich.table import Table
from stamped_bench import add_bench_options, bench_args, stamped_run

__all__ = ["LEGS", "legs_of", "main", "measure", "readers_of"]

LEGS: Final = (
    "put → batch encoded",
    "encoded → written",
    "written → read by the worker's loop",
    "read → taken by its reader",
    "taken → its table begins",
    "the table's handling of the message",
    "table → handler start",
)
"""The legs of one job's one-way time, in order; they add up to it."""

_SITECUSTOMIZE = """
import atexit, collections, importlib, json, os, sys, time

def _install(folder):
    records = []
    role = "worker" if "--role" in sys.argv and "worker" in sys.argv else "producer"

    def dump():
        path = os.path.join(folder, f"{role}-{os.getpid()}.json")
        with open(path, "w", encoding="utf-8") as out:
            json.dump(records, out)

    atexit.register(dump)
    client = importlib.import_module("spreadq.client")
    if role == "producer":
        sender = importlib.import_module("spreadq.producer.sender")
        encode_batch = sender.encode_batch

        def encode(producer_id, mseq, codec, specs, **options):
            records.append(["encoded", time.time(), [spec.seq for spec in specs]])
            return encode_batch(producer_id, mseq, codec, specs, **options)

        sender.encode_batch = encode
        send = client._LoopStream.send

        async def written(self, item):
            records.append(["written", time.time()])
            return await send(self, item)

        client._LoopStream.send = written
        facade = importlib.import_module("spreadq.producer.facade")
        put = facade.Producer.put

        async def stamped_put(self, *args, **kwargs):
            at = time.time()
            receipt = await put(self, *args, **kwargs)
            records.append(["put", at, receipt.seq])
            return receipt

        facade.Producer.put = stamped_put
        return
    arrivals = collections.deque()
    taken = [0.0, 0.0]  # when the loop read the bytes, when the reader took them
    data_received = client._Protocol.data_received

    def arrived(self, data):
        arrivals.append(time.time())
        return data_received(self, data)

    client._Protocol.data_received = arrived
    receive = client._LoopStream.receive

    async def took(self, *args, **kwargs):
        chunk = await receive(self, *args, **kwargs)
        taken[0] = arrivals.popleft() if arrivals else time.time()
        taken[1] = time.time()
        return chunk

    client._LoopStream.receive = took
    table = importlib.import_module("spreadq.queue.table")
    decode = table.decode
    decoded = [None]

    def keep(data):
        decoded[0] = message = decode(data)
        return message

    table.decode = keep
    on_message = table.OutstandingTable._on_message

    def message(self, event):
        begins = time.time()
        decoded[0] = None
        effects = on_message(self, event)
        batch = decoded[0]
        if isinstance(batch, table.JobBatch):
            seqs = list(getattr(batch.jobs, "seqs", None) or [ref[1] for ref in batch.jobs.refs])
            records.append(["table", taken[0], taken[1], begins, time.time(), seqs])
        return effects

    table.OutstandingTable._on_message = message
    runner = importlib.import_module("spreadq.worker.runner")
    run = runner.JobRunner.run

    async def started(self, job, *args, **kwargs):
        records.append(["started", job.ref[1], time.time()])
        return await run(self, job, *args, **kwargs)

    runner.JobRunner.run = started

if os.environ.get("SPREADQ_LEGS_DIR"):
    _install(os.environ["SPREADQ_LEGS_DIR"])
"""


Records = dict[str, list[list[Any]]]
"""Each process's stamps, by file name: rows of a stamp's name and its figures."""


def measure(bench: Sequence[str]) -> Records:
    """Run ``spreadq bench`` with ``bench`` and the stamps; return each process's
    records by file name (``producer-PID.json``, ``worker-PID.json``)."""
    with stamped_run(_SITECUSTOMIZE, "SPREADQ_LEGS_DIR", bench) as folder:
        return {
            file.name: json.loads(file.read_text(encoding="utf-8"))
            for file in sorted(folder.glob("*.json"))
        }


def _producer_stamps(records: Records) -> tuple[dict[int, float], dict[int, tuple[float, float]]]:
    """From the producer's stamps: each job's put time, and when its batch was first
    encoded and then written (the first socket write after the encoding)."""
    producer = next(rows for name, rows in records.items() if name.startswith("producer"))
    put = {int(row[2]): float(row[1]) for row in producer if row[0] == "put"}
    writes = sorted(float(row[1]) for row in producer if row[0] == "written")
    encoded: dict[int, tuple[float, float]] = {}
    for row in producer:
        if row[0] == "encoded":
            at = float(row[1])
            i = bisect.bisect_left(writes, at)
            written = writes[i] if i < len(writes) else at
            for seq in row[2]:
                encoded.setdefault(int(seq), (at, written))
    return put, encoded


def legs_of(records: Records, last: int) -> list[list[float]]:
    """The legs (seconds, in :data:`LEGS` order) of each of the ``last`` jobs put, for
    the jobs every process stamped: the producer's, and those of the worker that ran
    each job (the first start of a seq, and the message that delivered it there)."""
    put, encoded = _producer_stamps(records)
    legs: list[list[float]] = []
    wanted = set(sorted(put)[-last:])
    for name, rows in records.items():
        if not name.startswith("worker"):
            continue
        started: dict[int, float] = {}
        for row in rows:
            if row[0] == "started":
                started.setdefault(int(row[1]), float(row[2]))
        for row in rows:
            if row[0] != "table":
                continue
            read, taken, begins, ends = (float(x) for x in row[1:5])
            for number in row[5]:
                seq = int(number)
                if seq not in wanted or seq not in started or seq not in encoded:
                    continue
                wanted.discard(seq)  # its first delivery to the worker that ran it
                at, written = encoded[seq]
                points = (put[seq], at, written, read, taken, begins, ends, started[seq])
                legs.append([b - a for a, b in pairwise(points)])
    return legs


def _at(values: Sequence[Any], share: float) -> Any:
    """The ``share`` quantile of sorted ``values`` (the element at that place)."""
    return values[min(len(values) - 1, int(share * len(values)))]


def readers_of(records: Records, last: int) -> dict[str, Any]:
    """For the JOB messages of the ``last`` jobs put that every worker read: how long
    after the producer's write each worker's loop read them, by rank (first reader
    first), and the share of the jobs each rank's worker ran, over all of those jobs and
    over the ones whose one-way time is at or above its p99."""
    put, encoded = _producer_stamps(records)
    wanted = set(sorted(put)[-last:])
    workers = [name for name in records if name.startswith("worker")]
    reads: dict[int, dict[str, float]] = {}  # message (first seq) -> worker -> loop read
    message_of: dict[int, int] = {}
    started: dict[int, tuple[str, float]] = {}  # seq -> (worker, handler start)
    for name in workers:
        for row in records[name]:
            if row[0] == "table" and row[5] and int(row[5][0]) in wanted:
                first = int(row[5][0])
                reads.setdefault(first, {})[name] = float(row[1])
                for seq in row[5]:
                    message_of.setdefault(int(seq), first)
            elif row[0] == "started":
                started.setdefault(int(row[1]), (name, float(row[2])))
    # each message every worker read: its workers, first reader first, and when each read it
    # after the producer's write
    order: dict[int, list[tuple[float, str]]] = {
        first: sorted((at - encoded[first][1], name) for name, at in by_worker.items())
        for first, by_worker in reads.items()
        if len(by_worker) == len(workers) and first in encoded
    }
    rank_of = {
        first: {name: rank for rank, (_, name) in enumerate(row)} for first, row in order.items()
    }
    ranks = []
    for rank in range(len(workers) if order else 0):
        values = sorted(row[rank][0] for row in order.values())
        ranks.append(
            {
                "rank": rank,
                "p50_ms": 1e3 * _at(values, 0.5),
                "p90_ms": 1e3 * _at(values, 0.9),
                "p99_ms": 1e3 * _at(values, 0.99),
            }
        )
    jobs: list[tuple[float, int]] = []  # (one-way time, the rank of the worker running it)
    for seq in wanted:
        by_rank = rank_of.get(message_of.get(seq, -1))
        if by_rank is None or seq not in started:
            continue
        worker, at = started[seq]
        jobs.append((at - put[seq], by_rank[worker]))
    jobs.sort()

    def shares(ranked_jobs: list[int]) -> list[float]:
        return [ranked_jobs.count(rank) / len(ranked_jobs) for rank in range(len(workers))]

    if not jobs:
        return {"messages": len(order), "ranks": ranks, "jobs": 0}
    p99 = _at(jobs, 0.99)[0]
    return {
        "messages": len(order),
        "ranks": ranks,
        "jobs": len(jobs),
        "share_by_rank": shares([rank for _, rank in jobs]),
        "tail_share_by_rank": shares([rank for time, rank in jobs if time >= p99]),
    }


def summary(legs: list[list[float]]) -> dict[str, Any]:
    """Medians, p99s and the means over the jobs above the one-way p99, in ms."""
    if not legs:
        return {"jobs": 0}
    totals = sorted(sum(job) for job in legs)
    p99 = _at(totals, 0.99)
    tail = [job for job in legs if sum(job) >= p99]
    rows = []
    for index, name in enumerate(LEGS):
        values = sorted(job[index] for job in legs)
        rows.append(
            {
                "leg": name,
                "p50_ms": 1e3 * _at(values, 0.5),
                "p99_ms": 1e3 * _at(values, 0.99),
                "tail_mean_ms": 1e3 * statistics.fmean(job[index] for job in tail),
            }
        )
    return {
        "jobs": len(legs),
        "one_way_p50_ms": 1e3 * _at(totals, 0.5),
        "one_way_p99_ms": 1e3 * p99,
        "legs": rows,
    }


def report(figures: dict[str, Any], console: Console) -> None:
    """Print :func:`summary`'s figures as a table."""
    if not figures.get("jobs"):
        console.print("no job was stamped in every process")
        return
    table = Table(
        title=(
            f"{figures['jobs']:,} paced jobs: one-way p50 {figures['one_way_p50_ms']:.2f} ms, "
            f"p99 {figures['one_way_p99_ms']:.2f} ms"
        )
    )
    table.add_column("leg")
    for column in ("p50 ms", "p99 ms", "mean over the p99 ms"):
        table.add_column(column, justify="right")
    for row in figures["legs"]:
        table.add_row(
            row["leg"], f"{row['p50_ms']:.3f}", f"{row['p99_ms']:.3f}", f"{row['tail_mean_ms']:.3f}"
        )
    console.print(table)
    readers = figures.get("readers")
    if not readers or not readers.get("jobs"):
        return
    table = Table(
        title=(
            f"{readers['messages']:,} JOB messages read by every worker: when each read it "
            "after the producer's write, and whose jobs the slowest were"
        )
    )
    table.add_column("reader")
    for column in ("p50 ms", "p90 ms", "p99 ms", "its jobs", "of the jobs over the p99"):
        table.add_column(column, justify="right")
    for row, share, tail in zip(
        readers["ranks"], readers["share_by_rank"], readers["tail_share_by_rank"], strict=True
    ):
        table.add_row(
            f"{row['rank'] + 1} of {len(readers['ranks'])}",
            f"{row['p50_ms']:.2f}",
            f"{row['p90_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            f"{share:.0%}",
            f"{tail:.0%}",
        )
    console.print(table)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_bench_options(parser)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    bench = bench_args(args)
    records, last = measure(bench), max(1, args.jobs // 2)
    figures = summary(legs_of(records, last))
    figures["readers"] = readers_of(records, last)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        report(figures, Console(width=max(Console().width, 120)))


if __name__ == "__main__":
    main()
