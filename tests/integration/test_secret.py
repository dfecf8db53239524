"""A queue with a shared secret (``Settings.secret``) against clients without it.

A forger that joins both of the queue's groups passes every membership check: Spread
lists it as a consumer. Without a secret it can settle a producer's receipt; with one,
its jobs do not run and its outcomes settle nothing. A worker configured with another
secret runs nothing, says why once per sender, and its jobs go to the others when it
leaves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from spreadq.client import Connection, connect
from spreadq.daemon import Daemon
from spreadq.producer import Producer
from spreadq.queue import Ack, JobRef, JobSpec, Outcome, encode, encode_batch
from spreadq.queue.envelope import MESS_TYPE
from spreadq.queue.seal import Seal
from spreadq.settings import Settings
from spreadq.worker.app import App

QUEUE = "sealed"
FEEDBACK = "sealed~fb"
FAST = Settings(ack_interval=0.005, batch_max_delay=0.0, reconnect_backoff_initial=0.01)
SECRET = FAST.replace(secret="correct horse")


def make_app(
    daemon: Daemon, name: str, settings: Settings, runs: Counter[int], gate: anyio.Event
) -> App:
    app = App(QUEUE, daemon.address, plugins=False, name=name, settings=settings)

    @app.handler("square")
    async def square(n: int) -> int:
        runs[n] += 1
        if n == 7:
            await gate.wait()
        return n * n

    return app


async def until(check: Callable[[], bool]) -> None:
    while not check():
        await anyio.wait_all_tasks_blocked()


async def forge(forger: Connection, producer_id: bytes) -> None:
    """What a client without the secret can send: jobs of its own (two slots: one is
    the worker's), and an outcome for the producer's job 0; plain, and sealed with a
    guessed secret."""
    specs = [JobSpec(0, "square", b"1000"), JobSpec(1, "square", b"1001")]
    job = encode_batch(bytes(16), 0, "json", specs)
    lie = encode(Ack(bytes(16), ((JobRef(producer_id, 0), Outcome.success(b"666")),)))
    guess = Seal(b"guess")
    for data in (job, lie, guess.seal(job, forger.private_group)):
        await forger.multicast((QUEUE, FEEDBACK), data, mess_type=MESS_TYPE)
    await forger.multicast((QUEUE, FEEDBACK), guess.seal(lie, forger.private_group))


@pytest.mark.parametrize("settings", [FAST, SECRET], ids=["no secret", "secret"])
async def test_a_forger_in_both_groups_settles_a_receipt_only_without_a_secret(
    spreadq_daemon: Daemon, settings: Settings
) -> None:
    runs: Counter[int] = Counter()
    gate = anyio.Event()
    app = make_app(spreadq_daemon, "w", settings, runs, gate)
    with capture_logs() as logs, anyio.fail_after(10):
        async with (
            anyio.create_task_group() as tg,
            connect(spreadq_daemon.address, name="zforger") as forger,  # after w
        ):
            await tg.start(partial(app.run, handle_signals=False))
            async with Producer(QUEUE, spreadq_daemon.address, settings=settings) as producer:
                await forger.join(QUEUE)
                await forger.join(FEEDBACK)  # the worker announces it: a consumer now
                await producer.wait_for_consumers(2)
                receipt = await producer.put("square", 7)  # slot 0: the worker's
                await until(lambda: runs[7] == 1)
                await forge(forger, producer.producer_id)
                if settings.secret is None:
                    assert await receipt == 666  # the lie settled it: nothing stops it
                    await until(lambda: runs[1000] + runs[1001] == 1)  # and its job ran
                else:
                    await until(
                        lambda: (
                            sum(e["event"] == "feedback_dropped" for e in logs) >= 4
                            and any(e["event"] == "message_refused" for e in logs)
                        )
                    )
                    assert not receipt.done
                    gate.set()
                    assert await receipt == 49
                    assert runs == {7: 1}  # the forged job never ran
            gate.set()
            tg.cancel_scope.cancel()
    if settings.secret is not None:
        refused = [e for e in logs if e["event"] == "message_refused"]
        assert [e["sender"] for e in refused] == [forger.private_group]  # once per sender
        dropped = {e["reason"] for e in logs if e["event"] == "feedback_dropped"}
        assert dropped == {
            "an unsealed envelope (version 1)",
            "the seal does not verify (another secret, or altered)",
        }
        assert "correct horse" not in repr(logs)


async def test_a_worker_with_another_secret_runs_nothing_and_says_why_once(
    spreadq_daemon: Daemon,
) -> None:
    runs: dict[str, Counter[int]] = {"good": Counter(), "wrong": Counter()}
    gate = anyio.Event()
    gate.set()
    good = make_app(spreadq_daemon, "good", SECRET, runs["good"], gate)
    wrong = make_app(
        spreadq_daemon, "wrong", FAST.replace(secret="battery staple"), runs["wrong"], gate
    )
    with capture_logs() as logs, anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(partial(good.run, handle_signals=False))
            await tg.start(partial(wrong.run, handle_signals=False))
            async with Producer(QUEUE, spreadq_daemon.address, settings=SECRET) as producer:
                await producer.wait_for_consumers(2)
                receipts: list[Any] = [await producer.put("square", n) for n in range(20)]
                await producer.flush()
                await until(lambda: sum(runs["good"].values()) == 10)  # its half
                await anyio.wait_all_tasks_blocked()
                assert runs["wrong"] == {}
                refused = [
                    e
                    for e in logs
                    if e["event"] == "message_refused" and e.get("member") == "#wrong#localhost"
                ]
                assert {e["sender"] for e in refused} >= {"#good#localhost"}
                assert len(refused) == len({e["sender"] for e in refused})  # once each
                assert all("does not verify" in e["reason"] for e in refused)
                wrong.stop()  # it leaves; the good worker takes its jobs over
                assert [await receipt for receipt in receipts] == [n * n for n in range(20)]
            tg.cancel_scope.cancel()
    assert runs["wrong"] == {}
    assert sorted(runs["good"]) == list(range(20))


async def test_raw_jobs_with_a_secret_only_when_the_app_opts_in(spreadq_daemon: Daemon) -> None:
    seen: list[bytes] = []
    for accept in (False, True):
        seen.clear()
        app = App(
            QUEUE,
            spreadq_daemon.address,
            plugins=False,
            name="raw",
            settings=SECRET.replace(accept_unsealed_raw=accept),
        )

        @app.handler(raw=7)
        async def raw(data: bytes) -> None:
            seen.append(data)

        with capture_logs() as logs, anyio.fail_after(10):
            async with (
                anyio.create_task_group() as tg,
                connect(spreadq_daemon.address, name="c") as plain,
            ):
                await tg.start(partial(app.run, handle_signals=False))
                await plain.multicast(QUEUE, b"from C", mess_type=7)
                await until(
                    lambda: bool(seen) or any(e["event"] == "message_refused" for e in logs)
                )
                app.stop()
                tg.cancel_scope.cancel()
        if accept:
            assert seen == [b"from C"]
        else:
            assert seen == []
            (refused,) = [e for e in logs if e["event"] == "message_refused"]
            assert "accept_unsealed_raw" in refused["reason"]


async def test_sealed_batches_and_fragments_of_every_size_run(spreadq_daemon: Daemon) -> None:
    app = App(QUEUE, spreadq_daemon.address, plugins=False, settings=SECRET)

    @app.handler("size")
    async def size(data: bytes) -> int:
        return len(data)

    sizes = [0, 10, 70_000, 139_000, 300_000, 5]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(partial(app.run, handle_signals=False))
            async with Producer(QUEUE, spreadq_daemon.address, settings=SECRET) as producer:
                receipts = [await producer.put("size", b"x" * n) for n in sizes]
                assert [await receipt for receipt in receipts] == sizes
            tg.cancel_scope.cancel()
