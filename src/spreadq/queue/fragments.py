"""Reassembly of jobs split into FRAGMENT messages.

A producer sends the fragments of one job back to back; Spread keeps one sender's
messages in order under AGREED, so a consumer that was a member from the first
fragment to the last sees them all, in order. The job takes its slot when its last
fragment is delivered; every replica counts that slot whether or not it can rebuild
the payload, so counting never depends on what a replica missed.

A replica cannot rebuild the job when it joined after the first fragment (or was on
the other side of a partition while some were sent): the result is then *not held*,
and that replica neither owns nor runs it. When the reassembly buffer passes its byte
cap the oldest partial job loses its chunks; it is still *held* (the other replicas
count this one as a holder) and its owner reports it as failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from spreadq.queue.envelope import JobFragment
from spreadq.queue.jobs import Job

__all__ = ["Reassembled", "Reassembler"]

T = TypeVar("T")


@dataclass(slots=True)
class _Partial(Generic[T]):
    token: T | None
    count: int
    next_index: int = 0
    size: int = 0
    broken: bool = False
    evicted: bool = False
    chunks: list[bytes | memoryview] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Reassembled(Generic[T]):
    """A job whose last fragment was just delivered.

    ``token`` is what the caller passed with the job's first fragment (the table's
    record of the view it began in), ``None`` when this replica missed the start.
    ``held`` says whether this replica has the whole payload (or lost it to eviction,
    in which case ``job.error`` says so).
    """

    job: Job
    token: T | None
    held: bool


class Reassembler(Generic[T]):
    """Partial jobs keyed by ``(producer_id, seq)``, bounded in bytes and in number.

    Args:
        max_bytes: chunk bytes kept at most; past it the oldest partial is evicted.
        max_partials: partial jobs kept at most; past it the oldest is forgotten.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024, max_partials: int = 10_000) -> None:
        self.max_bytes = max_bytes
        self.max_partials = max_partials
        self._partials: dict[tuple[bytes, int], _Partial[T]] = {}
        self._size = 0

    def __len__(self) -> int:
        return len(self._partials)

    def tokens(self) -> list[T]:
        """The tokens of the partial jobs still waiting for fragments."""
        return [p.token for p in self._partials.values() if p.token is not None]

    def clear(self) -> None:
        """Forget every partial job."""
        self._partials.clear()
        self._size = 0

    def add(self, fragment: JobFragment, token: T) -> Reassembled[T] | None:
        """Take one fragment; return the job when this was its last fragment.

        ``token`` is kept if this fragment starts a job.
        """
        job = fragment.job
        key = (fragment.producer_id, job.ref.seq)
        partial = self._partials.get(key)
        if partial is None:
            partial = _Partial(token if fragment.index == 0 else None, fragment.count)
            partial.broken = fragment.index != 0
            self._partials[key] = partial
        elif fragment.index != partial.next_index or fragment.count != partial.count:
            partial.broken = True
        partial.next_index = fragment.index + 1
        if not (partial.broken or partial.evicted):
            partial.chunks.append(job.payload)
            partial.size += len(job.payload)
            self._size += len(job.payload)
        if fragment.index == fragment.count - 1:
            del self._partials[key]
            self._size -= partial.size
            return self._finish(job, partial)
        self._bound()
        return None

    def _finish(self, last: Job, partial: _Partial[T]) -> Reassembled[T]:
        held = not partial.broken
        if partial.evicted and held:
            error = "fragments were evicted from the reassembly buffer"
            return Reassembled(_with_payload(last, b"", error), partial.token, True)
        payload = b"".join(partial.chunks) if held else b""
        return Reassembled(_with_payload(last, payload, None), partial.token, held)

    def _bound(self) -> None:
        while len(self._partials) > self.max_partials:
            oldest = next(iter(self._partials))
            self._size -= self._partials.pop(oldest).size
        for partial in self._partials.values():
            if self._size <= self.max_bytes:
                break
            if not partial.evicted:
                self._size -= partial.size
                partial.chunks.clear()
                partial.size = 0
                partial.evicted = True


def _with_payload(job: Job, payload: bytes, error: str | None) -> Job:
    return Job(
        job.ref, job.kind, job.key, job.codec, payload, job.header_block, error, job.dedupe_key
    )
