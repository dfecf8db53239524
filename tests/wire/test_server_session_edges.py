"""Edges of the daemon's session: the header limits at their boundaries, the 3.x body for
an old daemon version, and the exact text of what it refuses.

Written from the survivors of ``scripts/mutate src/spreadq/wire`` (docs/mutation.md).
"""

from __future__ import annotations

import re
import struct

import pytest
from wire_helpers import drain, name32, open_server

from spreadq.errors import InvalidName, LocalProtocolError, RemoteProtocolError
from spreadq.wire import ServerSession
from spreadq.wire.constants import DAEMON_MESSAGE_LIMIT, Cause, ServiceType
from spreadq.wire.events import (
    CLOSED,
    AuthChoice,
    DataMessage,
    GroupId,
    Hello,
    IncomingMulticast,
    RegularMembership,
    RejectedMessage,
)
from spreadq.wire.handshake import SERVER_TRANSITIONS, ServerInput, ServerState, transition
from spreadq.wire.layouts import pack_membership_body, pack_membership_body_v3
from spreadq.wire.server_session import encode_daemon_message

ME = "#alice#localhost"
AGREED = 0x80000090  # AGREED with the endian marker


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def multicast(count: int, data_len: int, *, type_: int = AGREED, hint: int = 0x80) -> bytes:
    head = struct.pack("<I32siIi", type_, name32(ME), count, hint, data_len)
    return head + b"".join(name32(f"g{i}") for i in range(count)) + bytes(data_len)


def test_a_multicast_to_100_groups_is_taken() -> None:
    server = open_server()
    server.receive_data(multicast(100, 3))
    (event,) = drain(server)
    assert isinstance(event, IncomingMulticast)
    assert event.groups == tuple(f"g{i}" for i in range(100))
    assert event.groups_raw == b"".join(name32(f"g{i}") for i in range(100))


def test_101_groups_are_refused() -> None:
    server = open_server()
    server.receive_data(multicast(101, 0))
    with pytest.raises(RemoteProtocolError, match=exactly("num_groups: 101 is not in 0..100")):
        server.next_event()


def test_the_size_limits_at_their_boundaries() -> None:
    big = DAEMON_MESSAGE_LIMIT + 1000
    # data_len at its own limit passes that check and fails the size check after it
    server = open_server(max_message_size=big)
    server.receive_data(multicast(0, DAEMON_MESSAGE_LIMIT)[:48])
    with pytest.raises(
        RemoteProtocolError,
        match=exactly("size: data_len + 32 * num_groups = 144000 is over 143952"),
    ):
        server.next_event()
    server = open_server(max_message_size=big)
    server.receive_data(multicast(0, DAEMON_MESSAGE_LIMIT + 1)[:48])
    with pytest.raises(RemoteProtocolError, match=exactly("data_len: 144001 is not in 0..144000")):
        server.next_event()
    # exactly the body limit is taken
    server = open_server(max_message_size=big)
    server.receive_data(multicast(1, DAEMON_MESSAGE_LIMIT - 48 - 32))
    (event,) = drain(server)
    assert isinstance(event, IncomingMulticast)
    # and the safe cap names the whole size
    server = open_server()
    server.receive_data(multicast(1, 140_000)[:48])
    with pytest.raises(
        RemoteProtocolError, match=exactly("size cap: a message of 140080 bytes is over 140000")
    ):
        server.next_event()


def test_forbidden_type_bits_are_named() -> None:
    server = open_server()
    server.receive_data(multicast(1, 0, type_=AGREED | 0x00100000))
    with pytest.raises(
        RemoteProtocolError,
        match=exactly(
            "type 0x00100010 sets daemon-internal bits 0x100000, which a client may not set"
        ),
    ):
        server.next_event()


def test_a_join_of_no_group_is_a_hazard() -> None:
    server = open_server()
    server.receive_data(multicast(0, 0, type_=0x80010080))  # JOIN
    with pytest.raises(
        RemoteProtocolError, match=exactly("hazard: JOIN names 0 groups; it must name one")
    ):
        server.next_event()
    server = open_server()
    server.receive_data(multicast(2, 0, type_=0x80010080))
    with pytest.raises(RemoteProtocolError, match=exactly("JOIN names 2 groups; it must name one")):
        server.next_event()


def test_a_big_endian_hint_with_bit_0_set_in_its_first_byte() -> None:
    # 01 00 07 00 read big-endian: mess_type 7 (bit 0 of the first byte is not the marker)
    server = open_server()
    head = struct.pack("<I32siIi", AGREED, name32(ME), 1, 0, 0)
    server.receive_data(head[:40] + b"\x00\x00\x07\x00" + head[44:] + name32("g"))
    (event,) = drain(server)
    assert isinstance(event, IncomingMulticast)
    assert (event.mess_type, event.hint_raw) == (7, b"\x00\x00\x07\x00")


def test_a_3x_daemon_version_sends_the_3x_membership_body() -> None:
    view = RegularMembership("g", GroupId(1, 2, 3), (ME,), Cause.JOIN, ((ME,),), 0)
    new = open_server()
    assert new.send(view).endswith(pack_membership_body(GroupId(1, 2, 3), [[ME.encode()]], 0))
    for version in [(3, 14, 0), (3, 4, 1)]:
        old_bytes = _accepted_as(version).send(view)
        assert old_bytes.endswith(pack_membership_body_v3(GroupId(1, 2, 3), [ME.encode()]))
    assert (
        not _accepted_as((4, 3, 0))
        .send(view)
        .endswith(pack_membership_body_v3(GroupId(1, 2, 3), [ME.encode()]))
    )


def _accepted_as(version: tuple[int, int, int]) -> ServerSession:
    """A server session announcing daemon ``version`` to a 5.0.1 client."""
    server = ServerSession()
    server.receive_data(bytes([5, 0, 1, 1, 5]) + b"alice")
    assert isinstance(server.next_event(), Hello)
    server.auth_list()
    server.receive_data(b"NULL".ljust(90, b"\0"))
    assert isinstance(server.next_event(), AuthChoice)
    server.accept(ME, version)
    assert server.version == version
    return server


def test_encode_data_passes_the_raw_hint_and_forwards_as_received() -> None:
    message = DataMessage(ME, ("g",), ServiceType.AGREED, 7, b"x")
    computed = ServerSession.encode_data(message)
    assert computed[40:44] == struct.pack("<I", (7 << 8) | 0x80000080)
    raw = ServerSession.encode_data(message, hint_raw=b"\x00\x00\x07\x00")
    assert raw[40:44] == b"\x00\x00\x07\x00"
    assert raw[44:] == computed[44:]
    incoming = IncomingMulticast(("g",), b"x", ServiceType.AGREED, 7, b"\x00\x00\x07\x00", ME)
    assert ServerSession.encode_data(incoming) == raw
    with pytest.raises(LocalProtocolError, match=exactly("a raw hint is 4 bytes, got 3")):
        encode_daemon_message(message, hint_raw=b"\0\0\0")


@pytest.mark.parametrize(("mess_type", "endian_mismatch"), [(-32768, False), (32767, True)])
def test_hints_of_the_extreme_mess_types(mess_type: int, endian_mismatch: bool) -> None:
    message = DataMessage(ME, ("g",), ServiceType.AGREED, mess_type, b"", endian_mismatch)
    hint = encode_daemon_message(message)[40:44]
    value = (mess_type << 8) & 0x00FFFF00
    expected = (
        value.to_bytes(4, "big") if endian_mismatch else struct.pack("<I", value | 0x80000080)
    )
    assert hint == expected
    with pytest.raises(
        LocalProtocolError, match=exactly("mess_type 32768 is not a signed 16-bit value")
    ):
        encode_daemon_message(DataMessage(ME, ("g",), ServiceType.AGREED, 32768, b""))


def test_a_rejected_message_keeps_the_raw_hint() -> None:
    rejected = RejectedMessage(ME, ("g",), 0x10, 5, b"d")
    computed = encode_daemon_message(rejected)
    assert computed[40:44] == struct.pack("<I", (5 << 8) | 0x80000080)
    assert (
        encode_daemon_message(rejected, hint_raw=b"\x80\x00\x09\x80")[40:44] == b"\x80\x00\x09\x80"
    )


def test_names_on_the_wire() -> None:
    long = DataMessage("#" + "s" * 31, ("g",), ServiceType.AGREED, 0, b"")
    with pytest.raises(InvalidName) as info:
        encode_daemon_message(long)
    assert info.value.reason == "names on the wire are at most 31 bytes"
    wide = DataMessage(ME, ("g\u0100",), ServiceType.AGREED, 0, b"")
    with pytest.raises(InvalidName) as info:
        encode_daemon_message(wide)
    assert (info.value.name, info.value.reason) == ("g\u0100", "names on the wire are Latin-1")
    group = DataMessage(ME, ("g" * 32,), ServiceType.AGREED, 0, b"")
    with pytest.raises(InvalidName) as info:
        encode_daemon_message(group)
    assert info.value.name == "g" * 32
    many = DataMessage(ME, tuple(f"g{i}" for i in range(120)), ServiceType.AGREED, 0, b"")
    assert encode_daemon_message(many)[48 : 48 + 32 * 120] == b"".join(
        name32(f"g{i}") for i in range(120)
    )


def test_a_31_byte_private_group_may_send() -> None:
    group = "#" + "n" * 10 + "#" + "d" * 19  # the longest: 31 bytes
    server = open_server(group)
    head = struct.pack("<I32siIi", AGREED, group.encode(), 1, 0x80, 0)
    server.receive_data(head + name32("g"))
    (event,) = drain(server)
    assert isinstance(event, IncomingMulticast)
    assert event.sender == group


def test_a_message_in_two_chunks_keeps_its_raw_names() -> None:
    server = open_server()
    data = multicast(2, 3)
    server.receive_data(data[:50])
    assert drain(server) == []
    server.receive_data(data[50:])
    (event,) = drain(server)
    assert isinstance(event, IncomingMulticast)
    assert event.groups_raw == name32("g0") + name32("g1")


def test_eof_while_the_daemon_owes_an_answer_is_a_plain_close() -> None:
    server = ServerSession()
    server.receive_data(bytes([5, 0, 1, 1, 5]) + b"alice" + b"early")  # bytes before the answer
    assert isinstance(server.next_event(), Hello)
    server.receive_data(b"")
    assert server.next_event() is CLOSED


def test_no_second_answer_to_a_hello() -> None:
    server = open_server()
    with pytest.raises(
        LocalProtocolError, match=exactly("no handshake step to answer in state OPEN")
    ):
        server.accept(ME)


def test_a_mess_type_outside_16_bits_cannot_be_encoded() -> None:
    for mess_type in (-32769, 32768):
        with pytest.raises(
            LocalProtocolError, match=exactly(f"mess_type {mess_type} is not a signed 16-bit value")
        ):
            encode_daemon_message(DataMessage(ME, ("g",), ServiceType.AGREED, mess_type, b""))


def test_a_missing_transition_names_the_input_and_the_state() -> None:
    with pytest.raises(LocalProtocolError, match=exactly("cannot send accept in state OPEN")):
        transition(SERVER_TRANSITIONS, ServerState.OPEN, ServerInput.SEND_ACCEPT, local=True)
    with pytest.raises(RemoteProtocolError, match=exactly("cannot send accept in state OPEN")):
        transition(SERVER_TRANSITIONS, ServerState.OPEN, ServerInput.SEND_ACCEPT, local=False)
