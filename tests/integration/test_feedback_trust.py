"""Forged feedback: plain Spread clients try to settle a producer's receipts.

Spread authenticates nobody, so a client can join the FEEDBACK group, learn a producer
id from a real ACK, and multicast ACKs or VIEWs of its own, or send NOTICEs to the
producer's private group. Without a secret the producer takes ACKs and NOTICEs only
from FEEDBACK members that the last VIEW it took lists, and VIEWs only from the
FEEDBACK member they list first (``docs/security.md``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
from structlog.testing import capture_logs

from spreadq.client import Connection, connect
from spreadq.daemon import Daemon
from spreadq.producer import Producer
from spreadq.queue import Ack, JobRef, Outcome, View, decode, encode
from spreadq.queue.envelope import MESS_TYPE, Notice
from spreadq.settings import Settings
from spreadq.wire.events import DataMessage, RegularMembership
from spreadq.worker.app import App

QUEUE = "trust"
FAST = Settings(ack_interval=0.005, batch_max_delay=0.0)
WORKER = "#w#localhost"


@dataclass
class Scene:
    """A worker whose ``square`` jobs wait for ``release``, a producer of its queue, and
    two plain clients: ``forger`` (it will join FEEDBACK) and ``outsider`` (it never
    does). ``logs`` is what the block logged."""

    producer: Producer
    forger: Connection
    outsider: Connection
    release: anyio.Event
    logs: list[MutableMapping[str, Any]]

    def dropped(self) -> list[tuple[str, str, str]]:
        """What the producer dropped: (sender, kind, reason) of each ``feedback_dropped``."""
        return [
            (entry["sender"], entry["kind"], entry["reason"])
            for entry in self.logs
            if entry["event"] == "feedback_dropped"
        ]


@asynccontextmanager
async def scene(daemon: Daemon) -> AsyncIterator[Scene]:
    release = anyio.Event()
    app = App(QUEUE, daemon.address, plugins=False, name="w", settings=FAST)

    @app.handler("square")
    async def square(n: int) -> int:
        await release.wait()
        return n * n

    with capture_logs() as logs, anyio.fail_after(10):
        async with (
            anyio.create_task_group() as tg,
            connect(daemon.address, name="forger") as forger,
            connect(daemon.address, name="outsider") as outsider,
        ):
            await tg.start(partial(app.run, handle_signals=False))
            async with Producer(QUEUE, daemon.address, settings=FAST) as producer:
                await producer.wait_for_consumers()
                yield Scene(producer, forger, outsider, release, logs)
            tg.cancel_scope.cancel()


async def test_forged_acks_and_views_settle_nothing(spreadq_daemon: Daemon) -> None:
    async with scene(spreadq_daemon) as it:
        producer, forger, outsider = it.producer, it.forger, it.outsider
        feedback = producer.feedback_group
        await forger.join(feedback)
        receipt = await producer.put("square", 7)

        # the forger reads a real ACK (read positions) and learns the producer id
        producer_id = b""
        while not producer_id:
            event = await forger.receive()
            if isinstance(event, DataMessage):
                message = decode(event.data)
                if isinstance(message, Ack) and message.positions:
                    producer_id = message.positions[0][0]
        assert producer_id == producer.producer_id
        forged = encode(Ack(bytes(16), ((JobRef(producer_id, 0), Outcome.success(b"666")),)))
        gid = (0, 0, 99)
        # a FEEDBACK member that no VIEW lists; a client that never joined
        await forger.multicast(feedback, forged, mess_type=MESS_TYPE)
        await outsider.multicast(feedback, forged, mess_type=MESS_TYPE)
        # VIEWs that would make the forger a consumer: one from outside FEEDBACK,
        # one that lists the real worker first
        ours = encode(View((outsider.private_group,), gid, 1))
        await outsider.multicast(feedback, ours, mess_type=MESS_TYPE)
        behind = encode(View((WORKER, forger.private_group), gid, 2))
        await forger.multicast(feedback, behind, mess_type=MESS_TYPE)
        # the forger leaves: the ACK held from it (no VIEW listed it) is dropped
        await forger.leave(feedback)

        # the outsider's ACK is held, not dropped (a returning worker announces
        # its recovered outcomes before it joins FEEDBACK): it settles nothing
        while len(it.dropped()) < 3 and not receipt.done:
            await anyio.wait_all_tasks_blocked()
        assert not receipt.done
        assert producer.consumers == (WORKER,)

        it.release.set()
        assert await receipt == 49  # the worker's own outcome

    assert sorted(it.dropped()) == sorted(
        [
            (outsider.private_group, "view", "not a member of the FEEDBACK group"),
            (forger.private_group, "view", "a VIEW must come from the first member it lists"),
            (forger.private_group, "ack", "left FEEDBACK"),
        ]
    )
    warnings = [entry for entry in it.logs if entry["event"] == "feedback_dropped"]
    assert all(entry["log_level"] == "warning" for entry in warnings)


async def test_an_ack_that_overtakes_the_view_listing_its_sender_is_held_then_taken(
    spreadq_daemon: Daemon,
) -> None:
    async with (
        connect(spreadq_daemon.address, name="a") as a,
        connect(spreadq_daemon.address, name="b") as b,
    ):
        feedback = f"{QUEUE}~fb"
        for consumer in (a, b):
            await consumer.join(QUEUE)
            await consumer.join(feedback)
        gid = (1, 1, 1)
        with capture_logs() as logs, anyio.fail_after(10):
            async with Producer(QUEUE, spreadq_daemon.address, settings=FAST) as producer:
                only_a = encode(View((a.private_group,), gid, 1))
                await a.multicast(feedback, only_a, mess_type=MESS_TYPE)
                assert await producer.wait_for_consumers() == (a.private_group,)
                receipt = await producer.put("square", 3)
                await producer.flush()
                # b reports the job before any VIEW lists b: held, not taken
                done = ((JobRef(producer.producer_id, 0), Outcome.success(b"9")),)
                await b.multicast(feedback, encode(Ack(bytes(16), done)), mess_type=MESS_TYPE)
                both = encode(View((a.private_group, b.private_group), (1, 1, 2), 2))
                await anyio.wait_all_tasks_blocked()
                assert not receipt.done
                await a.multicast(feedback, both, mess_type=MESS_TYPE)
                assert await receipt == 9
    assert [entry for entry in logs if entry["event"] == "feedback_dropped"] == []


async def test_forged_notices_resolve_nothing(spreadq_daemon: Daemon) -> None:
    async with scene(spreadq_daemon) as it:
        producer, forger, outsider = it.producer, it.forger, it.outsider
        await forger.join(producer.feedback_group)
        # the FEEDBACK membership names the producer's private group
        members: tuple[str, ...] = ()
        while len(members) < 3:
            event = await forger.receive()
            if isinstance(event, RegularMembership):
                members = event.members
        (target,) = set(members) - {WORKER, forger.private_group}
        receipt = await producer.put("square", 7)
        done = ((JobRef(producer.producer_id, 0), Outcome.success(b"666")),)
        forged = encode(Notice(done))
        # a FEEDBACK member no VIEW lists, then a client that never joined it
        await forger.multicast(target, forged, mess_type=MESS_TYPE)
        await outsider.multicast(target, forged, mess_type=MESS_TYPE)
        while not it.dropped() and not receipt.done:  # the outsider's is read last
            await anyio.wait_all_tasks_blocked()
        assert not receipt.done
        it.release.set()
        assert await receipt == 49  # the worker's own outcome

    assert it.dropped() == [
        (outsider.private_group, "notice", "not a member of the FEEDBACK group")
    ]
