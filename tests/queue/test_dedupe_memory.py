"""The dedupe memory alone: what the table asks of it, without a table."""

from __future__ import annotations

from spreadq.queue.dedupe import DedupeMemory
from spreadq.queue.jobs import JobRef

PID = bytes(16)


def ref(seq: int) -> JobRef:
    return JobRef(PID, seq)


def test_a_key_names_its_first_job_to_every_later_one() -> None:
    memory = DedupeMemory(2)
    assert memory.remember("k", ref(0)) is None
    assert memory.remember("k", ref(0)) is None  # the first job itself (re-sent)
    assert memory.remember("k", ref(1)) == ref(0)
    assert memory.keys() == {"k": ref(0)}


def test_the_oldest_key_goes_first_and_size_zero_remembers_none() -> None:
    memory = DedupeMemory(2)
    for seq, key in enumerate("abc"):
        memory.remember(key, ref(seq))
    assert list(memory.keys()) == ["b", "c"]
    assert memory.remember("a", ref(9)) is None  # forgotten: remembered anew
    none = DedupeMemory(0)
    none.remember("a", ref(0))
    assert none.remember("a", ref(1)) is None
    assert none.keys() == {}


def test_a_view_with_a_newcomer_cuts_the_memory_and_a_leave_does_not() -> None:
    memory = DedupeMemory(10)
    memory.remember("k", ref(0))
    assert not memory.cut(frozenset({"a"}), ("a",))  # everyone came with us
    assert memory.keys() == {"k": ref(0)}
    assert memory.cut(frozenset({"a"}), ("a", "b"))  # b did not
    assert memory.keys() == {}
    assert not memory.cut(frozenset({"a"}), ("a", "b"))  # nothing left to cut


def test_waiting_duplicates_are_listed_once_and_taken_all_at_once() -> None:
    memory = DedupeMemory(10)
    memory.wait(ref(0), ref(1))
    memory.wait(ref(0), ref(1))
    memory.wait(ref(0), ref(2))
    assert memory.waiting == {ref(0): [ref(1), ref(2)]}
    assert memory.take_waiting() == {ref(0): [ref(1), ref(2)]}
    assert memory.waiting == {}


def test_a_memory_of_one_key_keeps_the_latest() -> None:
    memory = DedupeMemory(1)
    assert memory.remember("a", ref(0)) is None
    assert memory.remember("a", ref(1)) == ref(0)
    assert memory.remember("b", ref(2)) is None  # "a" goes
    assert memory.keys() == {"b": ref(2)}
