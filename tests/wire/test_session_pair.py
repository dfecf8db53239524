"""A client and a server session joined through bytes (h11's ConnectionPair), and the
daemon-side header checks (docs/design/spread-protocol.md#what-a-daemon-refuses)."""

from __future__ import annotations

import struct

import pytest
from wire_helpers import SessionPair, drain, hx, name32, open_client, open_server

from spreadq.errors import LocalProtocolError, RemoteProtocolError
from spreadq.wire import (
    CLOSED,
    NEED_DATA,
    AuthChoice,
    Cause,
    ClientCommand,
    ClientState,
    DataMessage,
    Disconnect,
    GroupId,
    Hello,
    IncomingMulticast,
    Join,
    Leave,
    Multicast,
    RegularMembership,
    SelfLeave,
    ServerSession,
    ServerState,
    ServiceType,
    encode_daemon_message,
    encode_forward,
)

ME = "#alice#localhost"


def test_join_multicast_leave_disconnect_through_bytes() -> None:
    pair = SessionPair()
    assert pair.client_sends(Join("jobs")) == [Join("jobs")]
    view = RegularMembership("jobs", GroupId(1, 2, 1), (ME,), Cause.JOIN, ((ME,),), 0)
    assert pair.server_sends(view) == [view]

    (incoming,) = pair.client_sends(Multicast(("jobs",), b"payload", ServiceType.SAFE, 42))
    assert incoming == IncomingMulticast(
        ("jobs",), b"payload", ServiceType.SAFE, 42, hx("80 2a 00 80"), ME
    )
    assert isinstance(incoming, IncomingMulticast)
    pair.client.receive_data(encode_forward(incoming))
    assert drain(pair.client) == [DataMessage(ME, ("jobs",), ServiceType.SAFE, 42, b"payload")]

    assert pair.client_sends(Leave("jobs")) == [Leave("jobs")]
    assert pair.server_sends(SelfLeave("jobs")) == [SelfLeave("jobs")]

    assert pair.client_sends(Disconnect()) == [Disconnect(), CLOSED]
    assert pair.server.state is ServerState.CLOSED
    assert pair.client.state is ClientState.DISCONNECTING
    pair.client.receive_data(b"")
    assert pair.client.next_event() is CLOSED
    assert pair.client.state.name == "CLOSED"


def test_send_many_is_the_concatenation_of_sends() -> None:
    commands: list[ClientCommand] = [
        Join("a"),
        Multicast(("a", "b"), b"x" * 10),
        Leave("a"),
        Disconnect(),
    ]
    one = SessionPair().client.send_many(commands)
    client = SessionPair().client
    assert one == b"".join(client.send(command) for command in commands)


def test_send_many_refuses_commands_after_disconnect_and_changes_nothing() -> None:
    pair = SessionPair()
    with pytest.raises(LocalProtocolError, match="follow a Disconnect"):
        pair.client.send_many([Disconnect(), Join("a")])
    assert pair.client.state is ClientState.OPEN
    pair.client.send(Disconnect())
    with pytest.raises(LocalProtocolError):
        pair.client.send(Join("a"))
    with pytest.raises(LocalProtocolError):
        pair.client.send_many([])


def test_many_messages_in_one_chunk_and_a_split_one() -> None:
    pair = SessionPair()
    messages = [
        DataMessage("#s#x", ("g",), ServiceType.AGREED, index, bytes([index]) * index)
        for index in range(50)
    ]
    wire = b"".join(pair.server.send(message) for message in messages)
    pair.client.receive_data(wire[:1000])
    first = drain(pair.client)
    pair.client.receive_data(wire[1000:])
    assert first + drain(pair.client) == messages


def test_client_decodes_more_distinct_names_than_its_cache_holds() -> None:
    client = open_client()
    server = open_server()
    senders = [f"#s{index}#x" for index in range(5000)]
    client.receive_data(
        b"".join(
            server.send(DataMessage(sender, (), ServiceType.FIFO, 0, b"")) for sender in senders
        )
    )
    events = drain(client)
    assert [event.sender for event in events if isinstance(event, DataMessage)] == senders


def test_client_refuses_a_message_over_its_cap_from_the_header_alone() -> None:
    client = open_client(max_message_size=1000)
    header = (
        hx("90 00 00 80")
        + name32("#s#x")
        + hx("00 00 00 00 80 00 00 80")
        + struct.pack("<i", 1000 - 48 + 1)
    )
    client.receive_data(header)
    with pytest.raises(RemoteProtocolError, match="over the limit of 1000"):
        client.next_event()
    assert client.next_event() is CLOSED


@pytest.mark.parametrize(
    ("type_", "match"),
    [
        (hx("80 00 00 80"), "no kind"),
        (hx("80 00 01 80"), "no kind"),  # a client's JOIN echoed back
        (hx("80 13 00 80"), "exactly one CAUSED_BY"),
        (hx("80 10 00 80"), "exactly one CAUSED_BY"),
    ],
)
def test_client_refuses_types_a_daemon_never_sends(type_: bytes, match: str) -> None:
    client = open_client()
    client.receive_data(type_ + name32("g") + hx("00 00 00 00 80 00 00 80 00 00 00 00"))
    with pytest.raises(RemoteProtocolError, match=match):
        client.next_event()


def test_client_eof_inside_a_message_is_an_error() -> None:
    client = open_client()
    client.receive_data(hx("90 00 00 80"))
    client.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed the connection"):
        client.next_event()


# --- [What a daemon refuses]: the checks on the daemon side --------------------------------------


def header(
    type_: int, *, sender: bytes = name32(ME), count: int = 1, hint: int = 0x80000080, size: int = 0
) -> bytes:
    return struct.pack("<I32siIi", type_ | 0x80000080, sender, count, hint, size)


BAD_HEADERS = [
    ("AGREED|SAFE", header(0x30), "service bits"),
    ("SELF_DISCARD alone", header(0x40), "service bits"),
    ("JOIN|AGREED", header(0x10010), "service bits"),
    ("no bit", header(0), "service bits"),
    ("JOIN|LEAVE", header(0x30000), "service bits"),
    ("GROUPS_MESS|AGREED", header(0x80010), "hazard: .*GROUPS_MESS"),
    ("RETRANSMIT|AGREED", header(0x4010), "daemon-internal"),
    ("REG_MEMB|AGREED", header(0x1010), "unknown bits"),
    ("101 groups", header(0x10, count=101), "num_groups"),
    ("-1 groups", header(0x10, count=-1), "num_groups"),
    ("hint with foreign bits", header(0x10, hint=0x81000080), "hint"),
    ("hint with low bit", header(0x10, hint=0x80000081), "hint"),
    ("negative data_len", header(0x10, size=-1), "data_len"),
    ("data_len over 144000", header(0x10, size=144001, count=0), "data_len"),
    ("body over 143952", header(0x10, size=143921, count=1), "size"),
    ("over the 140000 cap", header(0x10, size=140000 - 48 - 32 + 1), "size cap"),
    ("JOIN with 0 groups", header(0x10000, count=0), "hazard: JOIN names 0"),
    ("LEAVE with 0 groups", header(0x20000, count=0), "hazard: LEAVE names 0"),
    ("JOIN with 2 groups", header(0x10000, count=2), "JOIN names 2"),
    ("another's sender", header(0x10, sender=name32("#bob#localhost"), size=9), "sender field"),
]


@pytest.mark.parametrize(("what", "wire", "match"), BAD_HEADERS, ids=[b[0] for b in BAD_HEADERS])
def test_server_refuses_bad_headers_before_the_body(what: str, wire: bytes, match: str) -> None:
    server = open_server()
    server.receive_data(wire)  # the header alone: the check must not wait for the body
    with pytest.raises(RemoteProtocolError, match=match):
        server.next_event()
    assert server.state is ServerState.CLOSED
    assert server.next_event() is CLOSED


@pytest.mark.parametrize(
    ("sender", "ok"),
    [
        (name32(ME), True),
        (name32(ME)[:31] + b"X", True),  # byte 31 is forced to NUL
        (ME.encode() + b"\0garbage".ljust(16, b"?"), True),
        (name32("#bob#localhost"), False),
        (name32("#alice#otherhost"), False),
        (name32("#alice#localhost2"), False),
        (b"#" * 32, False),
        (bytes(32), False),
    ],
)
def test_server_checks_the_sender_field(sender: bytes, ok: bool) -> None:
    server = open_server()
    server.receive_data(header(0x10000, sender=sender) + name32("g"))
    if ok:
        assert drain(server) == [Join("g")]
    else:
        with pytest.raises(RemoteProtocolError, match=r"sender field"):
            server.next_event()


def test_server_refuses_a_group_name_with_no_nul() -> None:
    server = open_server()
    server.receive_data(header(0x10, size=1) + b"g" * 32 + b"x")
    with pytest.raises(RemoteProtocolError, match=r"hazard: .*no NUL"):
        server.next_event()


@pytest.mark.parametrize(("kind", "event"), [(0x10000, Join), (0x20000, Leave)])
@pytest.mark.parametrize("name", ["a b", "#priv", "tab\there", "\x7f"])
def test_server_takes_any_group_name_a_real_daemon_takes(
    kind: int, event: type[Join] | type[Leave], name: str
) -> None:
    """Real Spread joins names no client library sends (docs/design/spread-protocol.md#names)."""
    server = open_server()
    server.receive_data(header(kind) + name32(name))
    got = server.next_event()
    assert type(got) is event
    assert got.group == name


def test_server_refuses_a_join_of_the_empty_name() -> None:
    server = open_server()
    server.receive_data(header(0x10000) + name32(""))
    with pytest.raises(RemoteProtocolError, match="empty group name"):
        server.next_event()


def test_server_passes_any_destination_name_and_zero_groups_through() -> None:
    server = open_server()
    server.receive_data(header(0x10, count=2, size=1) + name32("a b") + name32("\x7f") + b"!")
    server.receive_data(header(0x01, count=0))
    assert drain(server) == [
        IncomingMulticast(("a b", "\x7f"), b"!", ServiceType.AGREED, 0, hx("80 00 00 80"), ME),
        IncomingMulticast((), b"", ServiceType.UNRELIABLE, 0, hx("80 00 00 80"), ME),
    ]


def test_server_accepts_the_largest_message_under_the_cap() -> None:
    server = open_server()
    size = 140000 - 48 - 32
    server.receive_data(header(0x20, size=size) + name32("g") + b"\xaa" * size)
    (event,) = drain(server)
    assert isinstance(event, IncomingMulticast)
    assert len(event.data) == size


def test_server_eof_inside_a_message_is_an_error_and_clean_eof_closes() -> None:
    server = open_server()
    server.receive_data(header(0x10000))
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed the connection"):
        server.next_event()
    server = open_server()
    server.receive_data(b"")
    assert server.next_event() is CLOSED


def test_server_waits_for_the_daemon_between_handshake_steps() -> None:
    server = ServerSession()
    server.receive_data(hx("05 00 01 01 01") + b"a" + b"NULL".ljust(90, b"\0"))
    assert isinstance(server.next_event(), Hello)
    assert server.next_event() is NEED_DATA  # the auth choice waits for auth_list()
    assert server.next_event() is NEED_DATA
    server.auth_list()
    assert server.next_event() == AuthChoice(("NULL",))
    assert server.next_event() is NEED_DATA  # and now for accept()


def test_forwarding_keeps_the_destination_bytes_as_received() -> None:
    # the real daemon forwards the group block unchanged, bytes after a NUL included
    server = open_server()
    block = b"g\0junk".ljust(32, b"\0") + name32("#bob#x")
    server.receive_data(header(0x10, count=2, size=2) + block + b"hi")
    (incoming,) = drain(server)
    assert isinstance(incoming, IncomingMulticast)
    assert incoming.groups == ("g", "#bob#x")
    assert encode_forward(incoming)[48:112] == block
    rebuilt = IncomingMulticast(
        incoming.groups, b"hi", incoming.service, 0, incoming.hint_raw, incoming.sender
    )
    assert rebuilt == incoming  # groups_raw is not part of equality
    assert encode_forward(rebuilt)[48:112] == name32("g") + name32("#bob#x")


def test_encoding_misuse_is_local() -> None:
    with pytest.raises(LocalProtocolError, match="not a daemon -> client message"):
        encode_daemon_message(Join("g"))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="not a client command"):
        open_client().send(SelfLeave("g"))  # type: ignore[arg-type]
    broken = RegularMembership("g", GroupId(1, 2, 3), (), Cause.JOIN, (("#a#b",),), 1)
    with pytest.raises(LocalProtocolError, match="local vs set"):
        encode_daemon_message(broken)
    with pytest.raises(LocalProtocolError, match="local vs set"):
        encode_daemon_message(broken, legacy_membership=True)
    with pytest.raises(LocalProtocolError):
        encode_daemon_message(SelfLeave("x" * 32))
    with pytest.raises(LocalProtocolError):
        encode_daemon_message(SelfLeave("\u20ac"))
    with pytest.raises(LocalProtocolError):
        encode_daemon_message(DataMessage("#a#b", (), ServiceType.AGREED, 1 << 15, b""))
    server = ServerSession()
    server.receive_data(hx("05 00 01 01 01") + b"a")
    drain(server)
    with pytest.raises(LocalProtocolError, match="Latin-1"):
        server.auth_list(["\u20ac"])
    server.auth_list()
    server.receive_data(b"NULL".ljust(90, b"\0"))
    drain(server)
    with pytest.raises(LocalProtocolError, match="Latin-1"):
        server.accept("#\u20ac#x")
