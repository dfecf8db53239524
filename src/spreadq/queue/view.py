"""Views of the WORK group, and the membership inputs the queue core is fed.

The Dispatcher translates the wire's membership events into these values; the queue
core never imports :mod:`spreadq.wire`.

Who "came with us" (docs/design/membership.md#who-came-with-us): for a JOIN the vs-set holds only
the joiner, so everyone in the old view came along; for a LEAVE or DISCONNECT it holds only
the member that went, so the old view minus that member came along; only for a NETWORK
change does the vs-set say who moved together, and then our own vs-set is the answer.
:func:`came_with_us` is that table.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "ChangeCause",
    "GroupIdTuple",
    "LeftGroup",
    "Transitional",
    "View",
    "ViewInstalled",
    "came_with_us",
]

GroupIdTuple = tuple[int, int, int]
"""A Spread group id as ``(proc_id, time, index)``; unique only within one lifetime of
the group (Spread reuses ids when a group is emptied and re-created,
docs/design/membership.md#group-ids-repeat)."""


class ChangeCause(enum.StrEnum):
    """Why a regular membership was installed."""

    JOIN = "join"
    LEAVE = "leave"
    DISCONNECT = "disconnect"
    NETWORK = "network"


@dataclass(frozen=True, slots=True)
class View:
    """One regular membership of the WORK group as the queue core numbers it.

    ``members`` are in Spread's order (the same at every member). ``ordinal`` is the local
    count of views this replica has installed since it joined; it pairs with
    ``group_id`` to tell views apart, since group ids repeat across group lifetimes. The
    VIEW envelope carries exactly these three fields.
    """

    members: tuple[str, ...]
    group_id: GroupIdTuple
    ordinal: int

    @property
    def first(self) -> str | None:
        """The first member: the one who announces the view to the FEEDBACK group."""
        return self.members[0] if self.members else None


@dataclass(frozen=True, slots=True)
class ViewInstalled:
    """A regular membership of the WORK group was delivered.

    ``changed_member`` is the member that joined, left or was disconnected (``None`` for
    NETWORK). ``vs_set`` is our own vs-set; it is only read for NETWORK, where it names
    the members that moved with us from our previous view.
    """

    members: tuple[str, ...]
    group_id: GroupIdTuple
    cause: ChangeCause
    changed_member: str | None = None
    vs_set: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Transitional:
    """A transitional membership: the view ``group_id`` is ending because daemons parted.

    Messages delivered after it and before the next regular membership still count
    slots in the old view; their agreement holds only among the members that move with
    us (the next view's vs-set).
    """

    group_id: GroupIdTuple


@dataclass(frozen=True, slots=True)
class LeftGroup:
    """We have left the WORK group (self-leave); the table drops all its state."""


def _after_join(old: tuple[str, ...], event: ViewInstalled) -> frozenset[str]:
    return frozenset(old)


def _after_departure(old: tuple[str, ...], event: ViewInstalled) -> frozenset[str]:
    return frozenset(old) - {event.changed_member}


def _after_network(old: tuple[str, ...], event: ViewInstalled) -> frozenset[str]:
    return frozenset(event.vs_set or ())


_CAME_WITH_US: dict[ChangeCause, Callable[[tuple[str, ...], ViewInstalled], frozenset[str]]] = {
    ChangeCause.JOIN: _after_join,
    ChangeCause.LEAVE: _after_departure,
    ChangeCause.DISCONNECT: _after_departure,
    ChangeCause.NETWORK: _after_network,
}


def came_with_us(old_members: tuple[str, ...], event: ViewInstalled) -> frozenset[str]:
    """The members of the new view that moved with us from our previous view.

    They delivered the same messages as we did in the old view (virtual synchrony), so
    they hold the same payloads; everyone else in the new view is new to our history.
    """
    return _CAME_WITH_US[event.cause](old_members, event) & frozenset(event.members)
