"""The Dispatcher through ``App.run()`` on the embedded daemon, in one process.

A :class:`Probe` is a FEEDBACK member that puts jobs on the WORK group (JOB BATCH
envelopes, as a producer does) and reads every ACK, DRAIN and membership on FEEDBACK,
so each test checks what a producer would see: outcomes, who reported them, and in
which order. Handlers coordinate with the tests through anyio events; every wait is
bounded.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs

from spreadq.client import Connection, connect
from spreadq.context import Context
from spreadq.daemon import Daemon
from spreadq.errors import ConnectionLost, Retry
from spreadq.queue import (
    Ack,
    Drain,
    Hello,
    JobSpec,
    Outcome,
    Status,
    View,
    decode,
    encode,
    encode_batch,
)
from spreadq.queue.jobs import JobRef
from spreadq.settings import Settings
from spreadq.wire.events import DataMessage, RegularMembership
from spreadq.worker.app import App

WAIT = 10.0
QUEUE = "jobs"
FEEDBACK = "jobs~fb"
FAST = Settings(ack_interval=0.005, retry_backoff_base=0.0, reconnect_backoff_initial=0.01)


class Item(BaseModel):
    n: int


@dataclass
class Probe:
    """Puts jobs and watches FEEDBACK: outcomes by seq, and a log of what happened."""

    conn: Connection
    producer_id: bytes = field(default_factory=lambda: os.urandom(16))
    seq: int = 0
    mseq: int = 0
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    reporter: dict[int, str] = field(default_factory=dict)
    others: list[tuple[str, JobRef, Outcome]] = field(default_factory=list)
    history: list[tuple[str, object]] = field(default_factory=list)
    announcers: list[str] = field(default_factory=list)
    hellos: list[tuple[str, int]] = field(default_factory=list)  # (sender, capacity)
    changed: anyio.Event = field(default_factory=anyio.Event)

    async def put(
        self,
        kind: str,
        payloads: Sequence[bytes],
        *,
        key: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> list[int]:
        """Put one batch of jobs; return their seqs."""
        specs = [
            JobSpec(self.seq + i, kind, payload, key, headers) for i, payload in enumerate(payloads)
        ]
        self.seq += len(specs)
        await self.conn.multicast(QUEUE, encode_batch(self.producer_id, self.mseq, "json", specs))
        self.mseq += 1
        return [spec.seq for spec in specs]

    async def put_items(
        self, kind: str, numbers: Sequence[int], key: str | None = None
    ) -> list[int]:
        return await self.put(
            kind, [Item(n=n).model_dump_json().encode() for n in numbers], key=key
        )

    async def read(self) -> None:
        async for event in self.conn:
            if isinstance(event, RegularMembership) and event.group == FEEDBACK:
                self.history.append(("members", event.members))
            elif isinstance(event, DataMessage):
                envelope = decode(event.data)
                if isinstance(envelope, Ack):
                    for ref, outcome in envelope.outcomes:
                        if ref.producer_id != self.producer_id:
                            self.others.append((event.sender, ref, outcome))
                            continue
                        self.outcomes[ref.seq] = outcome
                        self.reporter[ref.seq] = event.sender
                        self.history.append(("outcome", (event.sender, ref.seq)))
                elif isinstance(envelope, Drain):
                    self.history.append(("drain", event.sender))
                elif isinstance(envelope, Hello):
                    self.hellos.append((event.sender, envelope.capacity))
                elif isinstance(envelope, View):
                    self.history.append(("view", envelope.members))
                    self.announcers.append(event.sender)
            else:
                continue
            self.changed.set()
            self.changed = anyio.Event()

    async def until(self, check: Callable[[], bool]) -> None:
        """Wait (the caller bounds it) until ``check()`` holds."""
        while not check():
            await self.changed.wait()

    async def results(self, seqs: Sequence[int]) -> dict[int, Outcome]:
        await self.until(lambda: all(seq in self.outcomes for seq in seqs))
        return {seq: self.outcomes[seq] for seq in seqs}

    def views(self) -> list[tuple[str, ...]]:
        return [m for what, m in self.history if what == "view" and isinstance(m, tuple)]

    def capacities(self, member: str) -> list[int]:
        """The capacities ``member`` announced in HELLOs, in order."""
        return [capacity for sender, capacity in self.hellos if sender == member]

    def members(self) -> tuple[str, ...]:
        found = [members for what, members in self.history if what == "members"]
        return found[-1] if found else ()  # type: ignore[return-value]


@asynccontextmanager
async def probe_on(daemon: Daemon, address: str | None = None) -> AsyncIterator[Probe]:
    address = daemon.address if address is None else address
    async with connect(address, name="probe") as conn, anyio.create_task_group() as tg:
        probe = Probe(conn)
        await conn.join(FEEDBACK)
        tg.start_soon(probe.read)
        yield probe
        tg.cancel_scope.cancel()


def make_app(daemon: Daemon, name: str = "a", **kwargs: Any) -> App:
    kwargs.setdefault("settings", FAST)
    return App(QUEUE, daemon.address, plugins=False, name=name, **kwargs)


async def start(tg: anyio.abc.TaskGroup, app: App) -> None:
    await tg.start(partial(app.run, handle_signals=False))


def result(outcome: Outcome) -> Any:
    assert outcome.status is Status.OK, outcome
    return Item.model_validate_json(outcome.result) if outcome.result[:1] == b"{" else outcome


# -- outcomes ----------------------------------------------------------------------------


async def test_result_and_context_reach_the_ack(spreadq_daemon: Daemon) -> None:
    app = make_app(spreadq_daemon)
    seen: list[Context] = []

    @app.handler("double")
    async def double(item: Item, ctx: Context) -> dict[str, object]:
        seen.append(ctx)
        return {"n": item.n * 2, "member": ctx.member, "members": list(ctx.view.members)}

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            seqs = await probe.put_items("double", [1, 2, 3], key="k")
            outcomes = await probe.results(seqs)
            app.stop()
    assert [json.loads(outcomes[s].result)["n"] for s in seqs] == [2, 4, 6]
    assert {json.loads(o.result)["member"] for o in outcomes.values()} == {"#a#localhost"}
    assert all(json.loads(o.result)["members"] == ["#a#localhost"] for o in outcomes.values())
    assert [ctx.attempt for ctx in seen] == [1, 1, 1]
    assert [ctx.key for ctx in seen] == ["k", "k", "k"]
    assert [ctx.job for ctx in seen] == [JobRef(probe.producer_id, s) for s in seqs]
    assert all(o.attempts == 1 for o in outcomes.values())


async def test_a_result_names_its_codec_only_when_it_is_not_the_jobs(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon)

    @app.handler("pack")
    async def pack(item: Item) -> bytes:
        return bytes([item.n])

    @app.handler("same")
    async def same(item: Item) -> Item:
        return item

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            (packed,) = await probe.put_items("pack", [7])  # a json job
            (echoed,) = await probe.put_items("same", [8])
            outcomes = await probe.results([packed, echoed])
            app.stop()
    assert (outcomes[packed].codec, outcomes[packed].result) == ("raw", b"\x07")
    assert outcomes[echoed].codec == ""  # json, like the job: named nowhere
    assert result(outcomes[echoed]) == Item(n=8)


async def test_failures_are_retried_then_reported_with_the_hook(spreadq_daemon: Daemon) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(max_attempts=3))
    attempts: list[int] = []
    hooked: list[tuple[int, BaseException]] = []

    @app.handler("flaky")
    async def flaky(item: Item, ctx: Context) -> int:
        attempts.append(ctx.attempt)
        if item.n == 0:
            raise ValueError("zero is not allowed")
        if ctx.attempt < 2:
            raise OSError("try again")
        return item.n

    @app.on_failure
    async def hook(ctx: Context, error: BaseException) -> None:
        hooked.append((ctx.attempt, error))
        raise RuntimeError("a broken hook is logged, not fatal")

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            failing, succeeding = await probe.put_items("flaky", [0, 5])
            outcomes = await probe.results([failing, succeeding])
            app.stop()
    failed = outcomes[failing]
    assert failed.status is Status.FAILED
    assert (failed.error_type, failed.error_message, failed.attempts) == (
        "ValueError",
        "zero is not allowed",
        3,
    )
    assert outcomes[succeeding].ok
    assert outcomes[succeeding].attempts == 2
    assert outcomes[succeeding].result == b"5"
    assert sorted(attempts) == [1, 1, 2, 2, 3]
    assert [(attempt, type(error)) for attempt, error in hooked] == [(3, ValueError)]


async def test_a_handler_without_a_context_is_called_directly_and_its_failures_get_one(
    spreadq_daemon: Daemon,
) -> None:
    """No middleware and no context parameter: the runner calls the function itself and
    builds no context, unless the job fails or is retried; the hook then gets one with
    the job, kind and attempt of the attempt that failed."""
    app = make_app(spreadq_daemon, settings=FAST.replace(max_attempts=2))
    hooked: list[tuple[object, str, int, str]] = []

    @app.handler("bare")
    async def bare(item: Item) -> int:
        if item.n == 0:
            raise ValueError("zero")
        return item.n * 2

    @app.handler("with_ctx")
    async def with_ctx(item: Item, ctx: Context) -> int:
        return ctx.attempt

    @app.on_failure
    async def hook(ctx: Context, error: BaseException) -> None:
        hooked.append((ctx.job, ctx.kind, ctx.attempt, type(error).__name__))

    app.freeze()
    assert app.prepared["bare"].direct is bare.spec.fn
    assert app.prepared["with_ctx"].direct is None  # it takes the context
    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            failing, doubled = await probe.put_items("bare", [0, 4])
            outcomes = await probe.results([failing, doubled])
            app.stop()
    assert outcomes[doubled].result == b"8"
    assert (outcomes[failing].error_type, outcomes[failing].attempts) == ("ValueError", 2)
    assert [(getattr(job, "seq", None), kind, n, name) for job, kind, n, name in hooked] == [
        (failing, "bare", 2, "ValueError")
    ]


def test_middleware_or_a_thread_keeps_the_context_on_the_handler_path(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon)

    @app.handler("threaded")
    def threaded(item: Item) -> int:
        return item.n

    @app.handler("bare")
    async def bare(item: Item) -> int:
        return item.n

    app.freeze()
    assert app.prepared["threaded"].direct is None  # a plain def runs in a thread
    assert app.prepared["bare"].direct is bare.spec.fn
    with_middleware = make_app(spreadq_daemon)

    async def passing(ctx: Context, payload: object, call_next: Any) -> object:
        return await call_next(ctx, payload)

    with_middleware.middleware(passing)

    @with_middleware.handler("bare")
    async def bare_too(item: Item) -> int:
        return item.n

    with_middleware.freeze()
    assert with_middleware.prepared["bare"].direct is None


async def test_retry_forces_an_attempt_and_retry_on_limits_the_rest(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon)

    @app.handler("picky", retry_on=(KeyError,), max_attempts=4)
    async def picky(item: Item, ctx: Context) -> int:
        if item.n == 1 and ctx.attempt == 1:
            raise Retry(0.0)
        if item.n == 2:
            raise TypeError("not retried")
        return ctx.attempt

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            retried, not_retried = await probe.put_items("picky", [1, 2])
            outcomes = await probe.results([retried, not_retried])
            app.stop()
    assert outcomes[retried].ok
    assert outcomes[retried].result == b"2"
    assert outcomes[not_retried].error_type == "TypeError"
    assert outcomes[not_retried].attempts == 1


async def test_bad_payloads_unknown_kinds_timeouts_and_big_results_fail_one_job(
    spreadq_daemon: Daemon,
) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(result_max_bytes=64, max_attempts=2))

    @app.handler("echo")
    async def echo(item: Item) -> str:
        return "x" * item.n

    @app.handler("slow", timeout=0.01, max_attempts=1)
    async def slow(item: Item) -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            bad = await probe.put("echo", [b'{"n": "many"}', b"not json"])
            unknown = await probe.put_items("nobody", [1])
            timed_out = await probe.put_items("slow", [1])
            big, fine = await probe.put_items("echo", [100, 3])
            outcomes = await probe.results([*bad, *unknown, *timed_out, big, fine])
            app.stop()
    for seq in bad:
        assert outcomes[seq].error_type == "spreadq.errors.PayloadError"
        assert outcomes[seq].attempts == 1
    assert outcomes[unknown[0]].error_type == "spreadq.errors.ConfigurationError"
    assert "nobody" in outcomes[unknown[0]].error_message
    assert outcomes[timed_out[0]].error_type == "TimeoutError"
    assert outcomes[big].error_type == "spreadq.errors.PayloadError"
    assert "result_max_bytes" in outcomes[big].error_message
    assert outcomes[big].attempts == 1  # a result that cannot go is not retried
    assert outcomes[fine].ok
    assert outcomes[fine].result == b'"xxx"'


async def test_raw_jobs_from_plain_spread_senders(spreadq_daemon: Daemon) -> None:
    app = make_app(spreadq_daemon)

    @app.handler(raw=7)
    async def shout(data: bytes, ctx: Context) -> bytes:
        return data.upper() + ctx.kind.encode()

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            await probe.conn.multicast(QUEUE, b"hello", mess_type=7)
            # a RAW job's ref is derived by the table, not chosen by the sender
            await probe.until(lambda: bool(probe.others))
            app.stop()
    [(reporter, _, outcome)] = probe.others
    assert reporter == "#a#localhost"
    assert outcome.result == b"HELLOraw:7"


# -- scheduling ------------------------------------------------------------------------


async def test_concurrency_limit(spreadq_daemon: Daemon) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(concurrency=2))
    gate = anyio.Event()
    two_running = anyio.Event()
    running: list[int] = []
    peak = 0

    @app.handler("wait")
    async def wait(item: Item) -> int:
        nonlocal peak
        running.append(item.n)
        peak = max(peak, len(running))
        if len(running) == 2:
            two_running.set()
        await gate.wait()
        running.remove(item.n)
        return item.n

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            seqs = await probe.put_items("wait", range(6))
            await two_running.wait()
            await anyio.wait_all_tasks_blocked()  # a third would have started by now
            assert sorted(running) == [0, 1]  # delivery order, two at a time
            gate.set()
            outcomes = await probe.results(seqs)
            app.stop()
    assert all(outcome.ok for outcome in outcomes.values())
    assert peak == 2


async def test_runners_are_added_while_handlers_wait(spreadq_daemon: Daemon) -> None:
    # one runner takes jobs until one waits; then runners are added up to concurrency
    app = make_app(spreadq_daemon, settings=FAST.replace(concurrency=5))
    gate = anyio.Event()
    all_running = anyio.Event()
    running: set[int] = set()

    @app.handler("wait")
    async def wait(item: Item) -> int:
        running.add(item.n)
        if len(running) == 5:
            all_running.set()
        await gate.wait()
        return item.n

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            seqs = await probe.put_items("wait", range(8))
            await all_running.wait()
            await anyio.wait_all_tasks_blocked()
            assert running == {0, 1, 2, 3, 4}  # five at once, in delivery order
            gate.set()
            outcomes = await probe.results(seqs)
            app.stop()
    assert [outcomes[seq].result for seq in seqs] == [b"%d" % n for n in range(8)]


async def test_a_delayed_job_waits_without_taking_a_slot(spreadq_daemon: Daemon) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(concurrency=1))
    started_at: dict[int, float] = {}

    @app.handler("when")
    async def when(item: Item) -> int:
        started_at[item.n] = time.time()
        return item.n

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            not_before = time.time() + 0.3
            (later,) = await probe.put(
                "when", [b'{"n": 1}'], headers=(("not_before", f"{not_before:.6f}"),)
            )
            (now,) = await probe.put_items("when", [2])
            await probe.results([now])
            assert 1 not in started_at  # the delayed job took no slot from job 2
            await probe.results([later])
            app.stop()
    assert started_at[1] >= not_before


async def test_key_affinity_runs_one_key_at_a_time_in_order(spreadq_daemon: Daemon) -> None:
    app = make_app(spreadq_daemon, rule="key_affinity", settings=FAST.replace(concurrency=8))
    trace: list[tuple[str, str, int]] = []

    @app.handler("step")
    async def step(item: Item, ctx: Context) -> None:
        key = str(ctx.key)  # "None" would match neither key below
        trace.append(("start", key, item.n))
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        trace.append(("end", key, item.n))

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            seqs: list[int] = []
            for n in range(5):
                seqs += await probe.put_items("step", [n], key="a")
                seqs += await probe.put_items("step", [n], key="b")
            await probe.results(seqs)
            app.stop()
    for key in ("a", "b"):
        mine = [(what, n) for what, k, n in trace if k == key]
        assert mine == [(what, n) for n in range(5) for what in ("start", "end")]
    # the two keys did run side by side
    first_end = next(i for i, (what, _, _) in enumerate(trace) if what == "end")
    assert {key for what, key, _ in trace[:first_end] if what == "start"} == {"a", "b"}


async def test_a_job_completed_elsewhere_is_cancelled(spreadq_daemon: Daemon) -> None:
    app = make_app(spreadq_daemon, name="a")
    started = anyio.Event()
    cancelled = anyio.Event()

    @app.handler("hang")
    async def hang(item: Item, ctx: Context) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            if ctx.cancelled:
                cancelled.set()

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            async with connect(spreadq_daemon.address, name="z") as other:
                await other.join(QUEUE)  # a second consumer, after #a#: slot 0 is a's
                while "#z#localhost" not in await _work_members(other):
                    pass  # jobs put from now on are ordered after z's join
                (seq,) = await probe.put_items("hang", [1])
                await started.wait()
                ref = JobRef(probe.producer_id, seq)
                ack = Ack(os.urandom(16), ((ref, Outcome.success(b"7")),))
                await other.multicast([QUEUE, FEEDBACK], encode(ack))
                await cancelled.wait()
                await probe.until(lambda: seq in probe.outcomes)
            app.stop()
    assert probe.reporter[seq] == "#z#localhost"
    assert probe.outcomes[seq].result == b"7"


async def test_a_runner_goes_on_after_its_job_is_cancelled(spreadq_daemon: Daemon) -> None:
    # one runner (concurrency 1): the job after the cancelled one runs in the same task
    app = make_app(spreadq_daemon, name="a", settings=FAST.replace(concurrency=1))
    started = anyio.Event()

    @app.handler("hang")
    async def hang(item: Item) -> None:
        started.set()
        await anyio.sleep_forever()

    cancelled_seen: dict[int, bool] = {}

    @app.handler("echo")
    async def echo(item: Item, ctx: Context) -> Item:
        cancelled_seen[item.n] = ctx.cancelled
        return item

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            async with connect(spreadq_daemon.address, name="z") as other:
                await other.join(QUEUE)  # slots alternate a, z: seqs 0 and 2 are a's
                while "#z#localhost" not in await _work_members(other):
                    pass
                (hung,) = await probe.put_items("hang", [1])
                await probe.put_items("echo", [2])  # z's: never run
                (echoed,) = await probe.put_items("echo", [3])
                await started.wait()
                ack = Ack(os.urandom(16), ((JobRef(probe.producer_id, hung), Outcome.success()),))
                await other.multicast([QUEUE, FEEDBACK], encode(ack))
                outcomes = await probe.results([echoed])
            app.stop()
    assert result(outcomes[echoed]) == Item(n=3)
    assert cancelled_seen[3] is False  # the runner's next job is not born cancelled
    assert probe.reporter[echoed] == "#a#localhost"
    assert probe.reporter[hung] == "#z#localhost"


async def test_jobs_taken_over_run_before_our_own_queued_jobs(spreadq_daemon: Daemon) -> None:
    app = make_app(spreadq_daemon, name="a", settings=FAST.replace(concurrency=1))
    gate = anyio.Event()
    started = anyio.Event()
    order: list[int] = []

    @app.handler("job")
    async def job(item: Item, ctx: Context) -> bool:
        order.append(item.n)
        if item.n == 0:
            started.set()
            await gate.wait()
        return ctx.member == "#a#localhost"

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            async with connect(spreadq_daemon.address, name="z") as other:
                await other.join(QUEUE)
                while "#z#localhost" not in await _work_members(other):
                    pass
                seqs = await probe.put_items("job", range(6))  # a: 0 2 4, z: 1 3 5
                await started.wait()
                await other.leave(QUEUE)  # z never ran its jobs: a takes them over
                alone = ("view", ("#a#localhost",))
                await probe.until(lambda: probe.history.count(alone) == 2)  # a's 2nd view
            gate.set()
            outcomes = await probe.results(seqs)
            app.stop()
    assert all(outcome.result == b"true" for outcome in outcomes.values())
    assert order == [0, 1, 3, 5, 2, 4]


async def _work_members(conn: Connection) -> tuple[str, ...]:
    while True:
        event = await conn.receive()
        if isinstance(event, RegularMembership) and event.group == QUEUE:
            return event.members


# -- announcing the view --------------------------------------------------------------


async def test_a_late_feedback_member_gets_the_view_from_the_first_consumer_only(
    spreadq_daemon: Daemon,
) -> None:
    apps = [make_app(spreadq_daemon, name=name) for name in ("a", "b", "c")]
    for app in apps:

        @app.handler("echo")
        async def echo(item: Item) -> Item:
            return item

    both = ("#a#localhost", "#b#localhost")
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            await start(tg, apps[0])
            await start(tg, apps[1])
            async with probe_on(spreadq_daemon) as probe:  # joins FEEDBACK after the view
                await probe.until(lambda: bool(probe.views()))
                # one job for each consumer: whatever either announced before its ACK
                # has been read once both outcomes are in
                await probe.results(await probe.put_items("echo", [1, 2]))
                assert probe.views() == [both]
                assert probe.announcers == ["#a#localhost"]
                # a consumer joining FEEDBACK is announced with its WORK view, not again
                await start(tg, apps[2])
                await probe.results(await probe.put_items("echo", [3, 4, 5]))
                assert probe.views() == [both, (*both, "#c#localhost")]
                assert probe.announcers == ["#a#localhost"] * 2
            tg.cancel_scope.cancel()


@pytest.mark.spreadq_daemon(daemons=("d1", "d2"))
async def test_after_a_merge_the_first_consumer_announces_its_view_again(
    spreadq_daemon: Daemon,
) -> None:
    d1, d2 = spreadq_daemon.addresses["d1"], spreadq_daemon.addresses["d2"]
    apps = [App(QUEUE, d1, plugins=False, name=name, settings=FAST) for name in ("a", "b")]
    for app in apps:

        @app.handler("echo")
        async def echo(item: Item) -> Item:
            return item

    both = ("#a#d1", "#b#d1")
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            for app in apps:
                await start(tg, app)
            async with probe_on(spreadq_daemon, d1) as near:
                await near.until(lambda: len(near.views()) == 1)
                async with probe_on(spreadq_daemon, d2) as far:
                    await far.until(lambda: len(far.views()) == 1)
                    spreadq_daemon.faults.partition([["d1"], ["d2"]])
                    # d1's side re-announces too; waiting for it keeps that VIEW from
                    # being sent after the merge (and reaching the far side)
                    await near.until(lambda: len(near.views()) == 3)
                    await far.until(lambda: far.members() == ("#probe#d2",))
                    spreadq_daemon.faults.merge()
                    # the WORK group did not change: only the FEEDBACK NETWORK change
                    # makes the first consumer announce its view to the far side again
                    await far.until(lambda: len(far.views()) == 2)
                    await far.results(await far.put_items("echo", [1, 2]))
                    assert far.views() == [both, both]
                    assert far.announcers == ["#a#d1", "#a#d1"]
            tg.cancel_scope.cancel()


# -- drain and loss ----------------------------------------------------------------------


async def test_drain_finishes_owned_jobs_sends_outcomes_then_leaves(
    spreadq_daemon: Daemon,
) -> None:
    first = make_app(spreadq_daemon, name="a")
    second = make_app(spreadq_daemon, name="b")
    gate = anyio.Event()
    started = anyio.Event()
    stopped = anyio.Event()

    for app in (first, second):

        @app.handler("work")
        async def work(item: Item, ctx: Context) -> str:
            if item.n == 0:
                started.set()
                await gate.wait()
            return ctx.member

    async def run_first(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        await first.run(handle_signals=False, task_status=task_status)
        stopped.set()

    with anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await tg.start(run_first)
            await start(tg, second)
            await probe.until(lambda: len(probe.members()) == 3)
            (held,) = await probe.put_items("work", [0])  # slot 0: #a#
            await started.wait()
            first.stop()
            await probe.until(lambda: ("drain", "#a#localhost") in probe.history)
            later = await probe.put_items("work", [1, 2, 3, 4])
            await probe.results(later)
            assert not stopped.is_set()  # still holding job 0
            gate.set()
            await probe.results([held])
            await stopped.wait()
            await probe.until(lambda: "#a#localhost" not in probe.members())
            second.stop()
    assert {probe.reporter[seq] for seq in later} == {"#b#localhost"}
    assert probe.outcomes[held].result == b'"#a#localhost"'
    drained = probe.history.index(("drain", "#a#localhost"))
    reported = probe.history.index(("outcome", ("#a#localhost", held)))
    gone = next(
        i
        for i, (what, members) in enumerate(probe.history)
        if i > drained and what == "members" and "#a#localhost" not in members  # type: ignore[operator]
    )
    assert drained < reported < gone


@pytest.mark.parametrize("cancel", [True, False], ids=["cancel", "finish"])
async def test_losing_the_daemon_cancels_handlers_and_reconnects(
    spreadq_daemon: Daemon, cancel: bool
) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(cancel_on_disconnect=cancel))
    started = anyio.Event()
    gate = anyio.Event()
    ended: list[bool] = []

    @app.handler("task")
    async def task(item: Item, ctx: Context) -> int:
        if item.n == 0:
            started.set()
            try:
                await gate.wait()
            finally:
                ended.append(ctx.cancelled)
        return item.n

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with probe_on(spreadq_daemon) as probe, anyio.create_task_group() as tg:
            await start(tg, app)
            await probe.put_items("task", [0])
            await started.wait()
            spreadq_daemon.faults.kill("#a#localhost")
            while not any(
                entry["event"] == "connection_lost" and entry["private_group"] == "#a#localhost"
                for entry in logs
            ):
                await anyio.wait_all_tasks_blocked()
            await anyio.wait_all_tasks_blocked()  # the dispatcher has seen the loss
            assert ended == ([True] if cancel else [])  # cancelled, or still running
            gate.set()
            await probe.until(lambda: "#a#localhost" in probe.members())
            (after,) = await probe.put_items("task", [9])
            outcomes = await probe.results([after])
            app.stop()
    assert ended == [cancel]
    assert outcomes[after].result == b"9"


async def test_a_worker_gives_up_after_reconnect_max_attempts(spreadq_daemon: Daemon) -> None:
    app = make_app(spreadq_daemon, settings=FAST.replace(reconnect_max_attempts=2))
    failures: list[BaseException] = []
    called: list[Item] = []  # a raise in a handler would fail the job, not the test

    @app.handler("never")
    async def never(item: Item) -> None:
        called.append(item)

    async def run(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            await app.run(handle_signals=False, task_status=task_status)
        except ConnectionLost as error:
            failures.append(error)

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            await tg.start(run)
            spreadq_daemon.stop()  # and never started again
    events = [entry["event"] for entry in logs]
    assert len(failures) == 1  # the session lost, raised once the tries ran out
    assert events.count("worker_reconnecting") == 2
    assert "worker_gave_up" in events
    assert called == []


async def test_stop_while_the_daemon_is_unreachable() -> None:
    slow = FAST.replace(reconnect_backoff_initial=60.0, reconnect_backoff_max=60.0)
    app = App(QUEUE, "1@127.0.0.1", plugins=False, settings=slow)
    called: list[Item] = []

    @app.handler("never")
    async def never(item: Item) -> None:
        called.append(item)

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(app.run, handle_signals=False))
            while not any(entry["event"] == "worker_reconnecting" for entry in logs):
                await anyio.wait_all_tasks_blocked()
            app.stop()  # during the 60 s backoff: run() returns at once
    assert [entry["event"] for entry in logs].count("worker_reconnecting") == 1
    assert called == []
