"""Cron schedules: their tick arithmetic, the ticker over them, and registering one.

A cron schedule numbers a tick by its due time in Unix seconds, so every member numbers
the same instant alike whatever its clock. The arithmetic is checked against a period
schedule where both describe the same instants (``*/5 * * * *`` is every 300 s from the
epoch), and against a walk over every second where they cannot.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spreadq.errors import ConfigurationError
from spreadq.queue.periodic import MAX_CATCH_UP, Schedule, Ticker, TickLedger
from spreadq.worker.app import App

A = "#a#h"
FIVE = Schedule("report", cron="*/5 * * * *")
EVERY_300 = Schedule("report", 300.0)
NOW = st.floats(min_value=0.0, max_value=4e9, allow_nan=False)


@given(NOW)
def test_a_cron_schedule_falls_due_when_the_same_period_does(now: float) -> None:
    assert FIVE.due_at(FIVE.latest(now)) == EVERY_300.due_at(EVERY_300.latest(now))
    assert FIVE.next_due(now) == EVERY_300.next_due(now)
    assert FIVE.latest(now) <= now < FIVE.next_due(now)


@given(NOW, st.integers(0, 5_000), st.integers(1, 20))
def test_cron_ticks_in_a_window_are_the_period_s_ticks(
    start: float, width: int, limit: int
) -> None:
    first, last = int(start), int(start) + width
    by_cron = FIVE.ticks(first, last, limit)
    by_period = EVERY_300.ticks(EVERY_300.bound(first), EVERY_300.latest(last), limit)
    assert by_cron == [int(EVERY_300.due_at(t)) for t in by_period]


@given(st.integers(0, 3_000_000_000), st.integers(0, 400))
def test_cron_arithmetic_agrees_with_a_walk_over_every_second(start: int, width: int) -> None:
    odd = Schedule("odd", cron="7,8,59 */3 * * * 13")  # second 13 of minutes 7, 8, 59 ...
    fires = [t for t in range(start, start + width + 1) if _matches_odd(t)]
    assert odd.ticks(start, start + width, 1000) == fires
    if fires:
        assert odd.latest(start + width + 0.5) == fires[-1]
        assert odd.next_due(fires[0] - 0.5) == fires[0]


def _matches_odd(t: int) -> bool:
    moment = datetime.fromtimestamp(t, UTC)
    return moment.second == 13 and moment.minute in (7, 8, 59) and moment.hour % 3 == 0


def test_the_ticks_of_a_window_keep_only_the_latest_past_the_limit() -> None:
    assert FIVE.ticks(0, 1800, 100) == [0, 300, 600, 900, 1200, 1500, 1800]
    assert FIVE.ticks(1, 1800, 2) == [1500, 1800]
    assert FIVE.ticks(1801, 1800, 5) == []
    assert FIVE.ticks(301, 599, 5) == []
    assert FIVE.bound(600.5) == 601


def test_a_cron_schedule_reads_its_expression_in_its_timezone() -> None:
    paris = Schedule("morning", cron="0 9 * * *", timezone="Europe/Paris")
    winter = datetime(2027, 1, 15, 12, tzinfo=UTC).timestamp()
    summer = datetime(2027, 7, 15, 12, tzinfo=UTC).timestamp()
    assert datetime.fromtimestamp(paris.latest(winter), UTC).hour == 8  # UTC+1
    assert datetime.fromtimestamp(paris.latest(summer), UTC).hour == 7  # UTC+2
    utc = Schedule("morning", cron="0 9 * * *")
    assert datetime.fromtimestamp(utc.latest(winter), UTC).hour == 9


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "either every or cron"),
        ({"every": 60.0, "cron": "* * * * *"}, "either every or cron"),
        ({"cron": "* * *"}, "is not a cron expression"),
        ({"cron": "61 * * * *"}, "is not a cron expression"),
        ({"cron": "0 0 30 2 *"}, "never fires"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"every": 60.0, "timezone": "UTC"}, "cron schedules only"),
    ],
)
def test_a_bad_cron_schedule_is_refused_with_its_reason(
    arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Schedule("s", **arguments)  # type: ignore[arg-type]


GID = (1, 2, 3)


def _ticker(schedule: Schedule, joined_at: float) -> Ticker:
    """A member alone in its first view (its ledger settles at once), first asked at
    ``joined_at``: it announces the ticks due from then on."""
    ticker = Ticker(A, (schedule,), TickLedger())
    assert ticker.ledger.on_view(A, (A,), GID, None) is None
    assert ticker.due(joined_at) == []
    return ticker


def test_the_ticker_announces_cron_ticks_at_their_times_from_its_join_on() -> None:
    ticker = _ticker(FIVE, joined_at=1000.0)
    assert ticker.due(1199.0) == []  # 900 came due before the join
    assert ticker.next_due(1199.0) == 1200.0
    assert ticker.due(1200.0) == [(FIVE, 1200)]
    assert ticker.due(1499.0) == []
    assert ticker.next_due(1499.0) == 1500.0


@pytest.mark.parametrize(
    ("catch_up", "expected"), [("latest", [2100]), ("all", [1500, 1800, 2100])]
)
def test_a_cron_announcer_catches_up_from_the_latest_tick_delivered(
    catch_up: str, expected: list[int]
) -> None:
    schedule = Schedule("report", cron="*/5 * * * *", catch_up=catch_up)  # type: ignore[arg-type]
    ticker = _ticker(schedule, joined_at=1.0)
    assert ticker.ledger.decide("report", 1200, GID) is None  # accepted
    assert ticker.due(2200.0) == [(schedule, t) for t in expected]


def test_catching_up_a_cron_schedule_is_bounded() -> None:
    every_second = Schedule("s", cron="* * * * * *", catch_up="all")
    ticker = _ticker(every_second, joined_at=0.5)
    assert ticker.ledger.decide("s", 0, GID) is None
    ticks = [tick for _, tick in ticker.due(1_000_000.0)]
    assert ticks == list(range(1_000_001 - MAX_CATCH_UP, 1_000_001))


def test_an_app_registers_a_cron_periodic_job() -> None:
    app = App("reports")

    @app.periodic(cron="30 2 * * mon-fri", timezone="UTC", catch_up="all")
    async def nightly(tick: object) -> None: ...

    assert app.schedules == (
        Schedule("nightly", None, "all", cron="30 2 * * mon-fri", timezone="UTC"),
    )
    with pytest.raises(ConfigurationError, match="either every or cron"):
        app.periodic(timedelta(minutes=1), cron="* * * * *")
    with pytest.raises(ConfigurationError, match="never fires"):
        app.periodic(cron="0 0 31 4 *")
