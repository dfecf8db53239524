"""Random group traffic and Spread's ordering promise, checked on what members received.

Used by the engine's seeded simulation (``test_engine.py``) and by the conformance suite
over sockets, on the embedded daemon and on a real Spread
(``tests/conformance/test_random_traffic.py``).

What is checked, for every group and every member (views *and* messages, interleaved):

* Each group has *anchors*: members that join it before any other traffic and stay for
  the whole run. The first anchor's sequence of the group's views and messages is the
  reference; it starts with the view in which that anchor is alone.
* A member's time in a group (an *episode*) starts with the view of its own join and is
  exactly the slice of the reference from that view on: nothing missing, nothing extra,
  nothing reordered. An episode that ends with a ``SelfLeave`` stops just before the view
  that tells the others of that leave; one still open at the end runs to the reference's
  end (every member read until it had everyone's final marker).
* Any two members see the views and messages they both received in the same relative
  order, across groups too (Spread's one total order).
* A member receives a message only while it is in one of the message's groups.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from spreadq.wire.constants import Cause
from spreadq.wire.events import (
    DaemonMessage,
    DataMessage,
    RegularMembership,
    SelfLeave,
    TransitionalMembership,
)

__all__ = ["Episode", "Step", "check_one_order", "episodes", "identity", "random_traffic"]

Identity = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Step:
    """One action of one client: ``join`` / ``leave`` ``groups[0]``, or ``multicast``."""

    client: int
    kind: str
    groups: tuple[str, ...]
    data: bytes = b""


def random_traffic(
    rng: random.Random,
    clients: int,
    groups: Sequence[str],
    anchors: Mapping[str, Sequence[int]],
    steps: int,
) -> tuple[list[Step], list[Step]]:
    """The anchors' joins (group by group, in the order given), and ``steps`` random
    actions to play after them.

    Joins and leaves go only to groups where the client is not an anchor, and follow what
    the client did before (no join of a group it is in, no leave of one it is not in), so
    every step has an effect. Multicasts go to one or two groups, members or not; each
    payload is unique.
    """
    setup = [Step(c, "join", (g,)) for g in groups for c in anchors.get(g, ())]
    plan: list[Step] = []
    inside = {c: {g for g in groups if c in anchors.get(g, ())} for c in range(clients)}
    for n in range(steps):
        client = rng.randrange(clients)
        action = rng.random()
        free = [g for g in groups if client not in anchors.get(g, ())]
        if action < 0.3 and free:
            group = rng.choice(free)
            kind = "leave" if group in inside[client] else "join"
            inside[client] ^= {group}
            plan.append(Step(client, kind, (group,)))
        else:
            chosen = tuple(rng.sample(list(groups), rng.randint(1, min(2, len(groups)))))
            plan.append(Step(client, "multicast", chosen, b"m%d" % n))
    return setup, plan


def identity(message: DaemonMessage) -> Identity:
    """What makes one delivery the same event at every member that receives it."""
    if isinstance(message, RegularMembership):
        return (
            "view",
            message.group,
            message.group_id,
            message.members,
            message.cause,
            message.changed_member,
        )
    if isinstance(message, TransitionalMembership):
        return ("trans", message.group, message.group_id)
    if isinstance(message, DataMessage):
        return ("data", message.sender, bytes(message.data), tuple(message.groups))
    if isinstance(message, SelfLeave):
        return ("self_leave", message.group)
    raise AssertionError(f"unexpected {message!r}")


@dataclass
class Episode:
    """One stretch of ``member`` in a group: its join view, then what it saw there."""

    member: str
    items: list[Identity] = field(default_factory=list)
    left: bool = False


def episodes(member: str, stream: Sequence[DaemonMessage], group: str) -> list[Episode]:
    """``member``'s episodes in ``group``, from everything it received (in order).

    Raises:
        AssertionError: a view of the group reached a non-member other than as its own
            join, or a ``SelfLeave`` came outside the group.
    """
    found: list[Episode] = []
    current: Episode | None = None
    for message in stream:
        if isinstance(message, SelfLeave):
            if message.group == group:
                assert current is not None, f"{member}: SelfLeave of {group} while not in it"
                current.left = True
                current = None
            continue
        if isinstance(message, RegularMembership | TransitionalMembership):
            if message.group != group:
                continue
            if current is None:
                assert isinstance(message, RegularMembership), (member, message)
                assert message.cause is Cause.JOIN, (member, message)
                assert message.changed_member == member, (member, message)
                current = Episode(member)
                found.append(current)
            current.items.append(identity(message))
        elif isinstance(message, DataMessage) and group in message.groups and current:
            current.items.append(identity(message))
    return found


def _in_groups(member: str, stream: Sequence[DaemonMessage]) -> None:
    """A member receives data only while in one of its groups, views only of its own."""
    inside: set[str] = set()
    for message in stream:
        if isinstance(message, RegularMembership):
            assert member in message.members, (member, message)
            inside.add(message.group)
        elif isinstance(message, SelfLeave):
            inside.discard(message.group)
        elif isinstance(message, DataMessage):
            assert inside & set(message.groups), (member, sorted(inside), message)


def _same_relative_order(streams: Mapping[str, Sequence[DaemonMessage]]) -> None:
    ids = {  # a SelfLeave goes to the leaver alone
        member: [identity(m) for m in stream if not isinstance(m, SelfLeave)]
        for member, stream in streams.items()
    }
    for x, seen_x in ids.items():
        for y, seen_y in ids.items():
            if x >= y:
                continue
            both = set(seen_x) & set(seen_y)
            order_x = [i for i in seen_x if i in both]
            order_y = [i for i in seen_y if i in both]
            assert order_x == order_y, f"{x} and {y} disagree on the order"


def check_one_order(
    streams: Mapping[str, Sequence[DaemonMessage]], anchors: Mapping[str, Sequence[str]]
) -> int:
    """Check everything in this module's docstring; return how many episodes it compared.

    ``streams`` holds every member's deliveries in order; ``anchors`` each group's
    anchors, first joiner first.

    Raises:
        AssertionError: naming the member, the group and the first difference.
    """
    compared = 0
    for member, stream in streams.items():
        _in_groups(member, stream)
    _same_relative_order(streams)
    for group, group_anchors in anchors.items():
        first = group_anchors[0]
        (reference_episode,) = episodes(first, streams[first], group)
        reference = reference_episode.items
        assert not reference_episode.left, f"anchor {first} left {group}"
        assert reference[0][3] == (first,), f"{first} was not alone at first in {group}"
        for member, stream in streams.items():
            member_episodes = episodes(member, stream, group)
            if member in group_anchors:
                assert len(member_episodes) == 1, f"anchor {member} of {group}"
                assert not member_episodes[0].left, f"anchor {member} left {group}"
            for episode in member_episodes:
                _check_episode(episode, reference, group)
                compared += 1
    return compared


def _check_episode(episode: Episode, reference: list[Identity], group: str) -> None:
    member, items = episode.member, episode.items
    assert items[0] in reference, f"{member}'s join view of {group} is not the anchor's"
    start = reference.index(items[0])
    expected = reference[start : start + len(items)]
    for n, (got, want) in enumerate(zip(items, expected, strict=False)):
        assert got == want, f"{member} in {group}, item {n} after its join: {got} != {want}"
    assert len(items) == len(expected), f"{member} saw more of {group} than the anchor"
    end = start + len(items)
    if episode.left:
        assert end < len(reference), f"the others never saw {member} leave {group}"
        kind, _, _, members, cause, changed = reference[end]
        assert (kind, cause, changed) == ("view", Cause.LEAVE, member), (
            f"{member} left {group}, but the next view is {reference[end]}"
        )
        assert member not in members  # type: ignore[operator]
    else:
        assert end == len(reference), (
            f"{member} stayed in {group} but missed its last {len(reference) - end} events"
        )
