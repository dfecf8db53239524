"""The worker's side of periodic jobs: announcing the ticks this member is to announce.

The decisions are :class:`~spreadq.queue.periodic.Ticker`'s (sans-IO); this module turns
them into TICK jobs: a one-job BATCH from this session's own producer id, kind the
schedule's name, a JSON :class:`PeriodicTick` payload and the tick's dedupe key (naming
the view it is announced in), which the dispatcher multicasts to the WORK group
(docs/design/periodic.md). The ledger is the table's, which every worker keeps.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from spreadq.queue.envelope import JobSpec, encode_batch
from spreadq.queue.periodic import Schedule, Ticker, TickLedger, tick_key

__all__ = ["PeriodicTick", "TickAnnouncer"]


class PeriodicTick(BaseModel):
    """The payload of a periodic job: which schedule, which tick, when it was due.

    ``due`` is Unix seconds (``tick * every``); the job runs when the announcing
    member's clock passed it, so it may start a little later, by that clock's lag.
    """

    model_config = ConfigDict(frozen=True)

    schedule: str
    tick: int
    due: float


class TickAnnouncer:
    """This session's ticker, and the TICK messages it asks to multicast.

    Args:
        me: our member name.
        schedules: the app's schedules.
        ledger: the tick ledger our table keeps (:attr:`OutstandingTable.ticks
            <spreadq.queue.table.OutstandingTable.ticks>`).
        wall: Unix time (the ticks are numbered from the epoch).
    """

    def __init__(
        self,
        me: str,
        schedules: Sequence[Schedule],
        ledger: TickLedger,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self._wall = wall
        self._ticker = Ticker(me, tuple(schedules), ledger)
        self._producer_id = secrets.token_bytes(16)
        self._seq = 0

    def announcements(self) -> list[tuple[Schedule, int, bytes]]:
        """The ticks due now that we announce, each with its BATCH envelope."""
        out: list[tuple[Schedule, int, bytes]] = []
        view = self.ledger.group_id
        for schedule, tick in self._ticker.due(self._wall()):
            assert view is not None  # only the first member of a settled view announces
            self._seq += 1
            payload = {"schedule": schedule.name, "tick": tick, "due": schedule.due_at(tick)}
            spec = JobSpec(
                self._seq,
                schedule.name,
                json.dumps(payload).encode(),
                dedupe_key=tick_key(schedule.name, tick, view),
            )
            out.append((schedule, tick, encode_batch(self._producer_id, self._seq, "json", [spec])))
        return out

    def wait(self) -> float | None:
        """Seconds until a tick may come due for us to announce, or ``None``."""
        now = self._wall()
        due = self._ticker.next_due(now)
        return None if due is None else max(0.0, due - now)
