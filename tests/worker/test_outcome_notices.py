"""Outcome notices: a worker sends the outcomes of the jobs that ask for one
(``Job.notify``) straight to their producer's private group (NOTICE), coalesced per turn
of its loop and at most one per ``notice_interval``, so a receipt need not wait for the
next ACK.

On a scripted connection (the test plays the daemon, and sees every multicast):

* jobs that ask and end in one turn go to their producer in one NOTICE, to its private
  group only; those that end within ``notice_interval`` of a NOTICE go together in the
  next one, when the interval ends;
* jobs that do not ask (a backlogged or fire-and-forget producer, a C client) get none;
  neither does any job when ``outcome_notices`` is off;
* an outcome an ACK reports in the same turn is not sent again in a NOTICE; a result too
  big to send is noticed as the same failure the ACK reports;
* an idle worker sends no ACK at once for outcomes its NOTICEs told: those wait for the
  ACK cadence, and an outcome no NOTICE carries is ACKed (with them) when idle.

On the embedded daemon: with no ACK for a minute, receipts resolve from NOTICEs alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anyio
import test_dispatcher_scripted
from test_dispatcher import FAST, QUEUE, WAIT, Item
from test_dispatcher_scripted import (
    ME,
    OTHER,
    PRODUCER,
    PRODUCER_ID,
    Make,
    echo_app,
    jobs,
    ref,
    serving,
    stop,
)

from spreadq import App, Settings
from spreadq.queue import MESS_TYPE, Ack, JobSpec, encode_batch
from spreadq.queue.envelope import MAX_ENVELOPE_SIZE, Notice
from spreadq.testing import run_app
from spreadq.wire.constants import Cause, ServiceType
from spreadq.wire.events import DataMessage

dispatcher_for = test_dispatcher_scripted.dispatcher_for  # the fixture

NO_ACK_FOR_A_MINUTE = dict(ack_interval=60.0, ack_every=10_000, ack_max_rate=None)
EVERY_TURN = dict(notice_interval=0.0)  # a NOTICE at the end of every turn that ends jobs


def asking(mseq: int, seqs: Sequence[int]) -> DataMessage:
    """One JOB BATCH from the producer whose jobs ask for a NOTICE."""
    specs = [JobSpec(seq, "job", Item(n=seq).model_dump_json().encode()) for seq in seqs]
    batch = encode_batch(PRODUCER_ID, mseq, "json", specs, notify=True)
    return DataMessage(PRODUCER, (QUEUE,), ServiceType.AGREED, MESS_TYPE, batch)


def notified(conn: object, to: str = PRODUCER) -> list[list[int]]:
    """The seqs of each NOTICE sent to ``to`` (and to no one else)."""
    sent = conn.sent  # type: ignore[attr-defined]
    for groups, data in sent:
        if isinstance(conn.read(data), Notice):  # type: ignore[attr-defined]
            assert groups == (to,), groups
    return [
        [job.seq for job, _ in notice.outcomes]
        for notice in conn.envelopes(Notice, group=to)  # type: ignore[attr-defined]
    ]


async def test_jobs_ending_in_one_turn_go_to_their_producer_in_one_notice(
    dispatcher_for: Make,
) -> None:
    settings = FAST.replace(**NO_ACK_FOR_A_MINUTE, **EVERY_TURN)
    dispatcher, conn = dispatcher_for(echo_app(), settings)
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(asking(1, range(5)))
            await anyio.wait_all_tasks_blocked()
            assert notified(conn) == [[0, 1, 2, 3, 4]]
            (notice,) = conn.envelopes(Notice, group=PRODUCER)
            assert [outcome.result for _, outcome in notice.outcomes] == [
                b"0",
                b"1",
                b"2",
                b"3",
                b"4",
            ]
            assert conn.envelopes(Ack) == []  # no ACK yet: only the NOTICE told
            conn.feed(asking(2, [5]))
            await anyio.wait_all_tasks_blocked()
            assert notified(conn) == [[0, 1, 2, 3, 4], [5]]
            await stop(dispatcher, conn)


async def test_notices_within_the_interval_wait_for_its_end(dispatcher_for: Make) -> None:
    now = [100.0]
    settings = FAST.replace(notice_interval=0.5, **NO_ACK_FOR_A_MINUTE)
    dispatcher, conn = dispatcher_for(echo_app(), settings, clock=lambda: now[0])
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(asking(1, [0]))  # the first after a quiet spell goes at once
            await anyio.wait_all_tasks_blocked()
            assert notified(conn) == [[0]]  # it books 100.0-100.5
            now[0] = 100.2
            conn.feed(asking(2, [1]))  # the one to spare: at once too, booking 100.5-101.0
            await anyio.wait_all_tasks_blocked()
            assert notified(conn) == [[0], [1]]
            now[0] = 100.3
            conn.feed(asking(3, [2]))
            await anyio.wait_all_tasks_blocked()
            conn.feed(asking(4, [3]))
            await anyio.wait_all_tasks_blocked()
            assert notified(conn) == [[0], [1]]  # 2 and 3 wait for 100.5
            now[0] = 100.5
            conn.feed()  # the loop looks at its clock
            while len(notified(conn)) < 3:
                await anyio.wait_all_tasks_blocked()
            assert notified(conn) == [[0], [1], [2, 3]]  # in one NOTICE
            await stop(dispatcher, conn)


async def test_a_notice_held_back_goes_when_the_interval_ends_with_no_message_to_wake_us(
    dispatcher_for: Make,
) -> None:
    # no STATS report for a minute either: it too would wake the loop
    settings = FAST.replace(notice_interval=0.2, stats_interval=60.0, **NO_ACK_FOR_A_MINUTE)
    dispatcher, conn = dispatcher_for(echo_app(), settings)
    noticed: list[float] = []  # when each NOTICE went (the dispatcher's own clock)
    third = anyio.Event()
    multicast = conn.multicast

    async def watching(groups: Any, data: bytes, *args: Any, **kwargs: Any) -> None:
        await multicast(groups, data, *args, **kwargs)
        if isinstance(conn.read(data), Notice):
            noticed.append(time.monotonic())
            if len(noticed) == 3:
                third.set()

    conn.multicast = watching  # type: ignore[method-assign]
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(asking(1, [0]))
            await anyio.wait_all_tasks_blocked()
            assert notified(conn) == [[0]]  # the first goes at once
            conn.feed(asking(2, [1]))  # the one to spare: at once too
            await anyio.wait_all_tasks_blocked()
            assert notified(conn) == [[0], [1]]
            conn.feed(asking(3, [2]))  # ends within the booked intervals: held back
            await anyio.wait_all_tasks_blocked()
            await third.wait()  # only the loop's own alarm can send it: nothing else comes
            assert notified(conn) == [[0], [1], [2]]
            assert noticed[2] - noticed[0] >= 0.2
            await stop(dispatcher, conn)


async def test_an_idle_worker_leaves_what_its_notices_told_to_the_ack_cadence(
    dispatcher_for: Make,
) -> None:
    # idle ACKs on (a 4 ms gap alone), the cadence a minute away
    settings = FAST.replace(ack_interval=60.0, ack_every=10_000, ack_max_rate=250.0)
    dispatcher, conn = dispatcher_for(echo_app(), settings)
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(asking(1, range(3)))
            await anyio.wait_all_tasks_blocked()
            assert notified(conn) == [[0, 1, 2]]
            assert conn.envelopes(Ack) == []  # the producer has them: no idle ACK
            conn.feed(jobs(2, [3]))  # a job that asks for no NOTICE: ACKed when idle
            while not conn.envelopes(Ack):
                await anyio.wait_all_tasks_blocked()
            (ack,) = conn.envelopes(Ack)
            assert [job for job, _ in ack.outcomes] == [ref(0), ref(1), ref(2), ref(3)]
            assert notified(conn) == [[0, 1, 2]]
            await stop(dispatcher, conn)


async def test_a_job_given_up_after_its_owner_left_is_noticed_as_a_run_would_be(
    dispatcher_for: Make,
) -> None:
    settings = FAST.replace(max_failovers=0, **NO_ACK_FOR_A_MINUTE, **EVERY_TURN)
    dispatcher, conn = dispatcher_for(echo_app(), settings)
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(conn.view((ME, OTHER), changed=OTHER))
            conn.feed(asking(1, range(2)))  # 0 is ours, 1 the other's
            await anyio.wait_all_tasks_blocked()
            assert notified(conn) == [[0]]
            conn.feed(conn.view((ME,), Cause.LEAVE, changed=OTHER))  # 1: given up here
            while len(notified(conn)) < 2:
                await anyio.wait_all_tasks_blocked()
            assert notified(conn) == [[0], [1]]
            (_, notice) = conn.envelopes(Notice, group=PRODUCER)
            ((_, outcome),) = notice.outcomes
            assert outcome.error_type == "spreadq.errors.WorkerLost"
            await stop(dispatcher, conn)


async def test_jobs_that_do_not_ask_get_no_notice(dispatcher_for: Make) -> None:
    dispatcher, conn = dispatcher_for(echo_app(), FAST.replace(**NO_ACK_FOR_A_MINUTE))
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(jobs(1, range(3)))  # a producer that was backlogged: no notify
            await anyio.wait_all_tasks_blocked()
            assert dispatcher.table.backlog == 0  # the jobs ran
            assert notified(conn) == []
            await stop(dispatcher, conn)


async def test_with_notices_off_none_is_sent(dispatcher_for: Make) -> None:
    settings = FAST.replace(outcome_notices=False, **NO_ACK_FOR_A_MINUTE)
    dispatcher, conn = dispatcher_for(echo_app(), settings)
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(asking(1, range(3)))
            await anyio.wait_all_tasks_blocked()
            assert dispatcher.table.backlog == 0
            assert notified(conn) == []
            await stop(dispatcher, conn)


async def test_an_outcome_acked_in_the_same_turn_is_not_noticed(dispatcher_for: Make) -> None:
    # ack_every=1: every finished job makes an ACK due at once, in the turn it ends
    settings = FAST.replace(ack_every=1, ack_interval=60.0, **EVERY_TURN)
    dispatcher, conn = dispatcher_for(echo_app(), settings)
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(asking(1, [0]))
            await anyio.wait_all_tasks_blocked()
            reported = [job for ack in conn.envelopes(Ack) for job, _ in ack.outcomes]
            assert reported == [ref(0)]
            assert notified(conn) == []
            await stop(dispatcher, conn)


async def test_a_result_too_big_is_noticed_as_the_failure_the_ack_reports(
    dispatcher_for: Make,
) -> None:
    app = App(QUEUE, plugins=False)

    @app.handler("job")
    async def job(item: Item) -> bytes:
        return b"x" * (MAX_ENVELOPE_SIZE if item.n == 0 else 1)

    dispatcher, conn = dispatcher_for(app, FAST.replace(**NO_ACK_FOR_A_MINUTE))
    with anyio.fail_after(WAIT):
        async with serving(dispatcher, conn):
            conn.feed(asking(1, [0, 1]))
            await anyio.wait_all_tasks_blocked()
            assert notified(conn) == [[0, 1]]
            await stop(dispatcher, conn)
    (notice,) = conn.envelopes(Notice, group=PRODUCER)
    acked = {job: outcome for ack in conn.envelopes(Ack) for job, outcome in ack.outcomes}
    assert dict(notice.outcomes) == acked
    assert acked[ref(0)].error_type == "spreadq.errors.PayloadError"
    assert acked[ref(1)].result == b"x"


def lone_app() -> App:
    app = App("notices", plugins=False)

    @app.handler("echo")
    async def echo(n: int) -> int:
        return n

    return app


async def test_receipts_resolve_from_notices_alone() -> None:
    # no ACK for a minute, by cadence or idle: only a NOTICE can resolve these in time
    settings = Settings(**NO_ACK_FOR_A_MINUTE)
    async with run_app(lone_app(), settings=settings) as producer:
        with anyio.fail_after(WAIT):
            for n in range(5):  # one at a time: the producer keeps up, each job asks
                assert await (await producer.put("echo", n)) == n
