"""What today's workers and producers do with a STATS envelope on FEEDBACK: nothing.

A producer decodes every FEEDBACK message; with the STATS kind known to the decoder it
takes neither an ACK nor a VIEW from it and says nothing (before, an unknown kind was a
``feedback_dropped`` warning per report). A worker never decodes a message sent to
FEEDBACK alone. Both go on working: the job put after the reports completes.
"""

from __future__ import annotations

import anyio
from structlog.testing import capture_logs

from spreadq import App
from spreadq.client import connect
from spreadq.daemon import Daemon
from spreadq.queue.envelope import MESS_TYPE, Stats, encode
from spreadq.queue.protocol import queue_groups
from spreadq.testing import run_app
from spreadq.wire import DataMessage, ServiceType

QUEUE = "readers"


async def test_workers_and_producers_ignore_stats(spreadq_daemon: Daemon) -> None:
    app = App(QUEUE, plugins=[])

    @app.handler("inc")
    async def inc(n: int) -> int:
        return n + 1

    _, feedback = queue_groups(QUEUE)
    with capture_logs() as logs:
        async with run_app(app, daemon=spreadq_daemon) as producer:
            with anyio.fail_after(20):
                assert await (await producer.put(inc, 1)) == 2  # the producer is a member
                async with connect(spreadq_daemon.address, name="obs") as other:
                    await other.join(feedback)
                    stats = encode(Stats(b"i" * 16, other.private_group, done=5))
                    for _ in range(3):
                        await other.multicast(feedback, stats, ServiceType.AGREED, MESS_TYPE)
                    # once our own copies are back, the daemon has ordered them: the job
                    # put next, and the ACK that settles it, come after them everywhere
                    echoes = 0
                    async for event in other:
                        if isinstance(event, DataMessage) and event.sender == other.private_group:
                            echoes += 1
                            if echoes == 3:
                                break
                    assert await (await producer.put(inc, 41)) == 42
    levels = [(entry["log_level"], entry["event"]) for entry in logs]
    assert not [entry for entry in levels if entry[0] in ("warning", "error")], levels
