"""The feedback re-announce rule: who tells a FEEDBACK newcomer the WORK view.

Producers learn the consumers from the VIEW envelope each WORK view change sends to
FEEDBACK. A producer (or observer) that joins FEEDBACK after the last one would know no
consumer, so when a member that is not a consumer joins FEEDBACK, or after a NETWORK
change of it (anyone may have missed a VIEW), the WORK view is announced again. Every
consumer sees the same FEEDBACK membership at the same point of the order, so the rule
picks exactly one of them, the first member of the current WORK view, and the WORK
group sees no extra view change. While our WORK view is transitional nobody answers:
the next regular view is announced anyway.
"""

from __future__ import annotations

from spreadq.queue.view import View
from spreadq.wire.constants import Cause

__all__ = ["view_to_reannounce"]


def view_to_reannounce(
    view: View | None,
    me: str,
    *,
    transitional: bool,
    cause: Cause,
    changed_member: str | None,
) -> View | None:
    """The WORK view this member announces again after a FEEDBACK membership change,
    or None when it stays silent.

    Args:
        view: our current WORK view (None before the first).
        me: our member name.
        transitional: whether our WORK view is transitional now.
        cause: the FEEDBACK membership's cause.
        changed_member: the member that joined, left or was disconnected.
    """
    if view is None or view.first != me or transitional:
        return None
    if cause is Cause.NETWORK or (cause is Cause.JOIN and changed_member not in view.members):
        return view
    return None
