"""The queue protocol's names and fixed facts, shared by producers and workers.

Both sides of a queue must agree on these without either importing the other: the
groups that carry a queue, the header names a producer writes and a worker reads, and
the defaults both assume.

Names. Queue ``q`` is carried by two Spread groups: the WORK group ``q`` (its members
are exactly the consumers) and the FEEDBACK group ``q~fb`` (consumers, member producers
and observers). ``~`` is reserved as the separator, so no queue name may contain it and
no two queues' groups collide. Both names must suit Spread and its C library (1..31
bytes of ``$``..``~``, not starting with ``#``), so a queue name is 1..28 bytes.
"""

from __future__ import annotations

from typing import Final

from spreadq.errors import ConfigurationError, InvalidName
from spreadq.wire.constants import MAX_GROUP_NAME
from spreadq.wire.events import check_group_name

__all__ = [
    "DEFAULT_DRAIN_TIMEOUT",
    "FEEDBACK_SUFFIX",
    "MAX_QUEUE_NAME",
    "NOT_BEFORE_HEADER",
    "queue_groups",
]

FEEDBACK_SUFFIX: Final = "~fb"
"""Appended to a queue name to name its FEEDBACK group; ``~`` is reserved for it."""
MAX_QUEUE_NAME: Final = MAX_GROUP_NAME - len(FEEDBACK_SUFFIX)
"""The longest queue name, in bytes (28): its FEEDBACK group must fit Spread's 31."""
NOT_BEFORE_HEADER: Final = "not_before"
"""The job header holding the Unix time before which a job must not start (``put(delay=)``)."""
DEFAULT_DRAIN_TIMEOUT: Final = 30.0
"""Seconds a draining worker waits for its jobs before it cancels them and leaves."""


def queue_groups(queue: str) -> tuple[str, str]:
    """Return the (WORK, FEEDBACK) group names of ``queue``: ``("q", "q~fb")``.

    Raises:
        ConfigurationError: the name contains ``~``, is empty or longer than 28 bytes,
            uses a byte outside ``$``..``~``, or starts with ``#``.
    """
    if not isinstance(queue, str):
        raise ConfigurationError(f"a queue name is a str, got {queue!r}")
    if "~" in queue:
        raise ConfigurationError(
            f"invalid queue name {queue!r}: '~' is reserved (it separates a queue from its "
            f"feedback group {queue + FEEDBACK_SUFFIX!r})"
        )
    if not 1 <= len(queue.encode("utf-8")) <= MAX_QUEUE_NAME:
        raise ConfigurationError(
            f"invalid queue name {queue!r}: queue names are 1 to {MAX_QUEUE_NAME} bytes "
            f"(the feedback group adds {FEEDBACK_SUFFIX!r} and Spread allows {MAX_GROUP_NAME})"
        )
    feedback = queue + FEEDBACK_SUFFIX
    try:
        check_group_name(queue)
        check_group_name(feedback)
    except InvalidName as error:
        raise ConfigurationError(f"invalid queue name {queue!r}: {error.reason}") from error
    return queue, feedback
