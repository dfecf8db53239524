"""The reassembly buffer's byte and count bounds, with exact accounting: a finished or
evicted job gives back what it held, and an evicted job keeps its identity and token.

Written from the survivors of ``scripts/mutate src/spreadq/queue/fragments.py``
(docs/mutation.md).
"""

from __future__ import annotations

from spreadq.queue.envelope import JobFragment
from spreadq.queue.fragments import Reassembled, Reassembler
from spreadq.queue.jobs import Job, JobRef

PID = bytes(range(16))
EVICTED = "fragments were evicted from the reassembly buffer"


def part(seq: int, index: int, count: int, size: int) -> JobFragment:
    job = Job(JobRef(PID, seq), "k", "key", "msgpack", bytes([seq]) * size, b"\x01h\x00\x01v")
    return JobFragment(PID, 100 + index, "msgpack", index, count, job)


def finish(buffer: Reassembler[str], fragment: JobFragment) -> Reassembled[str]:
    done = buffer.add(fragment, "t")
    assert done is not None
    return done


def test_the_defaults() -> None:
    buffer: Reassembler[str] = Reassembler()
    assert (buffer.max_bytes, buffer.max_partials) == (64 * 1024 * 1024, 10_000)


def test_a_finished_job_gives_its_bytes_back() -> None:
    buffer: Reassembler[str] = Reassembler(max_bytes=10)
    assert buffer.add(part(1, 0, 3, 3), "t1") is None
    assert buffer.add(part(1, 1, 3, 3), "t1") is None
    assert finish(buffer, part(1, 2, 3, 4)).job.payload == b"\x01" * 10
    # all ten bytes are free again: a job of exactly ten is not evicted
    assert buffer.add(part(2, 0, 2, 10), "t2") is None
    done = finish(buffer, part(2, 1, 2, 0))
    assert (done.job.payload, done.job.error, done.token, done.held) == (
        b"\x02" * 10,
        None,
        "t2",
        True,
    )
    assert len(buffer) == 0


def test_an_evicted_job_keeps_its_identity_and_token() -> None:
    buffer: Reassembler[str] = Reassembler(max_bytes=10)
    buffer.add(part(1, 0, 2, 8), "first")
    buffer.add(part(2, 0, 2, 5), "second")  # 13 bytes: the oldest (1) is evicted
    buffer.add(part(3, 0, 2, 3), "third")  # 8 bytes held: nothing more is evicted
    kept = finish(buffer, part(2, 1, 2, 1))
    assert (kept.job.payload, kept.job.error) == (b"\x02" * 6, None)
    evicted = buffer.add(part(1, 1, 2, 1), "ignored")
    assert evicted is not None
    job = evicted.job
    assert (evicted.token, evicted.held, job.error, job.payload) == ("first", True, EVICTED, b"")
    assert (job.ref, job.kind, job.key, job.codec, job.header_block) == (
        JobRef(PID, 1),
        "k",
        "key",
        "msgpack",
        b"\x01h\x00\x01v",
    )
    assert finish(buffer, part(3, 1, 2, 0)).job.payload == b"\x03" * 3


def test_a_forgotten_partial_gives_its_bytes_back() -> None:
    buffer: Reassembler[str] = Reassembler(max_bytes=8, max_partials=1)
    buffer.add(part(1, 0, 2, 5), "a")
    buffer.add(part(2, 0, 3, 2), "b")  # two partials: the oldest is forgotten
    assert (len(buffer), buffer.tokens()) == (1, ["b"])
    buffer.add(part(2, 1, 3, 5), "b")  # 7 bytes: within the bound
    done = finish(buffer, part(2, 2, 3, 0))
    assert (done.job.payload, done.job.error) == (b"\x02" * 7, None)


def test_a_job_whose_start_was_missed_holds_no_bytes() -> None:
    buffer: Reassembler[str] = Reassembler(max_bytes=10)
    buffer.add(part(1, 0, 2, 6), "a")
    buffer.add(part(2, 1, 3, 6), "late")  # not kept: it cannot be rebuilt anyway
    assert finish(buffer, part(1, 1, 2, 0)).job.error is None


def test_an_evicted_job_gives_back_all_it_held() -> None:
    buffer: Reassembler[str] = Reassembler(max_bytes=10)
    buffer.add(part(1, 0, 2, 11), "a")  # over the bound at once: evicted
    assert finish(buffer, part(1, 1, 2, 0)).job.error == EVICTED
    buffer.add(part(2, 0, 2, 11), "b")  # the same again: evicted again, nothing left over
    assert finish(buffer, part(2, 1, 2, 0)).job.error == EVICTED


def test_a_job_whose_start_was_missed_has_no_payload() -> None:
    buffer: Reassembler[str] = Reassembler()
    buffer.add(part(1, 1, 3, 4), "late")
    done = finish(buffer, part(1, 2, 3, 4))
    assert (done.held, done.token, done.job.payload, done.job.error) == (False, None, b"", None)


def test_clear_frees_everything() -> None:
    buffer: Reassembler[str] = Reassembler(max_bytes=10)
    buffer.add(part(1, 0, 2, 9), "a")
    buffer.clear()
    assert len(buffer) == 0
    buffer.add(part(2, 0, 2, 10), "b")
    assert finish(buffer, part(2, 1, 2, 0)).job.error is None
