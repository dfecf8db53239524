"""Producers end to end: receipts, held jobs, fragments, gated puts, a slow consumer.

Each scenario runs against the embedded daemon and, when ``SPREADQ_SPREAD_DAEMON``
names a Spread binary, against a real daemon as well (the ``spread_address`` fixture of
this directory's conftest: ``real`` is marked ``interop`` and skipped with a reason
otherwise). Workers are ``spreadq.App`` instances
running ``App.run()`` in the test's event loop, except the slow consumer on a real
daemon, which is a worker process stopped and continued with SIGSTOP/SIGCONT.

Every wait is bounded. The slow consumer's pauses are pacing (how slow it is), never
synchronisation: every assertion holds whatever the timing.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio import wait_all_tasks_blocked
from pydantic import BaseModel

from spreadq.client import Connection, connect
from spreadq.daemon import Faults, serve
from spreadq.errors import ConfigurationError, ConnectionLost, JobFailed
from spreadq.producer import Producer, Receipt
from spreadq.queue.envelope import MESS_TYPE, Ack, JobBatch, decode, encode
from spreadq.queue.view import View
from spreadq.settings import Settings
from spreadq.wire.constants import Cause
from spreadq.wire.events import DataMessage, RegularMembership
from spreadq.worker.app import App

WAIT = 20.0
FAST = Settings(
    max_attempts=2,
    retry_backoff_base=0.01,
    retry_backoff_max=0.02,
    reconnect_backoff_initial=0.05,
    reconnect_backoff_max=0.2,
    batch_max_delay=0.001,
)


@dataclass
class Target:
    """A daemon under test: where it is, and its faults when it is the embedded one."""

    kind: str
    address: str
    faults: Faults | None = None


@asynccontextmanager
async def running_daemon(
    spread_address: str | None, *, max_session_messages: int = 1000
) -> AsyncIterator[Target]:
    """The daemon of this case: an embedded one started here, or the real one given."""
    if spread_address is None:
        async with serve(max_session_messages=max_session_messages) as daemon:
            yield Target("embedded", daemon.address, daemon.faults)
    else:
        yield Target("real", spread_address)


class Numbers(BaseModel):
    a: int
    b: int


def make_app(queue: str, address: str, settings: Settings = FAST, **options: Any) -> App:
    app = App(queue, address, plugins=False, settings=settings, **options)

    @app.handler("add")
    async def add(job: Numbers) -> int:
        return job.a + job.b

    @app.handler("divide")
    async def divide(job: Numbers) -> float:
        return job.a / job.b

    @app.handler("digest")
    async def digest(data: bytes) -> str:
        return f"{len(data)}:{hashlib.sha256(data).hexdigest()}"

    return app


async def start_worker(tg: anyio.abc.TaskGroup, app: App) -> None:
    await tg.start(partial(app.run, handle_signals=False))


async def resolve_all(receipts: list[Receipt[Any]]) -> list[Any]:
    return [await receipt for receipt in receipts]


# -- receipts -------------------------------------------------------------------------------


async def test_receipts_resolve_with_results_and_with_failures(spread_address: str | None) -> None:
    async with running_daemon(spread_address) as target:
        app = make_app("rcpt", target.address)
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                await start_worker(tg, app)
                async with Producer("rcpt", target.address, settings=FAST) as producer:
                    added = await producer.put("add", {"a": 2, "b": 40})
                    failed = await producer.put("divide", {"a": 1, "b": 0})
                    digest = await producer.put("digest", b"spread")
                    assert await added == 42
                    with pytest.raises(JobFailed) as info:
                        await failed
                    assert info.value.error_type.endswith("ZeroDivisionError")
                    assert "division by zero" in info.value.error_message
                    assert info.value.attempts == 2  # FAST.max_attempts
                    assert await digest == f"6:{hashlib.sha256(b'spread').hexdigest()}"
                    await producer.settled()  # the receipts may have come from NOTICEs
                    stats = producer.statistics()
                    assert (stats.succeeded, stats.failed, stats.pending) == (2, 1, 0)
                tg.cancel_scope.cancel()


async def test_jobs_are_held_while_no_consumer_is_present(spread_address: str | None) -> None:
    async with running_daemon(spread_address) as target:
        with anyio.fail_after(WAIT):
            async with Producer("held", target.address, settings=FAST) as producer:
                receipts = [await producer.put("add", {"a": i, "b": i}) for i in range(50)]
                await wait_all_tasks_blocked()
                stats = producer.statistics()
                assert stats.messages == 0  # nothing multicast into an empty group
                assert stats.pending == 50
                assert not any(receipt.done for receipt in receipts)
                async with anyio.create_task_group() as tg:
                    await start_worker(tg, make_app("held", target.address))
                    assert await resolve_all(receipts) == [2 * i for i in range(50)]
                    tg.cancel_scope.cancel()


@dataclass
class ViewWatch:
    """An observer in FEEDBACK that records every VIEW announced and every outcome seen."""

    views: list[View] = field(default_factory=list)
    outcomes: dict[bytes, set[int]] = field(default_factory=dict)
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def run(self, address: str, group: str, *, task_status: Any) -> None:
        async with connect(address) as conn:
            await conn.join(group)
            task_status.started()
            async for event in conn:
                if not isinstance(event, DataMessage):
                    continue
                message = decode(event.data)
                if isinstance(message, View):
                    self.views.append(message)
                elif isinstance(message, Ack):
                    for ref, _ in message.outcomes:
                        self.outcomes.setdefault(ref.producer_id, set()).add(ref.seq)
                self.changed.set()
                self.changed = anyio.Event()

    async def until(self, check: Callable[[], bool]) -> None:
        while not check():
            await self.changed.wait()


async def test_a_producer_that_joins_after_the_view_finds_the_consumers(
    spread_address: str | None,
) -> None:
    # The consumers announced their view before this producer joined FEEDBACK and stay
    # idle; the producer's JOIN makes the first consumer announce it again, so the
    # producer knows both before any put, and the WORK group sees no new view for it.
    async with running_daemon(spread_address) as target:
        watch = ViewWatch()
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                await tg.start(watch.run, target.address, "late~fb")
                await start_worker(tg, make_app("late", target.address))
                await start_worker(tg, make_app("late", target.address))
                await watch.until(lambda: any(len(v.members) == 2 for v in watch.views))
                before = watch.views[-1]
                async with Producer("late", target.address, settings=FAST) as producer:
                    assert len(await producer.wait_for_consumers(2)) == 2  # before any put
                    receipts = [await producer.put("add", {"a": i, "b": 1}) for i in range(20)]
                    assert await resolve_all(receipts) == [i + 1 for i in range(20)]
                    assert producer.statistics().resent == 0
                    mine = producer.producer_id
                # every VIEW a consumer sent before its last ACK has been read by now
                await watch.until(lambda: len(watch.outcomes.get(mine, ())) == 20)
                tg.cancel_scope.cancel()
    again = watch.views[watch.views.index(before) + 1 :]
    assert again  # announced again for the producer that joined late ...
    assert set(again) == {before}  # ... and for nothing else: same view, same ordinal


async def test_a_payload_larger_than_a_message_is_split_and_reassembled(
    spread_address: str | None,
) -> None:
    big = os.urandom(350_000)  # three fragments at the 140,000-byte cap
    async with running_daemon(spread_address) as target:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                await start_worker(tg, make_app("frag", target.address))
                await start_worker(tg, make_app("frag", target.address))
                async with Producer("frag", target.address, settings=FAST) as producer:
                    small = await producer.put("digest", b"before")
                    large = await producer.put("digest", big)
                    after = await producer.put("add", {"a": 1, "b": 2})
                    assert await large == f"{len(big)}:{hashlib.sha256(big).hexdigest()}"
                    assert await small == f"6:{hashlib.sha256(b'before').hexdigest()}"
                    assert await after == 3
                    assert producer.statistics().messages >= 4  # 3 fragments + a batch
                tg.cancel_scope.cancel()


async def fire_and_forget_jobs(address: str) -> None:
    async with Producer("faf", address, member=False, settings=FAST) as producer:
        receipt = await producer.put("add", {"a": 1, "b": 1})
        with pytest.raises(ConfigurationError):
            await receipt
        with pytest.raises(ConfigurationError):
            await producer.wait_for_consumers()
        assert await producer.flow_state() is None


async def test_a_fire_and_forget_producer_sends_without_confirmations(
    spread_address: str | None,
) -> None:
    ran = anyio.Event()
    async with running_daemon(spread_address) as target:
        app = App("faf", target.address, plugins=False, settings=FAST)

        @app.handler("add")
        async def add(job: Numbers) -> int:
            ran.set()
            return job.a + job.b

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                await start_worker(tg, app)
                await fire_and_forget_jobs(target.address)
                await ran.wait()
                tg.cancel_scope.cancel()


async def test_closing_fails_pending_receipts_and_refuses_puts(spread_address: str | None) -> None:
    async with running_daemon(spread_address) as target:
        with anyio.fail_after(WAIT):
            async with Producer("closing", target.address, close_timeout=0.0) as producer:
                receipt = await producer.put("add", {"a": 1, "b": 1})
            with pytest.raises(ConnectionLost):
                await receipt
            with pytest.raises(ConnectionLost):
                await producer.put("add", {"a": 1, "b": 1})


# -- a gated put, cancelled ---------------------------------------------------------------


async def fake_consumer(conn: Connection, work: str, feedback: str) -> None:
    """Join WORK and FEEDBACK and announce a one-member VIEW, as a consumer that never
    ACKs (a producer takes a VIEW only from a FEEDBACK member)."""
    await conn.join(work)
    await conn.join(feedback)
    while True:
        event = await conn.receive()
        if isinstance(event, RegularMembership) and event.group == work:
            break
    gid = event.group_id
    view = View((conn.private_group,), (gid.proc_id, gid.time, gid.index), 1)
    await conn.multicast(feedback, encode(view), mess_type=MESS_TYPE)


async def next_batch(conn: Connection) -> JobBatch:
    while True:
        event = await conn.receive()
        if isinstance(event, DataMessage):
            message = decode(event.data)
            if isinstance(message, JobBatch):
                return message


async def test_cancelling_a_gated_put_sends_nothing_and_takes_no_slot(
    spread_address: str | None,
) -> None:
    settings = Settings(window=3, batch_max_jobs=1, batch_max_delay=0.0)
    async with running_daemon(spread_address) as target:
        with anyio.fail_after(WAIT):
            async with (
                connect(target.address) as fake,
                Producer("gate", target.address, settings=settings) as producer,
            ):
                await fake_consumer(fake, "gate", producer.feedback_group)
                assert await producer.wait_for_consumers() == (fake.private_group,)
                for i in range(4):  # three within the window, one waiting to be sent
                    await producer.put("add", {"a": i, "b": 0})
                batches = [await next_batch(fake) for _ in range(3)]
                assert [b.jobs[0].ref.seq for b in batches] == [0, 1, 2]

                cancelled = anyio.CancelScope()

                async def gated_put() -> None:
                    with cancelled:
                        await producer.put("add", {"a": 99, "b": 0})
                        pytest.fail("the put was admitted with the window shut")

                async with anyio.create_task_group() as tg:
                    tg.start_soon(gated_put)
                    await wait_all_tasks_blocked()
                    state = await producer.flow_state()
                    assert state is not None
                    assert (state.waiting_puts, state.waiting_send) == (1, True)
                    cancelled.cancel()
                state = await producer.flow_state()
                assert state is not None
                assert (state.waiting_puts, state.admitted, state.last_mseq) == (0, 1, 3)
                stats = producer.statistics()
                assert (stats.put, stats.pending, stats.messages) == (4, 4, 3)

                # the consumer reads on: the waiting job goes, then the next put, whose
                # seq shows that the cancelled put took none
                ack = Ack(bytes(16), positions=((producer.producer_id, 3),))
                await fake.multicast(producer.feedback_group, encode(ack), mess_type=MESS_TYPE)
                fourth = await next_batch(fake)
                assert (fourth.mseq, fourth.jobs[0].ref.seq) == (4, 3)
                await producer.put("add", {"a": 5, "b": 0})
                fifth = await next_batch(fake)
                assert (fifth.mseq, fifth.jobs[0].ref.seq) == (5, 4)


# -- a slow consumer, three producers flooding ----------------------------------------------


@dataclass
class FeedbackWatch:
    """An observer in FEEDBACK that records every member that was disconnected."""

    disconnected: list[str] = field(default_factory=list)
    members: tuple[str, ...] = ()
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def run(self, address: str, group: str, *, task_status: Any) -> None:
        async with connect(address) as conn:
            await conn.join(group)
            task_status.started()
            async for event in conn:
                if isinstance(event, RegularMembership) and event.group == group:
                    self.members = event.members
                    self.changed.set()
                    self.changed = anyio.Event()
                    if event.cause is Cause.DISCONNECT:
                        self.disconnected.extend(filter(None, [event.changed_member]))

    async def wait_for(self, member: str) -> None:
        while member not in self.members:
            await self.changed.wait()


SLOW_WORKER = textwrap.dedent(
    """
    import sys, anyio
    from spreadq.worker.app import App
    from spreadq.settings import Settings

    settings = Settings.model_validate_json(sys.argv[2])
    app = App("flood", sys.argv[1], plugins=False, settings=settings, name="slow")

    @app.handler("work")
    async def work(n: int) -> int:
        return n

    anyio.run(app.run)
    """
)


@asynccontextmanager
async def slow_consumer(
    target: Target, tg: anyio.abc.TaskGroup, settings: Settings
) -> AsyncIterator[tuple[Callable[[], None], Callable[[], None], Callable[[], int]]]:
    """A consumer named ``slow`` and how to pause it, resume it, and see its queue.

    On the embedded daemon the daemon stops writing to it (``faults.pause``); on a real
    daemon it is a worker process stopped with SIGSTOP (its socket fills, then the
    daemon's queue for it grows).
    """
    if target.faults is not None:
        faults = target.faults
        app = App("flood", target.address, plugins=False, settings=settings, name="slow")

        @app.handler("work")
        async def work(n: int) -> int:
            return n

        await start_worker(tg, app)
        member = "#slow#localhost"
        yield (
            partial(faults.pause, member),
            partial(faults.resume, member),
            partial(faults.queued, member),
        )
        return
    process = await anyio.open_process(
        [sys.executable, "-c", SLOW_WORKER, target.address, settings.model_dump_json()],
        stdout=None,
        stderr=None,
    )
    try:
        yield (
            partial(process.send_signal, signal.SIGSTOP),
            partial(process.send_signal, signal.SIGCONT),
            lambda: -1,
        )
    finally:
        process.send_signal(signal.SIGCONT)
        process.terminate()
        with anyio.fail_after(10):
            await process.wait()


@pytest.mark.slow
async def test_a_slow_consumer_is_never_dropped_by_three_flooding_producers(
    spread_address: str | None,
) -> None:
    # embedded: the session limit scaled down with the window (1000/600 -> 200/120)
    embedded = spread_address is None
    limit = 200 if embedded else 1000
    settings = FAST.model_copy(
        update={
            "window": 120 if embedded else 600,
            "ack_every": 20 if embedded else 200,
            "ack_interval": 0.02,
            "max_in_flight": 1000,
            "batch_max_jobs": 4,
        }
    )
    jobs_each = 2000
    async with running_daemon(spread_address, max_session_messages=limit) as target:
        watch = FeedbackWatch()
        peaks: list[int] = []
        done: dict[int, set[int]] = {}
        pending_seen: list[int] = []

        async def flood(index: int) -> None:
            async with Producer("flood", target.address, settings=settings) as producer:
                receipts = []
                for n in range(jobs_each):
                    receipts.append(await producer.put("work", n))
                    if n % 50 == 0:
                        pending_seen.append(producer.statistics().pending)
                done[index] = set(await resolve_all(receipts))
                state = await producer.flow_state()
                assert state is not None
                stats = producer.statistics()
                # every message multicast was cleared by the gate first, and nothing waits
                assert 0 < stats.messages <= state.last_mseq
                assert (state.waiting_puts, state.waiting_send) == (0, False)
                pending_seen.append(stats.pending)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                await tg.start(watch.run, target.address, "flood~fb")
                fast = make_app("flood", target.address, settings, name="fast")

                @fast.handler("work")
                async def work(n: int) -> int:
                    return n

                await start_worker(tg, fast)
                async with slow_consumer(target, tg, settings) as (pause, resume, queued):
                    await watch.wait_for("#slow#localhost")
                    producers_done = anyio.Event()

                    async def be_slow() -> None:
                        while not producers_done.is_set():
                            pause()
                            await anyio.sleep(0.15)  # pacing: how slow it is
                            peaks.append(queued())
                            resume()
                            await anyio.sleep(0.05)

                    async with anyio.create_task_group() as slowness:
                        slowness.start_soon(be_slow)
                        async with anyio.create_task_group() as producers:
                            for index in range(3):
                                producers.start_soon(flood, index)
                        producers_done.set()
                    dropped = list(watch.disconnected)  # before the consumers stop
                tg.cancel_scope.cancel()

    consumers = {"#slow#localhost", "#fast#localhost"}
    assert consumers.isdisjoint(dropped)
    assert done == {index: set(range(jobs_each)) for index in range(3)}
    assert max(pending_seen) <= settings.max_in_flight
    if embedded:
        assert max(peaks) < limit
        assert max(peaks) > settings.window // 3  # the slowness did push on the window
