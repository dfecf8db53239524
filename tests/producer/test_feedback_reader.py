"""The member producer's reader takes each read's events from the connection's reader
(``deliver_to``): it feeds the core, ends with the session, and a fault while reading
ends the reader's task with that fault, never the connection's reader."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import anyio
import structlog

from spreadq.client import Connection
from spreadq.errors import CloseReason, ConnectionLost
from spreadq.producer.core import ProducerCore
from spreadq.producer.feedback import FeedbackReader
from spreadq.producer.inputs import FeedbackMembership, Input
from spreadq.producer.results import Asks
from spreadq.queue import MESS_TYPE, Ack, Outcome, View, encode
from spreadq.queue.jobs import JobRef
from spreadq.wire.constants import Cause, ServiceType
from spreadq.wire.events import DaemonMessage, DataMessage, GroupId, RegularMembership

FEEDBACK = "q~fb"
PID = bytes(range(16))


class PushingConnection:
    """What the reader needs of a connection: ``deliver_to``, called once."""

    def __init__(self) -> None:
        self.sink: Callable[[Sequence[DaemonMessage]], object] | None = None
        self.end: Callable[[ConnectionLost], object] | None = None

    def deliver_to(
        self,
        sink: Callable[[Sequence[DaemonMessage]], object],
        end: Callable[[ConnectionLost], object],
    ) -> None:
        assert self.sink is None, "deliver_to is called once"
        self.sink, self.end = sink, end


def membership(*members: str) -> RegularMembership:
    return RegularMembership(FEEDBACK, GroupId(1, 1, 1), members, Cause.JOIN)


def reader(apply: Callable[[Input], object]) -> FeedbackReader:
    return FeedbackReader(
        ProducerCore(PID),
        Asks(),
        apply,
        feedback_group=FEEDBACK,
        seal=None,
        log=structlog.get_logger().bind(),
    )


async def read(
    feedback: FeedbackReader, conn: PushingConnection, ended: list[BaseException]
) -> None:
    try:
        await feedback.run(cast(Connection, conn))
    except Exception as error:  # what the session's guard would see
        ended.append(error)


async def test_events_reach_the_core_and_the_session_end_ends_the_reader() -> None:
    applied: list[Input] = []
    conn = PushingConnection()
    lost = ConnectionLost(CloseReason.EOF)
    ended: list[BaseException] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read, reader(applied.append), conn, ended)
            await anyio.wait_all_tasks_blocked()
            assert conn.sink is not None
            assert conn.end is not None
            conn.sink((membership("#w1#d", "#me#d"),))
            assert applied == [FeedbackMembership(("#w1#d", "#me#d"))]  # in the reader's call
            assert not ended
            conn.end(lost)
    assert ended == [lost]


async def test_a_fault_while_reading_ends_the_reader_not_the_connection() -> None:
    calls: list[Input] = []

    def apply(event: Input) -> Any:
        calls.append(event)
        raise RuntimeError("a bug of ours")

    conn = PushingConnection()
    ended: list[BaseException] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read, reader(apply), conn, ended)
            await anyio.wait_all_tasks_blocked()
            assert conn.sink is not None
            conn.sink((membership("#w1#d"),))  # raises nothing into the connection's reader
            conn.sink((membership("#w2#d"),))  # and what follows is not read any more
    assert len(calls) == 1
    assert len(ended) == 1
    assert isinstance(ended[0], RuntimeError)
    assert str(ended[0]) == "a bug of ours"


def on_feedback(sender: str, envelope: Ack | View) -> DataMessage:
    return DataMessage(sender, (FEEDBACK,), ServiceType.AGREED, MESS_TYPE, encode(envelope))


async def test_an_ack_read_before_the_view_listing_its_sender_reaches_the_asks_with_it() -> None:
    """A new asker may read a consumer's ACK before the first VIEW listing that consumer:
    the ACK counts for ``result()`` once the VIEW comes (as for receipts), and an ACK
    from a member no VIEW lists never counts."""
    core = ProducerCore(PID)
    asks = Asks()
    feedback = FeedbackReader(
        core,
        asks,
        lambda event: core.apply(event, 0.0),
        feedback_group=FEEDBACK,
        seal=None,
        log=structlog.get_logger().bind(),
    )
    conn = PushingConnection()
    asked, other = JobRef(b"\x07" * 16, 4), JobRef(b"\x07" * 16, 5)
    ask, unlisted_ask = asks.open(asked), asks.open(other)
    ended: list[BaseException] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read, feedback, conn, ended)
            await anyio.wait_all_tasks_blocked()
            assert conn.sink is not None
            conn.sink((membership("#w1#d", "#w2#d", "#me#d"),))
            done = Outcome.success(b"40", codec="json")
            conn.sink(
                (
                    on_feedback("#w1#d", Ack(b"I" * 16, ((asked, done),))),
                    on_feedback("#w2#d", Ack(b"J" * 16, ((other, done),))),
                )
            )
            early = ask.outcome
            assert early is None  # no VIEW lists #w1#d yet
            conn.sink((on_feedback("#w1#d", View(("#w1#d",), (1, 1, 1), 1)),))
            assert list(core.consumers) == ["#w1#d"]
            assert ask.outcome == done
            assert unlisted_ask.outcome is None  # #w2#d is listed by no VIEW
            # #w2#d leaves FEEDBACK; a later client of that name, listed, is someone else
            conn.sink((membership("#w1#d", "#me#d"),))
            conn.sink((membership("#w1#d", "#w2#d", "#me#d"),))
            conn.sink((on_feedback("#w1#d", View(("#w1#d", "#w2#d"), (1, 1, 2), 2)),))
            assert core.consumers == ("#w1#d", "#w2#d")
            assert unlisted_ask.outcome is None
            assert not ended
            tasks.cancel_scope.cancel()
