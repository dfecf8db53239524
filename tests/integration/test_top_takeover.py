"""``spreadq top`` end to end: three worker processes report STATS, ``top --once --json``
lists them; a worker is killed with SIGKILL while it runs jobs, and the live ``top
--json`` shows it gone and the survivors' takeover of its jobs.

Runs on the daemon of ``spread_address`` (embedded, or a real one when configured).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from harness import REPO, read_records, spread_daemon, worker_processes

from spreadq.producer import Producer

pytestmark = pytest.mark.slow

WORKERS = 3
JOBS = 9  # three per worker under round robin: w0, the victim, gets 0, 3 and 6
JOB_SECONDS = 1.0
VICTIM_SECONDS = 60.0  # the victim's jobs outlast any delay before the kill, however loaded
WAIT = 40.0

Board = dict[str, Any]


def top_command(queue: str, address: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "spreadq", "top", queue, "--spread", address, "--json", *options]


async def read_boards(process: anyio.abc.Process, until: Callable[[Board], bool]) -> Board:
    """Read ``top --json`` lines until one satisfies ``until``; return it."""
    assert process.stdout is not None
    buffer = b""
    while True:
        buffer += await process.stdout.receive()
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            board: Board = json.loads(line)
            if until(board):
                return board


def job(i: int, *, victim: bool) -> dict[str, float]:
    """Job ``i``; the victim's jobs run until it is killed, and briefly when taken over."""
    if victim:
        return {"i": i, "seconds": VICTIM_SECONDS, "seconds_again": JOB_SECONDS}
    return {"i": i, "seconds": JOB_SECONDS}


def rows(board: Board) -> dict[str, Board]:
    return {row["member"]: row for row in board["consumers"]}


async def test_top_shows_a_killed_worker_gone_and_the_takeover(
    spread_address: str | None, tmp_path: Path
) -> None:
    queue = f"top{time.monotonic_ns() % 10**6}"
    records = tmp_path / "records"
    async with (
        spread_daemon(spread_address) as address,
        worker_processes([address] * WORKERS, queue=queue, records=records, concurrency=4) as ws,
        Producer(queue, address, plugins=False) as producer,
    ):
        members = [worker.member() for worker in ws]  # both daemons are named localhost
        with anyio.fail_after(WAIT):
            await producer.wait_for_consumers(WORKERS)
            once = await anyio.run_process(
                top_command(queue, address, "--once", "--wait", str(WAIT)), cwd=REPO
            )
        board = json.loads(once.stdout)
        assert sorted(rows(board)) == sorted(members)
        assert {row["state"] for row in board["consumers"]} == {"running"}

        live = await anyio.open_process(top_command(queue, address), cwd=REPO)
        try:
            with anyio.fail_after(WAIT):
                receipts = [
                    await producer.put("work", job(i, victim=i % WORKERS == 0)) for i in range(JOBS)
                ]
                victim = ws[0]
                # the victim reports jobs running: they are its to lose
                await read_boards(live, lambda b: rows(b).get(members[0], {}).get("running", 0) > 0)
                victim.kill()
                after = await read_boards(
                    live,
                    lambda b: (
                        rows(b).get(members[0], {}).get("state") == "gone"
                        and sum(rows(b).get(m, {}).get("failovers", 0) for m in members[1:]) > 0
                    ),
                )
                results = [await receipt for receipt in receipts]
        finally:
            live.terminate()
            await live.wait()
            await live.aclose()
    survivors = [rows(after)[m] for m in members[1:]]
    assert all(row["state"] == "running" for row in survivors)
    taken_over = sum(row["failovers"] for row in survivors)
    assert taken_over >= 1
    assert all(row["takeover_ms_max"] is not None for row in survivors if row["failovers"])
    assert after["group_id"] != board["group_id"]  # the view after the victim left
    assert len(results) == JOBS
    victim_started = {r.i for r in read_records(records) if r.member == members[0]}
    assert victim_started  # it had jobs in hand when it died
    assert {result["i"] for result in results} == set(range(JOBS))
    assert all(
        result["member"] != members[0] for result in results if result["i"] in victim_started
    )
