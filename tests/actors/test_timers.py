"""Timer delays for loops whose clocks count whole milliseconds (uvloop)."""

from __future__ import annotations

import asyncio
from typing import Any

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
    ms = round(delay * 1000)  # what uvloop asks libuv for
    assert abs(delay * 1000 - ms) < 1e-3  # a whole number of milliseconds ...
    assert delay < ms / 1000  # ... a hair short of them, so a deadline lands before
    assert ms >= 1
    assert ms / 1000 >= wait - 1e-9  # never rings before the deadline
    assert ms / 1000 - max(wait, 0.0) < 0.001 + 1e-9  # and at most one millisecond after it


async def test_asyncio_s_own_loop_gets_the_wait_as_it_is() -> None:
    assert not counts_whole_ms(asyncio.get_running_loop())
    assert timer_delay(0.0002) == 0.0002


def test_uvloop_gets_whole_milliseconds() -> None:
    pytest.importorskip("uvloop", reason="uvloop is not installed (pip install 'spreadq[uvloop]')")

    async def main() -> None:
        assert counts_whole_ms(asyncio.get_running_loop())
        assert round(timer_delay(0.0002), 6) == 0.001
        assert round(timer_delay(0.0101), 6) == 0.011

    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})


def test_timer_delay_needs_a_running_loop() -> None:
    with pytest.raises(RuntimeError):
        timer_delay(0.001)


def test_a_cancel_scope_waiting_a_timer_delay_on_uvloop_rings_once() -> None:
    # anyio re-arms a scope's deadline timer until the loop's clock reaches the
    # deadline; on uvloop's millisecond clock a deadline a rounding error after the
    # millisecond its timer rang at (2 ms and 4 ms waits did) was re-armed for the rest
    # of that millisecond, turning the loop with nothing to do
    pytest.importorskip("uvloop", reason="uvloop is not installed (pip install 'spreadq[uvloop]')")
    backend = pytest.importorskip("anyio._backends._asyncio")
    scope_type = backend.CancelScope
    if not hasattr(scope_type, "_timeout"):
        pytest.skip("this anyio arms its deadlines another way: nothing to count")
    calls = [0]
    passed_at_entry = [0]  # scopes whose deadline the clock reached before they began
    timeout = scope_type._timeout

    def counted(self: Any) -> None:
        calls[0] += 1
        entering = not self._active
        timeout(self)
        if entering and self._cancel_called:
            # uvloop's clock ticked between move_on_after() and the scope's entry (this
            # process was preempted there): anyio cancelled it at once, with no timer.
            # Asked of anyio's own decision: a second reading of the clock here could
            # fall on the other side of a tick (9 calls for 5 scopes, none "due", in 1
            # of 120 runs beside the integration tests)
            passed_at_entry[0] += 1

    async def main() -> None:
        for wait in (0.0004, 0.0015, 0.002, 0.0035, 0.004):
            calls[0] = passed_at_entry[0] = 0
            for _ in range(5):
                with anyio.move_on_after(timer_delay(wait)):
                    await anyio.sleep_forever()
            # armed at entry and rang once; once only when already due at entry
            assert calls[0] == 2 * 5 - passed_at_entry[0], (wait, calls[0], passed_at_entry[0])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scope_type, "_timeout", counted)
        anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
