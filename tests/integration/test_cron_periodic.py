"""A cron periodic job on three worker processes: one run per tick, at every second.

The workers run ``worker_app`` with ``SPREADQ_TEST_CRON="* * * * * *"`` (six fields: the
last is seconds, so a tick every second, ``catch_up="all"``). A FEEDBACK member counts
the ticks reported in ACKs until five have run; then, from the workers' records, every
tick ran exactly once, and the ticks are consecutive whole seconds: the cron schedule
numbers its ticks by their due times, and none between the first and the last was
skipped.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import anyio
import pytest
from harness import read_records, spread_daemon, worker_processes

from spreadq import connect
from spreadq.queue.envelope import Ack, decode
from spreadq.wire.events import DataMessage

pytestmark = pytest.mark.slow

WORKERS = 3
TICKS = 5


async def test_a_cron_job_runs_once_a_second_on_one_member(
    spread_address: str | None, tmp_path: Path
) -> None:
    queue = f"pc{time.monotonic_ns() % 10**6}"
    records = tmp_path / "records"
    env = {"SPREADQ_TEST_CRON": "* * * * * *"}
    reported: set[int] = set()
    async with (
        spread_daemon(spread_address) as address,
        worker_processes(
            [address] * WORKERS, queue=queue, records=records, concurrency=2, extra_env=env
        ),
    ):
        with anyio.fail_after(30.0):
            async with connect(address, name="ticks") as conn:
                await conn.join(f"{queue}~fb")
                async for event in conn:
                    if not isinstance(event, DataMessage) or not event.data.startswith(b"SQ"):
                        continue
                    envelope = decode(event.data)
                    if not isinstance(envelope, Ack):
                        continue
                    for _, outcome in envelope.outcomes:
                        if outcome.ok and outcome.result.startswith(b'{"tick"'):
                            reported.add(json.loads(outcome.result)["tick"])
                    if len(reported) >= TICKS:
                        break

    runs: dict[int, list[str]] = defaultdict(list)
    for record in read_records(records):
        if record.event == "crontick":
            runs[record.i].append(record.member)
    ticks = sorted(runs)
    assert len(ticks) >= TICKS
    assert ticks == list(range(ticks[0], ticks[-1] + 1)), f"not every second: {ticks}"
    assert {t: m for t, m in runs.items() if len(m) > 1} == {}, "a tick ran twice"
    assert abs(ticks[-1] - time.time()) < 60, "ticks are not numbered by their due time"
