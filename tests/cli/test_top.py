"""``spreadq top``: the screen rendered from synthetic STATS, and ``watch``/``--once
--json`` against the embedded daemon with a fake consumer that announces a VIEW and
reports STATS the way a worker will, while checking that ``top`` never joins WORK."""

from __future__ import annotations

import json
import sys

import anyio
import anyio.abc
from rich.console import Console

from spreadq.cli.top import render, watch
from spreadq.client import Connection, connect
from spreadq.daemon import Daemon
from spreadq.observe.board import TopConsumer, TopProducer, TopSnapshot
from spreadq.queue.envelope import MESS_TYPE, Stats, StatsState, encode
from spreadq.queue.protocol import is_observer, queue_groups
from spreadq.queue.view import View
from spreadq.wire import RegularMembership, ServiceType

QUEUE = "thumbs"
WORK, FEEDBACK = queue_groups(QUEUE)
PRODUCER = bytes.fromhex("a1b2c3d4") + bytes(12)
WAIT = 20


def screen(snapshot: TopSnapshot) -> str:
    console = Console(record=True, width=140, color_system=None)
    console.print(render(snapshot))
    return console.export_text()


def test_the_screen_shows_every_field_in_view_order() -> None:
    snapshot = TopSnapshot(
        queue=QUEUE,
        view_id=4,
        group_id=(1, 2, 3),
        consumers=(
            TopConsumer(
                member="#w2#h",
                state="running",
                owned=12,
                running=3,
                done=1200,
                done_per_s=250.0,
                failed=2,
                oldest_s=1.5,
                failovers=5,
                takeover_ms_avg=12.5,
                takeover_ms_max=30,
                view_id=4,
            ),
            TopConsumer(member="#w1#h", state="draining", owned=1, view_id=4),
            TopConsumer(member="#w0#h", state="gone", done=7, view_id=3),
        ),
        producers=(TopProducer(producer="a1b2c3d4", outstanding=40, lag=17, window=600),),
    )
    text = screen(snapshot)
    lines = text.splitlines()
    assert "spreadq top thumbs  view 4 (1.2.3)  consumers: 2" in lines[0]
    order = [next(i for i, line in enumerate(lines) if m in line) for m in ("#w2", "#w1", "#w0")]
    assert order == sorted(order)
    w2 = lines[order[0]].split()
    assert w2[:8] == ["#w2#h", "running", "12", "3", "1200", "250.0", "2", "1.5s"]
    assert "12.5/30 ms" in lines[order[0]]
    assert "draining" in lines[order[1]]
    assert "gone" in lines[order[2]]
    assert "a1b2c3d4" in text
    assert "17 / 600" in text


def test_an_empty_board_says_so() -> None:
    text = screen(TopSnapshot(queue=QUEUE, view_id=None, group_id=None, consumers=(), producers=()))
    assert "no VIEW yet" in text
    assert "consumers: 0" in text


class FakeConsumer:
    """A WORK and FEEDBACK member that answers a FEEDBACK newcomer as a worker does: the
    VIEW, then its STATS; it records every WORK and FEEDBACK membership it sees."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.me = conn.private_group
        self.work_views: list[tuple[str, ...]] = []
        self.feedback_views: list[tuple[str, ...]] = []
        self.answered = anyio.Event()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        await self.conn.join(WORK)
        await self.conn.join(FEEDBACK)
        started = False
        async for event in self.conn:
            if not isinstance(event, RegularMembership):
                continue
            if event.group == WORK:
                self.work_views.append(event.members)
            else:
                self.feedback_views.append(event.members)
                if not started:
                    started = True
                    task_status.started()
                elif len(event.members) > len(self.feedback_views[-2]):
                    await self.announce()

    async def announce(self) -> None:
        view = View((self.me,), (1, 2, 3), 1)
        stats = Stats(
            b"i" * 16,
            self.me,
            StatsState.RUNNING,
            owned=5,
            running=2,
            done=99,
            failed=1,
            oldest_ms=2500,
            failovers=1,
            takeover_ms_sum=8,
            takeover_ms_max=8,
            group_id=(1, 2, 3),
            ordinal=1,
            interval_ms=1000,
            producers=((PRODUCER, 5, 10),),
        )
        for message in (view, stats):
            await self.conn.multicast(FEEDBACK, encode(message), ServiceType.AGREED, MESS_TYPE)
        self.answered.set()


async def test_watch_reads_feedback_only_and_never_joins_work(spreadq_daemon: Daemon) -> None:
    async with connect(spreadq_daemon.address, name="w1") as conn, anyio.create_task_group() as tg:
        consumer = FakeConsumer(conn)
        await tg.start(consumer.run)
        with anyio.fail_after(WAIT):
            snapshot = await watch(QUEUE, spreadq_daemon.address, wait=WAIT)
        assert snapshot.view_id == 1
        assert snapshot.group_id == (1, 2, 3)
        (row,) = snapshot.consumers
        assert (row.member, row.state, row.owned, row.running, row.done, row.failed) == (
            consumer.me,
            "running",
            5,
            2,
            99,
            1,
        )
        assert row.oldest_s >= 2.5
        assert (row.failovers, row.takeover_ms_avg, row.takeover_ms_max) == (1, 8.0, 8)
        (producer,) = snapshot.producers
        assert (producer.producer, producer.outstanding, producer.lag) == ("a1b2c3d4", 5, 0)
        # top joined FEEDBACK under an observer's name, and WORK never changed
        joined = [m for view in consumer.feedback_views for m in view if m != consumer.me]
        assert joined
        assert all(is_observer(member) for member in joined)
        assert consumer.work_views == [(consumer.me,)]
        tg.cancel_scope.cancel()


async def test_once_json_prints_the_board(spreadq_daemon: Daemon) -> None:
    address = spreadq_daemon.address
    async with connect(address, name="w1") as conn, anyio.create_task_group() as tg:
        consumer = FakeConsumer(conn)
        await tg.start(consumer.run)
        command = [sys.executable, "-m", "spreadq", "top", QUEUE, "-s", address, "--once", "--json"]
        with anyio.fail_after(WAIT):
            completed = await anyio.run_process(command, check=False)
        assert completed.returncode == 0, completed.stderr.decode()
        board = json.loads(completed.stdout)
        assert board["queue"] == QUEUE
        assert board["view_id"] == 1
        assert [(c["member"], c["state"], c["done"]) for c in board["consumers"]] == [
            (consumer.me, "running", 99)
        ]
        assert board["producers"][0]["outstanding"] == 5
        assert consumer.answered.is_set()
        assert consumer.work_views == [(consumer.me,)]
        tg.cancel_scope.cancel()


async def test_once_to_a_pipe_prints_the_whole_table(spreadq_daemon: Daemon) -> None:
    address = spreadq_daemon.address
    async with connect(address, name="w1") as conn, anyio.create_task_group() as tg:
        consumer = FakeConsumer(conn)
        await tg.start(consumer.run)
        command = [sys.executable, "-m", "spreadq", "top", QUEUE, "-s", address, "--once"]
        with anyio.fail_after(WAIT):
            completed = await anyio.run_process(command, check=False)
        assert completed.returncode == 0, completed.stderr.decode()
        screen = completed.stdout.decode()
        header = next(line for line in screen.splitlines() if line.startswith("member"))
        assert header.split() == [
            "member", "state", "owned", "run", "done", "done/s", "failed", "oldest",
            "failovers", "takeover", "view",
        ]  # fmt: skip
        assert consumer.me in screen  # not cut to "#w1#localh…"
        tg.cancel_scope.cancel()


async def test_live_json_lines_follow_the_board_until_stopped(spreadq_daemon: Daemon) -> None:
    """Without --once, top keeps reading and prints the board every half second."""
    address = spreadq_daemon.address
    async with connect(address, name="w1") as conn, anyio.create_task_group() as tg:
        consumer = FakeConsumer(conn)
        await tg.start(consumer.run)
        command = [sys.executable, "-m", "spreadq", "top", QUEUE, "-s", address, "--json"]
        process = await anyio.open_process(command)
        try:
            assert process.stdout is not None
            buffer = b""
            boards: list[dict[str, object]] = []
            with anyio.fail_after(WAIT):
                while not any(board["consumers"] for board in boards):
                    buffer += await process.stdout.receive()
                    *lines, buffer = buffer.split(b"\n")
                    boards += [json.loads(line) for line in lines if line]
            assert boards[-1]["view_id"] == 1
            assert consumer.work_views == [(consumer.me,)]
        finally:
            process.terminate()
            with anyio.fail_after(WAIT):
                await process.wait()
            await process.aclose()
        tg.cancel_scope.cancel()
