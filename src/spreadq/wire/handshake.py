"""The connection handshake, both roles: state tables and the byte codecs of each step.

Theory of operation
-------------------
All handshake fields are single bytes (docs/design/spread-protocol.md#the-handshake), so byte order
never matters. Each role is a small state machine whose transitions are *data*: a mapping
from ``(state, input)`` to the next state. Inputs are what happened, either something we
sent (``SEND_HELLO``, ``SEND_ACCEPT`` ...) or something we decoded (``AUTH_LIST``,
``ACCEPT``, ``HELLO`` ...). A pair missing from a table is a protocol violation: a local one
(:class:`~spreadq.errors.LocalProtocolError`) when we tried to send, a remote one when the
peer's bytes caused it. Tests enumerate the tables, and ``docs/architecture.md`` draws them
(:func:`describe_tables`).

Client (library >= 3.16, e.g. spreadq announcing 5.0.1)::

    START --send hello--> HELLO_SENT --auth list, "NULL" offered--> AUTH_SENT
    AUTH_SENT --accept--> OPEN --send disconnect--> DISCONNECTING --EOF--> CLOSED
    any reject code, a list without "NULL", EOF or bad bytes --> CLOSED

A client announcing < 3.16 skips the auth exchange (HELLO_SENT reads the accept).

Server (the daemon's side)::

    AWAIT_HELLO --hello--> HELLO_RECEIVED --send auth list--> AUTH_LIST_SENT
    AUTH_LIST_SENT --auth choice--> AUTH_RECEIVED --send accept--> OPEN
    HELLO_RECEIVED --send accept (client < 3.16)--> OPEN
    any state before OPEN --send reject--> CLOSED; OPEN --disconnect or EOF--> CLOSED

Step codecs below take a :class:`~spreadq.wire.buffer.ReceiveBuffer` and return
``None`` until the whole step has arrived; they consume the bytes of a step only once it
is complete, so any chunking decodes the same way. The server is more lenient than the
real daemon, which needs the hello in one segment: it buffers until ``5 + n`` bytes are
there, and bytes after the hello stay in the buffer for the next step [The handshake].

Names in brackets, such as [Byte order], are sections of ``docs/design/spread-protocol.md``
(or, prefixed ``membership:``, of ``docs/design/membership.md``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final, TypeVar

from spreadq.errors import LocalProtocolError, RemoteProtocolError
from spreadq.wire.buffer import ReceiveBuffer
from spreadq.wire.constants import (
    ACCEPT_SESSION,
    AUTH_BLOCK_SIZE,
    CLIENT_VERSION,
    GROUP_NAME_SIZE,
    LEGAL_NAME_BYTES,
    MAX_PRIVATE_NAME,
    NULL_AUTH,
    RejectCode,
)
from spreadq.wire.events import Accepted, AuthChoice, Hello, Rejected
from spreadq.wire.layouts import pack_auth_choice, unpack_auth_choice

__all__ = [
    "ACCEPT_PATCH_SINCE",
    "AUTH_SINCE",
    "CLIENT_TRANSITIONS",
    "NULL_METHOD",
    "OLDEST_CLIENT",
    "PATCH_SENT_ABOVE",
    "SERVER_TRANSITIONS",
    "ClientInput",
    "ClientState",
    "ServerInput",
    "ServerState",
    "describe_tables",
    "encode_accept",
    "encode_auth_choice",
    "encode_auth_list",
    "encode_hello",
    "encode_reject",
    "read_accept",
    "read_auth_choice",
    "read_auth_list",
    "read_hello",
    "transition",
    "version_number",
]


class ClientState(enum.Enum):
    """Where a client session is."""

    START = "START"
    HELLO_SENT = "HELLO_SENT"
    AUTH_SENT = "AUTH_SENT"
    OPEN = "OPEN"
    DISCONNECTING = "DISCONNECTING"
    CLOSED = "CLOSED"


class ClientInput(enum.Enum):
    """What moves a client session."""

    SEND_HELLO = "send hello"
    AUTH_LIST = "auth list offering NULL"
    AUTH_REFUSED = "auth list without NULL (local REJECT_AUTH)"
    ACCEPT = "accept"
    REJECT = "reject code"
    SEND_DISCONNECT = "send disconnect"
    EOF = "EOF"
    PROTOCOL_ERROR = "bytes refused"


class ServerState(enum.Enum):
    """Where a daemon's session is."""

    AWAIT_HELLO = "AWAIT_HELLO"
    HELLO_RECEIVED = "HELLO_RECEIVED"
    AUTH_LIST_SENT = "AUTH_LIST_SENT"
    AUTH_RECEIVED = "AUTH_RECEIVED"
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class ServerInput(enum.Enum):
    """What moves a daemon's session."""

    HELLO = "hello"
    SEND_AUTH_LIST = "send auth list"
    AUTH_CHOICE = "auth choice"
    SEND_ACCEPT = "send accept"
    SEND_REJECT = "send reject"
    DISCONNECT = "disconnect (KILL)"
    EOF = "EOF"
    PROTOCOL_ERROR = "bytes refused"


_S = TypeVar("_S", ClientState, ServerState)
_I = TypeVar("_I", ClientInput, ServerInput)


def _closing_edges(
    states: Sequence[_S], inputs: Sequence[_I], closed: _S
) -> dict[tuple[_S, _I], _S]:
    return {(state, event): closed for state in states for event in inputs}


_C, _CI = ClientState, ClientInput
CLIENT_TRANSITIONS: Final[Mapping[tuple[ClientState, ClientInput], ClientState]] = MappingProxyType(
    {
        (_C.START, _CI.SEND_HELLO): _C.HELLO_SENT,
        (_C.HELLO_SENT, _CI.AUTH_LIST): _C.AUTH_SENT,
        (_C.HELLO_SENT, _CI.AUTH_REFUSED): _C.CLOSED,
        (_C.HELLO_SENT, _CI.ACCEPT): _C.OPEN,  # clients < 3.16: no auth exchange
        (_C.HELLO_SENT, _CI.REJECT): _C.CLOSED,
        (_C.AUTH_SENT, _CI.ACCEPT): _C.OPEN,
        (_C.AUTH_SENT, _CI.REJECT): _C.CLOSED,
        (_C.OPEN, _CI.SEND_DISCONNECT): _C.DISCONNECTING,
        **_closing_edges(
            [_C.START, _C.HELLO_SENT, _C.AUTH_SENT, _C.OPEN, _C.DISCONNECTING, _C.CLOSED],
            [_CI.EOF, _CI.PROTOCOL_ERROR],
            _C.CLOSED,
        ),
    }
)
"""``(state, input) -> next state`` for a client session."""

_V, _VI = ServerState, ServerInput
SERVER_TRANSITIONS: Final[Mapping[tuple[ServerState, ServerInput], ServerState]] = MappingProxyType(
    {
        (_V.AWAIT_HELLO, _VI.HELLO): _V.HELLO_RECEIVED,
        (_V.HELLO_RECEIVED, _VI.SEND_AUTH_LIST): _V.AUTH_LIST_SENT,
        (_V.HELLO_RECEIVED, _VI.SEND_ACCEPT): _V.OPEN,  # clients < 3.16
        (_V.AUTH_LIST_SENT, _VI.AUTH_CHOICE): _V.AUTH_RECEIVED,
        (_V.AUTH_RECEIVED, _VI.SEND_ACCEPT): _V.OPEN,
        (_V.OPEN, _VI.DISCONNECT): _V.CLOSED,
        **_closing_edges(
            [_V.AWAIT_HELLO, _V.HELLO_RECEIVED, _V.AUTH_LIST_SENT, _V.AUTH_RECEIVED],
            [_VI.SEND_REJECT],
            _V.CLOSED,
        ),
        **_closing_edges(list(ServerState), [_VI.EOF, _VI.PROTOCOL_ERROR], _V.CLOSED),
    }
)
"""``(state, input) -> next state`` for a daemon's session."""


def transition(table: Mapping[tuple[_S, _I], _S], state: _S, event: _I, *, local: bool) -> _S:
    """The state after ``event`` in ``state``.

    Raises:
        LocalProtocolError: ``local`` and the pair is not in ``table``.
        RemoteProtocolError: not ``local`` and the pair is not in ``table``.
    """
    try:
        return table[state, event]
    except KeyError:
        message = f"cannot {event.value} in state {state.name}"
        if local:
            raise LocalProtocolError(message) from None
        raise RemoteProtocolError(message) from None


def describe_tables() -> str:
    """Both transition tables as Mermaid state diagrams, for ``docs/architecture.md``.

    Edges between the same two states are drawn once, their inputs joined; ``CLOSED``
    staying ``CLOSED`` is left out.
    """
    lines: list[str] = []
    tables: list[tuple[str, Mapping[tuple[enum.Enum, enum.Enum], enum.Enum]]] = [
        ("Client session", CLIENT_TRANSITIONS),  # type: ignore[list-item]
        ("Server session", SERVER_TRANSITIONS),  # type: ignore[list-item]
    ]
    for title, table in tables:
        edges: dict[tuple[str, str], list[str]] = {}
        for (state, event), target in table.items():
            if state is not target:
                edges.setdefault((state.name, target.name), []).append(str(event.value))
        lines += [f"### {title}", "", "```mermaid", "stateDiagram-v2"]
        first = next(iter(table))[0].name
        lines.append(f"    [*] --> {first}")
        for (source, goal), inputs in edges.items():
            lines.append(f"    {source} --> {goal}: {', '.join(inputs)}")
        lines += ["```", ""]
    return "\n".join(lines)


def version_number(version: tuple[int, int, int]) -> int:
    """``major * 10000 + minor * 100 + patch``, the daemon's way of comparing versions."""
    major, minor, patch = version
    return major * 10000 + minor * 100 + patch


PATCH_SENT_ABOVE: Final = 31400
"""The hello has the patch byte if ``major * 10000 + minor * 100`` is above this [The handshake]."""
AUTH_SINCE: Final = 31600
"""Clients from 3.16.0 on take part in the auth exchange [The handshake]."""
ACCEPT_PATCH_SINCE: Final = 31500
"""The accept carries the patch byte for clients from 3.15.0 on [The handshake]."""
OLDEST_CLIENT: Final = 30100
"""Clients older than 3.1.0 get ``REJECT_VERSION`` [Reject codes]."""
NULL_METHOD: Final = NULL_AUTH.decode("ascii")
"""The one authentication method spreadq speaks."""
_MEMBERSHIP_FLAG: Final = 0x01
_PRIORITY_FLAG: Final = 0x10


def _latin1(text: str, what: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} {text!r} cannot be sent: not Latin-1") from None


def _byte(value: int, what: str) -> int:
    if not 0 <= value <= 255:
        raise LocalProtocolError(f"{what} {value} does not fit in one byte")
    return value


# --- client side -------------------------------------------------------------------------


def encode_hello(
    private_name: bytes,
    *,
    membership: bool,
    priority: bool,
    version: tuple[int, int, int] = CLIENT_VERSION,
) -> bytes:
    """The hello: ``major minor [patch] flags n name`` [The handshake], to be sent in one write.

    Raises:
        LocalProtocolError: a version field outside 0..255 or a name over 10 bytes.
    """
    major, minor, patch = (_byte(part, "version field") for part in version)
    if len(private_name) > MAX_PRIVATE_NAME:
        raise LocalProtocolError(f"private name {private_name!r} is over {MAX_PRIVATE_NAME} bytes")
    flags = (_MEMBERSHIP_FLAG if membership else 0) | (_PRIORITY_FLAG if priority else 0)
    head = (
        bytes([major, minor, patch])
        if major * 10000 + minor * 100 > PATCH_SENT_ABOVE
        else (bytes([major, minor]))
    )
    return head + bytes([flags, len(private_name)]) + private_name


def read_auth_list(buffer: ReceiveBuffer) -> tuple[str, ...] | Rejected | None:
    """The daemon's auth list, a reject code in its place, or ``None`` (need more bytes).

    Raises:
        RemoteProtocolError: a list length over 90 (the C library gives up there too).
    """
    head = buffer.peek(1)
    if head is None:
        return None
    length = head[0] - 256 if head[0] > 127 else head[0]
    if length < 0:
        buffer.skip(1)
        return Rejected(_reject_code(length))
    if length > AUTH_BLOCK_SIZE:
        raise RemoteProtocolError(f"auth list length {length} is over {AUTH_BLOCK_SIZE}")
    if len(buffer) < 1 + length:
        return None
    buffer.skip(1)
    return tuple(buffer.consume(length).decode("latin-1").split())


def encode_auth_choice(methods: Sequence[str] = (NULL_METHOD,)) -> bytes:
    """The client's 90-byte auth choice (``"NULL"`` in slot 0 by default).

    Raises:
        LocalProtocolError: more than three methods or a name of 30 bytes or more.
    """
    return pack_auth_choice([_latin1(method, "auth method name") for method in methods])


def read_accept(buffer: ReceiveBuffer, *, with_patch: bool) -> Accepted | Rejected | None:
    """The accept ``01 major minor [patch] m name``, a reject, or ``None`` (need more bytes).

    Raises:
        RemoteProtocolError: a first byte that is neither 1 nor negative, or a private
            group name of 32 bytes or more.
    """
    head = buffer.peek(1)
    if head is None:
        return None
    code = head[0] - 256 if head[0] > 127 else head[0]
    if code < 0:
        buffer.skip(1)
        return Rejected(_reject_code(code))
    if code != ACCEPT_SESSION:
        raise RemoteProtocolError(f"handshake answer {code} is neither accept (1) nor a reject")
    fixed = 5 if with_patch else 4
    head = buffer.peek(fixed)
    if head is None:
        return None
    length = head[fixed - 1]
    if length >= GROUP_NAME_SIZE:
        raise RemoteProtocolError(f"private group name length {length} is over 31")
    if len(buffer) < fixed + length:
        return None
    raw = buffer.consume(fixed + length)
    version = (raw[1], raw[2], raw[3] if with_patch else 0)
    return Accepted(raw[fixed:].decode("latin-1"), version)


def _reject_code(code: int) -> RejectCode:
    for known in _WIRE_REJECTS:
        if known == code:
            return known
    raise RemoteProtocolError(f"unknown reject code {code} (not one a daemon sends)")


# --- server side -------------------------------------------------------------------------


def read_hello(buffer: ReceiveBuffer) -> Hello | None:
    """The client's hello, or ``None`` until all of it has arrived.

    A hello that breaks a rule the session can check alone comes back with ``refusal``
    set, decided as early as the real daemon decides it:

    * a version below 3.1.0 (``REJECT_VERSION``) right after the two version bytes: such
      a hello has no patch byte, so major and minor settle it (the real daemon answers
      ``f9`` to the two bytes ``03 00`` alone). Flags and name are then unknown: the
      ``Hello`` carries no name and no flags.
    * a name length over 10 (``REJECT_ILLEGAL_NAME``) as soon as the length byte arrives,
      without waiting for the name;
    * a name byte outside ``$``..``~`` (``REJECT_ILLEGAL_NAME``).
    """
    head = buffer.peek(2)
    if head is None:
        return None
    major, minor = head
    if major * 10000 + minor * 100 < OLDEST_CLIENT:
        buffer.skip(2)
        return Hello((major, minor, 0), "", False, False, RejectCode.REJECT_VERSION)
    fixed = 5 if major * 10000 + minor * 100 > PATCH_SENT_ABOVE else 4
    head = buffer.peek(fixed)
    if head is None:
        return None
    patch = head[2] if fixed == 5 else 0
    flags, length = head[fixed - 2], head[fixed - 1]
    version = (major, minor, patch)
    membership, priority = bool(flags & _MEMBERSHIP_FLAG), flags // 16 > 0
    if length > MAX_PRIVATE_NAME:
        buffer.skip(fixed)
        return Hello(version, "", membership, priority, RejectCode.REJECT_ILLEGAL_NAME)
    if len(buffer) < fixed + length:
        return None
    name = buffer.consume(fixed + length)[fixed:]
    refusal: RejectCode | None = None
    if not LEGAL_NAME_BYTES.match(name) or b"#" in name:
        refusal = RejectCode.REJECT_ILLEGAL_NAME
    return Hello(version, name.decode("latin-1"), membership, priority, refusal)


def encode_auth_list(methods: Sequence[str]) -> bytes:
    """The auth list: its length, then each method followed by one space [The handshake].

    Raises:
        LocalProtocolError: the list would pass 90 bytes or a method name is empty or
            holds a space.
    """
    for method in methods:
        if not method or " " in method:
            raise LocalProtocolError(f"auth method name {method!r} must be non-empty, no spaces")
    body = _latin1("".join(f"{method} " for method in methods), "auth method names")
    if len(body) > AUTH_BLOCK_SIZE:
        raise LocalProtocolError(f"auth list of {len(body)} bytes is over {AUTH_BLOCK_SIZE}")
    return bytes([len(body)]) + body


def read_auth_choice(buffer: ReceiveBuffer, offered: Sequence[str]) -> AuthChoice | None:
    """The client's 90-byte auth choice, or ``None`` until all 90 bytes have arrived.

    ``refusal`` is ``REJECT_AUTH`` if a named method was not in ``offered`` or no
    method was named.
    """
    if len(buffer) < AUTH_BLOCK_SIZE:
        return None
    methods = unpack_auth_choice(buffer.consume(AUTH_BLOCK_SIZE))
    good = bool(methods) and all(method in offered for method in methods)
    return AuthChoice(methods, None if good else RejectCode.REJECT_AUTH)


def encode_accept(
    private_group: str, version: tuple[int, int, int], client_version: tuple[int, int, int]
) -> bytes:
    """The accept, with the patch byte only for clients >= 3.15.0 [The handshake].

    Raises:
        LocalProtocolError: a private group name over 31 bytes or a version field
            outside 0..255.
    """
    raw = _latin1(private_group, "a private group name")
    if not 0 < len(raw) < GROUP_NAME_SIZE:
        raise LocalProtocolError(f"private group {private_group!r} must be 1..31 bytes")
    major, minor, patch = (_byte(part, "version field") for part in version)
    fields = [ACCEPT_SESSION, major, minor]
    if version_number(client_version) >= ACCEPT_PATCH_SINCE:
        fields.append(patch)
    fields.append(len(raw))
    return bytes(fields) + raw


def encode_reject(code: RejectCode) -> bytes:
    """A reject: the code as one signed byte (the daemon closes the socket after it).

    Raises:
        LocalProtocolError: ``code`` is not a code the daemon sends.
    """
    if code not in _WIRE_REJECTS:
        raise LocalProtocolError(f"{code.name} is not a reject code a daemon sends")
    return int(code).to_bytes(1, "little", signed=True)


_WIRE_REJECTS: Final = frozenset(
    {
        RejectCode.REJECT_QUOTA,
        RejectCode.REJECT_NO_NAME,
        RejectCode.REJECT_ILLEGAL_NAME,
        RejectCode.REJECT_NOT_UNIQUE,
        RejectCode.REJECT_VERSION,
        RejectCode.REJECT_AUTH,
    }
)
