"""Periodic jobs without a leader: the sans-IO ticker and ledger, then the seeded simulation.

The simulation (``queue_sim.py`` with ``periodic=True``) gives every replica a ticker on
a skewed clock and checks that a tick runs from one announcement per memory epoch of a
component and that, with ``catch_up="all"``, no tick is skipped while the group lives.
"""

from __future__ import annotations

import os
import sys
import types
from datetime import timedelta
from pathlib import Path

import pytest
import queue_sim
from hypothesis import given
from hypothesis import strategies as st
from queue_sim import InvariantError, Simulation

import spreadq.queue.periodic
from spreadq.errors import ConfigurationError
from spreadq.queue.periodic import (
    MAX_CATCH_UP,
    Schedule,
    Ticker,
    TickLedger,
    parse_tick_key,
    tick_key,
)
from spreadq.worker.app import App
from spreadq.worker.periodic import PeriodicTick

A, B, C = "#a#h", "#b#h", "#c#h"
EVERY = Schedule("report", 10.0)
ALL = Schedule("report", 10.0, "all")


@given(st.text(min_size=1, max_size=40), st.integers(0, 2**40))
def test_tick_keys_round_trip(name: str, tick: int) -> None:
    assert parse_tick_key(tick_key(name, tick)) == (name, tick)


@pytest.mark.parametrize(
    "key", ["order-7", "periodic:", "periodic:x", "periodic::3", "periodic:x:-1"]
)
def test_other_keys_are_no_ticks(key: str) -> None:
    assert parse_tick_key(key) is None


@pytest.mark.parametrize("every", [0.0, -1.0, float("inf"), float("nan")])
def test_a_schedule_needs_a_positive_period(every: float) -> None:
    with pytest.raises(ConfigurationError, match="every must be > 0"):
        Schedule("s", every)


def test_a_schedule_refuses_an_unknown_catch_up() -> None:
    with pytest.raises(ConfigurationError, match="catch_up"):
        Schedule("s", 1.0, "some")  # type: ignore[arg-type]


def member(me: str, joined_at: float, schedule: Schedule = EVERY) -> Ticker:
    return Ticker(me, (schedule,), TickLedger(), joined_at=joined_at)


def test_the_first_member_announces_from_its_join_on_not_before() -> None:
    a = member(A, joined_at=105.0)
    a.ledger.on_view((A,), None)
    assert a.due(109.0) == []  # tick 10 (due at 100) came due before we joined
    assert a.next_due(109.0) == 110.0
    assert a.due(111.0) == [(EVERY, 11)]
    assert a.due(112.0) == []  # announced, not yet delivered: not again


def test_a_newcomer_leaves_the_ticks_to_a_witness() -> None:
    a, b = member(A, 0.0), member(B, 95.0)
    a.ledger.on_view((A,), None)
    a.ledger.on_tick("report", 9)
    for ticker in (a, b):  # B joins
        ticker.ledger.on_view((A, B), None if ticker is b else (A,))
    assert b.ledger.announcer("report", B) is False  # A was there before B
    assert a.due(101.0) == [(EVERY, 10)]
    assert b.due(101.0) == []
    for ticker in (a, b):
        ticker.ledger.on_tick("report", 10)
    assert (a.ledger.last("report"), b.ledger.last("report")) == (10, 10)


def test_after_the_announcer_goes_the_next_witness_catches_up() -> None:
    for schedule, expected in ((EVERY, [13]), (ALL, [11, 12, 13])):
        a, b = member(A, 0.0, schedule), member(B, 0.0, schedule)
        for ticker in (a, b):
            ticker.ledger.on_view((A, B), None)
            ticker.ledger.on_tick("report", 10)
        assert b.due(135.0) == []  # A announces
        b.ledger.on_view((B,), (B,))  # A dies having announced nothing since tick 10
        b.on_view()
        assert [t for _, t in b.due(135.0)] == expected


def test_a_newcomer_alone_announces_what_came_due_since_it_joined() -> None:
    a, b = member(A, 0.0, ALL), member(B, 95.0, ALL)
    a.ledger.on_view((A,), None)
    a.ledger.on_tick("report", 8)
    b.ledger.on_view((A, B), None)
    b.ledger.on_view((B,), (A, B))  # A dies: no witness of tick 8 is left
    assert [t for _, t in b.due(121.0)] == [10, 11, 12]  # due since 95: from 100 on


def test_catching_up_is_bounded() -> None:
    a = member(A, 0.0, ALL)
    a.ledger.on_view((A,), None)
    a.ledger.on_tick("report", 0)
    ticks = [t for _, t in a.due(10.0 * (MAX_CATCH_UP + 50))]
    assert len(ticks) == MAX_CATCH_UP
    assert ticks[-1] == MAX_CATCH_UP + 50


def test_after_a_merge_each_side_announces_and_the_first_witness_then_alone() -> None:
    a, b = member(A, 0.0), member(B, 0.0)
    for ticker, side in ((a, (A,)), (b, (B,))):  # two sides, each saw its own tick 10
        ticker.ledger.on_view(side, None)
        ticker.ledger.on_tick("report", 10)
    for ticker, side in ((a, (A,)), (b, (B,))):
        ticker.ledger.on_view((A, B), side)
    assert a.due(111.0) == [(EVERY, 11)]
    assert b.due(111.0) == [(EVERY, 11)]  # the table turns the second into a duplicate
    for ticker in (a, b):
        ticker.ledger.on_tick("report", 11)
    assert a.ledger.announcer("report", A)
    assert not b.ledger.announcer("report", B)


def test_app_periodic_registers_a_handler_and_a_schedule() -> None:
    app = App("q", plugins=False)

    @app.periodic(timedelta(minutes=5), catch_up="all")
    async def cleanup(tick: PeriodicTick) -> None:
        return None

    assert app.schedules == (Schedule("cleanup", 300.0, "all"),)
    assert "cleanup" in app.handlers
    with pytest.raises(ConfigurationError, match="every must be > 0"):
        app.periodic(0)
    assert app.spec().schedules == (Schedule("cleanup", 300.0, "all"),)


# --- the seeded simulation --------------------------------------------------------------

# a periodic run carries a tick job every few steps on top of the usual traffic: fewer
# seeds than the table's own simulation by default (SPREADQ_SIM_SEEDS raises both)
SEEDS = int(os.environ.get("SPREADQ_SIM_SEEDS", "12"))
STEPS = int(os.environ.get("SPREADQ_SIM_STEPS", "300"))
RULES = ("round_robin", "key_affinity", "least_loaded")
_RUNS: dict[int, Simulation] = {}


def simulate(seed: int) -> Simulation:
    """Run one seed (once per session: the summary test reads the same runs)."""
    if seed not in _RUNS:
        sim = Simulation(seed, rule=RULES[seed % 3], periodic=True, dedupe=bool(seed % 3))
        for _ in range(STEPS):
            sim.step()
        sim.quiesce()
        sim.check_liveness()
        sim.check_no_tick_skipped()
        sim.check_ticks_current()
        _RUNS[seed] = sim
    return _RUNS[seed]


@pytest.mark.parametrize("seed", range(SEEDS))
def test_simulation_with_periodic_ticks(seed: int) -> None:
    # every step checks that a tick runs from one announcement per memory epoch; the
    # end checks liveness and, with catch_up="all", that no tick was skipped while a
    # witness of the last one lived
    assert simulate(seed).tick_runs


def test_the_periodic_simulation_runs_many_ticks_across_changes() -> None:
    runs = [simulate(seed) for seed in range(SEEDS)]
    assert sum(len(sim.tick_runs) for sim in runs) > 30 * SEEDS
    # merges, partitions and skewed clocks do announce a tick twice; none ran twice
    assert sum(sum(len(e) > 1 for e in sim.tick_epochs.values()) for sim in runs) > 0
    assert any(sim.schedule.catch_up == "all" for sim in runs)


def planted_periodic(original: str, planted: str) -> types.ModuleType:
    """``spreadq.queue.periodic`` compiled with one edit (which must apply once)."""
    path = Path(spreadq.queue.periodic.__file__)
    source = path.read_text(encoding="utf-8")
    assert source.count(original) == 1, "the bug no longer matches the source"
    module = types.ModuleType("spreadq.queue._planted_periodic")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    try:
        exec(compile(source.replace(original, planted), str(path), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


PLANTED: dict[str, tuple[str, str]] = {
    "catch-up announces only the latest tick": (
        'limit = 1 if schedule.catch_up == "latest" else MAX_CATCH_UP',
        "limit = 1",
    ),
    "the witnesses of a tick are forgotten at a view change": (
        "entry.witnesses &= kept",
        "entry.witnesses = frozenset()",
    ),
    "a member without a witness never announces": (
        "return not (self.elders - {me})",
        "return False",
    ),
}


@pytest.mark.parametrize("name", list(PLANTED))
def test_the_periodic_simulation_catches_a_planted_bug(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = planted_periodic(*PLANTED[name])
    monkeypatch.setattr(queue_sim, "Ticker", module.Ticker)
    monkeypatch.setattr(queue_sim, "TickLedger", module.TickLedger)
    caught = []
    for seed in (3, 5, 7, 9, 11):  # catch_up="all"
        sim = Simulation(seed, rule=RULES[seed % 3], periodic=True)
        try:
            for _ in range(STEPS):
                sim.step()
            sim.quiesce()
            sim.check_liveness()
            sim.check_no_tick_skipped()
            sim.check_ticks_current()
        except InvariantError as error:
            caught.append(str(error).splitlines()[0])
            break
    assert caught, f"{name}: no seed broke an invariant"
