"""Periodic jobs without a leader: which tick is due, and who announces it.

Theory of operation
-------------------
A :class:`Schedule` ``s`` names a handler kind and a period ``every`` or a cron
expression. Its ticks are integers: with a period, tick ``t`` is due at ``t * every``
seconds after the Unix epoch; with cron, a tick is numbered by its due time in Unix
seconds. Either way every member numbers the same instant alike
(docs/design/periodic.md). A tick runs as an ordinary job: one member *announces* it
by multicasting a TICK job (kind ``s``, an ordinary BATCH job) with the dedupe key
``periodic:<s>:<t>``; from then on the table gives it an owner by the rule, fails it
over like any job, and the dedupe memory turns any second TICK for ``(s, t)``
delivered in the same memory epoch into a duplicate that never runs
(:mod:`~spreadq.queue.table`).

Who announces. :class:`TickLedger` is replicated state the table keeps from the stream:
for each schedule, the last tick delivered and the *witnesses* of it (the members of the
view it was delivered in, shrunk at every view change to those that came with us). The
announcer of ``s`` is the first witness in the current view's order. A member that has
seen no TICK of ``s`` since it joined is no witness and does not know the last tick; it
announces only when none of the members that were there when it joined is left (then
no witness can be left either), catching up from its own join time. So one member
announces each tick, and after the announcer leaves or dies the next witness announces
whatever came due meanwhile: ``catch_up="latest"`` (the default) announces only the
latest due tick, ``"all"`` every missed one.

Clocks. A tick is announced when the announcer's clock reaches its due time; members'
clocks differ, so a tick runs late by the announcer's lag. The table never reads a
clock: the tick number travels in the job, and the announcer change needs no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from spreadq.errors import ConfigurationError

__all__ = [
    "MAX_CATCH_UP",
    "TICK_KEY_PREFIX",
    "CatchUp",
    "Schedule",
    "TickLedger",
    "Ticker",
    "parse_tick_key",
    "tick_key",
]

TICK_KEY_PREFIX: Final = "periodic:"
"""Dedupe keys of TICK jobs start with this; producers' own keys should not."""

MAX_CATCH_UP: Final = 1000
"""With ``catch_up="all"``, at most this many missed ticks are announced at once (the
latest ones)."""

CatchUp = Literal["latest", "all"]


def tick_key(schedule: str, tick: int) -> str:
    """The dedupe key of tick ``tick`` of ``schedule``."""
    return f"{TICK_KEY_PREFIX}{schedule}:{tick}"


def parse_tick_key(key: str) -> tuple[str, int] | None:
    """``(schedule, tick)`` from a TICK job's dedupe key, or ``None`` for any other key."""
    if not key.startswith(TICK_KEY_PREFIX):
        return None
    name, _, number = key[len(TICK_KEY_PREFIX) :].rpartition(":")
    if not name or not number.isdigit() or not number.isascii():
        return None
    return name, int(number)


@dataclass(frozen=True, slots=True)
class Schedule:
    """One periodic job: run handler kind ``name`` every ``every`` seconds, or at the
    times of the cron expression ``cron``.

    Ticks are integers every member numbers alike. With ``every``, tick ``t`` is due at
    ``t * every`` seconds after the Unix epoch. With ``cron`` (five fields, or six with
    seconds last, as `croniter <https://pypi.org/project/croniter/>`_ reads them), a
    tick is numbered by its due time in whole Unix seconds, read in ``timezone`` (an
    IANA name; UTC when ``None``).

    Raises:
        ConfigurationError: neither or both of ``every`` and ``cron``; ``every`` is not
            a positive finite number of seconds; ``cron`` is not a valid expression or
            never fires; ``timezone`` is unknown; ``catch_up`` is not ``"latest"`` or
            ``"all"``.
    """

    name: str
    every: float | None = None
    catch_up: CatchUp = "latest"
    cron: str | None = None
    timezone: str | None = None

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ConfigurationError(f"periodic {self.name!r}: give either every or cron")
        if self.every is not None and not (self.every > 0 and math.isfinite(self.every)):
            raise ConfigurationError(f"periodic {self.name!r}: every must be > 0 seconds")
        if self.catch_up not in ("latest", "all"):
            raise ConfigurationError(
                f"periodic {self.name!r}: catch_up must be 'latest' or 'all', not {self.catch_up!r}"
            )
        if self.cron is not None:
            self._check_cron(self.cron)
        elif self.timezone is not None:
            raise ConfigurationError(
                f"periodic {self.name!r}: timezone applies to cron schedules only"
            )

    def _check_cron(self, expression: str) -> None:
        try:
            _zone(self.timezone)
        except (ValueError, ZoneInfoNotFoundError) as exc:
            raise ConfigurationError(
                f"periodic {self.name!r}: unknown timezone {self.timezone!r}"
            ) from exc
        if not croniter.is_valid(expression):
            raise ConfigurationError(
                f"periodic {self.name!r}: {expression!r} is not a cron expression"
            )
        try:
            self._cron(0.0).get_next(float)
        except CroniterError as exc:  # valid fields, yet no such date ("0 0 30 2 *")
            raise ConfigurationError(f"periodic {self.name!r}: {expression!r} never fires") from exc

    def _cron(self, at: float) -> croniter:
        assert self.cron is not None
        return croniter(self.cron, datetime.fromtimestamp(at, _zone(self.timezone)))

    def due_at(self, tick: int) -> float:
        """When tick ``tick`` is due (Unix seconds)."""
        return float(tick) if self.every is None else tick * self.every

    def latest(self, now: float) -> int:
        """The latest tick due at or before ``now`` (Unix seconds)."""
        if self.every is not None:
            return math.floor(now / self.every)
        return math.floor(self._cron(math.floor(now) + 1).get_prev(float))

    def bound(self, time: float) -> int:
        """The least tick number of a tick due at or after ``time`` (Unix seconds): no
        tick numbered below it is due at or after ``time``."""
        if self.every is None:
            return math.ceil(time)
        return math.ceil(time / self.every)

    def next_due(self, now: float) -> float:
        """When the first tick due after ``now`` is due (Unix seconds)."""
        if self.every is not None:
            return self.due_at(self.latest(now) + 1)
        return float(self._cron(math.floor(now)).get_next(float))

    def ticks(self, first: int, last: int, limit: int) -> list[int]:
        """The ticks numbered ``first`` to ``last``, both included, in order; only the
        latest ``limit`` of them when there are more."""
        if self.every is not None:
            return list(range(max(first, last - limit + 1), last + 1))
        out: list[int] = []
        if last < first:
            return out
        it = self._cron(last + 1)  # walk back from last: at most limit steps
        while len(out) < limit:
            tick = math.floor(it.get_prev(float))
            if tick < first:
                break
            out.append(tick)
        out.reverse()
        return out


def _zone(name: str | None) -> tzinfo:
    return UTC if name is None else ZoneInfo(name)


@dataclass(slots=True)
class _Seen:
    tick: int
    witnesses: frozenset[str]


@dataclass(slots=True)
class TickLedger:
    """What the ordered stream says about each schedule's ticks, as this replica saw it.

    Kept by the table (fed in delivery order), read by the :class:`Ticker`. Replicas
    that saw the same TICK since they joined hold the same entry for its schedule.
    """

    seen: dict[str, _Seen] = field(default_factory=dict)
    elders: frozenset[str] | None = None  # who was there when we joined (None: not yet)
    members: tuple[str, ...] = ()

    def on_view(self, members: Sequence[str], came: Iterable[str] | None) -> None:
        """A regular view: ``came`` is who came with us (``None``: our first view)."""
        self.members = tuple(members)
        if came is None:
            self.elders = frozenset(members)
            self.seen.clear()
            return
        kept = frozenset(came) & frozenset(members)
        assert self.elders is not None
        self.elders &= kept
        for entry in self.seen.values():
            entry.witnesses &= kept

    def on_tick(self, schedule: str, tick: int) -> None:
        """A TICK job for ``(schedule, tick)`` was delivered in the current view."""
        entry = self.seen.get(schedule)
        if entry is None or tick >= entry.tick:
            self.seen[schedule] = _Seen(tick, frozenset(self.members))
        else:  # an old tick announced late: it informs but does not move the mark back
            entry.witnesses = frozenset(self.members)

    def clear(self) -> None:
        """We left the group: nothing we saw counts any more."""
        self.seen.clear()
        self.elders = None
        self.members = ()

    def last(self, schedule: str) -> int | None:
        """The latest tick of ``schedule`` delivered since we joined, if any."""
        entry = self.seen.get(schedule)
        return None if entry is None else entry.tick

    def announcer(self, schedule: str, me: str) -> bool:
        """Whether we announce ``schedule``'s ticks in the current view."""
        entry = self.seen.get(schedule)
        if entry is not None:
            for member in self.members:  # the first witness in view order
                if member in entry.witnesses:
                    return member == me
            return False  # unreachable: we witnessed it and we are here
        if self.elders is None:
            return False
        # no witness we know of: only if nobody who was here before us is left
        return not (self.elders - {me})


@dataclass(slots=True)
class Ticker:
    """Decides when this member announces which ticks (sans-IO: wall time passed in).

    ``joined_at`` is when this member's current session joined (its own clock): without
    a witness, ticks due since then are its to announce.
    """

    me: str
    schedules: tuple[Schedule, ...]
    ledger: TickLedger
    joined_at: float = 0.0
    announced: dict[str, int] = field(default_factory=dict)  # sent, maybe not delivered

    def on_view(self) -> None:
        """A view change: what we sent and did not see delivered is lost; announce again."""
        self.announced.clear()

    def due(self, now: float) -> list[tuple[Schedule, int]]:
        """The ticks to announce now, in schedule order then tick order; marks them sent."""
        out: list[tuple[Schedule, int]] = []
        ledger = self.ledger
        if not ledger.members:
            return out
        for schedule in self.schedules:
            name = schedule.name
            if not ledger.announcer(name, self.me):
                continue
            latest = schedule.latest(now)
            last = ledger.last(name)
            first = last + 1 if last is not None else schedule.bound(self.joined_at)
            first = max(first, self.announced.get(name, first - 1) + 1)
            if latest < first:
                continue
            limit = 1 if schedule.catch_up == "latest" else MAX_CATCH_UP
            out += [(schedule, t) for t in schedule.ticks(first, latest, limit)]
            self.announced[name] = latest
        return out

    def next_due(self, now: float) -> float | None:
        """When :meth:`due` may next return something (Unix seconds), or ``None``."""
        if not self.ledger.members:
            return None
        times = [
            schedule.next_due(now)
            for schedule in self.schedules
            if self.ledger.announcer(schedule.name, self.me)
        ]
        return min(times, default=None)
