"""Periodic jobs without a leader: which tick is due, who announces it, which runs.

Theory of operation
-------------------
A :class:`Schedule` ``s`` names a handler kind and a period ``every`` or a cron
expression. Its ticks are integers: with a period, tick ``t`` is due at ``t * every``
seconds after the Unix epoch; with cron, a tick is numbered by its due time in Unix
seconds. Either way every member numbers the same instant alike
(docs/design/periodic.md). A tick runs as an ordinary job: one member *announces* it
by multicasting a TICK job (kind ``s``, an ordinary BATCH job) whose dedupe key
``periodic:<s>:<t>@<view>`` names the tick and the view it was announced in
(:func:`tick_key`).

Which TICK runs. :class:`TickLedger` is replicated state the table keeps from the
stream: per schedule, the latest tick *accepted* (a max-register: merging two copies is
``max``). The table accepts a TICK iff it is delivered in the view it names, the
ledger is *settled*, and its tick is greater than the ledger's latest; accepting
raises the latest. Any other TICK (*refused*) keeps its slot and never runs. Every
member of a settled view holds the same ledger and sees the same TICKs in the same
order, so all decide alike, and no tick is accepted twice in a lineage of views
that no partition split.

Settling. After a view in which everyone came with us (departures, a partition's own
side) the members hold the ledgers they held: a settled one stays settled, and one
that leaves a single group of peers settles at once, with no message. After a view with
someone who did not come with us (a join, a merge, our first view with company) it is
unsettled: the members that came together hold one ledger per such group (its
*peers*), and the first of each group in the view's order multicasts a LEDGER
(:class:`~spreadq.queue.envelope.Ledger`) naming the group and its latest ticks.
Every delivered LEDGER of this view is merged in at once (max per schedule); when the
LEDGERs speak for every member, the ledger settles. A view change before that starts
over from the ledger as merged so far (members that move together delivered the same
LEDGERs, so a group stays one).

Who announces. Only the first member of a settled view (every member is then a
witness): every tick due after the ledger's latest (``catch_up="latest"``: the most
recent; ``"all"``: each, at most :data:`MAX_CATCH_UP`), or, with no tick ever
accepted for a schedule, from the first boundary after the ledger settled.
:class:`Ticker` decides when, by the announcer's clock; an announcement not delivered
before the next view is stale there, and the next announcer makes it again.

Clocks. Clocks decide only when the announcer announces, never whether a TICK runs:
the table never reads a clock, and the tick number travels in the job.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Final, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from spreadq.errors import ConfigurationError
from spreadq.queue.envelope import Ledger
from spreadq.queue.view import GroupIdTuple

__all__ = [
    "MAX_CATCH_UP",
    "MAX_SCHEDULE_NAME",
    "TICK_KEY_PREFIX",
    "CatchUp",
    "Schedule",
    "TickKey",
    "TickLedger",
    "Ticker",
    "parse_tick_key",
    "tick_key",
]

TICK_KEY_PREFIX: Final = "periodic:"
"""Dedupe keys of TICK jobs start with this; producers' own keys may not."""

MAX_CATCH_UP: Final = 1000
"""With ``catch_up="all"``, at most this many missed ticks are announced at once (the
latest ones)."""

CatchUp = Literal["latest", "all"]

MAX_SCHEDULE_NAME: Final = 255 - len("periodic::@..") - 20 - 3 * 11
"""The longest schedule name, in UTF-8 bytes, whose tick keys fit a dedupe key (255
bytes) with any tick and any view."""

_VIEW = re.compile(r"(-?[0-9]{1,10})\.(-?[0-9]{1,10})\.(-?[0-9]{1,10})", re.ASCII)
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1


class TickKey(NamedTuple):
    """What a TICK job's dedupe key says: tick ``tick`` of ``schedule``, announced in
    the view whose group id is ``view``."""

    schedule: str
    tick: int
    view: GroupIdTuple


def tick_key(schedule: str, tick: int, view: GroupIdTuple) -> str:
    """The dedupe key of tick ``tick`` of ``schedule`` announced in view ``view``:
    ``periodic:<schedule>:<tick>@<proc>.<time>.<index>``."""
    proc, time, index = view
    return f"{TICK_KEY_PREFIX}{schedule}:{tick}@{proc}.{time}.{index}"


def parse_tick_key(key: str) -> TickKey | None:
    """The :class:`TickKey` in a TICK job's dedupe key, or ``None`` for any other key
    (including the view-less keys of spreadq versions before the LEDGER)."""
    if not key.startswith(TICK_KEY_PREFIX):
        return None
    head, at, view = key[len(TICK_KEY_PREFIX) :].rpartition("@")
    match = _VIEW.fullmatch(view) if at else None
    if match is None:
        return None
    name, _, number = head.rpartition(":")
    if not name or not number.isdigit() or not number.isascii():
        return None
    proc, time, index = (int(part) for part in match.groups())
    if not all(_I32_MIN <= part <= _I32_MAX for part in (proc, time, index)):
        return None
    return TickKey(name, int(number), (proc, time, index))


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
            ``"all"``; or the name is empty or longer than :data:`MAX_SCHEDULE_NAME`
            bytes.
    """

    name: str
    every: float | None = None
    catch_up: CatchUp = "latest"
    cron: str | None = None
    timezone: str | None = None

    def __post_init__(self) -> None:
        size = len(self.name.encode("utf-8", "surrogatepass"))
        if not 1 <= size <= MAX_SCHEDULE_NAME:
            raise ConfigurationError(
                f"periodic {self.name!r}: a name is 1 to {MAX_SCHEDULE_NAME} bytes, not {size}"
            )
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
class TickLedger:
    """The latest tick accepted per schedule, as this replica's view agreed on it.

    Kept by the table (fed in delivery order), read by the :class:`Ticker`. Every member
    of a settled view holds the same ledger; until it settles no TICK is accepted.
    """

    latest: dict[str, int] = field(default_factory=dict)
    settled: bool = False
    group_id: GroupIdTuple | None = None
    members: tuple[str, ...] = ()
    peers: frozenset[str] = frozenset()  # who holds this very ledger (came with us)
    spoken: set[str] = field(default_factory=set)  # named by this view's LEDGERs
    views: int = 0  # views installed: the ticker's announcements start over at each
    settles: int = 0  # times it settled: the ticker's fresh start is after the last

    def on_view(
        self,
        me: str,
        members: Sequence[str],
        group_id: GroupIdTuple,
        came: Iterable[str] | None,
    ) -> Ledger | None:
        """A regular view: ``came`` is who came with us (``None``: our first view).

        Returns the LEDGER to multicast when we speak for our peers (the first of them
        in the view's order, while the ledger is unsettled), else ``None``.
        """
        was_settled = self.settled
        self.views += 1
        self.members = tuple(members)
        self.group_id = group_id
        self.spoken = set()
        peers = frozenset((me,)) if came is None else self.peers & frozenset(came)
        self.peers = (peers | {me}) & frozenset(members)
        if self.peers.issuperset(members):  # everyone here holds this very ledger
            self.settled = True
            self.settles += not was_settled
            return None
        self.settled = False
        speaking = tuple(m for m in members if m in self.peers)
        if speaking[0] != me:
            return None
        return Ledger(group_id, speaking, tuple(sorted(self.latest.items())))

    def on_ledger(self, ledger: Ledger) -> bool:
        """A member's LEDGER was delivered; True if the ledger settled now.

        A LEDGER naming another view, or arriving once the ledger settled, is ignored.
        """
        if self.settled or ledger.group_id != self.group_id:
            return False
        latest = self.latest
        for schedule, tick in ledger.latest:
            if tick > latest.get(schedule, -1):
                latest[schedule] = tick
        self.spoken.update(ledger.members)
        if not self.spoken.issuperset(self.members):
            return False
        self.settled = True
        self.settles += 1
        self.peers = frozenset(self.members)
        return True

    def decide(self, schedule: str, tick: int, view: GroupIdTuple) -> str | None:
        """A TICK for ``(schedule, tick)`` announced in ``view`` was delivered: accept it
        (``None``; the latest moves up to it) or say why it is refused."""
        if view != self.group_id:
            return f"tick {tick} of {schedule!r} was announced in another view"
        if not self.settled:
            return f"tick {tick} of {schedule!r} came before the view's ledger settled"
        last = self.latest.get(schedule)
        if last is not None and tick <= last:
            return f"tick {tick} of {schedule!r} is not after tick {last}, accepted already"
        self.latest[schedule] = tick
        return None

    def clear(self) -> None:
        """We left the group: nothing we saw counts any more."""
        self.latest.clear()
        self.settled = False
        self.group_id = None
        self.members = ()
        self.peers = frozenset()
        self.spoken = set()

    def last(self, schedule: str) -> int | None:
        """The latest tick of ``schedule`` accepted, if any."""
        return self.latest.get(schedule)

    def announcer(self, me: str) -> bool:
        """Whether we announce ticks in the current view (its first member, settled)."""
        return self.settled and bool(self.members) and self.members[0] == me


@dataclass(slots=True)
class Ticker:
    """Decides when this member announces which ticks (sans-IO: wall time passed in).

    Without a tick ever accepted for a schedule, its ticks are announced from the
    first boundary after the ledger settled (by this member's clock).
    """

    me: str
    schedules: tuple[Schedule, ...]
    ledger: TickLedger
    announced: dict[str, int] = field(default_factory=dict)  # sent, maybe not delivered
    settled_at: float = 0.0
    _views: int = -1
    _settles: int = -1

    def _observe(self, now: float) -> None:
        ledger = self.ledger
        if ledger.views != self._views:  # what we sent and did not see delivered is stale
            self._views = ledger.views
            self.announced.clear()
        if ledger.settles != self._settles:
            self._settles = ledger.settles
            self.settled_at = now

    def due(self, now: float) -> list[tuple[Schedule, int]]:
        """The ticks to announce now, in schedule order then tick order; marks them sent."""
        out: list[tuple[Schedule, int]] = []
        ledger = self.ledger
        self._observe(now)
        if not ledger.announcer(self.me):
            return out
        for schedule in self.schedules:
            name = schedule.name
            latest = schedule.latest(now)
            last = ledger.last(name)
            first = last + 1 if last is not None else schedule.bound(self.settled_at)
            first = max(first, self.announced.get(name, first - 1) + 1)
            if latest < first:
                continue
            limit = 1 if schedule.catch_up == "latest" else MAX_CATCH_UP
            out += [(schedule, t) for t in schedule.ticks(first, latest, limit)]
            self.announced[name] = latest
        return out

    def next_due(self, now: float) -> float | None:
        """When :meth:`due` may next return something (Unix seconds), or ``None``."""
        self._observe(now)
        if not self.ledger.announcer(self.me):
            return None
        times = [schedule.next_due(now) for schedule in self.schedules]
        return min(times, default=None)
