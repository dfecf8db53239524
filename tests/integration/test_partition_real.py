"""A network partition and merge between two real Spread daemons.

Two real Spread 5.0.1 daemons, ``d1`` on 127.0.0.1 and ``d2`` on 127.0.0.2, share one
segment (``127.255.255.255``) and port. Worker processes ``w0`` and ``w1`` connect to
``d1``, ``w2`` and ``w3`` to ``d2``; the producer and a FEEDBACK observer to ``d1``, a
second observer to ``d2``. The producer keeps about 400 jobs unfinished. Once 300
results are in, ``d2`` is stopped with SIGSTOP: its side is frozen, so only ``d1``'s
side sees the partition, after Spread's LAN timeouts (a TRANSITIONAL membership, then
a regular one CAUSED_BY_NETWORK with ``w0`` and ``w1`` only, docs/design/membership.md#network).
``d1``'s side takes over the outstanding jobs of ``w2`` and ``w3``, whose payloads it holds
(docs/design/replicated-table.md#failover), and the producer goes on putting jobs. When
those are done ``d2`` gets SIGCONT and the daemons merge (NETWORK on both sides); more jobs
are put, which all four workers share again. Then:

* every receipt resolves with a result;
* a job ran twice only if it was outstanding at the partition: put before ``d1``'s
  side saw its NETWORK view (the partition is that interval: jobs put after SIGSTOP
  may still reach ``d2``, whose socket buffers the packets) and not done at SIGSTOP;
* ``d1``'s side ran jobs in its two-member view, among them jobs put in the
  four-member view (taken over);
* the memberships are a real daemon's: ``d1``'s side gets TRANSITIONAL then
  NETWORK at the partition and NETWORK alone at the merge; ``d2``'s side gets
  TRANSITIONAL then NETWORK (the merged view) after SIGCONT, never a view of its own;
* both observers see the merged view, and the jobs put after the merge ran on all
  four workers.

Needs ``SPREADQ_SPREAD_DAEMON`` and 127.0.0.2 assigned to an interface (``ip addr add
127.0.0.2/32 dev lo``; the test never adds it); skipped with the reason otherwise.
Measured (printed with ``pytest -s``): duplicates, and the times from SIGSTOP to
``d1``'s NETWORK view and from SIGCONT to the merged view on either side.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from harness import (
    Observer,
    Pipeline,
    figures,
    read_records,
    starts_by_job,
    worker_processes,
)

from spreadq import connect
from spreadq.producer import Producer
from spreadq.wire.constants import Cause
from spreadq.wire.events import RegularMembership, TransitionalMembership

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from real_daemon import ENV_VAR, daemon_binary, host_assigned, start_real_daemons

pytestmark = [pytest.mark.slow, pytest.mark.interop]

SECOND_HOST = "127.0.0.2"
BEFORE_MERGE = 1500
AFTER_MERGE = 1000
PARTITION_AFTER = 300
IN_FLIGHT = 400
JOB_SECONDS = 0.004
WAIT = 50.0


@dataclass
class NetworkObserver(Observer):
    """An :class:`Observer` that also keeps, in order, every membership event of the
    group: ``("trans", None)`` or ``("reg", cause)`` with the time it arrived."""

    events: list[tuple[float, str, Cause | None]] = field(default_factory=list)

    async def run(self) -> None:
        async for event in self.conn:
            if isinstance(event, TransitionalMembership) and event.group == self.group:
                self.events.append((time.monotonic(), "trans", None))
            elif isinstance(event, RegularMembership) and event.group == self.group:
                self.events.append((time.monotonic(), "reg", event.cause))
                self.changes.append((time.monotonic(), event.members))
                self.changed.set()
                self.changed = anyio.Event()

    def since(self, after: float) -> list[tuple[str, Cause | None]]:
        return [(kind, cause) for at, kind, cause in self.events if at >= after]


def _requirements() -> str:
    binary = daemon_binary()
    if binary is None:
        pytest.skip(f"{ENV_VAR} is not set: no real Spread daemons to partition")
    if not host_assigned(SECOND_HOST):
        pytest.skip(
            f"{SECOND_HOST} is not assigned to an interface (Spread serves only its "
            f"interfaces' addresses): `ip addr add {SECOND_HOST}/32 dev lo` to run this"
        )
    return binary


async def test_partition_and_merge_real(tmp_path: Path) -> None:
    binary = _requirements()
    queue = f"pr{time.monotonic_ns() % 10**6}"
    feedback = f"{queue}~fb"
    records = tmp_path / "records"
    hosts = [("d1", "127.0.0.1"), ("d2", SECOND_HOST)]
    with start_real_daemons(binary, tmp_path / "spread", hosts) as (d1, d2):
        addresses = [d1.tcp_address, d1.tcp_address, d2.tcp_address, d2.tcp_address]
        # Receipts resolve at the ACK here (no outcome notices), so a receipt done when
        # the network splits is a job every replica had completed: the bound below.
        async with worker_processes(
            addresses,
            queue=queue,
            records=records,
            concurrency=4,
            extra_env={"SPREADQ_OUTCOME_NOTICES": "0"},
        ) as workers:
            side1 = {workers[0].member("d1"), workers[1].member("d1")}
            side2 = {workers[2].member("d2"), workers[3].member("d2")}
            try:
                with anyio.fail_after(WAIT):
                    async with (
                        connect(d1.tcp_address, name="observer") as conn1,
                        connect(d2.tcp_address, name="observer2") as conn2,
                        anyio.create_task_group() as tg,
                        Producer(queue, d1.tcp_address) as producer,
                    ):
                        observer1 = NetworkObserver(conn1, feedback)
                        observer2 = NetworkObserver(conn2, feedback)
                        await conn1.join(feedback)
                        await conn2.join(feedback)
                        tg.start_soon(observer1.run)
                        tg.start_soon(observer2.run)
                        await producer.wait_for_consumers(4)
                        pipeline = Pipeline(producer, IN_FLIGHT, JOB_SECONDS)
                        stopped_at = 0.0
                        put_before_stop = 0
                        put_before_view = 0
                        done_before: set[int] = set()

                        def parted(members: tuple[str, ...]) -> bool:
                            return side1 <= set(members) and not side2 & set(members)

                        def view_seen() -> bool:
                            return any(
                                at >= stopped_at and parted(members)
                                for at, members in observer1.changes
                            )

                        for i in range(BEFORE_MERGE):
                            await pipeline.put(i)
                            if not stopped_at and len(pipeline.results) >= PARTITION_AFTER:
                                put_before_stop = len(pipeline.receipts)
                                done_before = {
                                    i for i, receipt in enumerate(pipeline.receipts) if receipt.done
                                }
                                stopped_at = time.monotonic()
                                d2.process.send_signal(signal.SIGSTOP)
                            elif stopped_at and not put_before_view and view_seen():
                                put_before_view = len(pipeline.receipts)
                        await pipeline.settle()
                        assert stopped_at, "the partition never happened"
                        parted_seen = await observer1.until(parted, after=stopped_at)
                        put_before_view = put_before_view or len(pipeline.receipts)
                        continued_at = time.monotonic()
                        d2.process.send_signal(signal.SIGCONT)
                        everyone = side1 | side2
                        merged_seen1 = await observer1.until(
                            lambda members: everyone <= set(members), after=continued_at
                        )
                        merged_seen2 = await observer2.until(
                            lambda members: everyone <= set(members), after=continued_at
                        )
                        for i in range(BEFORE_MERGE, BEFORE_MERGE + AFTER_MERGE):
                            await pipeline.put(i)
                        await pipeline.finish()
                        tg.cancel_scope.cancel()
            except BaseException:
                print(f"--- d1\n{d1.log()[-3000:]}\n--- d2\n{d2.log()[-3000:]}")
                raise

    # d1's side: the view ends (TRANSITIONAL), then a NETWORK view without d2's side
    partition_events = observer1.since(stopped_at)
    assert partition_events[:2] == [("trans", None), ("reg", Cause.NETWORK)]
    # the merge is a NETWORK change on both sides; a pure merge sends no TRANSITIONAL
    # membership to the side that only gains members
    # (docs/design/membership.md#partition-and-merge); d2's side, frozen through the
    # partition, sees its old view end and goes straight to the merged one
    assert observer1.since(continued_at)[:1] == [("reg", Cause.NETWORK)]
    assert observer2.since(continued_at)[:2] == [("trans", None), ("reg", Cause.NETWORK)]

    results = pipeline.results
    total = BEFORE_MERGE + AFTER_MERGE
    assert [result["i"] for result in results] == list(range(total))
    starts = starts_by_job(read_records(records))
    assert sorted(starts) == list(range(total))
    duplicates = {i for i, runs in starts.items() if len(runs) > 1}
    outstanding_at_stop = set(range(put_before_stop)) - done_before
    outstanding_at_partition = set(range(put_before_view)) - done_before
    assert duplicates <= outstanding_at_partition
    partitioned = [run for runs in starts.values() for run in runs if run.view_size == 2]
    assert {run.member for run in partitioned} >= side1  # d1's side worked alone
    taken_over = {
        result["i"]
        for result in results[:put_before_stop]
        if set(result["members"]) == side1 and result["member"] in side1
    }
    assert taken_over, "d1's side took over none of the jobs put before the partition"
    after_merge = {result["member"] for result in results[BEFORE_MERGE:]}
    assert after_merge == side1 | side2
    figures(
        "partition_real",
        jobs=total,
        outstanding_at_stop=len(outstanding_at_stop),
        put_during_detection=put_before_view - put_before_stop,
        duplicates=len(duplicates),
        duplicates_put_after_stop=len({i for i in duplicates if i >= put_before_stop}),
        taken_over=len(taken_over),
        ran_partitioned=len(partitioned),
        ran_partitioned_on_d2=len([run for run in partitioned if run.member in side2]),
        stop_to_network_view_ms=(parted_seen - stopped_at) * 1000,
        cont_to_merged_view_d1_ms=(merged_seen1 - continued_at) * 1000,
        cont_to_merged_view_d2_ms=(merged_seen2 - continued_at) * 1000,
    )
