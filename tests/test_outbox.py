"""Outbox: the jobs a producer holds, from put() to their outcome (pure, no daemon)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from spreadq.codecs import default_codecs
from spreadq.errors import CloseReason, ConnectionLost, JobFailed
from spreadq.outbox import UNSENT, HeldJob, Outbox
from spreadq.queue.envelope import MAX_ENVELOPE_SIZE, JobSpec
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.receipt import Receipt
from spreadq.routes import Routes

PID = bytes(range(16))
ROUTES = Routes(default_codecs(), "json")


def held(seq: int, payload: bytes = b"{}", raw: bool = False) -> HeldJob:
    route = ROUTES.for_kind("k", raw)
    receipt: Receipt[Any] = Receipt("k", seq, decode=route.decode)
    return HeldJob(JobSpec(seq, "k", payload), route.codec.name, route, receipt, 0.0)


def outbox(member: bool = True, batch: int = 3) -> Outbox:
    return Outbox(PID, ROUTES, member=member, batch_max_jobs=batch)


def test_batches_stop_at_the_limit_the_codec_and_the_size_cap() -> None:
    box = outbox(batch=3)
    wakes = [box.add(held(n)) for n in range(4)]
    assert wakes == [True, False, True, False]  # the first job, then a full batch
    box.add(held(4, raw=True))
    assert [job.spec.seq for job in box.take_batch()] == [0, 1, 2]
    assert [job.spec.seq for job in box.in_hand] == [0, 1, 2]
    assert [job.spec.seq for job in box.take_batch()] == [3]  # raw is another codec
    big = MAX_ENVELOPE_SIZE // 2
    box = outbox(batch=10)
    for n in range(3):
        box.add(held(n, b"x" * big))
    assert len(box.take_batch()) == 1


def test_settled_jobs_are_skipped_and_pending_ones_kept_until_their_outcome() -> None:
    box = outbox()
    jobs = [held(n) for n in range(3)]
    for job in jobs:
        box.add(job)
    jobs[0].settled = True
    assert box.head() is jobs[1]
    batch = box.take_batch()
    box.on_wire(batch, epoch=4)
    assert (box.unsent, box.held) == (0, 3)
    assert [job.epoch for job in jobs[1:]] == [4, 4]
    outcomes = [
        (JobRef(bytes(16), 1), Outcome.success(b"9")),  # another producer's
        (JobRef(PID, 1), Outcome.success(b"1")),
        (JobRef(PID, 2), Outcome.failure("E", "bad", 2)),
    ]
    jobs[1].counted = True
    assert box.on_outcomes(outcomes, now=1.0) == 1  # counted as in flight: job 1 only
    assert (box.succeeded, box.failed, box.held) == (1, 1, 1)
    assert jobs[1].receipt.done
    assert jobs[2].receipt.done


async def test_lost_and_interrupted_jobs_go_back_in_order_ahead_of_new_work() -> None:
    box = outbox(batch=10)
    jobs = [held(n) for n in range(5)]
    for job in jobs[:3]:
        box.add(job)
    box.on_wire(box.take_batch(), epoch=1)
    box.add(jobs[3])
    box.take_batch()  # job 3 in hand when the session ends
    box.add(jobs[4])
    assert box.live_epochs() == {1, UNSENT}
    assert [job.spec.seq for job in box.put_back()] == [3]
    assert [job.spec.seq for job in box.lost({1})] == [0, 1, 2]
    assert [job.spec.seq for job in box.queue] == [0, 1, 2, 3, 4]
    assert box.resent == 4
    error = ConnectionLost(CloseReason.CLOSED_LOCALLY, "closed")
    assert box.fail_all(error) == 5
    with anyio.fail_after(1), pytest.raises(ConnectionLost):
        await jobs[0].receipt
    assert (box.unsent, box.held) == (0, 0)


async def test_a_fire_and_forget_outbox_forgets_what_it_wrote() -> None:
    box = outbox(member=False)
    job = held(0)
    box.add(job)
    assert box.held == 1
    box.on_wire(box.take_batch(), epoch=0)
    assert job.settled
    assert box.held == 0
    failed = held(1)
    box.add(failed)
    box.settle(box.take_one(), JobFailed("E", "m", 1), 0.0)
    with anyio.fail_after(1), pytest.raises(JobFailed):
        await failed.receipt
