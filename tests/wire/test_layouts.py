"""One table of (event, exact bytes), used in both directions (h11's test_io style).

Byte strings are written as spaced hex dumps; the layouts are in docs/design/spread-protocol.md.
Client -> daemon rows: the client session encodes the command to exactly these bytes and the
server session decodes them back. Daemon -> client rows: the server encodes the event to
exactly these bytes and the client session decodes them back.
"""

from __future__ import annotations

import pytest
from wire_helpers import drain, hx, name32, open_client, open_server

from spreadq.errors import LocalProtocolError, RemoteProtocolError
from spreadq.wire import (
    CLOSED,
    Cause,
    ClientCommand,
    DaemonMessage,
    DataMessage,
    Disconnect,
    GroupId,
    IncomingMulticast,
    Join,
    Leave,
    Multicast,
    RegularMembership,
    RejectedMessage,
    SelfLeave,
    ServiceType,
    TransitionalMembership,
    encode_daemon_message,
)
from spreadq.wire.layouts import (
    MARKER_HINT,
    decode_name,
    hint_for,
    mess_type_from_hint,
    pack_auth_choice,
    pack_header,
    pack_membership_body,
    unpack_auth_choice,
    unpack_header,
    unpack_membership_body,
    unpack_membership_body_v3,
    unpack_transitional_body,
)

CUSER = "#cuser#pd1"
GID = GroupId(482711334, 1795834448, 1)
GID_BYTES = hx("26 97 c5 1c 50 42 0a 6b 01 00 00 00")

# --- client -> daemon --------------------------------------------------------------------

CLIENT_ROWS: list[tuple[str, ClientCommand, bytes]] = [
    (
        "join (C library capture, 80 bytes)",
        Join("cgrp"),
        hx("80 00 01 80")
        + name32(CUSER)
        + hx("01 00 00 00 | 80 00 00 80 | 00 00 00 00")
        + name32("cgrp"),
    ),
    (
        "leave",
        Leave("cgrp"),
        hx("80 00 02 80")
        + name32(CUSER)
        + hx("01 00 00 00 | 80 00 00 80 | 00 00 00 00")
        + name32("cgrp"),
    ),
    (
        "disconnect names the own private group",
        Disconnect(),
        hx("80 00 04 80")
        + name32(CUSER)
        + hx("01 00 00 00 | 80 00 00 80 | 00 00 00 00")
        + name32(CUSER),
    ),
    (
        "SAFE multicast, mess_type 1 (C library capture)",
        Multicast(("cgrp",), b"hello from C\n", ServiceType.SAFE, 1),
        hx("a0 00 00 80")
        + name32(CUSER)
        + hx("01 00 00 00 | 80 01 00 80 | 0d 00 00 00")
        + name32("cgrp")
        + b"hello from C\n",
    ),
    (
        "AGREED|SELF_DISCARD, mess_type -1 -> hint 80 ff ff 80",
        Multicast(("g",), b"x", ServiceType.AGREED | ServiceType.SELF_DISCARD, -1),
        hx("d0 00 00 80")
        + name32(CUSER)
        + hx("01 00 00 00 | 80 ff ff 80 | 01 00 00 00")
        + name32("g")
        + b"x",
    ),
    (
        "mess_type -32768 -> hint 80 00 80 80; two groups, one private",
        Multicast(("g", "#bob#pd1"), b"", ServiceType.FIFO, -32768),
        hx("84 00 00 80")
        + name32(CUSER)
        + hx("02 00 00 00 | 80 00 80 80 | 00 00 00 00")
        + name32("g")
        + name32("#bob#pd1"),
    ),
]


@pytest.mark.parametrize(("what", "command", "wire"), CLIENT_ROWS, ids=[r[0] for r in CLIENT_ROWS])
def test_client_encodes_command_exactly(what: str, command: ClientCommand, wire: bytes) -> None:
    client = open_client(CUSER, name="cuser")
    assert client.send(command) == wire


@pytest.mark.parametrize(("what", "command", "wire"), CLIENT_ROWS, ids=[r[0] for r in CLIENT_ROWS])
def test_server_decodes_command_exactly(what: str, command: ClientCommand, wire: bytes) -> None:
    server = open_server(CUSER)
    server.receive_data(wire)
    event, *rest = drain(server)
    assert rest == ([CLOSED] if isinstance(command, Disconnect) else [])
    if isinstance(command, Multicast):
        assert event == IncomingMulticast(
            command.groups, command.data, command.service, command.mess_type, wire[40:44], CUSER
        )
    else:
        assert event == command


def test_big_endian_join_from_a_java_style_client() -> None:
    # [Byte order]: a BE writer's join is 00 01 00 00, hint and counts BE, marker clear
    wire = (
        hx("00 01 00 00")
        + name32(CUSER)
        + hx("00 00 00 01 | 00 00 00 00 | 00 00 00 00")
        + name32("grp")
    )
    server = open_server(CUSER)
    server.receive_data(wire)
    assert drain(server) == [Join("grp")]


# --- daemon -> client --------------------------------------------------------------------

REG_JOIN = RegularMembership(
    "grp", GID, ("#B280061#localhost",), Cause.JOIN, (("#B280061#localhost",),), 0
)

DAEMON_ROWS: list[tuple[str, DaemonMessage, bytes]] = [
    (
        "lightweight REG join: 80 11 00 80, 56-byte body",
        REG_JOIN,
        hx("80 11 00 80")
        + name32("grp")
        + hx("01 00 00 00 | 80 00 00 80 | 38 00 00 00")
        + name32("#B280061#localhost")
        + GID_BYTES
        + hx("01 00 00 00 | 00 00 00 00 | 01 00 00 00")
        + name32("#B280061#localhost"),
    ),
    (
        "self-leave: CAUSED_BY_LEAVE alone",
        SelfLeave("grp"),
        hx("80 02 00 80") + name32("grp") + hx("00 00 00 00 | 80 00 00 80 | 00 00 00 00"),
    ),
    (
        "AGREED mess_type 0x1234 -> hint 80 34 12 80",
        DataMessage("#a#localhost", ("grp",), ServiceType.AGREED, 0x1234, b"hello"),
        hx("90 00 00 80")
        + name32("#a#localhost")
        + hx("01 00 00 00 | 80 34 12 80 | 05 00 00 00")
        + name32("grp")
        + b"hello",
    ),
    (
        "SAFE|SELF_DISCARD keeps the bits: e0 00 00 80",
        DataMessage("#a#x", ("g",), ServiceType.SAFE | ServiceType.SELF_DISCARD, 0, b""),
        hx("e0 00 00 80")
        + name32("#a#x")
        + hx("01 00 00 00 | 80 00 00 80 | 00 00 00 00")
        + name32("g"),
    ),
    (
        "a BE sender's hint passes through: 00 01 02 00 in an LE header",
        DataMessage("#d#x", ("g",), ServiceType.AGREED, 0x0102, b"z", endian_mismatch=True),
        hx("90 00 00 80")
        + name32("#d#x")
        + hx("01 00 00 00 | 00 01 02 00 | 01 00 00 00")
        + name32("g")
        + b"z",
    ),
    (
        "transitional: gid of the ending view, data_len 12",
        TransitionalMembership("grp", GroupId(1552775919, 1795838733, 2)),
        hx("80 20 00 80")
        + name32("grp")
        + hx("00 00 00 00 | 80 00 00 80 | 0c 00 00 00")
        + hx("ef 7a 8d 5c 0d 53 0a 6b 02 00 00 00"),
    ),
    (
        "heavyweight NETWORK merge: 2 vs sets, local offset 68, data_len 156",
        RegularMembership(
            "G",
            GroupId(7, 8, 1),
            ("#aA2#pa", "#zA1#pa", "#AB2#pb", "#bB1#pb"),
            Cause.NETWORK,
            (("#AB2#pb", "#bB1#pb"), ("#aA2#pa", "#zA1#pa")),
            1,
        ),
        hx("80 18 00 80")
        + name32("G")
        + hx("04 00 00 00 | 80 00 00 80 | 9c 00 00 00")
        + name32("#aA2#pa")
        + name32("#zA1#pa")
        + name32("#AB2#pb")
        + name32("#bB1#pb")
        + hx("07 00 00 00 08 00 00 00 01 00 00 00 | 02 00 00 00 | 44 00 00 00")
        + hx("02 00 00 00")
        + name32("#AB2#pb")
        + name32("#bB1#pb")
        + hx("02 00 00 00")
        + name32("#aA2#pa")
        + name32("#zA1#pa"),
    ),
    (
        "reject message: old_type after the header, sender appended to the groups",
        RejectedMessage("#a#x", ("g", "#a#x"), 0x00010000, 0, b""),
        hx("80 00 40 80")
        + name32("#a#x")
        + hx("02 00 00 00 | 80 00 00 80 | 00 00 00 00")
        + hx("80 00 01 80")
        + name32("g")
        + name32("#a#x"),
    ),
    (
        "reject message of a SELF_DISCARD multicast keeps SELF_DISCARD in type",
        RejectedMessage("#a#x", ("g", "#a#x"), 0x50, 3, b"hi"),
        hx("c0 00 40 80")
        + name32("#a#x")
        + hx("02 00 00 00 | 80 03 00 80 | 02 00 00 00")
        + hx("d0 00 00 80")
        + name32("g")
        + name32("#a#x")
        + b"hi",
    ),
]


@pytest.mark.parametrize(("what", "event", "wire"), DAEMON_ROWS, ids=[r[0] for r in DAEMON_ROWS])
def test_server_encodes_daemon_message_exactly(
    what: str, event: DaemonMessage, wire: bytes
) -> None:
    server = open_server()
    if isinstance(event, DataMessage) and event.endian_mismatch:
        assert server.encode_data(event, hint_raw=hx("00 01 02 00")) == wire
    assert server.send(event) == wire
    assert encode_daemon_message(event) == wire


@pytest.mark.parametrize(("what", "event", "wire"), DAEMON_ROWS, ids=[r[0] for r in DAEMON_ROWS])
def test_client_decodes_daemon_message_exactly(
    what: str, event: DaemonMessage, wire: bytes
) -> None:
    client = open_client()
    client.receive_data(wire)
    assert drain(client) == [event]


def test_membership_properties_follow_the_vs_sets() -> None:
    assert REG_JOIN.changed_member == "#B280061#localhost"
    merge = DAEMON_ROWS[6][1]
    assert isinstance(merge, RegularMembership)
    assert merge.changed_member is None
    assert merge.local_vs_members == ("#aA2#pa", "#zA1#pa")


def test_legacy_membership_body_for_a_3x_daemon() -> None:
    # [Versions]: 3.x body = gid | num_vs | names (only the receiver's vs set)
    wire = (
        hx("80 11 00 80")
        + name32("grp")
        + hx("01 00 00 00 | 80 00 00 80 | 30 00 00 00")
        + name32("#m#d")
        + GID_BYTES
        + hx("01 00 00 00")
        + name32("#m#d")
    )
    event = RegularMembership("grp", GID, ("#m#d",), Cause.JOIN, (("#m#d",),), 0)
    client = open_client(daemon_version=(3, 17, 2))
    client.receive_data(wire)
    assert drain(client) == [event]
    assert encode_daemon_message(event, legacy_membership=True) == wire


# --- the helpers themselves --------------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (hx("80 00 00 80"), (0, True)),
        (hx("80 ff ff 80"), (-1, True)),
        (hx("80 00 80 80"), (-32768, True)),
        (hx("80 ff 7f 80"), (32767, True)),
        (hx("00 01 02 00"), (0x0102, False)),
        (hx("00 ff ff 00"), (-1, False)),
    ],
)
def test_mess_type_from_hint_is_signed_and_read_by_its_own_marker(
    hint: bytes, expected: tuple[int, bool]
) -> None:
    assert mess_type_from_hint(hint) == expected


@pytest.mark.parametrize("mess_type", [0, 1, -1, 32767, -32768, 0x1234])
def test_hint_for_round_trips(mess_type: int) -> None:
    raw = hint_for(mess_type).to_bytes(4, "little")
    assert mess_type_from_hint(raw) == (mess_type, True)


@pytest.mark.parametrize("mess_type", [32768, -32769])
def test_hint_for_refuses_values_outside_int16(mess_type: int) -> None:
    with pytest.raises(LocalProtocolError):
        hint_for(mess_type)


def test_header_round_trip_both_orders() -> None:
    le = pack_header(0x10, b"#a#b", 3, hint_for(5), 99)
    header = unpack_header(le)
    assert (header.type, header.num_groups, header.data_len, header.little_endian) == (
        0x10,
        3,
        99,
        True,
    )
    assert header.sender.rstrip(b"\0") == b"#a#b"
    be = hx("00 00 00 10") + name32("#a#b") + hx("00 00 00 03 00 00 05 00 00 00 00 63")
    header = unpack_header(be)
    assert (header.type, header.num_groups, header.data_len, header.little_endian) == (
        0x10,
        3,
        99,
        False,
    )
    assert header.hint == hx("00 00 05 00")


def test_header_refuses_short_and_negative() -> None:
    with pytest.raises(RemoteProtocolError):
        unpack_header(b"\x80" * 47)
    with pytest.raises(RemoteProtocolError):
        unpack_header(hx("80 00 00 80") + name32("x") + hx("ff ff ff ff 80 00 00 80 00 00 00 00"))


def test_pack_header_passes_a_raw_hint_through_and_refuses_long_names() -> None:
    assert pack_header(0x10, b"s", 0, hx("00 01 02 00"), 0)[40:44] == hx("00 01 02 00")
    assert pack_header(0x10, b"s", 0, MARKER_HINT, 0)[40:44] == hx("80 00 00 80")
    with pytest.raises(LocalProtocolError):
        pack_header(0x10, b"s" * 32, 0, 0, 0)
    with pytest.raises(LocalProtocolError):
        pack_header(0x10, b"s", 0, b"\0\0\0", 0)


def test_names_decode_up_to_the_first_nul_and_strictly_refuse_no_nul() -> None:
    assert decode_name(b"abc\0junk".ljust(32, b"\0"), strict=True) == "abc"
    assert decode_name(b"\xe9t\xe9".ljust(32, b"\0"), strict=False) == "\xe9t\xe9"
    assert decode_name(b"x" * 32, strict=False) == "x" * 32
    with pytest.raises(RemoteProtocolError, match="no NUL"):
        decode_name(b"x" * 32, strict=True)


def test_membership_body_offsets_count_from_byte_20() -> None:
    body = pack_membership_body(GID, [[b"#a#x"], [b"#b#y", b"#c#y"], [b"#d#z"]], 2)
    assert body[16:20] == (36 + 68).to_bytes(4, "little")
    assert unpack_membership_body(body, True) == (
        GID,
        (("#a#x",), ("#b#y", "#c#y"), ("#d#z",)),
        2,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (GID_BYTES + hx("01 00 00 00 04 00 00 00 01 00 00 00") + name32("a"), "not the start"),
        (GID_BYTES + hx("01 00 00 00 00 00 00 00 02 00 00 00") + name32("a"), "does not fit"),
        (GID_BYTES + hx("05 00 00 00 00 00 00 00"), "cannot fit"),
        (GID_BYTES + hx("00 00 00 00 00 00 00 00 00"), "after its"),
        (GID_BYTES + hx("00 00 00 00 04 00 00 00"), "no vs sets"),
        (GID_BYTES, "at least"),
    ],
)
def test_membership_body_refuses_inconsistent_layouts(body: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        unpack_membership_body(body, True)


def test_legacy_and_transitional_bodies_refuse_wrong_sizes() -> None:
    with pytest.raises(RemoteProtocolError):
        unpack_membership_body_v3(GID_BYTES + hx("02 00 00 00") + name32("a"), True)
    with pytest.raises(RemoteProtocolError):
        unpack_transitional_body(GID_BYTES + b"\0", True)
    assert unpack_transitional_body(GID_BYTES, True) == GID
    big = b"".join(GID_BYTES[i : i + 4][::-1] for i in range(0, 12, 4))
    assert unpack_transitional_body(big, False) == GID


def test_auth_choice_block() -> None:
    block = pack_auth_choice([b"NULL"])
    assert block == b"NULL" + bytes(86)
    assert unpack_auth_choice(block) == ("NULL",)
    assert unpack_auth_choice(bytes(30) + b"NULL".ljust(30, b"\0") + b"X" * 30) == (
        "NULL",
        "X" * 30,
    )
    with pytest.raises(LocalProtocolError):
        pack_auth_choice([b"A", b"B", b"C", b"D"])
    with pytest.raises(RemoteProtocolError):
        unpack_auth_choice(bytes(89))
