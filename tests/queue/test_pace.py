"""Pace (:mod:`spreadq.queue.pace`): the module's worked example, and over random
sequences of attempts: a sender that goes whenever the pace lets it never sends more
than ``T / interval + burst`` messages in any stretch ``T``, never waits after a quiet
spell, and is told to wait exactly until the next message may go."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spreadq.queue.pace import SLACK, Pace


def test_the_worked_example() -> None:
    pace = Pace(0.001, burst=2)
    assert pace.wait(0.0) == 0.0
    pace.book(0.0)
    assert pace.wait(0.0002) == 0.0  # the one to spare
    pace.book(0.0002)
    assert pace.wait(0.0005) == pytest.approx(0.0005)
    assert pace.due == pytest.approx(0.001)
    assert pace.wait(0.001) == 0.0
    pace.book(0.001)
    assert pace.wait(0.01) == 0.0


def test_no_interval_never_waits() -> None:
    pace = Pace(0.0, burst=1)
    for now in (0.0, 0.0, 1e-9, 5.0):
        assert pace.wait(now) == 0.0
        pace.book(now)


@given(
    interval=st.floats(0.0001, 0.1),
    burst=st.integers(1, 6),
    gaps=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=80),
)
def test_a_sender_that_obeys_stays_within_the_rate(
    interval: float, burst: int, gaps: list[float]
) -> None:
    pace = Pace(interval, burst)
    now, sent = 0.0, []
    for gap in gaps:
        now += gap * interval * 3
        wait = pace.wait(now)
        if wait:  # it waits exactly that long, and may then go
            assert wait > SLACK
            assert pace.wait(now + wait) == 0.0
            if wait * 0.001 > 2 * SLACK:  # a little sooner it may not (SLACK aside)
                assert pace.wait(now + wait * 0.999) > 0.0
            continue
        pace.book(now)
        sent.append(now)
    for i, start in enumerate(sent):
        for j in range(i, len(sent)):
            span = sent[j] - start
            assert j - i + 1 <= span / interval + burst + 1e-9


@given(interval=st.floats(0.0001, 0.1), burst=st.integers(1, 6))
def test_after_a_quiet_spell_a_burst_goes_at_once(interval: float, burst: int) -> None:
    pace = Pace(interval, burst)
    now = 0.0
    for _ in range(3):
        for _ in range(burst):
            assert pace.wait(now) == 0.0
            pace.book(now)
        assert pace.wait(now) > 0.0
        now += burst * interval * 1.001  # quiet for as long as the burst booked
