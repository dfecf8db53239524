"""Workers and producers publish to their event bus, and workers report STATS to FEEDBACK.

Everything runs on the embedded daemon: jobs go the whole way (producer, WORK group,
table, runner, ACK), and the events a test's observer records are the ones a metrics
plugin would see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import pytest

from spreadq.client import connect
from spreadq.daemon import Daemon
from spreadq.errors import ConfigurationError, Retry
from spreadq.observe import (
    Event,
    JobAssigned,
    JobFailed,
    JobRetried,
    JobStarted,
    JobSucceeded,
    SessionLost,
    SessionRegained,
    ViewInstalled,
    WindowBlocked,
    WindowOpened,
)
from spreadq.producer import Producer
from spreadq.queue.envelope import Stats, StatsState, decode
from spreadq.queue.protocol import observer_name, queue_groups
from spreadq.settings import Settings
from spreadq.testing import run_app
from spreadq.wire import DataMessage
from spreadq.worker.app import App

QUEUE = "wired"
WORK, FEEDBACK = queue_groups(QUEUE)
WAIT = 20

E = TypeVar("E")


class Recorder:
    """An observer that keeps every event it takes."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event, /) -> None:
        self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]


def make_app(recorder: Recorder, **options: object) -> App:
    app = App(QUEUE, plugins=False, observers=[recorder], **options)  # type: ignore[arg-type]

    @app.handler("double")
    async def double(n: int) -> int:
        return 2 * n

    @app.handler("flaky", max_attempts=2)
    async def flaky(n: int) -> int:
        raise Retry(delay=0.0)

    return app


async def test_a_job_publishes_assigned_started_succeeded_and_counts(
    spreadq_daemon: Daemon,
) -> None:
    recorder = Recorder()
    app = make_app(recorder)
    async with run_app(app, daemon=spreadq_daemon) as producer:
        with anyio.fail_after(WAIT):
            receipts = [await producer.put("double", n) for n in range(3)]
            assert [await receipt for receipt in receipts] == [0, 2, 4]
    kinds = [type(event) for event in recorder.events if type(event) is not ViewInstalled]
    assert kinds.count(JobAssigned) == 3
    assigned = recorder.of(JobAssigned)
    assert {(e.queue, e.kind) for e in assigned} == {(QUEUE, "double")}
    assert kinds.count(JobStarted) == 3
    assert kinds.count(JobSucceeded) == 3
    succeeded = recorder.of(JobSucceeded)
    assert all(e.kind == "double" and e.attempt == 1 and e.duration >= 0 for e in succeeded)
    assert {e.queue for e in succeeded} == {QUEUE}
    (view, *_) = recorder.of(ViewInstalled)
    assert view.queue == QUEUE
    assert (view.member, view.view_id, view.cause) == (view.members[0], 1, "join")
    assert len(view.members) == 1
    assert app.counters.total("succeeded", "double") == 3
    assert app.counters.running == 0
    assert app.counters.view_id >= 1


async def test_retries_and_failures_are_published_and_counted(spreadq_daemon: Daemon) -> None:
    recorder = Recorder()
    app = make_app(recorder)
    async with run_app(app, daemon=spreadq_daemon) as producer:
        with anyio.fail_after(WAIT):
            receipt = await producer.put("flaky", 1)
            with pytest.raises(Exception, match="Retry"):
                await receipt
    (retried,) = recorder.of(JobRetried)
    (failed,) = recorder.of(JobFailed)
    assert (retried.attempt, retried.delay) == (1, 0.0)
    assert (failed.attempt, failed.error_type) == (2, "spreadq.errors.Retry")
    assert app.counters.total("retried") == 1
    assert app.counters.failed == 1
    assert app.counters.running == 0


async def test_a_worker_reports_stats_to_feedback_only(spreadq_daemon: Daemon) -> None:
    recorder = Recorder()
    app = make_app(recorder)
    settings = Settings(stats_interval=0.05)
    address = spreadq_daemon.address
    async with connect(address, name=observer_name("t1")) as watcher:
        await watcher.join(FEEDBACK)
        async with run_app(app, daemon=spreadq_daemon, settings=settings) as producer:
            with anyio.fail_after(WAIT):
                assert await (await producer.put("double", 21)) == 42
                reports: list[tuple[DataMessage, Stats]] = []
                while not any(stats.done == 1 for _, stats in reports):
                    for event in await watcher.receive_batch():
                        if isinstance(event, DataMessage):
                            message = decode(event.data)
                            if isinstance(message, Stats):
                                reports.append((event, message))
    event, stats = next((e, s) for e, s in reports if s.done == 1)
    assert event.groups == (FEEDBACK,)  # never on WORK, where every replica would read it
    assert stats.member == event.sender
    assert stats.state is StatsState.RUNNING
    assert stats.interval_ms == 50
    assert stats.ordinal >= 1


@pytest.mark.parametrize(
    "build",
    [
        lambda: App(QUEUE, plugins=False, name="~spy"),
        lambda: Producer(QUEUE, plugins=False, name="~spy"),
    ],
    ids=["app", "producer"],
)
def test_names_starting_with_tilde_are_reserved_for_watchers(build: Callable[[], object]) -> None:
    with pytest.raises(ConfigurationError, match="'~'"):
        build()


def test_an_async_observer_is_refused() -> None:
    async def observer(event: Event) -> None:
        pass

    with pytest.raises(ConfigurationError, match="synchronous"):
        App(QUEUE, plugins=False, observers=[observer])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="synchronous"):
        Producer(QUEUE, plugins=False, observers=[observer])  # type: ignore[list-item]


def observed_producer(daemon: Daemon, *, max_in_flight: int) -> tuple[Recorder, Producer]:
    """A producer of ``QUEUE`` on ``daemon`` holding at most ``max_in_flight`` jobs, and
    the recorder of its events."""
    recorder = Recorder()
    settings = Settings(max_in_flight=max_in_flight)
    producer = Producer(
        QUEUE, daemon.address, settings=settings, plugins=False, observers=[recorder]
    )
    return recorder, producer


async def test_a_blocked_put_publishes_window_blocked_then_opened(spreadq_daemon: Daemon) -> None:
    """With max_in_flight=1 the second put waits until the first job is confirmed."""
    recorder, producer = observed_producer(spreadq_daemon, max_in_flight=1)
    async with run_app(make_app(Recorder()), daemon=spreadq_daemon), producer:
        with anyio.fail_after(WAIT):
            first = await producer.put("double", 1)
            second = await producer.put("double", 2)
            assert (await first, await second) == (2, 4)
    (blocked,) = recorder.of(WindowBlocked)
    (opened,) = recorder.of(WindowOpened)
    assert blocked.reason == "in_flight"
    assert blocked.member.startswith("#")
    assert opened.blocked >= 0
    assert producer.counters.blocked_seconds == opened.blocked


async def test_a_group_short_of_room_is_blocked_by_in_flight(spreadq_daemon: Daemon) -> None:
    """One slot is free and two are asked for: the group waits for ``in_flight``."""
    recorder, producer = observed_producer(spreadq_daemon, max_in_flight=3)
    async with run_app(make_app(Recorder()), daemon=spreadq_daemon), producer:
        with anyio.fail_after(WAIT):
            first = await producer.put_many("double", [1, 2])
            second = await producer.put_many("double", [3, 4])
            results = [await receipt for receipt in first + second]
    assert results == [2, 4, 6, 8]
    (blocked,) = recorder.of(WindowBlocked)
    assert blocked.reason == "in_flight"
    assert len(recorder.of(WindowOpened)) == 1


class Waiter(Recorder):
    """A recorder that sets an event when it takes one of ``kind``."""

    def __init__(self, kind: type[Event]) -> None:
        super().__init__()
        self.kind = kind
        self.seen = anyio.Event()

    def __call__(self, event: Event, /) -> None:
        super().__call__(event)
        if isinstance(event, self.kind):
            self.seen.set()


async def test_lost_and_regained_sessions_are_published(spreadq_daemon: Daemon) -> None:
    """The daemon drops the worker's and the producer's sessions; both reconnect."""
    worker_events = Waiter(SessionRegained)
    producer_events = Waiter(SessionRegained)
    app = make_app(worker_events, name="sw1")
    settings = Settings(reconnect_backoff_initial=0.01, reconnect_backoff_max=0.05)
    producer = Producer(
        QUEUE,
        spreadq_daemon.address,
        name="sp1",
        settings=settings,
        plugins=False,
        observers=[producer_events],
    )
    async with run_app(app, daemon=spreadq_daemon, settings=settings), producer:
        with anyio.fail_after(WAIT):
            spreadq_daemon.faults.kill("#sw1#localhost")
            spreadq_daemon.faults.kill("#sp1#localhost")
            await worker_events.seen.wait()
            await producer_events.seen.wait()
            assert await (await producer.put("double", 4)) == 8  # both are back
    for events, role in ((worker_events, "worker"), (producer_events, "producer")):
        (lost,) = events.of(SessionLost)
        (regained,) = events.of(SessionRegained)
        assert (lost.role, regained.role) == (role, role)
        assert lost.reason in {"EOF", "RESET"}
        assert regained.down >= 0
    assert app.counters.sessions_lost == 1
    assert producer.counters.sessions_lost == 1


async def test_stats_carry_each_producers_outstanding_jobs_and_read_position(
    spreadq_daemon: Daemon,
) -> None:
    """While a job is held by its handler, the report names its producer, the jobs it
    has outstanding, and the last message of it our ACKs reported read."""
    release = anyio.Event()
    app = App(QUEUE, plugins=False)

    @app.handler("hold")
    async def hold(n: int) -> int:
        await release.wait()
        return n

    settings = Settings(stats_interval=0.05, ack_interval=0.01)
    async with (
        connect(spreadq_daemon.address, name=observer_name("t2")) as watcher,
        run_app(app, daemon=spreadq_daemon, settings=settings) as producer,
    ):
        await watcher.join(FEEDBACK)
        with anyio.fail_after(WAIT):
            receipt = await producer.put("hold", 7)
            found: tuple[bytes, int, int] | None = None
            while found is None:
                for event in await watcher.receive_batch():
                    message = decode(event.data) if isinstance(event, DataMessage) else None
                    if isinstance(message, Stats):
                        found = next(
                            (p for p in message.producers if p[0] == producer.producer_id and p[2]),
                            None,
                        )
            release.set()
            assert await receipt == 7
    assert found == (producer.producer_id, 1, 1)  # one job outstanding; message 1 read
