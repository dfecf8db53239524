"""ServerSession: the daemon's side of the Spread protocol, sans-IO (the mirror of session.py).

Theory of operation
-------------------
The daemon feeds a client's bytes to ``receive_data()`` and asks ``next_event()``:
first a ``Hello``, which the daemon answers with ``reject(code)``, ``auth_list()`` (clients
>= 3.16.0) or ``accept()``; then, after the auth list, an ``AuthChoice`` answered with
``accept()`` or ``reject(REJECT_AUTH)``; then, once open, one ``Join``, ``Leave``,
``Disconnect`` or ``IncomingMulticast`` per message. While the daemon has not answered a
step, ``next_event()`` returns ``NEED_DATA`` and keeps any early bytes for the next step
(a libspread client may send its first JOIN with the auth choice,
docs/design/spread-protocol.md#the-handshake).

Messages are framed as :mod:`spreadq.wire.framing` reads them for both roles. Every
header is checked as the real daemon checks it [What a daemon refuses], plus three hazards
that daemon mishandles and spreadq's 140,000-byte cap [Message size]. The header checks,
the sender's name and the size included, run as soon as the header has arrived, before the body is
awaited. Each violation raises
:class:`~spreadq.errors.RemoteProtocolError` naming the rule; the session is then
``CLOSED`` and the daemon drops the client, as the real daemon does (it sends no error).

Outgoing messages are written little-endian with the marker, except the hint of a
forwarded multicast, which keeps the sender's raw bytes [Byte order]. The bytes of a data
message are the same for every receiver, so :func:`encode_forward` and
:func:`encode_daemon_message` are plain functions: encode once, write to many.

Names in brackets, such as [Byte order], are sections of ``docs/design/spread-protocol.md``
(or, prefixed ``membership:``, of ``docs/design/membership.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Final

from spreadq.errors import InvalidName, LocalProtocolError, RemoteProtocolError
from spreadq.wire.constants import (
    DAEMON_MESSAGE_LIMIT,
    ENDIAN_MARKER,
    FORBIDDEN_CLIENT_BITS,
    GROUP_NAME_SIZE,
    HEADER_SIZE,
    MAX_GROUPS_PER_MESSAGE,
    REGULAR_MASK,
    SAFE_MESSAGE_LIMIT,
    Cause,
    ControlType,
    MessageBits,
    RejectCode,
    ServiceType,
)
from spreadq.wire.events import (
    CLOSED,
    NEED_DATA,
    AuthChoice,
    ClientCommand,
    Closed,
    DaemonMessage,
    DataMessage,
    Disconnect,
    Hello,
    IncomingMulticast,
    Join,
    Leave,
    NeedData,
    RegularMembership,
    RejectedMessage,
    SelfLeave,
    TransitionalMembership,
)
from spreadq.wire.framing import SERVICES, FramedSession
from spreadq.wire.handshake import (
    NULL_METHOD,
    SERVER_TRANSITIONS,
    ServerInput,
    ServerState,
    encode_accept,
    encode_auth_list,
    encode_reject,
    read_auth_choice,
    read_hello,
    transition,
)
from spreadq.wire.layouts import (
    HEADER_LE,
    HEADER_OUT,
    MARKER_HINT,
    U32_LE,
    group_struct,
    pack_membership_body,
    pack_membership_body_v3,
    pack_old_type,
    pack_transitional_body,
)

__all__ = [
    "ServerSession",
    "decode_strict",
    "encode_daemon_message",
    "encode_forward",
]

_CONTROL_BITS: Final = int(ControlType.JOIN) | int(ControlType.LEAVE) | int(ControlType.KILL)
_SELECTOR_MASK: Final = REGULAR_MASK | _CONTROL_BITS
"""Exactly one of these six delivery bits and three control bits must be set."""
_ALLOWED_BITS: Final = _SELECTOR_MASK | int(ServiceType.SELF_DISCARD)
_GROUPS_MESS: Final = 0x00080000
_HINT_FOREIGN_BITS: Final = 0xFFFFFFFF & ~(ENDIAN_MARKER | 0x00FFFF00)
"""A hint may hold only the marker and ``mess_type`` (the mask is swap-symmetric)."""
_BODY_LIMIT: Final = DAEMON_MESSAGE_LIMIT - HEADER_SIZE
"""``data_len + 32 * num_groups`` may be at most 143,952."""

_SELECTORS: Final[Mapping[int, str]] = MappingProxyType(
    {
        **{1 << bit: "MULTICAST" for bit in range(6)},  # one delivery level
        int(ControlType.JOIN): "JOIN",
        int(ControlType.LEAVE): "LEAVE",
        int(ControlType.KILL): "KILL",
    }
)
"""The one selector bit of a client message [What a daemon refuses] -> what the message is."""
_SELECTOR_KINDS: Final = dict(_SELECTORS)  # a dict's get() is faster than a mappingproxy's
_OPEN: Final = ServerState.OPEN  # enum attribute lookups are slow in CPython 3.11
_GROUP_STRUCTS: Final = tuple(group_struct(count) for count in range(MAX_GROUPS_PER_MESSAGE + 1))
_ONE_GROUP: Final[Mapping[str, type[Join] | type[Leave]]] = MappingProxyType(
    {"JOIN": Join, "LEAVE": Leave}
)
"""Commands that name exactly one group (0 is a hazard: the daemon reads past the header)."""


class ServerSession(
    FramedSession[Hello | AuthChoice | ClientCommand | IncomingMulticast, ServerState]
):
    """The daemon's side of one client connection.

    ``next_event()`` returns ``NEED_DATA`` while the daemon has not answered the last
    handshake step, and ``CLOSED`` after a reject, a ``Disconnect`` or EOF; a client
    that breaks a header rule (a real daemon's, a hazard or the size cap:
    docs/design/spread-protocol.md#what-a-daemon-refuses) gets a ``RemoteProtocolError``.

    Args:
        max_message_size: the cap on ``48 + 32 * num_groups + data_len`` of an incoming
            message (spreadq's 140,000 by default).
    """

    __slots__ = (
        "_choice",
        "_offered",
        "_sender",
        "hello",
        "private_group",
        "version",
    )

    _OPEN = ServerState.OPEN
    _CLOSED = ServerState.CLOSED

    def __init__(self, *, max_message_size: int = SAFE_MESSAGE_LIMIT) -> None:
        super().__init__(ServerState.AWAIT_HELLO, max_message_size)
        self.hello: Hello | None = None
        self.private_group: str | None = None
        self.version: tuple[int, int, int] | None = None
        self._offered: tuple[str, ...] = ()
        self._choice: AuthChoice | None = None
        self._sender = b""

    def __repr__(self) -> str:
        return f"<ServerSession {self.state.name} {self.private_group or ''}>"

    # --- receiving (receive_data and next_event: FramedSession) ---------------------

    def _end_of_stream(self) -> Closed:
        pending = len(self._buffer)
        waiting = self.state in (ServerState.HELLO_RECEIVED, ServerState.AUTH_RECEIVED)
        self._move(ServerInput.EOF)
        if pending and not waiting:
            raise RemoteProtocolError(
                f"the client closed the connection {pending} bytes into a unit"
            )
        return CLOSED

    def _move(self, event: ServerInput, *, local: bool = False) -> None:
        self.state = transition(SERVER_TRANSITIONS, self.state, event, local=local)

    def _wait(self) -> NeedData:
        return NEED_DATA

    def _read_hello(self) -> Hello | NeedData:
        hello = read_hello(self._buffer)
        if hello is None:
            return NEED_DATA
        self.hello = hello
        self._move(ServerInput.HELLO)
        return hello

    def _read_auth_choice(self) -> AuthChoice | NeedData:
        choice = read_auth_choice(self._buffer, self._offered)
        if choice is None:
            return NEED_DATA
        self._choice = choice
        self._move(ServerInput.AUTH_CHOICE)
        return choice

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
    ) -> ClientCommand | IncomingMulticast:
        if kind == "MULTICAST":
            hints = self._hints
            mess_type = (hints[hint] if hint in hints else self._hint(hint))[0]
            assert self.private_group is not None
            groups_at = start + HEADER_SIZE
            if type(data) is bytes:
                groups_raw = data[groups_at:data_at]
            else:
                with memoryview(data) as view:
                    groups_raw = view[groups_at:data_at].tobytes()
            return IncomingMulticast(
                groups,
                payload,
                SERVICES[type_ & 0x7F],
                mess_type,
                hint,
                self.private_group,
                groups_raw,
            )
        if kind == "KILL":
            self._move(ServerInput.DISCONNECT)
            return Disconnect()
        if not groups[0]:
            raise RemoteProtocolError(f"{kind} of an empty group name")
        # any other name: the real daemon accepts space, DEL or a leading '#' [Names]
        return _ONE_GROUP[str(kind)].from_wire(groups[0])

    def _check_header(
        self, type_: int, sender: bytes, count: int, hint: bytes, data_len: int
    ) -> str:
        kind = _SELECTOR_KINDS.get(type_ & _SELECTOR_MASK)
        if kind is None:
            raise RemoteProtocolError(
                f"service bits: type {type_:#010x} must set exactly one of "
                "UNRELIABLE..SAFE, JOIN, LEAVE, KILL"
            )
        if type_ & _GROUPS_MESS:
            raise RemoteProtocolError(
                f"hazard: type {type_:#010x} sets GROUPS_MESS (the daemon's group-state type)"
            )
        if type_ & ~_ALLOWED_BITS:
            kind = "daemon-internal" if type_ & FORBIDDEN_CLIENT_BITS else "unknown"
            raise RemoteProtocolError(
                f"type {type_:#010x} sets {kind} bits {type_ & ~_ALLOWED_BITS:#x}, "
                "which a client may not set"
            )
        if not 0 <= count <= MAX_GROUPS_PER_MESSAGE:
            raise RemoteProtocolError(f"num_groups: {count} is not in 0..{MAX_GROUPS_PER_MESSAGE}")
        if int.from_bytes(hint, "little") & _HINT_FOREIGN_BITS:
            raise RemoteProtocolError(
                f"hint: {hint.hex()} has bits outside the marker and mess_type"
            )
        if not 0 <= data_len <= DAEMON_MESSAGE_LIMIT:
            raise RemoteProtocolError(f"data_len: {data_len} is not in 0..{DAEMON_MESSAGE_LIMIT}")
        body = data_len + GROUP_NAME_SIZE * count
        if body > _BODY_LIMIT:
            raise RemoteProtocolError(
                f"size: data_len + 32 * num_groups = {body} is over {_BODY_LIMIT}"
            )
        if HEADER_SIZE + body > self.max_message_size:
            raise RemoteProtocolError(
                f"size cap: a message of {HEADER_SIZE + body} bytes is over {self.max_message_size}"
            )
        if count != 1 and kind in _ONE_GROUP:
            what = "hazard: " if count == 0 else ""
            raise RemoteProtocolError(f"{what}{kind} names {count} groups; it must name one")
        if sender[: GROUP_NAME_SIZE - 1].split(b"\0", 1)[0] != self._sender:
            raise RemoteProtocolError(
                f"sender field: {sender.rstrip(bytes(1))!r} is not this session's "
                f"private group {self.private_group!r}"
            )
        return kind

    @staticmethod
    def _decode_name(field: bytes) -> str:
        try:
            return decode_strict(field)
        except RemoteProtocolError as error:
            raise RemoteProtocolError(f"hazard: {error}") from None

    # --- handshake answers ---------------------------------------------------------

    def auth_list(self, methods: Sequence[str] = (NULL_METHOD,)) -> bytes:
        """Offer authentication ``methods`` to a client >= 3.16.0.

        Raises:
            LocalProtocolError: not right after a hello, the client is older than
                3.16.0, or the hello carries a refusal.
        """
        hello = self._answerable_hello()
        if not hello.wants_auth:
            raise LocalProtocolError(
                f"a {'.'.join(map(str, hello.version))} client takes no part in the auth exchange"
            )
        encoded = encode_auth_list(methods)
        self._move(ServerInput.SEND_AUTH_LIST, local=True)
        self._offered = tuple(methods)
        return encoded

    def accept(self, private_group: str, version: tuple[int, int, int] = (5, 0, 1)) -> bytes:
        """Accept the session as ``private_group``; this daemon announces ``version``.

        Raises:
            LocalProtocolError: not right after the hello (clients < 3.16.0) or the auth
                choice, the hello or choice carries a refusal, or the name is not 1..31
                bytes.
        """
        hello = self._answerable_hello()
        if self.state is ServerState.HELLO_RECEIVED and hello.wants_auth:
            raise LocalProtocolError("a client >= 3.16.0 must get the auth list before the accept")
        if self._choice is not None and self._choice.refusal is not None:
            raise LocalProtocolError("the auth choice was refused; answer reject(REJECT_AUTH)")
        encoded = encode_accept(private_group, version, hello.version)
        self._move(ServerInput.SEND_ACCEPT, local=True)
        self.private_group = private_group
        self.version = version
        self._sender = private_group.encode("latin-1")
        return encoded

    def reject(self, code: RejectCode) -> bytes:
        """Refuse the session with ``code``; close the socket after writing it.

        Raises:
            LocalProtocolError: the session is already open or closed, or ``code`` is
                not one a daemon sends.
        """
        encoded = encode_reject(code)
        self._move(ServerInput.SEND_REJECT, local=True)
        return encoded

    def _answerable_hello(self) -> Hello:
        if self.hello is None or self.state not in (
            ServerState.HELLO_RECEIVED,
            ServerState.AUTH_RECEIVED,
        ):
            raise LocalProtocolError(f"no handshake step to answer in state {self.state.name}")
        if self.hello.refusal is not None:
            raise LocalProtocolError(
                f"the hello was refused; answer reject({self.hello.refusal.name})"
            )
        return self.hello

    # --- sending -------------------------------------------------------------------

    def send(self, message: DaemonMessage) -> bytes:
        """Encode a message for this client (LE with the marker).

        A daemon announcing major version 3 gets the 3.x membership body.

        Raises:
            LocalProtocolError: the session is not open, or the message cannot be
                encoded.
        """
        if self.state is not _OPEN:
            raise LocalProtocolError(f"cannot send in state {self.state.name}")
        legacy = self.version is not None and self.version[0] == 3
        return encode_daemon_message(message, legacy_membership=legacy)

    @staticmethod
    def encode_data(
        message: DataMessage | IncomingMulticast, *, hint_raw: bytes | None = None
    ) -> bytes:
        """Encode a data message once; the bytes are the same for every receiver.

        Raises:
            LocalProtocolError: the message cannot be encoded.
        """
        if isinstance(message, IncomingMulticast):
            return encode_forward(message)
        return encode_daemon_message(message, hint_raw=hint_raw)


# --- encoding ---------------------------------------------------------------------------


def decode_strict(field: bytes) -> str:
    """A name from a client's 32-byte field; a field with no NUL is refused.

    Raises:
        RemoteProtocolError: the field holds no NUL.
    """
    end = field.find(b"\0")
    if end < 0:
        raise RemoteProtocolError(f"group name field {field!r} has no NUL in 32 bytes")
    return field[:end].decode("latin-1")


def _raw(name: str) -> bytes:
    try:
        raw = name.encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidName(name, "names on the wire are Latin-1") from None
    if len(raw) >= GROUP_NAME_SIZE:
        raise InvalidName(name, f"names on the wire are at most {GROUP_NAME_SIZE - 1} bytes")
    return raw


def _groups(names: Sequence[str]) -> bytes:
    try:
        raws = [name.encode("latin-1") for name in names]
    except UnicodeEncodeError:
        raws = [_raw(name) for name in names]  # raises for the offending name
    for raw, name in zip(raws, names, strict=True):
        if len(raw) >= GROUP_NAME_SIZE:
            _raw(name)  # raises
    count = len(raws)
    return (_GROUP_STRUCTS[count] if count <= MAX_GROUPS_PER_MESSAGE else group_struct(count)).pack(
        *raws
    )


def _hint_bytes(mess_type: int, *, big_endian: bool = False) -> bytes:
    if not -32768 <= mess_type <= 32767:
        raise LocalProtocolError(f"mess_type {mess_type} is not a signed 16-bit value")
    value = (mess_type << 8) & 0x00FFFF00
    return value.to_bytes(4, "big") if big_endian else U32_LE.pack(value | ENDIAN_MARKER)


def encode_forward(multicast: IncomingMulticast) -> bytes:
    """The data message every receiver of ``multicast`` gets, with the sender's raw hint.

    The destination names go out as they came in (``groups_raw``), as the real daemon
    forwards them; a hand-built value without them has its names encoded again.

    Raises:
        LocalProtocolError: a name that cannot be encoded.
    """
    groups = multicast.groups
    raw = multicast.groups_raw
    if len(raw) != GROUP_NAME_SIZE * len(groups):
        raw = _groups(groups)
    data = multicast.data
    head = HEADER_LE.pack(
        int(multicast.service) | ENDIAN_MARKER,
        _raw(multicast.sender),
        len(groups),
        multicast.hint_raw,
        len(data),
    )
    return b"".join((head, raw, data))


def _data_message(
    service: int, sender: str, groups: Sequence[str], hint: bytes, data: bytes
) -> bytes:
    head = HEADER_LE.pack(service | ENDIAN_MARKER, _raw(sender), len(groups), hint, len(data))
    return b"".join((head, _groups(groups), data))


def _encode_data(message: DaemonMessage, hint_raw: bytes | None, legacy: bool) -> bytes:
    assert isinstance(message, DataMessage)
    hint = hint_raw
    if hint is None:
        hint = _hint_bytes(message.mess_type, big_endian=message.endian_mismatch)
    elif len(hint) != 4:
        raise LocalProtocolError(f"a raw hint is 4 bytes, got {len(hint)}")
    return _data_message(int(message.service), message.sender, message.groups, hint, message.data)


def _encode_membership(message: DaemonMessage, hint_raw: bytes | None, legacy: bool) -> bytes:
    assert isinstance(message, RegularMembership)
    if legacy:
        if message.vs_sets and not 0 <= message.local_vs_set < len(message.vs_sets):
            raise LocalProtocolError(
                f"local vs set {message.local_vs_set} is not one of {len(message.vs_sets)} sets"
            )
        body = pack_membership_body_v3(
            message.group_id, [_raw(name) for name in message.local_vs_members]
        )
    else:
        body = pack_membership_body(
            message.group_id,
            [[_raw(name) for name in names] for names in message.vs_sets],
            message.local_vs_set,
        )
    type_ = int(MessageBits.REG_MEMB) | int(message.cause) | ENDIAN_MARKER
    head = HEADER_LE.pack(type_, _raw(message.group), len(message.members), MARKER_HINT, len(body))
    return b"".join((head, _groups(message.members), body))


def _encode_transitional(message: DaemonMessage, hint_raw: bytes | None, legacy: bool) -> bytes:
    assert isinstance(message, TransitionalMembership)
    body = pack_transitional_body(message.group_id)
    type_ = int(MessageBits.TRANSITION) | ENDIAN_MARKER
    return HEADER_LE.pack(type_, _raw(message.group), 0, MARKER_HINT, len(body)) + body


def _encode_self_leave(message: DaemonMessage, hint_raw: bytes | None, legacy: bool) -> bytes:
    assert isinstance(message, SelfLeave)
    type_ = int(Cause.LEAVE) | ENDIAN_MARKER
    return HEADER_OUT.pack(type_, _raw(message.group), 0, ENDIAN_MARKER, 0)


def _encode_rejected(message: DaemonMessage, hint_raw: bytes | None, legacy: bool) -> bytes:
    assert isinstance(message, RejectedMessage)
    hint = hint_raw if hint_raw is not None else _hint_bytes(message.mess_type)
    type_ = int(MessageBits.REJECT) | (message.old_type & int(ServiceType.SELF_DISCARD))
    head = HEADER_LE.pack(
        type_ | ENDIAN_MARKER, _raw(message.sender), len(message.groups), hint, len(message.data)
    )
    return b"".join((head, pack_old_type(message.old_type), _groups(message.groups), message.data))


_MESSAGE_ENCODERS: Final[Mapping[type, Callable[[DaemonMessage, bytes | None, bool], bytes]]] = (
    MappingProxyType(
        {
            DataMessage: _encode_data,
            RegularMembership: _encode_membership,
            TransitionalMembership: _encode_transitional,
            SelfLeave: _encode_self_leave,
            RejectedMessage: _encode_rejected,
        }
    )
)


def encode_daemon_message(
    message: DaemonMessage, *, hint_raw: bytes | None = None, legacy_membership: bool = False
) -> bytes:
    """Encode a daemon -> client message, LE with the marker.

    ``hint_raw`` (4 bytes) replaces the hint computed from ``mess_type``: a daemon passes
    the sender's hint through untouched. ``legacy_membership`` writes the 3.x membership
    body (only the receiver's vs set). The result does not depend on the receiver, so
    encode a multicast once and write it to every receiver.

    Raises:
        LocalProtocolError: a name over 31 bytes or not Latin-1, a ``mess_type`` outside
            int16, a raw hint that is not 4 bytes, or a ``local_vs_set`` out of range.
    """
    encoder = _MESSAGE_ENCODERS.get(type(message))
    if encoder is None:
        raise LocalProtocolError(f"{type(message).__name__} is not a daemon -> client message")
    return encoder(message, hint_raw, legacy_membership)


# the role's reader of each state that decodes anything (``CLOSED`` decodes nothing)
ServerSession._READERS = MappingProxyType(
    {
        ServerState.AWAIT_HELLO: ServerSession._read_hello,
        ServerState.HELLO_RECEIVED: ServerSession._wait,
        ServerState.AUTH_LIST_SENT: ServerSession._read_auth_choice,
        ServerState.AUTH_RECEIVED: ServerSession._wait,
        ServerState.OPEN: ServerSession._read_message,
    }
)
