"""Feedback benchmark: what a producer's core pays for its jobs' NOTICEs and ACKs, in one process.

A :class:`~spreadq.producer.core.ProducerCore` (sans-IO: no daemon, no facade, no
receipts) holds ``--jobs`` jobs, all sent, and ``--workers`` consumers that a VIEW
lists. It is then fed what those consumers send under ``round_robin`` (job ``k`` runs on
consumer ``k mod workers``): first each consumer's outcome NOTICEs of ``--notice``
outcomes, then its ACKs of ``--ack`` outcomes, each outcome a distinct 8-byte result as
``spreadq bench``'s handler returns; ACKs carry such outcomes in runs. The envelopes are
decoded beforehand, as the producer's reader decodes them before its core sees them, and
the decoding is timed too: the baseline of the same run, what any reader of those
envelopes pays. ``--unnoticed`` sends no NOTICE, so every ACK settles jobs whose receipts
still wait (each with its record and a ``Settle``).

Reports the core's CPU a job for the NOTICEs and for the ACKs beside the decoding's,
each the best of ``--repeat`` runs.

    .venv/bin/python benchmarks/bench_feedback.py
    .venv/bin/python benchmarks/bench_feedback.py --unnoticed
"""

from __future__ import annotations

import argparse
import struct
import time
from collections.abc import Sequence
from typing import Any

from spreadq.producer.core import ProducerCore
from spreadq.producer.inputs import (
    AckReceived,
    Cleared,
    FeedbackMembership,
    Input,
    NoticeReceived,
    Put,
    Sent,
    SessionOpened,
    ViewReceived,
)
from spreadq.queue import JobRef, JobSpec, Outcome, decode, encode
from spreadq.queue.envelope import Ack, Notice
from spreadq.queue.view import View

__all__ = ["Figures", "envelopes", "main", "measure"]

PRODUCER_ID = bytes(range(16))
ME = "#producer#d"
STAMP = struct.Struct("<d")

Figures = tuple[float, float, float, float]
"""Seconds a job: the core's NOTICEs, their decoding, the core's ACKs, their decoding."""


def loaded_core(jobs: int, workers: Sequence[str]) -> ProducerCore:
    """A member producer's core with ``jobs`` jobs sent and ``workers`` listed.

    Raises:
        RuntimeError: the core held a batch back.
    """
    core = ProducerCore(PRODUCER_ID, max_in_flight=jobs + 1, window=jobs + 1)

    def feed(event: Input) -> None:
        core.apply(event, 0.0)

    feed(SessionOpened(ME))
    feed(FeedbackMembership((ME, *workers)))
    feed(ViewReceived(workers[0], View(tuple(workers), (1, 1, 1), 1)))
    for seq in range(jobs):
        feed(Put(JobSpec(seq, "noop", b"x" * 100), "raw", None))
    while (batch := core.next_batch(0.0)) is not None:
        if not core.clear_to_send(batch):
            raise RuntimeError(f"the core held a batch back: {core.blocked()}")
        feed(Cleared(batch))
        feed(Sent(batch.jobs, 1))
    return core


def envelopes(
    jobs: int, workers: Sequence[str], per: int, kind: type[Notice] | type[Ack]
) -> list[tuple[str, bytes]]:
    """Each consumer's envelopes of ``per`` outcomes of its jobs, with their sender."""
    out: list[tuple[str, bytes]] = []
    for worker, sender in enumerate(workers):
        seqs = range(worker, jobs, len(workers))
        for start in range(0, len(seqs), per):
            outcomes = tuple(
                (JobRef(PRODUCER_ID, seq), Outcome.success(STAMP.pack(float(seq))))
                for seq in seqs[start : start + per]
            )
            envelope = Notice(outcomes) if kind is Notice else Ack(bytes(16), outcomes)
            out.append((sender, encode(envelope)))
    return out


def decoded(raw: list[tuple[str, bytes]]) -> tuple[list[tuple[str, Any]], float]:
    """``raw`` decoded, with the CPU seconds the decoding took."""
    started = time.process_time()
    events = [(sender, decode(data)) for sender, data in raw]
    return events, time.process_time() - started


def measure(jobs: int, workers: int, notice: int, ack: int, noticed: bool) -> Figures:
    """One run: CPU seconds a job of the core and of the decoding, NOTICEs (none, and
    0, unless ``noticed``) then ACKs.

    Raises:
        RuntimeError: the core held a batch back, or left a job pending.
    """
    names = [f"#w{i}#d" for i in range(workers)]
    core = loaded_core(jobs, names)
    notices, notice_decoding = (
        decoded(envelopes(jobs, names, notice, Notice)) if noticed else ([], 0.0)
    )
    acks, ack_decoding = decoded(envelopes(jobs, names, ack, Ack))
    started = time.process_time()
    for sender, envelope in notices:
        core.apply(NoticeReceived(sender, envelope), 0.0)
    notice_seconds = time.process_time() - started
    started = time.process_time()
    for sender, envelope in acks:
        core.apply(AckReceived(sender, envelope), 0.0)
    ack_seconds = time.process_time() - started
    if core.held:
        raise RuntimeError(f"{core.held} jobs still pending after every ACK")
    return (
        notice_seconds / jobs,
        notice_decoding / jobs,
        ack_seconds / jobs,
        ack_decoding / jobs,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=64_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--notice", type=int, default=40, help="outcomes a NOTICE")
    parser.add_argument("--ack", type=int, default=160, help="outcomes an ACK")
    parser.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    parser.add_argument("--unnoticed", action="store_true", help="send no NOTICE")
    args = parser.parse_args()
    if min(args.jobs, args.workers, args.notice, args.ack, args.repeat) < 1:
        parser.error("every count must be at least 1")
    runs = [
        measure(args.jobs, args.workers, args.notice, args.ack, not args.unnoticed)
        for _ in range(args.repeat)
    ]
    best = [min(column) * 1e6 for column in zip(*runs, strict=True)]
    notice, notice_decoding, ack, ack_decoding = best
    notices = (
        "no NOTICEs"
        if args.unnoticed
        else f"NOTICEs {notice:.2f} us/job (decoding them {notice_decoding:.2f}, "
        f"x{notice / notice_decoding:.1f})"
    )
    print(
        f"{args.jobs:,} jobs, {args.workers} workers (best of {args.repeat}): {notices} | "
        f"ACKs {ack:.2f} us/job (decoding them {ack_decoding:.2f}, x{ack / ack_decoding:.1f})"
    )


if __name__ == "__main__":
    main()
