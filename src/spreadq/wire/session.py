"""ClientSession: the client's side of the Spread protocol, sans-IO (h11's three verbs).

Theory of operation
-------------------
``start()`` returns the hello; after that the caller feeds every received chunk to
``receive_data()`` (``b""`` for EOF) and calls ``next_event()`` until it returns
``NEED_DATA``, writing ``data_to_send()`` whenever it is not empty (the session answers
the auth list by itself). ``next_event()`` yields, in order: ``Accepted`` or
``Rejected`` (the handshake), then ``DaemonMessage`` events, then ``CLOSED`` forever.
``send(command)`` turns a ``Join``, ``Leave``, ``Disconnect`` or ``Multicast`` into bytes.

The state machine is the table in :mod:`spreadq.wire.handshake`; each state has one
reader in ``_READERS``. After the accept, each message is framed as
:mod:`spreadq.wire.framing` reads it for both roles: a 48-byte header (either byte
order, [Byte order]), then names, then data. What is the client's: a message's kind comes from
``type`` through an ordered rule table (reject, data, regular membership, transitional,
self-leave: the order the C library tests them in), memoized for the types a daemon
really sends; its size is checked against ``max_message_size`` as soon as the header
is here, so a hostile length never makes the session wait for or buffer a huge body;
names are decoded leniently (a daemon's names need no NUL in their 32 bytes).

Bytes the session refuses raise :class:`~spreadq.errors.RemoteProtocolError`, and the
session is then ``CLOSED``. Commands it cannot send raise
:class:`~spreadq.errors.LocalProtocolError` and change nothing.

Names in brackets, such as [Byte order], are sections of ``docs/design/spread-protocol.md``
(or, prefixed ``membership:``, of ``docs/design/membership.md``).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Final

from spreadq.errors import LocalProtocolError, RemoteProtocolError
from spreadq.wire.constants import (
    CLIENT_VERSION,
    ENDIAN_MARKER,
    GROUP_NAME_SIZE,
    HEADER_SIZE,
    REGULAR_MASK,
    Cause,
    ControlType,
    MessageBits,
    RejectCode,
    ServiceType,
)
from spreadq.wire.events import (
    CLOSED,
    NEED_DATA,
    Accepted,
    ClientCommand,
    Closed,
    DaemonMessage,
    DataMessage,
    Disconnect,
    Join,
    Leave,
    Multicast,
    NeedData,
    RegularMembership,
    Rejected,
    RejectedMessage,
    SelfLeave,
    TransitionalMembership,
    check_private_name,
)
from spreadq.wire.framing import CACHE_LIMIT, SERVICES, FramedSession
from spreadq.wire.handshake import (
    ACCEPT_PATCH_SINCE,
    AUTH_SINCE,
    CLIENT_TRANSITIONS,
    NULL_METHOD,
    ClientInput,
    ClientState,
    encode_auth_choice,
    encode_hello,
    read_accept,
    read_auth_list,
    transition,
    version_number,
)
from spreadq.wire.layouts import (
    HEADER_OUT,
    OLD_TYPE_SIZE,
    decode_name,
    unpack_membership_body,
    unpack_membership_body_v3,
    unpack_old_type,
    unpack_transitional_body,
)

__all__ = [
    "CAUSES",
    "DEFAULT_CLIENT_MAX_MESSAGE",
    "MESSAGE_KINDS",
    "ClientSession",
    "MessageKind",
    "classify",
    "describe_kinds",
]

DEFAULT_CLIENT_MAX_MESSAGE: Final = 1 << 20
"""Largest message a client session accepts by default; a daemon sends at most ~144 KB
of data plus names, but membership messages of big groups carry many names."""


class MessageKind(enum.Enum):
    """What a daemon -> client message is, decided from ``type`` alone."""

    REJECT = "reject"
    DATA = "data"
    REGULAR_MEMBERSHIP = "regular membership"
    TRANSITIONAL = "transitional membership"
    SELF_LEAVE = "self-leave"


_KIND_RULES: Final = (
    (int(MessageBits.REJECT), MessageKind.REJECT),
    (REGULAR_MASK, MessageKind.DATA),
    (int(MessageBits.REG_MEMB), MessageKind.REGULAR_MEMBERSHIP),
    (int(MessageBits.TRANSITION), MessageKind.TRANSITIONAL),
    (int(Cause.LEAVE), MessageKind.SELF_LEAVE),
)
"""First matching bit wins: the C library's order (reject, regular, membership ...)."""


def classify(type_: int) -> MessageKind:
    """The kind of a daemon -> client message from its ``type`` (marker removed).

    Raises:
        RemoteProtocolError: no rule matches (for example a client-only type).
    """
    for bits, kind in _KIND_RULES:
        if type_ & bits:
            return kind
    raise RemoteProtocolError(f"message type {type_:#010x} is no kind a daemon sends")


def describe_kinds() -> str:
    """The kind rules as a Markdown table, in the order they are tried (for the docs)."""
    rows = ["| order | bit set in `type` | kind |", "|---|---|---|"]
    for order, (bits, kind) in enumerate(_KIND_RULES, 1):
        rows.append(f"| {order} | `{bits:#010x}` | {kind.value} |")
    return "\n".join(rows) + "\n"


def _canonical_types() -> list[int]:
    data = [bits for bits in range(1, 0x80) if bits & REGULAR_MASK]
    membership = [int(MessageBits.REG_MEMB) | int(cause) for cause in Cause]
    reject = [int(MessageBits.REJECT), int(MessageBits.REJECT) | int(ServiceType.SELF_DISCARD)]
    return [*data, *membership, int(MessageBits.TRANSITION), int(Cause.LEAVE), *reject]


MESSAGE_KINDS: Final[Mapping[int, MessageKind]] = MappingProxyType(
    {type_: classify(type_) for type_ in _canonical_types()}
)
"""The kinds of the types a daemon really sends, precomputed from the rules."""

# enum attribute lookups and enum hashing are slow in CPython 3.11: the hot paths compare
# identities with these module constants instead
_DATA: Final = MessageKind.DATA
_REGULAR: Final = MessageKind.REGULAR_MEMBERSHIP
_TRANSITIONAL: Final = MessageKind.TRANSITIONAL
_SELF_LEAVE: Final = MessageKind.SELF_LEAVE
_REJECT: Final = MessageKind.REJECT
_OPEN: Final = ClientState.OPEN

_KINDS: Final = dict(MESSAGE_KINDS)  # a dict's get() is faster than a mappingproxy's

CAUSES: Final[Mapping[int, Cause]] = MappingProxyType({int(cause): cause for cause in Cause})
"""``type & 0xF00`` of a regular membership -> its cause; anything else is refused."""


class ClientSession(FramedSession[Accepted | Rejected | DaemonMessage, ClientState]):
    """The client's side of one connection to a Spread daemon.

    ``next_event()`` yields ``Accepted`` or ``Rejected`` (the handshake), then
    ``DaemonMessage`` events, then ``CLOSED``; a handshake that ends with EOF yields
    ``Rejected(CONNECTION_CLOSED)``, as the C library reports it.

    Args:
        private_name: 0..10 bytes of ``$``..``~``; empty lets the daemon choose.
        membership: ask for membership messages (hello flag bit 0).
        priority: set the priority flag (the daemon accepts it and ignores it).
        max_message_size: the largest incoming message accepted, header included.
        version: the library version announced in the hello (tests use old ones).

    Raises:
        InvalidName: ``private_name`` is not a legal private name.
    """

    __slots__ = (
        "_group_fields",
        "_membership_parser",
        "_outgoing",
        "_private_name",
        "_sender",
        "daemon_version",
        "membership",
        "priority",
        "private_group",
        "version",
    )

    _OPEN = ClientState.OPEN
    _CLOSED = ClientState.CLOSED
    _PREFIXED = MessageKind.REJECT

    def __init__(
        self,
        private_name: str = "",
        *,
        membership: bool = True,
        priority: bool = False,
        max_message_size: int = DEFAULT_CLIENT_MAX_MESSAGE,
        version: tuple[int, int, int] = CLIENT_VERSION,
    ) -> None:
        self._private_name = check_private_name(private_name)
        super().__init__(ClientState.START, max_message_size)
        self.membership = membership
        self.priority = priority
        self.version = version
        self.private_group: str | None = None
        self.daemon_version: tuple[int, int, int] | None = None
        self._outgoing = bytearray()
        self._sender = b""
        self._group_fields: dict[tuple[str, ...], bytes] = {}
        self._membership_parser = _parse_membership_v4

    def __repr__(self) -> str:
        return f"<ClientSession {self.state.name} {self.private_group or ''}>"

    # --- handshake ------------------------------------------------------------------

    def start(self) -> bytes:
        """The hello, to be written in one write (the daemon reads it in one go).

        Raises:
            LocalProtocolError: the session was already started.
        """
        self._move(ClientInput.SEND_HELLO, local=True)
        return encode_hello(
            self._private_name,
            membership=self.membership,
            priority=self.priority,
            version=self.version,
        )

    def data_to_send(self) -> bytes:
        """Bytes the session produced by itself (the auth choice); ``b""`` if none."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    # --- receiving (receive_data and next_event: FramedSession) ---------------------

    def _end_of_stream(self) -> Rejected | Closed:
        pending = len(self._buffer)
        handshaking = self.state in (ClientState.HELLO_SENT, ClientState.AUTH_SENT)
        self._move(ClientInput.EOF, local=False)
        if pending:
            raise RemoteProtocolError(
                f"the daemon closed the connection {pending} bytes into a unit"
            )
        if handshaking:
            return Rejected(RejectCode.CONNECTION_CLOSED)
        return CLOSED

    def _move(self, event: ClientInput, *, local: bool) -> None:
        self.state = transition(CLIENT_TRANSITIONS, self.state, event, local=local)

    def _read_nothing(self) -> NeedData:
        return NEED_DATA

    def _read_hello_answer(self) -> Rejected | Accepted | NeedData:
        if version_number(self.version) < AUTH_SINCE:
            return self._read_accept()
        answer = read_auth_list(self._buffer)
        if answer is None:
            return NEED_DATA
        if isinstance(answer, Rejected):
            self._move(ClientInput.REJECT, local=False)
            return answer
        if NULL_METHOD not in answer:
            self._move(ClientInput.AUTH_REFUSED, local=False)
            return Rejected(RejectCode.REJECT_AUTH)
        self._outgoing += encode_auth_choice((NULL_METHOD,))
        self._move(ClientInput.AUTH_LIST, local=False)
        return self._read_accept()

    def _read_accept(self) -> Rejected | Accepted | NeedData:
        with_patch = version_number(self.version) >= ACCEPT_PATCH_SINCE
        answer = read_accept(self._buffer, with_patch=with_patch)
        if answer is None:
            return NEED_DATA
        if isinstance(answer, Rejected):
            self._move(ClientInput.REJECT, local=False)
            return answer
        if answer.daemon_version[0] < 3:
            # the C library refuses daemons older than 3.x with REJECT_VERSION
            self._move(ClientInput.REJECT, local=False)
            return Rejected(RejectCode.REJECT_VERSION)
        self._move(ClientInput.ACCEPT, local=False)
        self.private_group = answer.private_group
        self.daemon_version = answer.daemon_version
        self._sender = answer.private_group.encode("latin-1")
        self._membership_parser = _MEMBERSHIP_PARSERS.get(
            answer.daemon_version[0], _parse_membership_v4
        )
        return answer

    # --- messages ------------------------------------------------------------------

    _decode_name = staticmethod(functools.partial(decode_name, strict=False))

    def _check_header(
        self, type_: int, sender: bytes, count: int, hint: bytes, data_len: int
    ) -> MessageKind:
        kind = _KINDS.get(type_) or classify(type_)
        if count < 0 or data_len < 0:
            raise RemoteProtocolError(
                f"header with num_groups={count} and data_len={data_len}; neither may be negative"
            )
        size = HEADER_SIZE + GROUP_NAME_SIZE * count + data_len
        if kind is _REJECT:
            size += OLD_TYPE_SIZE
        if size > self.max_message_size:
            raise RemoteProtocolError(
                f"message of {size} bytes is over the limit of {self.max_message_size}"
            )
        return kind

    def _event(
        self,
        kind: object,
        type_: int,
        sender: bytes,
        groups: tuple[str, ...],
        hint: bytes,
        payload: bytes,
        little: int,
        data: bytes | bytearray,
        start: int,
        data_at: int,
    ) -> DaemonMessage:
        names = self._names
        origin = names[sender] if sender in names else self._name(sender)
        if kind is _DATA:
            hints = self._hints
            mess_type, hint_little = hints[hint] if hint in hints else self._hint(hint)
            return DataMessage(
                origin, groups, SERVICES[type_ & 0x7F], mess_type, payload, not hint_little
            )
        if kind is _REGULAR:
            cause = CAUSES.get(type_ & 0xF00)
            if cause is None:
                raise RemoteProtocolError(
                    f"regular membership type {type_:#010x} needs exactly one CAUSED_BY bit"
                )
            return self._membership_parser(origin, groups, cause, payload, bool(little))
        if kind is _TRANSITIONAL:
            return TransitionalMembership(origin, unpack_transitional_body(payload, bool(little)))
        if kind is _SELF_LEAVE:
            return SelfLeave(origin)
        old_type = unpack_old_type(data, start + HEADER_SIZE, bool(little))
        mess_type, _ = self._hints[hint] if hint in self._hints else self._hint(hint)
        return RejectedMessage(origin, groups, old_type, mess_type, payload)

    # --- sending -------------------------------------------------------------------

    def send(self, command: ClientCommand) -> bytes:
        """Encode one command; the header carries this session's private group.

        Raises:
            LocalProtocolError: the session is not open (before the accept, or after a
                ``Disconnect``).
        """
        if self.state is not _OPEN:
            raise LocalProtocolError(
                f"cannot send {type(command).__name__} in state {self.state.name}"
            )
        encoded = _encoder(command)(self, command)
        if type(command) is Disconnect:
            self._move(ClientInput.SEND_DISCONNECT, local=True)
        return encoded

    def send_many(self, commands: Iterable[ClientCommand]) -> bytes:
        """Encode several commands into one ``bytes`` (one write).

        Raises:
            LocalProtocolError: the session is not open, or a command follows a
                ``Disconnect``; nothing is encoded and the state is unchanged then.
        """
        if self.state is not _OPEN:
            raise LocalProtocolError(f"cannot send in state {self.state.name}")
        parts: list[bytes] = []
        disconnecting = False
        for command in commands:
            if disconnecting:
                raise LocalProtocolError("no command may follow a Disconnect")
            parts.append(_encoder(command)(self, command))
            disconnecting = type(command) is Disconnect
        if disconnecting:
            self._move(ClientInput.SEND_DISCONNECT, local=True)
        return b"".join(parts)

    def _block(self, groups: tuple[str, ...]) -> bytes:
        fields = self._group_fields
        if len(fields) >= CACHE_LIMIT:
            fields.clear()
        block = fields[groups] = b"".join(
            [group.encode("latin-1").ljust(GROUP_NAME_SIZE, b"\0") for group in groups]
        )
        return block

    def _encode_multicast(self, command: ClientCommand) -> bytes:
        assert type(command) is Multicast
        blocks = self._group_fields  # destination tuple -> its names' wire bytes
        groups = command.groups
        data = command.data
        head = HEADER_OUT.pack(
            int(command.service) | ENDIAN_MARKER,
            self._sender,
            len(groups),
            ((command.mess_type << 8) & 0x00FFFF00) | ENDIAN_MARKER,
            len(data),
        )
        return b"".join((head, blocks[groups] if groups in blocks else self._block(groups), data))

    def _encode_control(self, command: ClientCommand) -> bytes:
        if isinstance(command, Join | Leave):
            field = command.group.encode("latin-1").ljust(GROUP_NAME_SIZE, b"\0")
        else:  # KILL names the session's own private group; the daemon ignores it
            field = self._sender.ljust(GROUP_NAME_SIZE, b"\0")
        type_ = _CONTROL[type(command)] | ENDIAN_MARKER
        return HEADER_OUT.pack(type_, self._sender, 1, ENDIAN_MARKER, 0) + field


# --- tables ---------------------------------------------------------------------------

# the role's reader of each state that decodes anything (``CLOSED`` decodes nothing)
ClientSession._READERS = MappingProxyType(
    {
        ClientState.START: ClientSession._read_nothing,
        ClientState.HELLO_SENT: ClientSession._read_hello_answer,
        ClientState.AUTH_SENT: ClientSession._read_accept,
        ClientState.OPEN: ClientSession._read_message,
        ClientState.DISCONNECTING: ClientSession._read_message,
    }
)

_CONTROL: Final[Mapping[type, int]] = MappingProxyType(
    {Join: int(ControlType.JOIN), Leave: int(ControlType.LEAVE), Disconnect: int(ControlType.KILL)}
)

_ENCODERS: Final[Mapping[type, Callable[[ClientSession, ClientCommand], bytes]]] = MappingProxyType(
    {
        Join: ClientSession._encode_control,
        Leave: ClientSession._encode_control,
        Disconnect: ClientSession._encode_control,
        Multicast: ClientSession._encode_multicast,
    }
)


def _encoder(command: object) -> Callable[[ClientSession, ClientCommand], bytes]:
    encoder = _ENCODERS.get(type(command))
    if encoder is None:
        raise LocalProtocolError(f"{type(command).__name__} is not a client command")
    return encoder


def _parse_membership_v4(
    group: str, members: tuple[str, ...], cause: Cause, body: bytes, little: bool
) -> RegularMembership:
    group_id, vs_sets, local = unpack_membership_body(body, little)
    return RegularMembership(group, group_id, members, cause, vs_sets, local)


def _parse_membership_v3(
    group: str, members: tuple[str, ...], cause: Cause, body: bytes, little: bool
) -> RegularMembership:
    group_id, vs_set = unpack_membership_body_v3(body, little)
    return RegularMembership(group, group_id, members, cause, (vs_set,), 0)


_MEMBERSHIP_PARSERS: Final = MappingProxyType({3: _parse_membership_v3})
"""Daemon major version -> membership body parser; 4 and later use vs sets [Versions]."""
