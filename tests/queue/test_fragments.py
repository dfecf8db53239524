"""Fragment reassembly: order, gaps, a missed head, and the buffer's bounds."""

from __future__ import annotations

from spreadq.queue.envelope import JobFragment, JobSpec, decode, encode_fragments
from spreadq.queue.fragments import Reassembler

PID = b"\x05" * 16


def fragments(seq: int, size: int, max_size: int = 120) -> list[JobFragment]:
    spec = JobSpec(seq, "big", bytes(n % 251 for n in range(size)), "key")
    parts = [decode(part) for part in encode_fragments(PID, 1, "json", spec, max_size=max_size)]
    assert all(isinstance(part, JobFragment) for part in parts)
    return parts  # type: ignore[return-value]


def test_in_order_fragments_rebuild_the_payload() -> None:
    buffer: Reassembler[str] = Reassembler()
    parts = fragments(1, 300)
    results = [buffer.add(part, "origin") for part in parts]
    assert results[:-1] == [None] * (len(parts) - 1)
    done = results[-1]
    assert done is not None
    assert (done.held, done.token, done.job.error) == (True, "origin", None)
    assert bytes(done.job.payload) == bytes(n % 251 for n in range(300))
    assert (done.job.kind, done.job.key) == ("big", "key")
    assert len(buffer) == 0


def test_a_missed_head_or_a_gap_is_not_held() -> None:
    buffer: Reassembler[str] = Reassembler()
    parts = fragments(1, 300)
    for part in parts[1:-1]:
        assert buffer.add(part, "late") is None
    done = buffer.add(parts[-1], "late")
    assert done is not None
    assert (done.held, done.token) == (False, None)

    gap = fragments(2, 400)
    assert len(gap) >= 4
    for part in gap[:1] + gap[2:-1]:
        buffer.add(part, "origin")
    done = buffer.add(gap[-1], "origin")
    assert done is not None
    assert (done.held, done.token) == (False, "origin")


def test_the_oldest_partial_is_evicted_past_the_byte_cap_and_then_fails() -> None:
    buffer: Reassembler[str] = Reassembler(max_bytes=150)
    first, second = fragments(1, 300), fragments(2, 300)
    buffer.add(first[0], "one")
    buffer.add(second[0], "two")
    buffer.add(second[1], "two")  # past the cap: "one" loses its chunks
    for part in first[1:-1]:
        buffer.add(part, "one")
    done = buffer.add(first[-1], "one")
    assert done is not None
    assert done.held
    assert done.job.error is not None
    assert "evicted" in done.job.error


def test_the_number_of_partials_is_bounded() -> None:
    buffer: Reassembler[str] = Reassembler(max_partials=2)
    jobs = [fragments(seq, 300) for seq in (1, 2, 3)]
    for parts in jobs:
        buffer.add(parts[0], f"job{parts[0].job.ref.seq}")
    assert len(buffer) == 2
    assert sorted(buffer.tokens()) == ["job2", "job3"]
    buffer.clear()
    assert len(buffer) == 0
