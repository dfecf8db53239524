"""Timer delays for loops whose clocks count whole milliseconds (uvloop)."""

from __future__ import annotations

import asyncio

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spreadq.actors.timers import counts_whole_ms, timer_delay, whole_ms


@given(st.floats(min_value=-1.0, max_value=3600.0, allow_nan=False))
def test_a_wait_in_whole_milliseconds_is_never_shorter_and_at_most_one_longer(
    wait: float,
) -> None:
    delay = whole_ms(wait)
    assert delay >= 0.001
    assert delay >= wait - 1e-9  # never asks to ring before the deadline
    assert delay - max(wait, 0.0) < 0.001 + 1e-9  # and at most one millisecond after it
    assert abs(delay * 1000 - round(delay * 1000)) < 1e-6  # a whole number of them


async def test_asyncio_s_own_loop_gets_the_wait_as_it_is() -> None:
    assert not counts_whole_ms(asyncio.get_running_loop())
    assert timer_delay(0.0002) == 0.0002


def test_uvloop_gets_whole_milliseconds() -> None:
    pytest.importorskip("uvloop", reason="uvloop is not installed (pip install 'spreadq[uvloop]')")

    async def main() -> None:
        assert counts_whole_ms(asyncio.get_running_loop())
        assert timer_delay(0.0002) == 0.001
        assert timer_delay(0.0101) == 0.011

    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})


def test_timer_delay_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        timer_delay(0.001)
