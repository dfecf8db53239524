"""Numbers of the Spread 4.x/5.x client protocol.

Every value here is described in docs/design/spread-protocol.md and was checked against a real
Spread 5.0.1 daemon.

Names in brackets, such as [Byte order], are sections of ``docs/design/spread-protocol.md``
(or, prefixed ``membership:``, of ``docs/design/membership.md``).
"""

from __future__ import annotations

import enum
import re
from typing import Final

__all__ = [
    "ACCEPT_SESSION",
    "AUTH_BLOCK_SIZE",
    "AUTH_NAME_SIZE",
    "CLIENT_VERSION",
    "DAEMON_MESSAGE_LIMIT",
    "DEFAULT_MAX_SESSION_MESSAGES",
    "DEFAULT_PORT",
    "ENDIAN_MARKER",
    "FORBIDDEN_CLIENT_BITS",
    "GROUP_NAME_SIZE",
    "HEADER_SIZE",
    "LEGAL_NAME_BYTES",
    "MAX_AUTH_METHODS",
    "MAX_DAEMON_NAME",
    "MAX_GROUPS_PER_MESSAGE",
    "MAX_GROUP_NAME",
    "MAX_PRIVATE_NAME",
    "MAX_SESSIONS",
    "MEMBERSHIP_MASK",
    "NULL_AUTH",
    "REGULAR_MASK",
    "SAFE_MESSAGE_LIMIT",
    "Cause",
    "ControlType",
    "MessageBits",
    "RejectCode",
    "ServiceType",
]

# transport [Addresses]
DEFAULT_PORT: Final = 4803

# names and limits [Names]
GROUP_NAME_SIZE: Final = 32
"""Fixed width of every group name on the wire, NUL-padded."""
MAX_GROUP_NAME: Final = GROUP_NAME_SIZE - 1
"""Longest group name, in bytes."""
MAX_PRIVATE_NAME: Final = 10
"""Longest private (connection) name, in bytes; 0 asks the daemon to pick one."""
MAX_DAEMON_NAME: Final = 19
"""Longest daemon (process) name, in bytes."""
LEGAL_NAME_BYTES: Final = re.compile(rb"[\x24-\x7e]*\Z")
"""Bytes the C library allows in names: ``$`` (0x24) to ``~`` (0x7E)."""
MAX_GROUPS_PER_MESSAGE: Final = 100
MAX_SESSIONS: Final = 997
DEFAULT_MAX_SESSION_MESSAGES: Final = 1000
"""Messages a daemon queues for one client before it drops that client."""

# handshake [The handshake]
CLIENT_VERSION: Final = (5, 0, 1)
"""The library version spreadq announces in its hello."""
AUTH_NAME_SIZE: Final = 30
MAX_AUTH_METHODS: Final = 3
AUTH_BLOCK_SIZE: Final = AUTH_NAME_SIZE * MAX_AUTH_METHODS
NULL_AUTH: Final = b"NULL"
ACCEPT_SESSION: Final = 1

# header [The message header]
HEADER_SIZE: Final = 48
ENDIAN_MARKER: Final = 0x80000080
"""Set in ``type`` and ``hint`` by a little-endian writer, clear for a big-endian one."""

# sizes [What a daemon refuses; Message size]
DAEMON_MESSAGE_LIMIT: Final = 144_000
"""The daemon's own bound on ``data_len``; ``data_len + 32 * groups`` must stay <= 143,952."""
SAFE_MESSAGE_LIMIT: Final = 140_000
"""spreadq's cap on ``48 + 32 * groups + data_len`` (the Java client's rule).

Spread 5.0.1 aborts the whole daemon on bodies of 143,153..143,952 bytes
(docs/design/spread-protocol.md#message-size), so nothing larger than this is ever sent, and
the embedded daemon refuses it too.
"""


class ServiceType(enum.IntFlag):
    """Service bits of a multicast [Client → daemon]; exactly one delivery level is set."""

    UNRELIABLE = 0x00000001
    RELIABLE = 0x00000002
    FIFO = 0x00000004
    CAUSAL = 0x00000008
    AGREED = 0x00000010
    SAFE = 0x00000020
    SELF_DISCARD = 0x00000040


REGULAR_MASK: Final = 0x0000003F
"""The six delivery levels."""


class Cause(enum.IntEnum):
    """Why a regular membership was delivered [Daemon → client]; also the self-leave's bit."""

    JOIN = 0x00000100
    LEAVE = 0x00000200
    DISCONNECT = 0x00000400
    NETWORK = 0x00000800


class MessageBits(enum.IntFlag):
    """Bits of ``type`` from the daemon that are not delivery levels [Client → daemon]."""

    REG_MEMB = 0x00001000
    TRANSITION = 0x00002000
    REJECT = 0x00400000


MEMBERSHIP_MASK: Final = 0x00003F00


class ControlType(enum.IntEnum):
    """Daemon-internal types clients put on the wire for control operations [Client → daemon]."""

    JOIN = 0x00010000
    LEAVE = 0x00020000
    KILL = 0x00040000


FORBIDDEN_CLIENT_BITS: Final = 0x00080000 | 0x4000 | 0x8000 | 0x100000 | 0x200000
"""GROUPS, RETRANSMIT, LATENCY, DUMMY, STATETRANS: never valid from a client [Client → daemon]."""


class RejectCode(enum.IntEnum):
    """Handshake outcomes sent as one signed byte [Reject codes], plus the library's own."""

    ILLEGAL_SPREAD = -1
    COULD_NOT_CONNECT = -2
    REJECT_QUOTA = -3
    REJECT_NO_NAME = -4
    REJECT_ILLEGAL_NAME = -5
    REJECT_NOT_UNIQUE = -6
    REJECT_VERSION = -7
    CONNECTION_CLOSED = -8
    REJECT_AUTH = -9
