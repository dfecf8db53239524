"""The queue protocol's names and fixed facts, shared by producers and workers.

Both sides of a queue must agree on these without either importing the other: the
groups that carry a queue, the header names a producer writes and a worker reads, and
the defaults both assume.

Names. Queue ``q`` is carried by two Spread groups: the WORK group ``q`` (its members
are exactly the consumers) and the FEEDBACK group ``q~fb`` (consumers, member producers
and observers). ``~`` is reserved as the separator, so no queue name may contain it and
no two queues' groups collide. Both names must suit Spread and its C library (1..31
bytes of ``$``..``~``, not starting with ``#``), so a queue name is 1..28 bytes.

Observers. A program that only watches a queue (``spreadq top``) joins FEEDBACK, never
WORK, under a private name that starts with :data:`OBSERVER_PREFIX` (``~``). Producers
do not count such a member as a producer sharing the window
(:meth:`~spreadq.queue.witnesses.Witnesses.peers`), so watching a queue does not slow
it down; the one thing its join causes is a VIEW announcement by the first consumer,
which the observer needs anyway. Producers and workers should not take private names
starting with ``~``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from spreadq.errors import ConfigurationError, InvalidName
from spreadq.wire.constants import MAX_GROUP_NAME
from spreadq.wire.events import check_group_name, check_private_name

__all__ = [
    "ATTEMPTS_HEADER",
    "DEAD_LETTER_SUFFIX",
    "DEFAULT_DRAIN_TIMEOUT",
    "ERROR_HEADER",
    "ERROR_TYPE_HEADER",
    "FEEDBACK_SUFFIX",
    "MAX_QUEUE_NAME",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "NOT_BEFORE_HEADER",
    "OBSERVER_PREFIX",
    "ORIGIN_QUEUE_HEADER",
    "PRIORITY_HEADER",
    "check_priority",
    "count_producers",
    "dead_letter_queue",
    "is_observer",
    "read_priority",
    "observer_name",
    "queue_groups",
]

FEEDBACK_SUFFIX: Final = "~fb"
"""Appended to a queue name to name its FEEDBACK group; ``~`` is reserved for it."""
MAX_QUEUE_NAME: Final = MAX_GROUP_NAME - len(FEEDBACK_SUFFIX)
"""The longest queue name, in bytes (28): its FEEDBACK group must fit Spread's 31."""
NOT_BEFORE_HEADER: Final = "not_before"
"""The job header holding the Unix time before which a job must not start (``put(delay=)``)."""
PRIORITY_HEADER: Final = "priority"
"""The job header holding a job's priority (``put(priority=)``) as a decimal integer;
a job without it has priority 0 and its headers need not be read to know it."""
MIN_PRIORITY: Final = -100
"""The lowest priority a job may be put with."""
MAX_PRIORITY: Final = 100
"""The highest priority a job may be put with."""
DEAD_LETTER_SUFFIX: Final = ".dead"
"""Appended to a queue name to name its dead-letter queue (``images.dead``): ``.`` is a
legal byte in a queue name, unlike ``~``, so the dead-letter queue is an ordinary queue
with its own FEEDBACK group (``images.dead~fb``)."""
ERROR_HEADER: Final = "spreadq-error"
"""A dead-lettered job's header: the message of the error it failed with."""
ERROR_TYPE_HEADER: Final = "spreadq-error-type"
"""A dead-lettered job's header: the qualified type of that error (``ValueError``)."""
ATTEMPTS_HEADER: Final = "spreadq-attempts"
"""A dead-lettered job's header: how many attempts it had (a decimal integer)."""
ORIGIN_QUEUE_HEADER: Final = "spreadq-origin-queue"
"""A dead-lettered job's header: the queue it failed on."""
DEFAULT_DRAIN_TIMEOUT: Final = 30.0
"""Seconds a draining worker waits for its jobs before it cancels them and leaves."""


OBSERVER_PREFIX: Final = "~"
"""The first character of an observer's private name (``~top3fa9c``)."""


def dead_letter_queue(queue: str, name: str | None = None) -> str:
    """Return the dead-letter queue of ``queue``: ``name``, or ``<queue>.dead``.

    Raises:
        ConfigurationError: the name is not a valid queue name (see
            :func:`queue_groups`; ``<queue>.dead`` needs ``queue`` to be at most 23
            bytes: give a shorter ``name`` otherwise), or it is ``queue`` itself.
    """
    target = queue + DEAD_LETTER_SUFFIX if name is None else name
    try:
        queue_groups(target)
    except ConfigurationError as error:
        raise ConfigurationError(f"dead-letter queue of {queue!r}: {error}") from None
    if target == queue:
        raise ConfigurationError(f"queue {queue!r} cannot be its own dead-letter queue")
    return target


def check_priority(priority: int) -> int:
    """Return ``priority`` if a job may be put with it.

    Raises:
        ConfigurationError: not an int in :data:`MIN_PRIORITY`..:data:`MAX_PRIORITY`.
    """
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ConfigurationError(f"priority must be an int, not {priority!r}")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ConfigurationError(
            f"priority must be in {MIN_PRIORITY}..{MAX_PRIORITY}, not {priority}"
        )
    return priority


def read_priority(headers: Mapping[str, str]) -> int:
    """A job's priority from its decoded headers: 0 when it has none, or one that is
    not an integer in range (a foreign producer's; the job still runs)."""
    text = headers.get(PRIORITY_HEADER)
    if text is None:
        return 0
    try:
        return check_priority(int(text))
    except (ValueError, ConfigurationError):
        return 0


def observer_name(tag: str) -> str:
    """The private name an observer connects with: :data:`OBSERVER_PREFIX` and ``tag``
    (so 1..9 bytes of ``$``..``~``: Spread's private names are at most 10).

    Raises:
        ConfigurationError: ``tag`` is empty, too long, or uses another byte.
    """
    name = OBSERVER_PREFIX + tag
    try:
        if not tag:
            raise InvalidName(name, "an observer's name needs a tag after the prefix")
        check_private_name(name)
    except InvalidName as error:
        raise ConfigurationError(f"invalid observer name {name!r}: {error.reason}") from error
    return name


def is_observer(member: str) -> bool:
    """Whether Spread member ``member`` (``#private#daemon``) is an observer."""
    return member.startswith("#" + OBSERVER_PREFIX)


def count_producers(feedback: Iterable[str], consumers: Iterable[str]) -> int:
    """How many members of a queue's FEEDBACK group are neither ``consumers`` nor
    observers: the producers that share its window (at least 1). Producers split the
    window by it, and consumers ACK before one producer's share is read by it. An
    observer (:func:`is_observer`) sends no jobs, so it takes no share."""
    others = set(feedback).difference(consumers)
    return max(1, sum(1 for member in others if not is_observer(member)))


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
