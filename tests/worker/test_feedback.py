"""The feedback re-announce rule: exactly the first WORK member answers a newcomer."""

from __future__ import annotations

import pytest

from spreadq.queue.view import View
from spreadq.wire.constants import Cause
from spreadq.worker.feedback import view_to_reannounce

VIEW = View(("#a#h", "#b#h"), (1, 2, 3), 4)


@pytest.mark.parametrize(
    ("cause", "changed", "announced"),
    [
        (Cause.JOIN, "#p#h", True),  # a producer joined FEEDBACK
        (Cause.JOIN, "#b#h", False),  # a consumer: its WORK view change announces
        (Cause.NETWORK, None, True),  # anyone may have missed a VIEW
        (Cause.LEAVE, "#p#h", False),
        (Cause.DISCONNECT, "#p#h", False),
    ],
)
def test_the_first_member_answers_joins_of_non_consumers_and_network_changes(
    cause: Cause, changed: str | None, announced: bool
) -> None:
    found = view_to_reannounce(
        VIEW, "#a#h", transitional=False, cause=cause, changed_member=changed
    )
    assert found is (VIEW if announced else None)


def test_only_the_first_member_answers_and_not_while_transitional_or_before_a_view() -> None:
    def answer(view: View | None, me: str, transitional: bool) -> View | None:
        return view_to_reannounce(
            view, me, transitional=transitional, cause=Cause.JOIN, changed_member="#p#h"
        )

    assert answer(VIEW, "#a#h", False) is VIEW
    assert answer(VIEW, "#b#h", False) is None
    assert answer(VIEW, "#a#h", True) is None
    assert answer(None, "#a#h", False) is None
