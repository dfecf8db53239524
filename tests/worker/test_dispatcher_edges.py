"""Edges of the Dispatcher's loop that ``test_dispatcher.py`` does not reach: reading a
job's start time and priority, a drain before the first view or after the end, a
queued job cancelled before its turn, and a lost daemon while a handler will not end.

Written from the dispatcher's surviving mutants (docs/mutation.md). The sessions run on
the embedded daemon, as in ``test_dispatcher.py``, whose probe and helpers they share.
"""

from __future__ import annotations

import anyio
import pytest
from structlog.testing import capture_logs
from test_dispatcher import (
    FAST,
    FEEDBACK,
    QUEUE,
    WAIT,
    Item,
    _work_members,
    make_app,
    probe_on,
    start,
)

from spreadq.client import connect
from spreadq.context import Context
from spreadq.daemon import Daemon
from spreadq.errors import CloseReason, ConnectionLost
from spreadq.observe import JobAssigned, JobTakenOver
from spreadq.queue import MESS_TYPE, JobSpec, Status, decode, encode, encode_batch
from spreadq.queue.envelope import Cancel, Hello, ResultAnswer, ResultQuery
from spreadq.queue.jobs import Job, JobRef, encode_headers
from spreadq.queue.protocol import NOT_BEFORE_HEADER, PRIORITY_HEADER
from spreadq.queue.seal import Seal
from spreadq.wire.events import DataMessage
from spreadq.worker.app import App
from spreadq.worker.dispatcher import Dispatcher, _when_and_priority
from spreadq.worker.periodic import PeriodicTick

ME = "#a#localhost"


def _job(block: bytes) -> Job:
    return Job(JobRef(bytes(16), 0), "k", None, "json", b"{}", block)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ((), (0.0, 0)),
        (((PRIORITY_HEADER, "3"),), (0.0, 3)),
        (((NOT_BEFORE_HEADER, "12.5"), (PRIORITY_HEADER, "-2")), (12.5, -2)),
        (((NOT_BEFORE_HEADER, "soon"), (PRIORITY_HEADER, "4")), (0.0, 4)),  # a bad time
    ],
)
def test_a_job_s_start_time_and_priority_come_from_its_headers(
    headers: tuple[tuple[str, str], ...], expected: tuple[float, int]
) -> None:
    assert _when_and_priority(_job(encode_headers(headers))) == expected


def test_a_bad_header_block_starts_now_at_priority_zero() -> None:
    bad = _job(b"\xff\xff")
    with pytest.raises(Exception, match="header"):
        bad.headers()
    assert _when_and_priority(bad) == (0.0, 0)


async def test_a_drain_before_the_first_view_stops_the_session_and_a_late_one_is_ignored(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon)

    @app.handler("echo")
    async def echo(item: Item) -> int:
        return item.n

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with (
            connect(spreadq_daemon.address, name="a") as conn,
            anyio.create_task_group() as tg,
        ):
            dispatcher = Dispatcher(conn, app.spec(), settings=FAST)
            dispatcher.handle.drain()  # before run: the first thing its loop reads
            handle = await tg.start(dispatcher.run)  # started as it returns
    assert handle is dispatcher.handle
    assert dispatcher.table.view is None  # it stopped before any view
    dispatcher.handle.drain()  # its inbox is closed now: nothing to do, no error
    (draining,) = [entry for entry in logs if entry["event"] == "worker_draining"]
    assert draining["backlog"] == 0
    lines = [entry for entry in logs if entry["event"].startswith("worker_")]
    assert [(e["event"], e["queue"], e["member"]) for e in lines] == [
        ("worker_draining", QUEUE, ME),
        ("worker_drained", QUEUE, ME),
    ]


async def test_a_queued_job_cancelled_before_its_turn_never_runs(spreadq_daemon: Daemon) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(concurrency=1))
    gate = anyio.Event()
    started = anyio.Event()
    ran: list[int] = []

    @app.handler("job")
    async def job(item: Item) -> int:
        ran.append(item.n)
        if item.n == 0:
            started.set()
            await gate.wait()
        return item.n

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            first, queued, last = await probe.put_items("job", [0, 1, 2])
            await started.wait()  # 1 and 2 wait for the one slot
            cancel = encode(Cancel(JobRef(probe.producer_id, queued)))
            await probe.conn.multicast([QUEUE, FEEDBACK], cancel)  # the CANCEL decides
            while not any(entry["event"] == "job_cancelled" for entry in logs):
                await anyio.wait_all_tasks_blocked()
            gate.set()
            await probe.results([first, last])  # in order: 1 would have run before 2
            app.stop()
    assert ran == [0, 2]
    assert queued not in probe.outcomes  # nobody reports a cancelled job's outcome


async def test_a_lost_daemon_waits_for_a_handler_at_most_the_drain_timeout(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(cancel_on_disconnect=False))
    started = anyio.Event()
    ended = anyio.Event()
    seen: list[bool] = []

    @app.handler("hang")
    async def hang(item: Item, ctx: Context) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            seen.append(ctx.cancelled)
            ended.set()

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await tg.start(lambda **kw: app.run(handle_signals=False, drain_timeout=0.2, **kw))
            await probe.put_items("hang", [0])
            await started.wait()
            spreadq_daemon.faults.kill(ME)
            await ended.wait()  # cancelled once the drain timeout passed
            await probe.until(lambda: ME in probe.members())  # and it came back
            app.stop()
    assert seen == [True]


async def test_an_outcome_reached_after_the_daemon_was_lost_is_announced_on_return(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(cancel_on_disconnect=False))
    started = anyio.Event()
    gate = anyio.Event()

    @app.handler("task")
    async def task(item: Item) -> int:
        started.set()
        await gate.wait()
        return item.n

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            (seq,) = await probe.put_items("task", [7])
            await started.wait()
            spreadq_daemon.faults.kill(ME)
            while not any(
                entry["event"] == "connection_lost" and entry["private_group"] == ME
                for entry in logs
            ):
                await anyio.wait_all_tasks_blocked()
            await anyio.wait_all_tasks_blocked()  # the dispatcher has seen the loss
            gate.set()  # ends while the lost session winds down
            (outcome,) = (await probe.results([seq])).values()  # the next session says so
            app.stop()
    assert outcome.result == b"7"
    assert probe.reporter[seq] == ME


@pytest.mark.parametrize("headers", [(), (("trace", "t1"),)], ids=["plain", "with-headers"])
async def test_jobs_taken_over_are_published_as_such_and_run_first(
    spreadq_daemon: Daemon, headers: tuple[tuple[str, str], ...]
) -> None:
    events: list[object] = []
    app = make_app(spreadq_daemon, settings=FAST.replace(concurrency=1), observers=[events.append])
    gate = anyio.Event()
    started = anyio.Event()
    order: list[int] = []
    views: dict[int, tuple[str, ...]] = {}

    @app.handler("job")
    async def job(item: Item, ctx: Context) -> int:
        order.append(item.n)
        views[item.n] = ctx.view.members  # the view the job was assigned in
        if item.n == 0:
            started.set()
            await gate.wait()
        return item.n

    payloads = [Item(n=n).model_dump_json().encode() for n in range(6)]
    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            async with connect(spreadq_daemon.address, name="z") as other:
                await other.join(QUEUE)
                while "#z#localhost" not in await _work_members(other):
                    pass
                seqs = await probe.put("job", payloads, headers=headers)  # a: 0 2 4, z: 1 3 5
                await started.wait()
                await other.leave(QUEUE)  # z never ran its jobs: a takes them over
                alone = ("view", (ME,))
                await probe.until(lambda: probe.history.count(alone) == 2)  # a's 2nd view
            gate.set()
            await probe.results(seqs)
            app.stop()
    assert order == [0, 1, 3, 5, 2, 4]
    assert views[0] == views[2] == (ME, "#z#localhost")
    assert views[1] == (ME,)  # taken over in the view without z
    assigned = [e for e in events if isinstance(e, JobAssigned)]
    assert [(e.queue, e.ref.seq, e.kind, e.member) for e in assigned] == [
        (QUEUE, seq, "job", ME) for seq in (0, 2, 4)
    ]  # the jobs taken over are not "assigned"
    taken = [e for e in events if isinstance(e, JobTakenOver)]
    assert [(e.queue, e.ref.seq, e.kind, e.member, e.previous) for e in taken] == [
        (QUEUE, seq, "job", ME, "#z#localhost") for seq in (1, 3, 5)
    ]
    assert 0.0 <= taken[0].latency < 1.0  # 1 started as the view came: no wait
    views_logged = [entry for entry in logs if entry["event"] == "view_installed"]
    assert [
        (e["cause"], e["members"], e["reassigned"], e["taken_over"], e["orphaned"], e["given_up"])
        for e in views_logged[-2:]
    ] == [("join", (ME, "#z#localhost"), 0, 0, 0, 0), ("leave", (ME,), 3, 3, 0, 0)]
    assert all(isinstance(e["group_id"], tuple) for e in views_logged)


async def test_a_copy_sent_again_to_another_member_lets_our_started_run_finish(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(concurrency=2))
    gate = anyio.Event()
    started = anyio.Event()
    runs: list[tuple[int, bool]] = []

    @app.handler("job")
    async def job(item: Item, ctx: Context) -> int:
        if item.n == 0:
            started.set()
            try:
                await gate.wait()
            finally:
                runs.append((item.n, ctx.cancelled))
        return item.n

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            async with connect(spreadq_daemon.address, name="z") as other:
                await other.join(QUEUE)  # slots alternate a, z
                while "#z#localhost" not in await _work_members(other):
                    pass
                (seq,) = await probe.put_items("job", [0])  # slot 0: a's
                await started.wait()  # and the table knows it started
                again = JobSpec(seq, "job", Item(n=0).model_dump_json().encode())
                batch = encode_batch(probe.producer_id, probe.mseq, "json", [again])
                await probe.conn.multicast(QUEUE, batch)  # the copy's slot 1 is z's
                probe.mseq += 1
                (after,) = await probe.put_items("job", [2])  # slot 2: a's
                await probe.results([after])  # delivered after the copy: the copy was seen
                gate.set()
                (outcome,) = (await probe.results([seq])).values()
            app.stop()
    assert outcome.result == b"0"
    assert probe.reporter[seq] == ME  # our run completed it
    assert runs == [(0, False)]  # never cancelled


async def test_jobs_taken_over_past_max_failovers_fail_as_worker_lost(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(max_failovers=0))
    ran: list[int] = []

    @app.handler("job")
    async def job(item: Item) -> int:
        ran.append(item.n)
        return item.n

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            async with connect(spreadq_daemon.address, name="z") as other:
                await other.join(QUEUE)
                while "#z#localhost" not in await _work_members(other):
                    pass
                mine, theirs = await probe.put_items("job", [0, 1])  # a: 0, z: 1
                await probe.results([mine])
                await other.leave(QUEUE)  # z never ran 1: a takes it over, once too often
            (outcome,) = (await probe.results([theirs])).values()
            app.stop()
    assert ran == [0]
    assert (outcome.status, outcome.error_type) == (Status.FAILED, "spreadq.errors.WorkerLost")
    assert probe.reporter[theirs] == ME


async def test_a_worker_announces_its_capacity(spreadq_daemon: Daemon) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(concurrency=3))

    @app.handler("job")
    async def job(item: Item) -> int:
        return item.n

    with anyio.fail_after(WAIT):
        async with connect(spreadq_daemon.address, name="h") as watcher:
            await watcher.join(FEEDBACK)
            async with anyio.create_task_group() as tg:
                await start(tg, app)
                hello = None
                while hello is None:
                    event = await watcher.receive()
                    if isinstance(event, DataMessage) and event.sender == ME:
                        assert event.mess_type == MESS_TYPE
                        envelope = decode(event.data)
                        hello = envelope if isinstance(envelope, Hello) else None
                app.stop()
    assert hello is not None
    assert hello.capacity == 3


async def test_without_a_dedupe_memory_a_repeated_key_runs_again(spreadq_daemon: Daemon) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(dedupe_keys=0))
    ran: list[int] = []

    @app.handler("job")
    async def job(item: Item) -> int:
        ran.append(item.n)
        return item.n

    specs = [
        JobSpec(n, "job", Item(n=n).model_dump_json().encode(), dedupe_key="once") for n in range(2)
    ]
    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            for spec in specs:  # one batch each, the second after the first's outcome
                await probe.conn.multicast(
                    QUEUE, encode_batch(probe.producer_id, spec.seq, "json", [spec])
                )
                await probe.results([spec.seq])
            app.stop()
    assert ran == [0, 1]


async def test_a_cancel_is_logged_and_one_from_another_sender_is_refused(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon)
    started = anyio.Event()

    @app.handler("hang")
    async def hang(item: Item) -> None:
        started.set()
        await anyio.sleep_forever()

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            (seq,) = await probe.put_items("hang", [0])
            await started.wait()
            ref = JobRef(probe.producer_id, seq)
            async with connect(spreadq_daemon.address, name="x") as stranger:
                await stranger.multicast([QUEUE, FEEDBACK], encode(Cancel(ref)))
            await probe.conn.multicast([QUEUE, FEEDBACK], encode(Cancel(ref)))
            while not any(entry["event"] == "job_cancelled" for entry in logs):
                await anyio.wait_all_tasks_blocked()
            app.stop()
    (refused,) = [entry for entry in logs if entry["event"] == "cancel_refused"]
    assert (refused["job"], refused["sender"]) == (str(ref), "#x#localhost")
    assert refused["log_level"] == "warning"
    assert refused["reason"]
    assert [entry["event"] for entry in logs].count("worker_leaving") == 1  # at the stop
    (taken,) = [entry for entry in logs if entry["event"] == "job_cancelled"]
    assert (taken["job"], taken["by"]) == (str(ref), probe.conn.private_group)
    assert (taken["queue"], taken["member"], taken["view"]) == (QUEUE, ME, 1)  # its first view


async def test_unsealed_messages_are_refused_and_each_sender_is_logged_once(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(secret="s3cret"))
    ran: list[int] = []
    sealed_ran = anyio.Event()

    @app.handler("job")
    async def job(item: Item) -> int:
        ran.append(item.n)
        if item.n == 2:
            sealed_ran.set()
        return item.n

    batches = [
        encode_batch(
            bytes(16), n, "json", [JobSpec(n, "job", Item(n=n).model_dump_json().encode())]
        )
        for n in range(3)
    ]
    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with (
            connect(spreadq_daemon.address, name="p") as plain,
            anyio.create_task_group() as tg,
        ):
            await plain.join(FEEDBACK)
            await start(tg, app)
            hello = None
            while not isinstance(hello, Hello):  # the worker's HELLO, sealed by it
                event = await plain.receive()
                if isinstance(event, DataMessage) and event.sender == ME:
                    hello = decode(Seal(b"s3cret").unseal(event.data, ME))
            await plain.multicast(QUEUE, batches[0])  # not sealed: dropped
            await plain.multicast(QUEUE, batches[1])  # dropped, not logged again
            await plain.multicast(QUEUE, Seal(b"s3cret").seal(batches[2], "#p#localhost"))
            await sealed_ran.wait()  # after the two before it
            app.stop()
    assert ran == [2]
    refused = [entry for entry in logs if entry["event"] == "message_refused"]
    assert [(e["sender"], e["log_level"]) for e in refused] == [("#p#localhost", "warning")]
    assert "not sealed" in refused[0]["reason"] or "seal" in refused[0]["reason"]


async def test_a_result_query_is_answered_to_the_asker(spreadq_daemon: Daemon) -> None:
    app = make_app(spreadq_daemon)
    views: list[tuple[str, ...]] = []

    @app.handler("job")
    async def job(item: Item, ctx: Context) -> int:
        views.append(ctx.view.members)  # the view it was assigned in
        return item.n

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            (seq,) = await probe.put_items("job", [4])
            await probe.results([seq])
            ref = JobRef(probe.producer_id, seq)
            async with connect(spreadq_daemon.address, name="q") as asker:
                await asker.multicast(QUEUE, encode(ResultQuery(9, ref)))
                answer = None
                while answer is None:
                    event = await asker.receive()
                    if isinstance(event, DataMessage):
                        envelope = decode(event.data)
                        answer = envelope if isinstance(envelope, ResultAnswer) else None
            app.stop()
    assert views == [(ME,)]
    assert answer is not None
    assert (answer.query_id, answer.ref, answer.members) == (9, ref, 1)
    assert answer.outcome is not None
    assert answer.outcome.result == b"4"


async def test_a_lone_worker_announces_and_runs_its_periodic_ticks(
    spreadq_daemon: Daemon,
) -> None:
    # no STATS report to wake the loop: only the ticker's own wait does
    app = make_app(spreadq_daemon, settings=FAST.replace(stats_interval=3600.0))
    ticks: list[int] = []
    two = anyio.Event()

    @app.periodic(0.02, name="beat")
    async def beat(tick: PeriodicTick) -> None:
        ticks.append(tick.tick)
        if len(ticks) == 2:
            two.set()

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            await start(tg, app)
            await two.wait()
            app.stop()
    assert ticks[1] > ticks[0]
    announced = [entry for entry in logs if entry["event"] == "tick_announced"]
    assert [(e["schedule"], e["tick"]) for e in announced[:2]] == [("beat", t) for t in ticks[:2]]


class _Unreachable:
    """A connection whose daemon is gone before the first join."""

    private_group = ME

    async def join(self, group: str) -> None:
        raise ConnectionLost(CloseReason.RESET)

    async def leave(self, group: str) -> None:
        raise AssertionError("never joined")

    async def multicast(self, groups: object, data: bytes, *args: object, **kw: object) -> None:
        raise AssertionError("never joined")

    def deliver_to(self, sink: object, end: object) -> None:
        pass  # nothing is ever read

    def pace_reads(self, pace: object) -> None:
        pass  # nor paced


async def test_a_connection_lost_at_the_join_ends_the_session_with_it() -> None:
    app = App(QUEUE, plugins=False)

    @app.handler("job")
    async def job(item: Item) -> int:
        return item.n

    dispatcher = Dispatcher(_Unreachable(), app.spec(), settings=FAST)
    with capture_logs() as logs, anyio.fail_after(WAIT), pytest.raises(ConnectionLost) as lost:
        await dispatcher.run()
    assert lost.value.reason is CloseReason.RESET
    (line,) = [entry for entry in logs if entry["event"] == "worker_connection_lost"]
    assert (line["reason"], line["log_level"]) == ("RESET", "warning")


async def test_an_outcome_not_yet_acked_when_the_daemon_is_lost_is_announced_on_return(
    spreadq_daemon: Daemon,
) -> None:
    quiet = FAST.replace(ack_every=10_000, ack_interval=60.0, ack_max_rate=None)
    app = make_app(spreadq_daemon, settings=quiet)  # no ACK for a minute
    done = anyio.Event()

    @app.handler("task")
    async def task(item: Item) -> int:
        done.set()
        return item.n

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            (seq,) = await probe.put_items("task", [5])
            await done.wait()
            await anyio.wait_all_tasks_blocked()  # the outcome reached the table, unsent
            assert seq not in probe.outcomes
            spreadq_daemon.faults.kill(ME)
            (outcome,) = (await probe.results([seq])).values()  # the next session says so
            await anyio.wait_all_tasks_blocked()
            reported = ("outcome", (ME, seq))
            assert probe.history.count(reported) == 1  # once, between its joins
            async with connect(spreadq_daemon.address, name="z") as other:
                await other.join(QUEUE)  # a newcomer: said again, for it
                await probe.until(lambda: probe.history.count(reported) == 2)
            app.stop()
    assert outcome.result == b"5"
    assert probe.reporter[seq] == ME
    recovered = [entry for entry in logs if entry["event"] == "outcomes_recovered"]
    assert [(e["outcomes"], e["member"]) for e in recovered] == [(1, ME)] * 2


async def test_a_copy_sent_again_after_a_reconnect_is_answered_from_the_worker_s_history(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon)
    ran: list[int] = []

    @app.handler("job")
    async def job(item: Item) -> int:
        ran.append(item.n)
        return item.n

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            (seq,) = await probe.put_items("job", [3])
            await probe.results([seq])
            spreadq_daemon.faults.kill(ME)
            while sum(entry["event"] == "worker_joined" for entry in logs) < 2:
                await anyio.wait_all_tasks_blocked()
            again = JobSpec(seq, "job", Item(n=3).model_dump_json().encode())
            await probe.conn.multicast(
                QUEUE, encode_batch(probe.producer_id, probe.mseq, "json", [again])
            )
            probe.mseq += 1
            reported = ("outcome", (ME, seq))
            await probe.until(lambda: probe.history.count(reported) == 2)  # answered again
            app.stop()
    assert ran == [3]  # once: the new session remembered its outcome
    assert probe.outcomes[seq].result == b"3"


async def test_a_dispatcher_starts_its_caller_with_its_handle_at_the_first_view(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon)

    @app.handler("job")
    async def job(item: Item) -> int:
        return item.n

    with anyio.fail_after(WAIT):
        async with connect(spreadq_daemon.address, name="a") as conn:
            dispatcher = Dispatcher(conn, app.spec(), settings=FAST)
            async with anyio.create_task_group() as tg:
                handle = await tg.start(dispatcher.run)
                assert dispatcher.table.view is not None  # in its first view
                assert handle is dispatcher.handle
                handle.drain()
    assert dispatcher.table.view is None  # it left


async def test_a_drain_past_its_timeout_cancels_the_handlers_and_says_so(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon)
    started = anyio.Event()
    seen: list[bool] = []

    @app.handler("hang")
    async def hang(item: Item, ctx: Context) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            seen.append(ctx.cancelled)

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await tg.start(lambda **kw: app.run(handle_signals=False, drain_timeout=0.2, **kw))
            await probe.put_items("hang", [0])
            await started.wait()
            app.stop()
    assert seen == [True]
    (timeout,) = [entry for entry in logs if entry["event"] == "drain_timeout"]
    assert (timeout["running"], timeout["queued"], timeout["log_level"]) == (1, 0, "warning")


async def test_a_job_taken_over_names_the_member_that_left_not_the_last_to_join(
    spreadq_daemon: Daemon,
) -> None:
    taken = anyio.Event()
    events: list[JobTakenOver] = []

    def observe(event: object) -> None:
        if isinstance(event, JobTakenOver):
            events.append(event)
            taken.set()

    app = make_app(spreadq_daemon, observers=[observe])

    @app.handler("job")
    async def job(item: Item) -> int:
        return item.n

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            async with connect(spreadq_daemon.address, name="y") as leaver:
                await leaver.join(QUEUE)
                while "#y#localhost" not in await _work_members(leaver):
                    pass
                async with connect(spreadq_daemon.address, name="z") as other:
                    await other.join(QUEUE)  # the latest to join, and it stays
                    while "#z#localhost" not in await _work_members(other):
                        pass
                    await probe.put_items("job", range(9))  # three slots each
                    await leaver.leave(QUEUE)  # y ran nothing: a takes some over
                    await taken.wait()
                    assert {event.previous for event in events} == {"#y#localhost"}
            app.stop()
