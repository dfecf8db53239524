"""Changed: the one way the producer's tasks wait for its core.

Every wait in the producer is a condition over its :class:`~spreadq.producer.core.ProducerCore`
(``room()``, ``clear_to_send()``, consumers present, nothing left unsent). A task waits
with ``await changed.wait_for(condition)``; the code that applies an input which may
make the condition true calls :meth:`Changed.notify`. A notify wakes every task waiting
at that moment, and each checks its condition again, so a wake-up that turns out to
be early costs a loop turn and never a wrong answer. A notify with nobody waiting
costs nothing (no event is made until someone waits). The event is asyncio's own
(spreadq runs on anyio's asyncio backend): anyio's looks its backend up each time one is
made, and the producer makes one for nearly every message it sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Changed"]


class Changed:
    """A broadcast "look again" for tasks waiting on a condition over shared state."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    @property
    def waiting(self) -> bool:
        """Whether some task has waited since the last :meth:`notify`."""
        return self._event is not None

    def notify(self) -> None:
        """Wake every task waiting now."""
        event = self._event
        if event is not None:
            self._event = None
            event.set()

    async def wait(self) -> None:
        """Wait until the next :meth:`notify`. Cancellation leaves nothing behind."""
        event = self._event
        if event is None:
            event = self._event = asyncio.Event()
        await event.wait()

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` is true, checking it again at every notify."""
        while not condition():
            await self.wait()
