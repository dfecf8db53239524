"""Two producers put jobs with the same dedupe keys: each key runs once, both receipts agree.

Three worker processes; two producers (two sessions, two producer ids) each put one
job per key, ``order-0`` ... ``order-11``, interleaved, so for every key the total
order decides which of the two came first. Then:

* for every key exactly one of its two jobs started, exactly once (the records the
  workers write show every start, even a killed worker's);
* both receipts of a key resolve with the same result: the first job's (the result
  names the job's number, so the test sees which one ran);
* killing a worker mid-run (worker ``w1``, SIGKILL, once it has been handed its jobs)
  changes neither: a survivor re-runs each first job the victim had started and not
  finished, and the duplicates wait for that run's outcome.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from harness import figures, read_records, spread_daemon, starts_by_job, worker_processes

from spreadq.producer import Producer, Receipt

pytestmark = pytest.mark.slow

KEYS = 12
WORKERS = 3
WAIT = 30.0
JOB_SECONDS = 1.0


@pytest.mark.parametrize("kill", [False, True], ids=["steady", "kill"])
async def test_two_producers_with_the_same_keys(
    spread_address: str | None, tmp_path: Path, kill: bool
) -> None:
    queue = f"dd{time.monotonic_ns() % 10**6}"
    records_dir = tmp_path / "records"
    async with (
        spread_daemon(spread_address) as address,
        worker_processes([address] * WORKERS, queue=queue, records=records_dir, concurrency=8) as w,
    ):
        with anyio.fail_after(WAIT):
            async with Producer(queue, address) as one, Producer(queue, address) as two:
                await one.wait_for_consumers(WORKERS)
                await two.wait_for_consumers(WORKERS)
                pairs: list[tuple[Receipt[Any], Receipt[Any]]] = []
                for n in range(KEYS):
                    job = {"i": n, "seconds": JOB_SECONDS}
                    first = await one.put("work", job, dedupe_key=f"order-{n}")
                    job = {"i": 100 + n, "seconds": JOB_SECONDS}
                    second = await two.put("work", job, dedupe_key=f"order-{n}")
                    pairs.append((first, second))
                if kill:
                    # a quick job ordered after every keyed one: once it has run, every
                    # worker has been handed its keyed jobs (a second's work each)
                    await (await one.put("work", {"i": 999}))
                    w[1].kill()
                results = [(await a, await b) for a, b in pairs]
                # the ACKs too, not only the notices: the workers are killed one by one when
                # the test ends, and a survivor would run again what another had not ACKed
                await one.settled()
                await two.settled()

    starts = starts_by_job(read_records(records_dir))
    victim = w[1].member()
    for n, (a, b) in enumerate(results):
        assert a == b, f"order-{n}: the two receipts disagree: {a} vs {b}"
        assert a["i"] in (n, 100 + n)
        ran = [i for i in (n, 100 + n) if i in starts]
        assert ran == [a["i"]], f"order-{n}: jobs {ran} started, one expected"
        runs = sorted(starts[a["i"]], key=lambda r: r.at)
        # once, or again on a survivor after the victim's run was lost with it
        assert len(runs) == 1 or (kill and [r.member for r in runs[:-1]] == [victim])
    if kill:
        # what the victim started and never finished ran again on a survivor (usually
        # some: its jobs take a second, and it was killed once it had been handed them)
        records = read_records(records_dir)
        done = {(r.i, r.member) for r in records if r.event == "done"}
        cut = {r.i for r in records if r.event == "start" and r.member == victim}
        cut = {i for i in cut if (i, victim) not in done and i != 999}
        for i in cut:
            last = max(starts[i], key=lambda r: r.at)
            assert (len(starts[i]), last.member != victim) == (2, True), starts[i]
        figures("dedupe_kill", jobs_cut_by_the_kill=len(cut))
