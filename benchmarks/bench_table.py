"""Table benchmark: the per-job cost of a job this replica does NOT own, in one process.

Every consumer receives every job, so most of what a worker reads belongs to others:
it must take the job's slot, remember its ref and completes it when the owner's ACK
arrives, and nothing more (``docs/design/replicated-table.md``). This measures exactly
that path through one :class:`~spreadq.queue.OutstandingTable` replica: a view of four
members in which we announced DRAIN (so every slot goes to one of the other three),
JOB BATCH messages of ``--batch`` jobs, and after each round of ``--ack-every`` jobs one
ACK from each owner completing its jobs, as the other workers would send them.

The baseline is the codec alone in the same run: :func:`spreadq.queue.decode` of the
same messages (batches and ACKs), nothing more. The table's overhead is the ratio of
the two rates. The ACKs report what a no-op handler's do: ``b"null"`` in JSON.

    .venv/bin/python benchmarks/bench_table.py
    .venv/bin/python benchmarks/bench_table.py --batch 256 --jobs 400000
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from spreadq.queue import (
    MESS_TYPE,
    Ack,
    ChangeCause,
    Drain,
    JobSpec,
    MessageDelivered,
    Outcome,
    OutstandingTable,
    ViewInstalled,
    decode,
    encode,
    encode_batch,
)
from spreadq.queue.jobs import JobRef
from spreadq.queue.rules import RoundRobin

__all__ = ["main"]

MEMBERS = ("#me#h", "#w1#h", "#w2#h", "#w3#h")
PAYLOAD = 100
OK = Outcome.success(b"null", codec="json")  # what a no-op handler's ACK carries


def messages(jobs: int, batch: int, ack_every: int) -> list[MessageDelivered]:
    """The WORK group's messages after the view: batches, and the owners' ACKs."""
    producer = os.urandom(16)
    payload = os.urandom(PAYLOAD)
    out: list[MessageDelivered] = []
    owners = MEMBERS[1:]  # we drain: round robin over the three others
    pending: dict[str, list[JobRef]] = {member: [] for member in owners}
    seq = mseq = slot = 0
    since_ack = 0
    while seq < jobs:
        count = min(batch, jobs - seq)
        specs = [JobSpec(seq + i, "noop", payload) for i in range(count)]
        data = encode_batch(producer, mseq, "raw", specs)
        out.append(MessageDelivered("#producer#h", MESS_TYPE, data))
        for spec in specs:
            pending[owners[slot % len(owners)]].append(JobRef(producer, spec.seq))
            slot += 1
        seq += count
        mseq += 1
        since_ack += count
        if since_ack >= ack_every or seq >= jobs:
            since_ack = 0
            for member, refs in pending.items():
                if refs:
                    ack = Ack(os.urandom(16), tuple((ref, OK) for ref in refs), ((producer, mseq),))
                    out.append(MessageDelivered(member, MESS_TYPE, encode(ack)))
                    refs.clear()
    return out


def fresh_table() -> OutstandingTable:
    table = OutstandingTable(MEMBERS[0], rule=RoundRobin(), incarnation=os.urandom(16))
    table.apply(ViewInstalled(MEMBERS, (1, 1, 1), ChangeCause.JOIN, MEMBERS[0]), 0.0)
    table.apply(MessageDelivered(MEMBERS[0], MESS_TYPE, encode(Drain(table.incarnation))), 0.0)
    return table


def run_table(stream: list[MessageDelivered]) -> float:
    table = fresh_table()
    apply = table.apply
    started = time.process_time()
    for event in stream:
        apply(event, 0.0)
    seconds = time.process_time() - started
    assert not table.outstanding(), "every job completed"
    return seconds


def run_decode(stream: list[MessageDelivered]) -> float:
    started = time.process_time()
    for event in stream:
        decode(event.data)
    return time.process_time() - started


def best(
    runner: Callable[[list[MessageDelivered]], float], stream: list[MessageDelivered], repeat: int
) -> float:
    return min(runner(stream) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=64, help="jobs per JOB BATCH message")
    parser.add_argument("--ack-every", type=int, default=200, help="jobs between ACK rounds")
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    args = parser.parse_args()
    stream = messages(args.jobs, args.batch, args.ack_every)
    decode_s = best(run_decode, stream, args.repeat)
    table_s = best(run_table, stream, args.repeat)
    jobs = args.jobs
    print(
        f"{jobs:,} jobs not owned, {args.batch} per message, ACK round every {args.ack_every}:"
        f" decode only {jobs / decode_s:>12,.0f} jobs/s ({decode_s / jobs * 1e6:.2f} us/job)"
        f" | table {jobs / table_s:>12,.0f} jobs/s ({table_s / jobs * 1e6:.2f} us/job)"
        f" | table/decode time x{table_s / decode_s:.2f}"
    )


if __name__ == "__main__":
    main()
