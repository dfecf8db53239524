"""Typed values that cross the Spread client protocol, in both directions.

Like h11, one set of types serves both roles: the commands a client sends (``Join``,
``Leave``, ``Disconnect``, ``Multicast``) are the events a daemon's session receives, and
the messages a daemon sends (``DataMessage``, ``RegularMembership``, ...) are the events
a client's session receives.

Names are ``str`` decoded as Latin-1, which is lossless: a daemon accepts any byte in a
group name (docs/design/spread-protocol.md#names), and a name must come back out exactly as it went
in. Outgoing commands validate their names and sizes when they are built, so an invalid
command cannot exist; incoming events are validated by the decoder that builds them.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field
from typing import Final, Self

from spreadq.errors import InvalidName, LocalProtocolError, MessageTooLarge
from spreadq.wire.constants import (
    GROUP_NAME_SIZE,
    HEADER_SIZE,
    LEGAL_NAME_BYTES,
    MAX_GROUP_NAME,
    MAX_GROUPS_PER_MESSAGE,
    MAX_PRIVATE_NAME,
    REGULAR_MASK,
    SAFE_MESSAGE_LIMIT,
    Cause,
    RejectCode,
    ServiceType,
)

__all__ = [
    "CLOSED",
    "NEED_DATA",
    "Accepted",
    "AuthChoice",
    "ClientCommand",
    "Closed",
    "DaemonMessage",
    "DataMessage",
    "Disconnect",
    "GroupId",
    "Hello",
    "IncomingMulticast",
    "Join",
    "Leave",
    "Multicast",
    "NeedData",
    "RegularMembership",
    "Rejected",
    "RejectedMessage",
    "SelfLeave",
    "TransitionalMembership",
    "check_group_name",
    "check_private_name",
]


def check_private_name(name: str) -> bytes:
    """Return ``name`` as wire bytes, or raise :class:`InvalidName`.

    A private name is 0..10 bytes of ``$``..``~``; the empty name asks the daemon to
    choose one.
    """
    raw = name.encode("latin-1", "replace")
    if len(raw) > MAX_PRIVATE_NAME:
        raise InvalidName(name, f"private names are at most {MAX_PRIVATE_NAME} bytes")
    if not LEGAL_NAME_BYTES.match(raw) or "#" in name or not name.isascii():
        raise InvalidName(name, "private names use only the bytes '$' (0x24) to '~' (0x7e)")
    return raw


def check_group_name(name: str, *, allow_private: bool = False) -> bytes:
    """Return ``name`` as wire bytes, or raise :class:`InvalidName`.

    A group name is 1..31 bytes of ``$``..``~``, the rule the C library applies so that C
    and Java programs can use the same groups. A name starting with ``#`` is a private
    group: the daemon routes it as one, so a multicast to a *joined* ``#name`` is never
    delivered. ``allow_private`` admits it as a destination (to address one connection).
    """
    if not name.isascii():
        raise InvalidName(name, "group names are ASCII")
    raw = name.encode("ascii")
    if not 1 <= len(raw) <= MAX_GROUP_NAME:
        raise InvalidName(name, f"group names are 1 to {MAX_GROUP_NAME} bytes")
    if raw.startswith(b"#"):
        if not allow_private:
            raise InvalidName(
                name, "a name starting with '#' is a private group; the daemon drops its traffic"
            )
        if not _PRIVATE_GROUP.match(raw):
            raise InvalidName(name, "a private group is '#<name>#<daemon>' of '$'..'~' bytes")
        return raw
    if not LEGAL_NAME_BYTES.match(raw):
        raise InvalidName(name, "group names use only the bytes '$' (0x24) to '~' (0x7e)")
    return raw


_PRIVATE_GROUP: Final = re.compile(rb"#[\x24-\x7e]{0,10}#[\x24-\x7e]{1,19}\Z")
"""``#<private name>#<daemon name>`` (docs/design/spread-protocol.md#names); the length cap of 31
applies too."""


@dataclass(frozen=True, slots=True, order=True)
class GroupId:
    """A group view's id: the daemon ring it began in and a counter of changes.

    Spread reuses ids when a group is emptied and re-created
    (docs/design/membership.md#group-ids-repeat), so a ``GroupId`` is only unique within one
    lifetime of the group.
    """

    proc_id: int
    time: int
    index: int


@functools.lru_cache(maxsize=4096)
def _checked_destination(name: str) -> bytes:
    """``check_group_name(name, allow_private=True)``, memoized: a sender names the same
    few groups millions of times, and only valid names are cached (invalid ones raise)."""
    return check_group_name(name, allow_private=True)


_VALID_SERVICES: Final = frozenset(
    level | extra
    for level in (0x01, 0x02, 0x04, 0x08, 0x10, 0x20)
    for extra in (0, int(ServiceType.SELF_DISCARD))
)
"""Exactly one delivery level, optionally with SELF_DISCARD: the services a client may send."""


# --- client -> daemon ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _GroupCommand:
    """A control command naming one group.

    Built by a client, the name is checked as the C library checks it. A daemon accepts
    any name (docs/design/spread-protocol.md#names), so the daemon's session builds it with
    :meth:`from_wire`.
    """

    group: str

    def __post_init__(self) -> None:
        check_group_name(self.group)

    @classmethod
    def from_wire(cls, group: str) -> Self:
        """Build from a name a client sent, unchecked, as a real daemon takes it."""
        event = object.__new__(cls)
        object.__setattr__(event, "group", group)
        return event


@dataclass(frozen=True, slots=True)
class Join(_GroupCommand):
    """Join ``group``; the daemon answers with a regular membership."""


@dataclass(frozen=True, slots=True)
class Leave(_GroupCommand):
    """Leave ``group``; the daemon answers with a self-leave."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """End the session; the daemon closes the socket and tells the groups."""


@dataclass(frozen=True, slots=True)
class Multicast:
    """Send ``data`` to every member of ``groups`` (group names or private groups).

    Raises:
        InvalidName: a destination name Spread cannot carry.
        LocalProtocolError: no groups, more than 100, or not exactly one delivery level.
        MessageTooLarge: ``48 + 32 * len(groups) + len(data)`` passes 140,000 bytes.
    """

    groups: tuple[str, ...]
    data: bytes
    service: ServiceType = ServiceType.AGREED
    mess_type: int = 0

    def __post_init__(self) -> None:
        if not self.groups:
            raise LocalProtocolError("a multicast needs at least one destination group")
        if len(self.groups) > MAX_GROUPS_PER_MESSAGE:
            raise LocalProtocolError(
                f"a multicast names at most {MAX_GROUPS_PER_MESSAGE} groups, not {len(self.groups)}"
            )
        for group in self.groups:
            _checked_destination(group)
        if self.service not in _VALID_SERVICES:
            levels = int(self.service) & REGULAR_MASK
            if levels == 0 or levels & (levels - 1):
                raise LocalProtocolError(
                    f"a multicast needs exactly one delivery level, not {self.service!r}"
                )
            raise LocalProtocolError(f"service {self.service!r} has bits a client may not set")
        if not -32768 <= self.mess_type <= 32767:
            raise LocalProtocolError(f"mess_type {self.mess_type} is not a signed 16-bit value")
        size = HEADER_SIZE + GROUP_NAME_SIZE * len(self.groups) + len(self.data)
        if size > SAFE_MESSAGE_LIMIT:
            raise MessageTooLarge(size, SAFE_MESSAGE_LIMIT)


ClientCommand = Join | Leave | Disconnect | Multicast
"""What a client sends, and what a daemon's session receives."""


# --- handshake outcomes --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """The daemon accepted the session."""

    private_group: str
    daemon_version: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Rejected:
    """The daemon refused the session with ``code``; it closes the socket next."""

    code: RejectCode


# --- daemon -> client ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataMessage:
    """A multicast delivered to this connection.

    ``groups`` is the sender's whole destination list, private groups included.
    ``endian_mismatch`` is true when the sender wrote its hint in the other byte order.
    """

    sender: str
    groups: tuple[str, ...]
    service: ServiceType
    mess_type: int
    data: bytes
    endian_mismatch: bool = False


@dataclass(frozen=True, slots=True)
class RegularMembership:
    """A new view of ``group``: its members in Spread's order and why it changed.

    ``vs_sets`` are the virtual-synchrony sets and ``local_vs_set`` indexes ours. For
    JOIN, LEAVE and DISCONNECT the only set holds the one member that changed; only for
    NETWORK do the sets say who moved together (docs/design/membership.md#who-came-with-us).
    """

    group: str
    group_id: GroupId
    members: tuple[str, ...]
    cause: Cause
    vs_sets: tuple[tuple[str, ...], ...] = ()
    local_vs_set: int = 0

    @property
    def changed_member(self) -> str | None:
        """The member that joined, left or was disconnected; ``None`` for NETWORK."""
        if self.cause is Cause.NETWORK or not self.vs_sets or not self.vs_sets[0]:
            return None
        return self.vs_sets[0][0]

    @property
    def local_vs_members(self) -> tuple[str, ...]:
        """Our own vs-set (for NETWORK: the members that came with us)."""
        if not self.vs_sets:
            return ()
        return self.vs_sets[self.local_vs_set]


@dataclass(frozen=True, slots=True)
class TransitionalMembership:
    """The view ``group_id`` of ``group`` is ending because daemons parted (EVS)."""

    group: str
    group_id: GroupId


@dataclass(frozen=True, slots=True)
class SelfLeave:
    """This connection has left ``group``."""

    group: str


@dataclass(frozen=True, slots=True)
class RejectedMessage:
    """The daemon refused something this connection sent (an access-control policy).

    ``old_type`` is the refused message's type with the marker removed.
    """

    sender: str
    groups: tuple[str, ...]
    old_type: int
    mess_type: int
    data: bytes = field(repr=False)


DaemonMessage = (
    DataMessage | RegularMembership | TransitionalMembership | SelfLeave | RejectedMessage
)
"""What a daemon sends after the handshake, and what a client's session yields."""


# --- daemon side: what a server session yields -----------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """A client's hello (docs/design/spread-protocol.md#the-handshake), as the daemon's session
    decoded it.

    ``refusal`` is set when the hello itself breaks a rule the session can check alone:
    ``REJECT_VERSION`` for a client older than 3.1.0, ``REJECT_ILLEGAL_NAME`` for a name
    over 10 bytes or with a byte outside ``$``..``~``. The daemon must then answer
    ``reject(hello.refusal)``. Uniqueness and quotas are the daemon's to check.
    """

    version: tuple[int, int, int]
    private_name: str
    membership: bool
    priority: bool
    refusal: RejectCode | None = None

    @property
    def wants_auth(self) -> bool:
        """Whether this client takes part in the auth exchange (version >= 3.16.0)."""
        major, minor, patch = self.version
        return major * 10000 + minor * 100 + patch >= 31600


@dataclass(frozen=True, slots=True)
class AuthChoice:
    """The methods named in a client's 90-byte auth choice, empty slots left out.

    ``refusal`` is ``REJECT_AUTH`` when a named method was not offered in the auth list
    or no method was named at all; the daemon must then answer ``reject(REJECT_AUTH)``.
    """

    methods: tuple[str, ...]
    refusal: RejectCode | None = None


@dataclass(frozen=True, slots=True)
class IncomingMulticast:
    """A multicast as the daemon received it, with the sender's hint kept raw.

    A daemon passes ``hint_raw`` through untouched, in the sender's byte order (see
    docs/design/spread-protocol.md#byte-order). Destination names are not validated beyond
    the daemon's own checks: the real daemon accepts any bytes in them, and unknown groups
    are simply dropped.
    ``groups_raw`` holds the ``32 * len(groups)`` bytes of the names as received, which
    the real daemon forwards unchanged; it is not part of equality (empty when the
    value was built by hand, and the names are then encoded again).
    """

    groups: tuple[str, ...]
    data: bytes = field(repr=False)
    service: ServiceType
    mess_type: int
    hint_raw: bytes
    sender: str
    groups_raw: bytes = field(default=b"", repr=False, compare=False)


# --- sentinels -------------------------------------------------------------------------


class NeedData(enum.Enum):
    """``next_event()`` needs more bytes: feed ``receive_data()`` and ask again."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


class Closed(enum.Enum):
    """The session is over; ``next_event()`` returns this forever."""

    CLOSED = "CLOSED"

    def __repr__(self) -> str:
        return "CLOSED"


NEED_DATA: Final = NeedData.NEED_DATA
CLOSED: Final = Closed.CLOSED
