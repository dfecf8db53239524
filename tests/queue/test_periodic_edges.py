"""Edges of the periodic module the table and simulation tests do not reach: tick keys
with separators in the schedule name or a view at the end of the 32-bit range, the
ledger's counters and its state after leaving, LEDGERs it ignores, and a ticker with
several schedules or none.
"""

from __future__ import annotations

import pytest

from spreadq.queue.envelope import Ledger
from spreadq.queue.periodic import Schedule, Ticker, TickKey, TickLedger, parse_tick_key, tick_key

A, B, C = "#a#h", "#b#h", "#c#h"
TEN = Schedule("ten", 10.0)
SEVEN = Schedule("seven", 7.0)


@pytest.mark.parametrize("name", ["a@b", "a:b", "x:1@2.3.4", "@:@"])
def test_a_schedule_name_may_hold_the_key_s_separators(name: str) -> None:
    key = tick_key(name, 12, (1, 2, 3))
    assert parse_tick_key(key) == TickKey(name, 12, (1, 2, 3))


def test_a_view_at_the_ends_of_the_32_bit_range_is_a_view() -> None:
    extremes = (2**31 - 1, -(2**31), 2**31 - 1)
    assert parse_tick_key(tick_key("s", 3, extremes)) == TickKey("s", 3, extremes)


def _joined(ledger: TickLedger, gid: tuple[int, int, int]) -> None:
    """Installs A's first view with B and C, then delivers both groups' LEDGERs."""
    assert ledger.on_view(A, (A, B, C), gid, None) == Ledger(gid, (A,), ())
    assert not ledger.on_ledger(Ledger(gid, (A,)))
    assert ledger.on_ledger(Ledger(gid, (B, C)))


def test_the_ledger_counts_views_and_settles() -> None:
    ledger = TickLedger()
    _joined(ledger, (1, 1, 1))
    assert (ledger.views, ledger.settles) == (1, 1)
    assert ledger.on_view(A, (A, B), (1, 1, 2), (A, B)) is None  # C left: still settled
    assert (ledger.views, ledger.settles) == (2, 1)
    speech = ledger.on_view(A, (A, B, C), (1, 1, 3), (A, B))  # C is back: unsettled
    assert ledger.settled is False
    assert speech == Ledger((1, 1, 3), (A, B), ())
    assert ledger.announcer(A) is False
    assert ledger.on_ledger(speech) is False
    assert ledger.on_ledger(Ledger((1, 1, 3), (C,)))
    assert (ledger.views, ledger.settles) == (3, 2)


def test_a_ledger_it_ignores_does_not_settle_it() -> None:
    ledger = TickLedger()
    ledger.on_view(A, (A, B), (1, 1, 1), None)
    assert ledger.on_ledger(Ledger((9, 9, 9), (A, B))) is False  # another view
    assert not ledger.settled
    assert ledger.on_ledger(Ledger((1, 1, 1), (A, B)))
    assert ledger.on_ledger(Ledger((1, 1, 1), (A, B))) is False  # settled already


def test_leaving_leaves_the_ledger_of_a_replica_in_no_view() -> None:
    ledger = TickLedger()
    _joined(ledger, (1, 1, 1))
    assert ledger.decide("ten", 5, (1, 1, 1)) is None
    ledger.clear()
    fresh = TickLedger()
    state = (ledger.latest, ledger.settled, ledger.group_id, ledger.members)
    assert state == (fresh.latest, fresh.settled, fresh.group_id, fresh.members)
    assert ledger.settled is False
    assert (ledger.peers, ledger.spoken) == (frozenset(), set())
    assert not ledger.announcer(A)


def test_a_ticker_starts_over_from_its_settle_after_a_rejoin() -> None:
    ledger = TickLedger()
    ticker = Ticker(A, (TEN,), ledger)
    ledger.on_view(A, (A,), (1, 1, 1), None)  # alone: settled at once
    assert ticker.due(5.0) == []  # tick 0 came due before it settled
    ledger.clear()  # left the group, then joined again alone, much later
    ledger.on_view(A, (A,), (2, 2, 1), None)
    assert ledger.settles == 2
    assert ticker.due(103.0) == []  # tick 10 came due before the second settle
    assert ticker.due(110.0) == [(TEN, 11)]


def test_a_ticker_that_first_looks_after_a_settle_by_ledgers_starts_there() -> None:
    ledger = TickLedger()
    ticker = Ticker(A, (TEN,), ledger)
    _joined(ledger, (1, 1, 1))
    assert ticker.next_due(105.0) == 110.0  # first asked when the next tick is due
    assert ticker.due(105.0) == []  # tick 10 came due before it settled
    assert ticker.due(110.0) == [(TEN, 11)]


def test_a_ticker_announces_every_schedule_that_is_due() -> None:
    ticker = Ticker(A, (TEN, SEVEN), TickLedger())
    ticker.ledger.on_view(A, (A,), (1, 1, 1), None)
    assert ticker.due(1.0) == []
    assert ticker.due(7.0) == [(SEVEN, 1)]  # "ten" is not due yet; "seven" still is
    assert ticker.due(14.0) == [(TEN, 1), (SEVEN, 2)]


def test_a_ticker_without_schedules_is_never_due() -> None:
    ticker = Ticker(A, (), TickLedger())
    ticker.ledger.on_view(A, (A,), (1, 1, 1), None)
    assert ticker.ledger.announcer(A)
    assert ticker.next_due(5.0) is None
    assert ticker.due(5.0) == []
