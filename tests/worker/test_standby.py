"""Standby (``spreadq.worker.standby``): when a member may leave its socket unread.

A fake clock drives :class:`Standby` directly; then two dispatchers under
``fill_first`` on the embedded daemon show the wiring: the member the rule keeps
waiting rests between reads, the one it gives the jobs never does. The rule's side (how
many jobs go to others first) is ``test_rules.py``'s, the connection's rest
``test_loop_stream.py``'s and ``test_connection.py``'s.
"""

from __future__ import annotations

import anyio
import pytest
from test_dispatcher import FAST, Item, probe_on, result

from spreadq.client import connect
from spreadq.daemon import Daemon
from spreadq.worker.app import App
from spreadq.worker.dispatcher import Dispatcher
from spreadq.worker.standby import MIN_REST, RATE_HALF_LIFE, Standby

WAIT = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_member_with_work_or_next_in_line_reads_at_once() -> None:
    standby = Standby(0.02, Clock())
    assert standby.wait(500, 0, busy=True) == 0.0  # work of its own
    assert standby.wait(0, 0, busy=False) == 0.0  # the next job may be its own


def test_with_no_jobs_flowing_it_rests_the_whole_interval() -> None:
    # no job seen yet: nothing says how soon the jobs before ours could come
    standby = Standby(0.02, Clock())
    assert standby.wait(1, 0, busy=False) == 0.02


def test_the_rest_is_half_the_time_the_recent_rate_needs_for_the_jobs_before_ours() -> None:
    clock = Clock()
    standby = Standby(0.02, clock)
    for step in range(1, 401):  # 10 jobs every millisecond: 10,000 jobs a second
        clock.now += 0.001
        standby.wait(1_000, 10 * step, busy=False)
    assert standby.rate == pytest.approx(10_000, rel=0.01)  # eight half-lives on
    assert standby.wait(100, 4_000, busy=False) == pytest.approx(100 / 10_000 / 2, rel=0.01)
    assert standby.wait(1_000, 4_000, busy=False) == 0.02  # never longer than the interval
    assert standby.wait(10, 4_000, busy=False) < MIN_REST <= 10 / 10_000  # 0.5 ms: read now


def test_the_rate_forgets_a_burst_by_its_half_life() -> None:
    clock = Clock()
    standby = Standby(0.02, clock)
    clock.now += 0.01
    standby.wait(1, 100, busy=False)  # 100 jobs in 10 ms
    burst = standby.rate
    clock.now += RATE_HALF_LIFE  # then none for a half-life
    standby.wait(1, 100, busy=False)
    assert standby.rate == pytest.approx(burst / 2)


@pytest.mark.parametrize(("rule", "rests"), [("fill_first", True), ("round_robin", False)])
async def test_the_member_a_rule_keeps_waiting_rests_and_loses_nothing(
    spreadq_daemon: Daemon, rule: str, rests: bool
) -> None:
    app = App("jobs", spreadq_daemon.address, plugins=False, rule=rule)

    @app.handler("double")
    async def double(item: Item) -> Item:
        return Item(n=2 * item.n)

    spec = app.spec()
    with anyio.fail_after(WAIT):
        async with (
            probe_on(spreadq_daemon) as probe,
            connect(spreadq_daemon.address, name="a") as first,
            connect(spreadq_daemon.address, name="b") as second,
            anyio.create_task_group() as tg,
        ):
            await tg.start(Dispatcher(first, spec, settings=FAST).run)
            await tg.start(Dispatcher(second, spec, settings=FAST).run)
            await probe.until(lambda: len(probe.members()) == 3)  # both, and the probe
            for n in range(30):  # one at a time: under fill_first nobody ever fills up
                (seq,) = await probe.put_items("double", [n])
                outcome = (await probe.results([seq]))[seq]
                assert result(outcome) == Item(n=2 * n)
            tg.cancel_scope.cancel()
    reporters = set(probe.reporter.values())
    (*_, view) = probe.views()  # the consumers in Spread's order, from the last VIEW
    conns = {conn.private_group: conn for conn in (first, second)}
    leader, other = (conns[name] for name in view)
    assert leader.statistics().rests == 0
    if rests:
        assert reporters == {leader.private_group}
        assert other.statistics().rests > 0
    else:
        assert reporters == set(conns)
        assert other.statistics().rests == 0
