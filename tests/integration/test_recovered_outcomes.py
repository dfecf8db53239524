"""A worker whose session is lost keeps the outcomes no delivered ACK confirmed.

The worker reconnects and announces them in an ACK right after it joins, and again when
another member joins WORK, so a copy of the job re-sent by its producer is answered
from memory wherever it lands instead of running again (see ``spreadq.worker.runtime``).
"""

from __future__ import annotations

import os
from collections import Counter
from functools import partial

import anyio
from structlog.testing import capture_logs

from spreadq.client import connect
from spreadq.daemon import Daemon
from spreadq.queue import Ack, JobSpec, Outcome, decode, encode_batch
from spreadq.settings import Settings
from spreadq.wire.events import DataMessage, RegularMembership
from spreadq.worker.app import App

QUEUE = "rec"
FEEDBACK = "rec~fb"
# ACKs wait for three messages read or jobs finished, or a minute, idle or not (no idle
# ACKs): the one job's outcome is still unreported when the session is killed
SLOW_ACKS = Settings(
    ack_every=3, ack_interval=60.0, ack_max_rate=None, reconnect_backoff_initial=0.01
)


async def test_a_reconnected_worker_announces_what_it_ran_and_a_resent_copy_is_not_run(
    spreadq_daemon: Daemon,
) -> None:
    runs: Counter[int] = Counter()
    ran = anyio.Event()

    def make_app(name: str) -> App:
        app = App(QUEUE, spreadq_daemon.address, plugins=False, name=name, settings=SLOW_ACKS)

        @app.handler("square")
        async def square(n: int) -> int:
            runs[n] += 1
            ran.set()
            return n * n

        return app

    producer_id = os.urandom(16)
    reported: list[tuple[str, int, Outcome]] = []
    changed = anyio.Event()
    feedback_members: tuple[str, ...] = ()

    async def watch(conn: object) -> None:
        nonlocal changed, feedback_members
        async for event in conn:  # type: ignore[attr-defined]
            if isinstance(event, DataMessage):
                envelope = decode(event.data)
                if isinstance(envelope, Ack):
                    reported.extend(
                        (event.sender, ref.seq, outcome)
                        for ref, outcome in envelope.outcomes
                        if ref.producer_id == producer_id
                    )
            elif isinstance(event, RegularMembership) and event.group == FEEDBACK:
                feedback_members = event.members
            changed.set()
            changed = anyio.Event()

    async def until(check: object) -> None:
        while not check():  # type: ignore[operator]
            await changed.wait()

    def batch(mseq: int, *seqs: int) -> bytes:
        specs = [JobSpec(seq, "square", str(seq + 1).encode()) for seq in seqs]
        return encode_batch(producer_id, mseq, "json", specs)

    a, b = "#a#localhost", "#b#localhost"
    with capture_logs() as logs, anyio.fail_after(10):
        async with (
            connect(spreadq_daemon.address, name="probe") as probe,
            anyio.create_task_group() as tg,
        ):
            await probe.join(FEEDBACK)
            tg.start_soon(watch, probe)
            await tg.start(partial(make_app("a").run, handle_signals=False))
            await probe.multicast(QUEUE, batch(0, 0))  # job 0: payload 1
            await ran.wait()
            await anyio.wait_all_tasks_blocked()  # its outcome waits for the next ACK
            assert reported == []
            spreadq_daemon.faults.kill(a)
            # a comes back and announces the outcome its lost session never ACKed
            await until(lambda: any(seq == 0 for _, seq, _ in reported))
            assert [(sender, seq) for sender, seq, _ in reported] == [(a, 0)]
            assert any(entry["event"] == "outcomes_recovered" for entry in logs)

            # b joins after that announcement; a announces again at b's join
            await tg.start(partial(make_app("b").run, handle_signals=False))
            await until(lambda: len([1 for sender, *_ in reported if sender == a]) == 2)
            await until(lambda: b in feedback_members)
            # a re-sent copy of job 0 takes the second slot: b owns it, and never ran it
            # (each reads two messages and reaches one outcome: an ACK is due)
            await probe.multicast(QUEUE, batch(1, 1))
            await probe.multicast(QUEUE, batch(2, 0))
            await until(lambda: {seq for _, seq, _ in reported} == {0, 1} and len(reported) >= 4)
            tg.cancel_scope.cancel()

    answers = {(sender, seq): outcome.result for sender, seq, outcome in reported}
    assert answers[(b, 0)] == b"1"  # answered from memory, with the first run's result
    assert answers[(a, 1)] == b"4"
    assert runs == {1: 1, 2: 1}  # job 0 (payload 1) ran once; job 1 (payload 2) once
