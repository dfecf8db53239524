"""One Redis Streams consumer of ``compare_redis.py``, as lean as a consumer can be.

It imports only redis-py (hiredis when installed), so its CPU time and memory are a
consumer's and not the comparison script's. It prints ``ready`` once connected, then
until killed: ``XREADGROUP COUNT n``, a no-op per job noting the wall-clock time it
started, and one pipeline of ``XACK`` for the batch and ``XADD`` of a reply carrying
each job's number and start time.

    python benchmarks/redis_consumer.py PORT NAME COUNT
"""

from __future__ import annotations

import contextlib
import struct
import sys
import time
from typing import Final, cast

__all__ = ["GROUP", "JOBS", "REPLIES", "REPLY", "SEQ", "consume"]

JOBS: Final = b"spreadq-cmp-jobs"
REPLIES: Final = b"spreadq-cmp-replies"
GROUP: Final = "workers"
SEQ: Final = struct.Struct("<q")
"""A job's number, in its ``s`` field (the payload is its ``d`` field)."""
REPLY: Final = struct.Struct("<qd")
"""One job in a reply: its number and the wall-clock time the consumer started it."""

Entries = list[tuple[bytes, dict[bytes, bytes]]]
Streams = list[tuple[bytes, Entries]]
"""What XREAD and XREADGROUP return (RESP2, bytes)."""


def _noop(data: bytes) -> None:
    return None


def consume(port: int, name: str, count: int) -> None:
    """Serve the consumer group as ``name`` until killed."""
    import redis  # here, so that compare_redis.py can take the names above without it

    client = redis.Redis(port=port)
    client.ping()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        found = cast(
            "Streams | None", client.xreadgroup(GROUP, name, {JOBS: ">"}, count=count, block=1000)
        )
        for _stream, entries in found or ():
            ids: list[bytes] = []
            reply = bytearray()
            for entry_id, fields in entries:
                started = time.time()
                _noop(fields[b"d"])
                ids.append(entry_id)
                reply += REPLY.pack(SEQ.unpack(fields[b"s"])[0], started)
            pipe = client.pipeline(transaction=False)
            pipe.xack(JOBS, GROUP, *ids)
            pipe.xadd(REPLIES, {b"r": bytes(reply)})
            pipe.execute()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        consume(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
