"""Periodic jobs without a leader: the tick ledger in the table, the ticker, then the
seeded simulation.

The table cases drive replicas by hand (``Cluster`` from ``test_table.py``): which TICK
is accepted, how LEDGERs settle the ledger after joins and merges, and who announces.
The simulation (``queue_sim.py`` with ``periodic=True``) gives every replica a ticker on
a skewed clock and checks, after every step, that the members of a view agree on their
ledger, that a TICK is accepted exactly when delivered in the view it names and never
twice in a lineage of views, and at the end that, with ``catch_up="all"``, no tick was
skipped and the tick due at the end was accepted.
"""

from __future__ import annotations

import os
import random
import sys
import types
from datetime import timedelta
from pathlib import Path

import pytest
import queue_sim
from hypothesis import given
from hypothesis import strategies as st
from queue_sim import InvariantError, Simulation
from test_table import JOIN, LEAVE, NETWORK, Cluster, of_type, runs

import spreadq.queue.periodic
from spreadq.errors import ConfigurationError
from spreadq.queue.effects import AnnounceLedger, Effect, RunJob, SendAck
from spreadq.queue.envelope import MESS_TYPE, JobSpec, Ledger, encode, encode_batch
from spreadq.queue.inputs import MessageDelivered
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.queue.periodic import (
    MAX_CATCH_UP,
    MAX_SCHEDULE_NAME,
    Schedule,
    Ticker,
    TickKey,
    TickLedger,
    parse_tick_key,
    tick_key,
)
from spreadq.queue.view import GroupIdTuple, Transitional
from spreadq.worker.app import App
from spreadq.worker.periodic import PeriodicTick

N, A, B, C = "#0#h", "#a#h", "#b#h", "#c#h"  # N sorts first: a newcomer that leads
EVERY = Schedule("report", 10.0)
ALL = Schedule("report", 10.0, "all")
TICKER = b"\xee" * 16


@given(
    st.text(min_size=1, max_size=40),
    st.integers(0, 2**40),
    st.tuples(*[st.integers(-(2**31), 2**31 - 1)] * 3),
)
def test_tick_keys_round_trip(name: str, tick: int, view: GroupIdTuple) -> None:
    assert parse_tick_key(tick_key(name, tick, view)) == TickKey(name, tick, view)


@pytest.mark.parametrize(
    "key",
    [
        "order-7",
        "periodic:",
        "periodic:x",
        "periodic::3@1.2.3",
        "periodic:x:-1@1.2.3",
        "periodic:x:3",  # a key of a spreadq before LEDGER: it names no view
        "periodic:x:3@1.2",
        "periodic:x:3@1.2.3.4",
        "periodic:x:3@a.2.3",
        "periodic:x:3@1.2.2147483648",
        "periodic:x:3@1.2.٣",
    ],
)
def test_other_keys_are_no_ticks(key: str) -> None:
    assert parse_tick_key(key) is None


@pytest.mark.parametrize("every", [0.0, -1.0, float("inf"), float("nan")])
def test_a_schedule_needs_a_positive_period(every: float) -> None:
    with pytest.raises(ConfigurationError, match="every must be > 0"):
        Schedule("s", every)


@pytest.mark.parametrize("name", ["", "x" * (MAX_SCHEDULE_NAME + 1), "é" * 95])
def test_a_schedule_name_must_fit_a_tick_key(name: str) -> None:
    with pytest.raises(ConfigurationError, match="a name is 1 to"):
        Schedule(name, 1.0)


@given(st.integers(0, 2**64 - 1), st.tuples(*[st.integers(-(2**31), 2**31 - 1)] * 3))
def test_the_longest_schedule_name_fits_every_tick_key(tick: int, view: GroupIdTuple) -> None:
    name = "x" * MAX_SCHEDULE_NAME
    Schedule(name, 1.0)
    JobSpec(1, name, b"{}", dedupe_key=tick_key(name, tick, view))  # no LocalProtocolError


def test_a_schedule_refuses_an_unknown_catch_up() -> None:
    with pytest.raises(ConfigurationError, match="catch_up"):
        Schedule("s", 1.0, "some")  # type: ignore[arg-type]


# --- the ledger in the table, by hand ----------------------------------------------------


class Ticks:
    """A Cluster (ACK after every outcome) whose members announce and speak by hand."""

    def __init__(self, *members: str) -> None:
        self.cluster = Cluster(ack_every=1)
        self.seq = 0
        for name in members:
            self.speak(self.cluster.join(name))

    @property
    def members(self) -> tuple[str, ...]:
        return self.cluster.members

    def ledger(self, name: str) -> TickLedger:
        return self.cluster.tables[name].ticks

    def tick(
        self,
        sender: str,
        t: int,
        *,
        view: GroupIdTuple | None = None,
        to: tuple[str, ...] | None = None,
        key: str | None = None,
    ) -> tuple[JobRef, dict[str, list[Effect]]]:
        """``sender`` announces tick ``t`` of "report" in ``view`` (the current one)."""
        self.seq += 1
        if key is None:
            key = tick_key("report", t, view or self.cluster.gid)
        spec = JobSpec(self.seq, "report", b"{}", dedupe_key=key)
        data = encode_batch(TICKER, self.seq, "json", [spec])
        delivered = MessageDelivered(sender, MESS_TYPE, data)
        return JobRef(TICKER, self.seq), self.cluster.feed(to or self.members, delivered)

    def speak(
        self, effects: dict[str, list[Effect]], *, to: tuple[str, ...] | None = None
    ) -> list[Ledger]:
        """Deliver the LEDGERs the tables asked for (in member order) to ``to``."""
        spoken = []
        for name in sorted(effects):
            for ask in of_type(effects[name], AnnounceLedger):
                spoken.append(ask.envelope)
                delivered = MessageDelivered(name, MESS_TYPE, encode(ask.envelope))
                self.cluster.feed(to or self.members, delivered)
        return spoken

    def stats(self, counter: str) -> dict[str, int]:
        return {name: getattr(self.cluster.tables[name].stats, counter) for name in self.members}

    def latest(self) -> dict[str, int | None]:
        return {name: self.ledger(name).last("report") for name in self.members}


def reported(effects: list[Effect]) -> dict[JobRef, Outcome]:
    return {r: o for send in of_type(effects, SendAck) for r, o in send.envelope.outcomes}


def ran(ref: JobRef, effects: dict[str, list[Effect]]) -> list[str]:
    return [n for n, e in effects.items() if any(r.ref == ref for r in of_type(e, RunJob))]


def test_a_lone_first_member_settles_at_once_and_a_tick_is_a_job() -> None:
    ticks = Ticks(A)
    assert ticks.ledger(A).settled  # alone: nobody to hear from
    ref, effects = ticks.tick(A, 10)
    assert ran(ref, effects) == [A]
    assert ticks.latest() == {A: 10}
    assert ticks.cluster.tables[A].dedupe_memory() == {}  # ticks stay out of the memory


def test_a_join_between_two_announcements_of_a_tick_runs_it_once() -> None:
    ticks = Ticks(A, B)
    first, effects = ticks.tick(A, 10)
    assert ran(first, effects) == [A]
    joined = ticks.cluster.join(C)  # C joins: the old dedupe memory would be cut here
    assert [n for n, e in joined.items() if of_type(e, AnnounceLedger)] == [A, C]
    assert not any(ticks.ledger(n).settled for n in ticks.members)
    spoken = ticks.speak(joined)
    assert [(s.members, s.latest) for s in spoken] == [((A, B), (("report", 10),)), ((C,), ())]
    assert all(ticks.ledger(n).settled for n in ticks.members)
    assert ticks.latest() == {A: 10, B: 10, C: 10}
    again, effects = ticks.tick(A, 10)  # announced a second time, in the new view
    assert ran(again, effects) == []
    outcomes = [reported(e).get(again) for e in effects.values()]
    refused = [o for o in outcomes if o is not None]
    assert len(refused) == 1
    assert refused[0].error_type == "StaleTick"
    assert "accepted already" in refused[0].error_message


def test_a_tick_before_the_ledger_settles_is_refused_everywhere() -> None:
    ticks = Ticks(A)
    joined = ticks.cluster.join(B)
    ref, effects = ticks.tick(A, 11)  # announced in this view, but nothing settled yet
    assert ran(ref, effects) == []
    assert ticks.stats("ticks_refused") == {A: 1, B: 1}
    ticks.speak(joined)
    ref, effects = ticks.tick(A, 11)
    assert ran(ref, effects) != []
    assert ticks.latest() == {A: 11, B: 11}


def test_a_stale_tick_is_refused_everywhere_and_announced_again() -> None:
    ticks = Ticks(A, B, C)
    ticks.tick(A, 10)
    old = ticks.cluster.gid
    ticks.cluster.view((A, B), LEAVE, C)  # everyone came with us: still settled
    assert all(ticks.ledger(n).settled for n in ticks.members)
    ref, effects = ticks.tick(A, 11, view=old)  # sent before C left, delivered after
    assert ran(ref, effects) == []
    outcomes = [reported(e)[ref] for e in effects.values() if ref in reported(e)]
    assert [o.error_type for o in outcomes] == ["StaleTick"]
    assert "another view" in outcomes[0].error_message
    assert ticks.latest() == {A: 10, B: 10}
    ticker = Ticker(A, (EVERY,), ticks.ledger(A))
    assert ticker.due(111.0) == [(EVERY, 11)]  # the announcer makes it again
    ref, effects = ticks.tick(A, 11)
    assert ran(ref, effects) != []
    assert ticks.latest() == {A: 11, B: 11}


def test_a_tick_with_a_key_of_an_older_spreadq_is_refused() -> None:
    ticks = Ticks(A, B)
    ref, effects = ticks.tick(A, 11, key="periodic:report:11")
    assert ran(ref, effects) == []
    assert ticks.stats("ticks_refused") == {A: 1, B: 1}


def test_the_tick_counters_count_each_tick() -> None:
    ticks = Ticks(A)
    ticks.tick(A, 10)
    ticks.tick(A, 11)
    ticks.tick(A, 11)  # not after the latest: refused
    ticks.tick(A, 12, key="periodic:report:12")  # names no view: refused
    ticks.tick(A, 12)
    assert (ticks.stats("ticks_accepted"), ticks.stats("ticks_refused")) == ({A: 3}, {A: 2})


def test_a_refused_tick_keeps_its_slot() -> None:
    ticks = Ticks(A, B)
    ticks.cluster.join(C)
    ref, effects = ticks.tick(A, 11)  # refused (unsettled), slot 0 -> A
    assert reported(effects[A])[ref].error_type == "StaleTick"
    sent = ticks.cluster.send(1)  # slot 1 -> B
    assert {n: runs(e) for n, e in sent.items()} == {A: [], B: [1], C: []}


def test_a_newcomer_first_in_order_with_a_lagging_clock_does_not_announce_again() -> None:
    ticks = Ticks(A, B)
    ticks.tick(A, 10)  # due at 100, announced by A's clock
    joined = ticks.cluster.join(N)  # N sorts first: it announces from now on
    newcomer = Ticker(N, (EVERY,), ticks.ledger(N))
    assert newcomer.due(101.0) == []  # unsettled: nobody announces
    ticks.speak(joined)
    assert ticks.latest() == {N: 10, A: 10, B: 10}
    assert newcomer.due(99.0) == []  # its clock lags: tick 10 is not due yet by it ...
    assert newcomer.due(101.0) == []  # ... and once due, it is accepted already
    assert Ticker(A, (EVERY,), ticks.ledger(A)).due(111.0) == []  # A is no longer first
    assert newcomer.due(111.0) == [(EVERY, 11)]


def test_a_merge_settles_to_the_larger_latest_tick() -> None:
    ticks = Ticks(A, B)
    ticks.tick(A, 10)
    for name in (A, B):
        ticks.cluster.feed((name,), Transitional(ticks.cluster.gid))
    side_a = ticks.cluster.view((A,), NETWORK, vs={A: (A,)})
    side_b = ticks.cluster.view((B,), NETWORK, vs={B: (B,)})
    assert not of_type(side_a[A] + side_b[B], AnnounceLedger)  # each side: one ledger
    view_b = ticks.cluster.gid
    for t in (11, 12, 13):  # B's side runs more ticks than A's (say A's clock lags)
        ticks.tick(B, t, view=view_b, to=(B,))
    for name in (A, B):
        ticks.cluster.feed((name,), Transitional(ticks.cluster.gid))
    merged = ticks.cluster.view((A, B), NETWORK, vs={A: (A,), B: (B,)})
    assert ticks.latest() == {A: 10, B: 13}
    spoken = ticks.speak({A: merged[A]})  # only A's LEDGER so far: not settled
    assert spoken[0].latest == (("report", 10),)
    assert not any(ticks.ledger(n).settled for n in ticks.members)
    assert ticks.latest() == {A: 10, B: 13}  # merged in at once, still unsettled
    ticks.speak({B: merged[B]})
    assert all(ticks.ledger(n).settled for n in ticks.members)
    assert ticks.latest() == {A: 13, B: 13}
    assert Ticker(A, (ALL,), ticks.ledger(A)).due(155.0) == [(ALL, 14), (ALL, 15)]


def test_a_view_change_before_the_ledger_settles_starts_over() -> None:
    ticks = Ticks(A)
    ticks.tick(A, 10)
    joined_b = ticks.cluster.join(B)
    ticks.speak({A: joined_b[A]})  # B hears A's LEDGER; B's own is not delivered yet
    before = ticks.cluster.gid
    joined_c = ticks.cluster.join(C)
    # B's LEDGER of the view before, delivered now: it names another view
    ticks.speak({B: joined_b[B]})
    assert not any(ticks.ledger(n).settled for n in ticks.members)
    asked = {n: [a.envelope for a in of_type(e, AnnounceLedger)] for n, e in joined_c.items()}
    assert {n: [x.members for x in a] for n, a in asked.items()} == {
        A: [(A,)],
        B: [(B,)],
        C: [(C,)],
    }
    assert all(a.group_id != before for x in asked.values() for a in x)
    ticks.speak(joined_c)
    assert ticks.latest() == {A: 10, B: 10, C: 10}
    assert all(ticks.ledger(n).settled for n in ticks.members)


def test_a_departure_that_leaves_one_group_settles_without_a_ledger() -> None:
    ticks = Ticks(A)
    ticks.tick(A, 10)
    ticks.cluster.join(B)  # unsettled; then B leaves before anyone spoke
    left = ticks.cluster.view((A,), LEAVE, B)
    assert not of_type(left[A], AnnounceLedger)
    assert ticks.ledger(A).settled
    assert ticks.latest() == {A: 10}


def test_a_ledger_from_a_non_member_or_naming_another_view_is_ignored() -> None:
    ticks = Ticks(A)
    joined = ticks.cluster.join(B)
    forged = Ledger(ticks.cluster.gid, (A, B), (("report", 99),))
    ticks.cluster.feed(ticks.members, MessageDelivered("#ghost#h", MESS_TYPE, encode(forged)))
    other = Ledger((1, 100, 0), (A, B), (("report", 99),))
    ticks.cluster.feed(ticks.members, MessageDelivered(A, MESS_TYPE, encode(other)))
    assert not any(ticks.ledger(n).settled for n in ticks.members)
    assert ticks.latest() == {A: None, B: None}
    ticks.speak(joined)
    assert ticks.latest() == {A: None, B: None}
    assert all(ticks.ledger(n).settled for n in ticks.members)


@given(
    st.lists(
        st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 50), max_size=3),
        min_size=2,
        max_size=5,
    ),
    st.randoms(use_true_random=False),
)
def test_a_ledger_settles_to_the_max_whatever_the_order(
    values: list[dict[str, int]], rng: random.Random
) -> None:
    members = tuple(f"#m{n}#h" for n in range(len(values)))
    ledgers = {}
    speeches = []
    for member, latest in zip(members, values, strict=True):
        ledger = ledgers[member] = TickLedger(dict(latest))
        speech = ledger.on_view(member, members, (1, 2, 3), None)  # each one a newcomer
        assert speech is not None
        speeches.append(speech)
    rng.shuffle(speeches)
    for n, speech in enumerate(speeches, 1):
        settled_now = {ledger.on_ledger(speech) for ledger in ledgers.values()}
        assert settled_now == {n == len(speeches)}
    expected = {k: max(v[k] for v in values if k in v) for v in values for k in v}
    assert all(ledger.latest == expected for ledger in ledgers.values())


def test_every_table_speaks_even_without_schedules() -> None:
    # no Ticker anywhere here: the tables alone ask for LEDGERs, or the view never settles
    cluster = Cluster()
    assert not of_type(cluster.join(A)[A], AnnounceLedger)  # alone: settled at once
    joined = cluster.view((A, B), JOIN, B)
    assert [len(of_type(joined[n], AnnounceLedger)) for n in (A, B)] == [1, 1]


# --- the ticker --------------------------------------------------------------------------


def settled(members: tuple[str, ...], latest: int | None = None) -> TickLedger:
    ledger = TickLedger()
    ledger.on_view(members[0], members, (1, 1, 1), None)
    ledger.on_ledger(Ledger((1, 1, 1), members))
    assert ledger.settled
    if latest is not None:
        assert ledger.decide("report", latest, (1, 1, 1)) is None
    return ledger


def test_the_first_member_announces_from_the_first_boundary_after_it_settled() -> None:
    a = Ticker(A, (EVERY,), settled((A,)))
    assert a.due(105.0) == []  # tick 10 (due at 100) came due before it settled
    assert a.next_due(109.0) == 110.0
    assert a.due(111.0) == [(EVERY, 11)]
    assert a.due(112.0) == []  # announced, not yet delivered: not again
    a.ledger.on_view(A, (A,), (1, 1, 2), (A,))  # a view change: not delivered, so again
    assert a.due(112.0) == [(EVERY, 11)]


def test_after_the_announcer_goes_the_next_member_catches_up() -> None:
    for schedule, expected in ((EVERY, [13]), (ALL, [11, 12, 13])):
        ledger = settled((A, B), 10)
        b = Ticker(B, (schedule,), ledger)
        assert b.due(135.0) == []  # A announces
        assert b.next_due(135.0) is None
        ledger.on_view(B, (B,), (1, 1, 2), (B,))  # A dies having announced nothing
        assert [t for _, t in b.due(135.0)] == expected


def test_nobody_announces_while_the_ledger_is_unsettled() -> None:
    ledger = settled((A,), 10)
    a = Ticker(A, (EVERY,), ledger)
    speech = ledger.on_view(A, (A, B), (1, 1, 2), (A,))  # B joins: unsettled
    assert speech == Ledger((1, 1, 2), (A,), (("report", 10),))
    assert a.due(135.0) == []
    assert a.next_due(135.0) is None
    ledger.on_ledger(speech)
    assert a.due(135.0) == []  # B has not spoken yet
    ledger.on_ledger(Ledger((1, 1, 2), (B,)))
    assert a.due(135.0) == [(EVERY, 13)]


def test_catching_up_is_bounded() -> None:
    a = Ticker(A, (ALL,), settled((A,), 0))
    ticks = [t for _, t in a.due(10.0 * (MAX_CATCH_UP + 50))]
    assert len(ticks) == MAX_CATCH_UP
    assert ticks[-1] == MAX_CATCH_UP + 50


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
        sim.check_ticks_current()
        sim.check_no_tick_skipped()
        _RUNS[seed] = sim
    return _RUNS[seed]


@pytest.mark.parametrize("seed", range(SEEDS))
def test_simulation_with_periodic_ticks(seed: int) -> None:
    # every step checks that the members of a view agree on their ledger and that no
    # tick is accepted twice in a lineage; the end checks liveness, that the tick due
    # was accepted and, with catch_up="all", that no tick was skipped
    sim = simulate(seed)
    assert sim.tick_runs
    assert sim.tick_accepted


def test_the_periodic_simulation_runs_many_ticks_across_changes() -> None:
    runs = [simulate(seed) for seed in range(SEEDS)]
    # a join or a merge holds the ticks back until the LEDGERs are through the order,
    # and this model has churn far beyond a real fleet's: fewer ticks than steps allow
    assert sum(len(sim.tick_accepted) for sim in runs) > 15 * SEEDS
    assert sum(len(sim.tick_runs) for sim in runs) > 10 * SEEDS
    # view changes do make announcements stale; none of those ran
    assert sum(sim.tick_refused for sim in runs) > 0
    # and partitions do make both sides accept the ticks due while parted
    assert sum(sim.ticks_on_both_sides for sim in runs) > 0
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
    "the ledger settles before every LEDGER arrived": (
        "if not self.spoken.issuperset(self.members):",
        "if not self.spoken:",
    ),
    "a stale TICK is accepted": (
        "if view != self.group_id:",
        "if False:",
    ),
    "the first member announces while the ledger is unsettled": (
        "return self.settled and bool(self.members) and self.members[0] == me",
        "return bool(self.members) and self.members[0] == me",
    ),
    "a newcomer never speaks, so its view never settles": (
        "if speaking[0] != me:",
        "if speaking[0] != me or came is None:",
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
            sim.check_ticks_current()
            sim.check_no_tick_skipped()
        except InvariantError as error:
            caught.append(str(error).splitlines()[0])
            break
    assert caught, f"{name}: no seed broke an invariant"
