"""Timer delays an event loop can keep: whole milliseconds where its clock counts them.

uvloop (libuv) rounds a timer's delay to the nearest millisecond, runs one under half a
millisecond at the next turn of the loop, and its clock reads whole milliseconds. Code
that waits for a deadline a fraction of a millisecond away therefore wakes, finds the
deadline not yet come, asks again and wakes again at once, until the clock reaches it:
the worker's dispatcher did so with its alarm, and anyio does so with a cancel scope's
deadline (it re-arms the scope's timer until the loop's clock says the deadline passed).
Asked for a whole millisecond instead, such a timer rings at most about a millisecond
late, and early only by what the millisecond clock hides. The delay asked is a tenth of a
microsecond short of the whole milliseconds: uvloop rounds it back to them, and a
deadline computed from it as anyio's is (``loop.time() + delay``) then falls just before
the millisecond at which the timer rings. A deadline of exactly 2 or 4 ms after a
millisecond clock reading can land a rounding error after it, and anyio re-armed such a
scope's timer for the rest of that millisecond (8 to 70 re-arms a wait, measured).

asyncio's own loop needs none of this: its selector rounds a wait up.
"""

from __future__ import annotations

import asyncio
import math
from typing import Final

__all__ = ["counts_whole_ms", "timer_delay", "whole_ms"]


_UNDER: Final = 1e-7
"""How far short of its whole milliseconds :func:`whole_ms` asks (see above)."""


def whole_ms(wait: float) -> float:
    """``wait`` rounded up to a whole millisecond (at least one), less :data:`_UNDER`.

    >>> [round(whole_ms(w), 6) for w in (0.0002, 0.001, 0.0101, -1.0)]
    [0.001, 0.001, 0.011, 0.001]
    """
    return max(math.ceil(wait * 1000.0 - 1e-9), 1) / 1000.0 - _UNDER


def counts_whole_ms(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop``'s timers count whole milliseconds: any loop but asyncio's own
    (uvloop is the one spreadq picks when installed)."""
    return not isinstance(loop, asyncio.BaseEventLoop)


def timer_delay(wait: float) -> float:
    """The delay to ask of the running loop for a deadline ``wait`` seconds away:
    :func:`whole_ms` of it where the loop counts whole milliseconds, else ``wait``.

    Raises:
        RuntimeError: no event loop is running.
    """
    if counts_whole_ms(asyncio.get_running_loop()):
        return whole_ms(wait)
    return wait
