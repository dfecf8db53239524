"""Producer and Receipt: the API's contracts, and what goes on the wire.

The wire checks read the WORK group through a plain connection that plays a consumer
(announces a VIEW and ACKs its read positions), so every message the producer sends can
be decoded and checked: packing, the size cap, fragments, order, re-sending.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import typer
from anyio import wait_all_tasks_blocked
from pydantic import BaseModel
from structlog.testing import capture_logs
from typer.testing import CliRunner, Result

from spreadq.cli import put as put_cli
from spreadq.client import Connection, connect
from spreadq.daemon import Daemon, serve
from spreadq.errors import (
    CloseReason,
    ConfigurationError,
    ConnectionLost,
    CouldNotConnect,
    JobFailed,
    LocalProtocolError,
    PayloadError,
)
from spreadq.producer import Producer, Receipt
from spreadq.producer import receipt as receipt_module
from spreadq.producer.core import BATCH_BURST
from spreadq.producer.receipt import ReceiptState
from spreadq.queue.envelope import (
    MAX_ENVELOPE_SIZE,
    MESS_TYPE,
    Ack,
    JobBatch,
    JobFragment,
    decode,
    encode,
)
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.queue.view import View
from spreadq.settings import Settings
from spreadq.wire.events import DataMessage, RegularMembership
from spreadq.worker.app import App

WAIT = 10.0


# -- Receipt ------------------------------------------------------------------------------


async def test_a_receipt_gives_the_decoded_result_once_it_succeeds() -> None:
    decoded: list[bytes] = []

    def decode_result(data: bytes) -> int:
        decoded.append(data)
        return int(data)

    receipt: Receipt[int] = Receipt("add", 7, "k", decode=decode_result)
    assert (receipt.done, receipt.kind, receipt.seq, receipt.key) == (False, "add", 7, "k")
    assert (receipt.resolved_at,) == (None,)
    results: list[int] = []

    async def waiter() -> None:
        results.append(await receipt)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            tg.start_soon(waiter)
            await wait_all_tasks_blocked()
            assert results == []
            receipt._succeed(b"42", 1.0)
            receipt._fail(RuntimeError("ignored: the outcome is already known"))
    assert results == [42, 42]
    assert receipt.done
    assert receipt.resolved_at == 1.0
    assert decoded == [b"42", b"42"]  # decoded by each awaiter, lazily
    assert "done" in repr(receipt)


def test_receipt_lives_in_its_own_module_and_producer_re_exports_it() -> None:
    assert Receipt is receipt_module.Receipt
    receipt: Receipt[int] = Receipt("add", 0)
    states = [receipt.state]
    receipt._fail(RuntimeError("lost"))
    states.append(receipt.state)
    assert states == [ReceiptState.PENDING, ReceiptState.FAILED]


async def test_a_receipt_raises_the_failure_it_was_given() -> None:
    receipt: Receipt[int] = Receipt("divide", 0)
    receipt._fail(JobFailed("ZeroDivisionError", "division by zero", 3))
    with anyio.fail_after(WAIT):
        await receipt.wait()  # waiting does not raise
        with pytest.raises(JobFailed) as info:
            await receipt.result()
    assert (info.value.error_type, info.value.attempts) == ("ZeroDivisionError", 3)


async def test_an_empty_result_is_none() -> None:
    receipt: Receipt[int] = Receipt("nothing", 0, decode=int)
    receipt._succeed(b"", 1.0)
    with anyio.fail_after(WAIT):
        assert await receipt is None


def test_result_nowait_gives_the_outcome_once_known_and_never_waits() -> None:
    decoded: list[bytes] = []

    def decode_result(data: bytes) -> int:
        decoded.append(data)
        return int(data)

    pending: Receipt[int] = Receipt("add", 1, decode=decode_result)
    with pytest.raises(anyio.WouldBlock):
        pending.result_nowait()
    pending._succeed(b"42", 1.0)
    assert pending.result_nowait() == 42
    assert decoded == [b"42"]
    failed: Receipt[int] = Receipt("divide", 2)
    failed._fail(JobFailed("ZeroDivisionError", "division by zero", 3))
    with pytest.raises(JobFailed):
        failed.result_nowait()
    empty: Receipt[int] = Receipt("nothing", 3, decode=int)
    empty._succeed(b"", 1.0)
    assert empty.result_nowait() is None


async def test_a_fire_and_forget_receipt_refuses_to_be_awaited() -> None:
    receipt: Receipt[Any] = Receipt("add", 0, confirmed=False)
    assert receipt.done
    with anyio.fail_after(WAIT), pytest.raises(ConfigurationError, match="fire-and-forget"):
        await receipt


# -- Producer: arguments and lifecycle ---------------------------------------------------------


def test_bad_arguments_are_refused_before_anything_runs() -> None:
    with pytest.raises(ConfigurationError):
        Producer("bad~name")
    with pytest.raises(ConfigurationError):
        Producer("q", codec="nope")
    with pytest.raises(ConfigurationError):
        Producer("q", close_timeout=-1)
    with pytest.raises(ConfigurationError):
        Producer("q", name="far too long a name")


async def test_put_outside_the_context_raises() -> None:
    producer = Producer("q", "1@127.0.0.1")
    with pytest.raises(ConnectionLost, match="not open"):
        await producer.put("add", {})


async def test_entering_fails_when_no_daemon_answers() -> None:
    async with serve() as daemon:
        address = daemon.address
    with anyio.fail_after(WAIT), pytest.raises(CouldNotConnect):
        async with Producer("q", address):
            pass


class Point(BaseModel):
    x: int
    y: int


async def test_bad_payloads_and_names_fail_the_put_and_queue_nothing() -> None:
    app = App("typed", plugins=False)

    @app.handler("norm")
    async def norm(point: Point) -> int:
        return abs(point.x) + abs(point.y)

    # one slot only: a refused put that took it and did not give it back would block
    # the last put for good
    settings = Settings(max_in_flight=1)
    async with (
        serve() as daemon,
        Producer("typed", daemon.address, settings=settings, close_timeout=0) as producer,
    ):
        with anyio.fail_after(WAIT):
            with pytest.raises(PayloadError):
                await producer.put(norm, "not a point")  # type: ignore[misc]
            with pytest.raises(PayloadError):
                await producer.put("norm", object())
            with pytest.raises(ConfigurationError):
                await producer.put("bad kind with spaces", {})
            with pytest.raises(ConfigurationError):
                await producer.put("norm", {}, delay=-1.0)
            with pytest.raises(LocalProtocolError):
                await producer.put("norm", {}, key="k" * 70_000)
            with pytest.raises(LocalProtocolError, match="dedupe key"):
                await producer.put("norm", {}, dedupe_key="")
            with pytest.raises(LocalProtocolError, match="periodic ticks"):
                await producer.put("norm", {}, dedupe_key="periodic:report:7")
            stats = producer.statistics()
            assert (stats.put, stats.pending) == (0, 0)
            receipt = await producer.put(norm, Point(x=1, y=2))
            assert receipt.seq == 0  # the refused puts took no sequence number
            state = await producer.flow_state()
            assert state is not None
            assert state.admitted == 1


async def test_a_producer_gives_up_after_reconnect_max_attempts() -> None:
    settings = Settings(
        max_in_flight=2,
        reconnect_max_attempts=2,
        reconnect_backoff_initial=0.01,
        reconnect_backoff_max=0.02,
    )
    errors: list[ConnectionLost] = []

    async def gated_put(producer: Producer) -> None:
        with pytest.raises(ConnectionLost) as info:
            await producer.put("add", {"a": 3})
        errors.append(info.value)

    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with (
            serve() as daemon,
            Producer("gone", daemon.address, settings=settings, close_timeout=0) as producer,
        ):
            receipts = [await producer.put("add", {"a": n}) for n in range(2)]  # held
            async with anyio.create_task_group() as tg:
                tg.start_soon(gated_put, producer)
                await wait_all_tasks_blocked()
                state = await producer.flow_state()
                assert state is not None
                assert state.waiting_puts == 1  # max_in_flight reached
                daemon.stop()  # and never started again
            for receipt in receipts:
                with pytest.raises(ConnectionLost) as info:
                    await receipt
                errors.append(info.value)
            with pytest.raises(ConnectionLost) as info:
                await producer.put("add", {"a": 4})
            errors.append(info.value)
            assert producer.statistics().sessions == 1
    assert all(error is errors[0] for error in errors)  # the last ConnectionLost
    assert errors[0].reason is not CloseReason.CLOSED_LOCALLY
    (gave_up,) = [entry for entry in logs if entry["event"] == "producer_gave_up"]
    assert gave_up["attempts"] == 2


# -- on the wire ---------------------------------------------------------------------------------


@asynccontextmanager
async def consumer_and_producer(
    queue: str, settings: Settings
) -> AsyncIterator[tuple[Daemon, Connection, Producer]]:
    async with serve() as daemon, connect(daemon.address) as reader:
        await reader.join(queue)
        await reader.join(f"{queue}~fb")  # a consumer's VIEW counts from a FEEDBACK member
        while True:
            event = await reader.receive()
            if isinstance(event, RegularMembership) and event.group == queue:
                break
        gid = event.group_id
        view = View((reader.private_group,), (gid.proc_id, gid.time, gid.index), 1)
        async with Producer(queue, daemon.address, settings=settings) as producer:
            await reader.multicast(producer.feedback_group, encode(view), mess_type=MESS_TYPE)
            await producer.wait_for_consumers()
            yield daemon, reader, producer


async def read_jobs(
    reader: Connection, producer: Producer, count: int
) -> tuple[list[tuple[int, bytes]], list[int], int]:
    """Read until ``count`` jobs arrived; ACK read positions as a consumer would.

    Returns the jobs (seq, payload) in delivery order, each message's size, and the
    largest number of jobs in one batch.
    """
    jobs: list[tuple[int, bytes]] = []
    sizes: list[int] = []
    widest = 0
    chunks: dict[int, list[bytes]] = {}
    while len(jobs) < count:
        event = await reader.receive()
        if not isinstance(event, DataMessage) or producer.work_group not in event.groups:
            continue  # our own ACKs come back on FEEDBACK
        sizes.append(len(event.data))
        message = decode(event.data)
        if isinstance(message, JobBatch):
            widest = max(widest, len(message.jobs))
            jobs += [(job.ref.seq, bytes(job.payload)) for job in message.jobs]
        elif isinstance(message, JobFragment):
            parts = chunks.setdefault(message.job.ref.seq, [])
            assert message.index == len(parts)  # fragments arrive in order
            parts.append(bytes(message.job.payload))
            if message.index == message.count - 1:
                jobs.append((message.job.ref.seq, b"".join(chunks.pop(message.job.ref.seq))))
        else:
            continue
        ack = Ack(bytes(16), positions=((producer.producer_id, message.mseq),))
        await reader.multicast(producer.feedback_group, encode(ack), mess_type=MESS_TYPE)
    return jobs, sizes, widest


async def test_a_put_cancelled_just_as_room_opens_takes_nothing() -> None:
    # anyio lets a woken task resume before a cancel scope can interrupt it; a plain
    # asyncio cancel can land between the wake-up and the resumption: the put must
    # then have taken nothing, since it takes its room only once it runs again
    settings = Settings(max_in_flight=1, batch_max_delay=0.0)
    async with consumer_and_producer("grant", settings) as (_, reader, producer):
        with anyio.fail_after(WAIT):
            first = await producer.put("add", {"a": 1})
            await read_jobs(reader, producer, 1)
            put = asyncio.get_running_loop().create_task(producer.put("add", {"a": 2}))
            await wait_all_tasks_blocked()
            assert not put.done()
            state = await producer.flow_state()
            assert state is not None
            assert state.waiting_puts == 1
            outcome = ((JobRef(producer.producer_id, 0), Outcome.success(b"3")),)
            ack = Ack(bytes(16), outcomes=outcome)
            await reader.multicast(producer.feedback_group, encode(ack), mess_type=MESS_TYPE)
            # the ACK's outcome resolves the receipt first, then wakes the waiting put:
            # this task runs before the put does, and cancels it
            assert await first == 3
            put.cancel()
            with pytest.raises(asyncio.CancelledError):
                await put
            state = await producer.flow_state()
            assert state is not None
            assert (state.admitted, state.in_flight, state.waiting_puts) == (0, 0, 0)
            assert producer.statistics().put == 1
            second = await producer.put("add", {"a": 4})
            assert second.seq == 1


async def test_jobs_are_packed_capped_fragmented_and_kept_in_order() -> None:
    rng = random.Random(5)
    sizes = [rng.choice([0, 10, 100, 5_000, 60_000, 139_000, 300_000]) for _ in range(120)]
    payloads = [rng.randbytes(size) for size in sizes]
    settings = Settings(batch_max_jobs=16, batch_max_delay=0.01, window=50)
    async with consumer_and_producer("wire", settings) as (_, reader, producer):
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                for payload in payloads:
                    await producer.put("blob", payload)
                received: list[Any] = []

                async def read() -> None:
                    received.append(await read_jobs(reader, producer, len(payloads)))

                tg.start_soon(read)
        jobs, message_sizes, widest = received[0]
    assert jobs == list(enumerate(payloads))
    assert max(message_sizes) <= MAX_ENVELOPE_SIZE
    assert 1 < widest <= settings.batch_max_jobs
    assert producer.statistics().messages == len(message_sizes)


async def test_jobs_put_one_a_turn_go_in_no_more_messages_than_the_rate_allows() -> None:
    # a server putting a job per request: one put, then the loop turns. Each message
    # costs every consumer, so past batch_max_rate the jobs wait and go together
    rate, count = 50.0, 60
    settings = Settings(batch_max_rate=rate)
    async with consumer_and_producer("paced", settings) as (_, reader, producer):
        with anyio.fail_after(WAIT):
            received: list[Any] = []
            async with anyio.create_task_group() as tg:

                async def read() -> None:
                    received.append(await read_jobs(reader, producer, count))

                tg.start_soon(read)
                started = time.monotonic()
                for n in range(count):
                    await producer.put("tick", n.to_bytes(2, "big"))
                    await anyio.lowlevel.checkpoint()
            elapsed = time.monotonic() - started
        jobs, message_sizes, widest = received[0]
    assert jobs == [(n, n.to_bytes(2, "big")) for n in range(count)]
    assert len(message_sizes) == producer.statistics().messages
    # the first BATCH_BURST go at once, then one per 1 / rate at most
    assert len(message_sizes) <= BATCH_BURST + 1 + elapsed * rate
    assert widest > 1
    # the batches that went together waited for the rate, and say so
    assert 1 <= producer.statistics().batches_held < len(message_sizes)


async def test_a_delayed_job_runs_no_earlier_than_asked() -> None:
    started: list[float] = []
    async with serve() as daemon:
        app = App("later", daemon.address, plugins=False)

        @app.handler("stamp")
        async def stamp(n: int) -> int:
            started.append(time.time())
            return n

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                await tg.start(partial(app.run, handle_signals=False))
                async with Producer("later", daemon.address) as producer:
                    put_at = time.time()
                    receipt = await producer.put(stamp, 1, delay=0.3, headers={"trace": "t1"})
                    assert await receipt == 1
                tg.cancel_scope.cancel()
    assert started[0] >= put_at + 0.3


async def test_a_result_is_decoded_with_the_codec_its_outcome_names() -> None:
    async with serve() as daemon:
        app = App("codecs", daemon.address, plugins=False)

        @app.handler("encode")  # json in, raw out: the outcome names "raw"
        async def encode_text(job: dict[str, str]) -> bytes:
            return job["text"].encode()

        @app.handler("length")  # raw in, json out: the outcome names "json"
        async def length(data: bytes) -> int:
            return len(data)

        @app.handler("reverse")  # raw in, raw out: the job's own codec, named nowhere
        async def reverse(data: bytes) -> bytes:
            return data[::-1]

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                await tg.start(partial(app.run, handle_signals=False))
                async with Producer("codecs", daemon.address) as producer:
                    by_kind = await producer.put("encode", {"text": "hi"})
                    measured = await producer.put("length", b"abc")
                    reversed_ = await producer.put("reverse", b"abc")
                    typed = await producer.put(encode_text, {"text": "yo"})
                    assert await by_kind == b"hi"  # bytes, not a PayloadError
                    assert await measured == 3
                    assert await reversed_ == b"cba"
                    assert await typed == b"yo"
                tg.cancel_scope.cancel()


async def test_outcomes_of_other_producers_are_ignored() -> None:
    settings = Settings(batch_max_delay=0.0)
    async with consumer_and_producer("others", settings) as (_, reader, producer):
        with anyio.fail_after(WAIT):
            receipt = await producer.put("add", {"a": 1})
            (seq, _), *_ = (await read_jobs(reader, producer, 1))[0]
            other = JobRef(bytes(16), seq)
            mine = JobRef(producer.producer_id, seq)
            stranger = Ack(bytes(16), outcomes=((other, Outcome.success(b"1")),))
            await reader.multicast(producer.feedback_group, encode(stranger), mess_type=MESS_TYPE)
            done = Ack(bytes(16), outcomes=((mine, Outcome.success(b"2")),))
            await reader.multicast(producer.feedback_group, encode(done), mess_type=MESS_TYPE)
            assert await receipt == 2
            assert producer.statistics().succeeded == 1


async def test_settled_waits_for_the_ack_that_settles_every_job_put() -> None:
    settings = Settings(batch_max_delay=0.0)
    async with consumer_and_producer("settle", settings) as (_, reader, producer):
        with anyio.fail_after(WAIT):
            await producer.settled()  # nothing put: settled already
            receipts = [await producer.put("add", {"a": n}) for n in range(2)]
            seqs = [seq for seq, _ in (await read_jobs(reader, producer, 2))[0]]
            async with anyio.create_task_group() as tg:
                done = anyio.Event()

                async def settle() -> None:
                    await producer.settled()
                    done.set()

                tg.start_soon(settle)
                first = Ack(
                    bytes(16),
                    outcomes=((JobRef(producer.producer_id, seqs[0]), Outcome.success(b"1")),),
                )
                await reader.multicast(producer.feedback_group, encode(first), mess_type=MESS_TYPE)
                assert await receipts[0] == 1
                await anyio.wait_all_tasks_blocked()
                assert not done.is_set()  # one job is still unconfirmed
                assert producer.statistics().pending == 1
                last = Ack(
                    bytes(16),
                    outcomes=((JobRef(producer.producer_id, seqs[1]), Outcome.success(b"2")),),
                )
                await reader.multicast(producer.feedback_group, encode(last), mess_type=MESS_TYPE)
                await done.wait()
            stats = producer.statistics()
            assert (stats.pending, stats.succeeded) == (0, 2)


async def test_settled_refuses_a_fire_and_forget_producer_and_a_closed_one() -> None:
    async with serve() as daemon:
        async with Producer("ff", daemon.address, member=False) as producer:
            with pytest.raises(ConfigurationError, match="settles nothing"):
                await producer.settled()
        closed = Producer("ff", daemon.address)
        with pytest.raises(ConnectionLost):
            await closed.settled()


async def test_settled_raises_when_the_producer_gives_up_while_it_waits() -> None:
    settings = Settings(
        reconnect_max_attempts=1, reconnect_backoff_initial=0.01, reconnect_backoff_max=0.02
    )
    with anyio.fail_after(WAIT):
        async with (
            serve() as daemon,
            Producer("held", daemon.address, settings=settings, close_timeout=0) as producer,
        ):
            receipt = await producer.put("add", {"a": 1})  # no consumer: held
            async with anyio.create_task_group() as tg:
                raised = anyio.Event()

                async def wait() -> None:
                    with pytest.raises(ConnectionLost):
                        await producer.settled()
                    raised.set()

                tg.start_soon(wait)
                await wait_all_tasks_blocked()
                assert not raised.is_set()
                daemon.stop()  # and never started again
                await raised.wait()
            with pytest.raises(ConnectionLost):
                await receipt


# -- the ``spreadq put`` command -------------------------------------------------------------


def put_command() -> typer.Typer:
    """The ``put`` command alone (the root command would configure logging globally)."""
    cli = typer.Typer()
    put_cli.register(cli)
    cli.command("other")(lambda: None)  # two commands: typer then takes the command name
    return cli


async def test_the_put_command_sends_a_job_and_prints_its_result() -> None:
    runner = CliRunner()
    async with serve() as daemon:
        app = App("cli", daemon.address, plugins=False, settings=Settings(max_attempts=1))

        @app.handler("add")
        async def add(job: dict[str, int]) -> int:
            return job["a"] + job["b"]

        def run(*args: str) -> Result:
            return runner.invoke(put_command(), ["put", *args, "--spread", daemon.address])

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                await tg.start(partial(app.run, handle_signals=False))
                waited = await anyio.to_thread.run_sync(
                    run, "cli", "add", '{"a": 2, "b": 3}', "--wait"
                )
                sent = await anyio.to_thread.run_sync(run, "cli", "add", '{"a": 1, "b": 1}')
                failed = await anyio.to_thread.run_sync(run, "cli", "add", '{"a": 1}', "--wait")
                bad = await anyio.to_thread.run_sync(run, "cli", "add", "{not json")
                tg.cancel_scope.cancel()
            nobody = await anyio.to_thread.run_sync(run, "nobody", "add", "{}", "--timeout", "0.1")
    assert (waited.exit_code, waited.stdout.splitlines()[-1]) == (0, "5")  # after any logs
    assert sent.exit_code == 0
    assert "sent 'add' #0" in sent.stderr
    assert failed.exit_code == 1
    assert "KeyError" in failed.stderr
    assert bad.exit_code == 2
    assert "not JSON" in bad.stderr
    assert nobody.exit_code == 1
    assert "no consumer within 0.1 s" in nobody.stderr
