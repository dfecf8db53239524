"""Who came with us into a new view of the WORK group: the table of
:func:`spreadq.queue.view.came_with_us`, one worked case per cause."""

from __future__ import annotations

import pytest

from spreadq.queue.view import ChangeCause, View, ViewInstalled, came_with_us

OLD = ("a", "b", "c")


def installed(
    members: tuple[str, ...],
    cause: ChangeCause,
    changed: str | None = None,
    vs_set: tuple[str, ...] | None = None,
) -> ViewInstalled:
    return ViewInstalled(members, (1, 2, 3), cause, changed, vs_set)


def test_after_a_join_everyone_of_the_old_view_came_along() -> None:
    assert came_with_us(OLD, installed((*OLD, "d"), ChangeCause.JOIN, "d")) == {"a", "b", "c"}


@pytest.mark.parametrize("cause", [ChangeCause.LEAVE, ChangeCause.DISCONNECT])
def test_after_a_departure_the_rest_came_along(cause: ChangeCause) -> None:
    assert came_with_us(OLD, installed(("a", "c"), cause, "b")) == {"a", "c"}


def test_after_a_network_change_our_vs_set_says_who() -> None:
    event = installed(("a", "b", "x", "y"), ChangeCause.NETWORK, None, ("a", "b"))
    assert came_with_us(OLD, event) == {"a", "b"}
    assert came_with_us(OLD, installed(("a", "x"), ChangeCause.NETWORK)) == frozenset()


def test_only_members_of_the_new_view_count() -> None:
    # a vs-set or an old view naming someone not in the new view does not add them
    event = installed(("a",), ChangeCause.NETWORK, None, ("a", "z"))
    assert came_with_us(OLD, event) == {"a"}
    assert came_with_us(OLD, installed(("a", "b"), ChangeCause.JOIN, "b")) == {"a", "b"}


def test_the_first_member_announces() -> None:
    assert View(("b", "a"), (1, 2, 3), 1).first == "b"
    assert View((), (1, 2, 3), 1).first is None
