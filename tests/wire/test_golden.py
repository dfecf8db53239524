"""The codecs against bytes captured from a real Spread 5.0.1 daemon (golden_5_0_1.py).

Three checks per message: the client session decodes what the daemon sent into the
expected event; the server session encodes that event back into exactly the daemon's
bytes; and what the probe sent is exactly what our client session encodes, and decodes
on our server into the command it was. For data messages the server's forwarding path
(decode the sender's bytes, ``encode_forward``) must reproduce the real daemon's output
byte for byte, including a big-endian sender's hint passed through untouched.

The gid fields carry the capture run's ring ids; they are parameters of the expected
events (``LOCAL_RING`` and ``NET_RING`` below), read once from the bytes' known layout.
"""

from __future__ import annotations

import pytest
from golden_5_0_1 import C2D, D2C, NETWORK, SINGLE, record
from wire_helpers import drain, open_client, open_server

from spreadq.wire import (
    CLOSED,
    NEED_DATA,
    Accepted,
    AuthChoice,
    Cause,
    ClientCommand,
    ClientSession,
    DaemonMessage,
    DataMessage,
    Disconnect,
    GroupId,
    Hello,
    IncomingMulticast,
    Join,
    Leave,
    Multicast,
    RegularMembership,
    RejectCode,
    SelfLeave,
    ServerSession,
    ServiceType,
    TransitionalMembership,
    encode_forward,
)

LOCAL_PROC, LOCAL_TIME = 482711334, 1795838667  # one daemon named "localhost"
NET_PROC, NET_TIME, NET_TIME_2 = 1552775919, 1795838733, 1795838766  # d1 + d2, then d1 alone
AGREED, SAFE, SD = ServiceType.AGREED, ServiceType.SAFE, ServiceType.SELF_DISCARD


def pg(name: str, daemon: str = "localhost") -> str:
    return f"#{name}#{daemon}"


def reg(
    index: int, members: tuple[str, ...], changed: str, cause: Cause = Cause.JOIN, *, net: int = 0
) -> RegularMembership:
    proc, time = (
        (LOCAL_PROC, LOCAL_TIME) if not net else (NET_PROC, (NET_TIME, NET_TIME_2)[net - 1])
    )
    return RegularMembership("grp", GroupId(proc, time, index), members, cause, ((changed,),), 0)


A, B, C, E, D, N = (pg(n) for n in ("alice", "bob", "carol", "erin", "dave", "nomemb"))

# --- what the daemon sent, and the event it is ------------------------------------------

DAEMON_MESSAGES: list[tuple[str, DaemonMessage]] = [
    ("c. alice join grp: alice receives", reg(1, (A,), A)),
    ("d. bob join grp: alice receives", reg(2, (A, B), B)),
    ("d. bob join grp: bob receives", reg(2, (A, B), B)),
    (
        "e. AGREED 0x1234 hello to grp: alice receives",
        DataMessage(A, ("grp",), AGREED, 0x1234, b"hello"),
    ),
    (
        "e. AGREED 0x1234 hello to grp: bob receives",
        DataMessage(A, ("grp",), AGREED, 0x1234, b"hello"),
    ),
    (
        "e. SAFE|SELF_DISCARD 0x1234 hello to grp: bob receives",
        DataMessage(A, ("grp",), SAFE | SD, 0x1234, b"hello"),
    ),
    (
        "e. AGREED multigroup [grp,#bob#localhost]: bob receives",
        DataMessage(A, ("grp", B), AGREED, 0x1234, b"hello"),
    ),
    (
        "e. AGREED multigroup [grp,#bob#localhost]: alice receives",
        DataMessage(A, ("grp", B), AGREED, 0x1234, b"hello"),
    ),
    ("f. AGREED mess_type -1: bob receives", DataMessage(A, ("grp",), AGREED | SD, -1, b"x")),
    (
        "f. AGREED mess_type -32768: bob receives",
        DataMessage(A, ("grp",), AGREED | SD, -32768, b"x"),
    ),
    ("g. bob leave grp: bob receives (self-leave)", SelfLeave("grp")),
    ("g. bob leave grp: alice receives", reg(3, (A,), B, Cause.LEAVE)),
    ("h. bob rejoin grp: alice receives", reg(4, (A, B), B)),
    ("h. bob rejoin grp: bob receives", reg(4, (A, B), B)),
    ("h. bob disconnect: alice receives", reg(5, (A,), B, Cause.DISCONNECT)),
    ("h. carol join grp: alice receives", reg(6, (A, C), C)),
    ("h. carol join grp: carol receives", reg(6, (A, C), C)),
    (
        "h. carol closes socket (FIN) without KILL: alice receives",
        reg(7, (A,), C, Cause.DISCONNECT),
    ),
    ("h. erin join grp: alice receives", reg(8, (A, E), E)),
    ("h. erin join grp: erin receives", reg(8, (A, E), E)),
    ("h. erin resets socket (RST) without KILL: alice receives", reg(9, (A,), E, Cause.DISCONNECT)),
    ("i. dave(BE) join: alice receives", reg(10, (A, D), D)),
    ("i. dave(BE) join: dave receives", reg(10, (A, D), D)),
    (
        "i. dave(BE) AGREED 0x1234 hello: alice(LE) receives",
        DataMessage(D, ("grp",), AGREED, 0x1234, b"hello", endian_mismatch=True),
    ),
    (
        "i. dave(BE) AGREED 0x1234 hello: dave receives",
        DataMessage(D, ("grp",), AGREED, 0x1234, b"hello", endian_mismatch=True),
    ),
    (
        "i. alice(LE) AGREED 0x1234 hi: alice receives",
        DataMessage(A, ("grp",), AGREED, 0x1234, b"hi"),
    ),
    (
        "i. alice(LE) AGREED 0x1234 hi: dave(BE) receives",
        DataMessage(A, ("grp",), AGREED, 0x1234, b"hi"),
    ),
    ("i. dave(BE) disconnect: alice receives", reg(11, (A,), D, Cause.DISCONNECT)),
    ("k. no-membership join: alice receives", reg(12, (A, N), N)),
    ("k. no-membership session receives data", DataMessage(A, ("grp",), AGREED | SD, 7, b"data")),
    ("k. no-membership disconnect: alice receives", reg(13, (A,), N, Cause.DISCONNECT)),
    # two daemons d1 and d2
    (
        "n. alice@d1 join grp: alice receives",
        reg(1, (pg("alice", "d1"),), pg("alice", "d1"), net=1),
    ),
    (
        "n. bob@d2 join grp: alice receives",
        reg(2, (pg("alice", "d1"), pg("bob", "d2")), pg("bob", "d2"), net=1),
    ),
    (
        "n. alice AGREED cross-daemon: bob(d2) receives",
        DataMessage(pg("alice", "d1"), ("grp",), AGREED, 0x1234, b"hello"),
    ),
    (
        "n. d2 killed: alice receives #1",
        TransitionalMembership("grp", GroupId(NET_PROC, NET_TIME, 2)),
    ),
    (
        "n. d2 killed: alice receives #2",
        reg(1, (pg("alice", "d1"),), pg("alice", "d1"), Cause.NETWORK, net=2),
    ),
    (
        "n. d2 restarted + carol join: alice receives #1",
        reg(2, (pg("alice", "d1"), pg("carol", "d2")), pg("carol", "d2"), net=2),
    ),
]
IDS = [label for label, _ in DAEMON_MESSAGES]


def test_every_daemon_message_of_the_capture_is_in_the_table() -> None:
    captured = {
        label
        for table in (SINGLE, NETWORK)
        for label, parts in table.items()
        if parts[0][0] == D2C and len(record(label)) >= 48
    }
    covered = set(IDS)
    # the rest are repeats of a covered message at another receiver
    repeats = {
        "n. bob@d2 join grp: bob receives",
        "n. alice AGREED cross-daemon: alice receives",
        "n. carol@d2 join grp: carol receives",
    }
    assert captured - covered == repeats
    for label in repeats:
        twin = next(other for other in covered if record(other) == record(label))
        assert twin


@pytest.mark.parametrize(("label", "event"), DAEMON_MESSAGES, ids=IDS)
def test_client_decodes_the_daemon_bytes(label: str, event: DaemonMessage) -> None:
    client = open_client()
    client.receive_data(record(label))
    assert drain(client) == [event]


@pytest.mark.parametrize(("label", "event"), DAEMON_MESSAGES, ids=IDS)
def test_client_decodes_the_daemon_bytes_byte_by_byte(label: str, event: DaemonMessage) -> None:
    client = open_client()
    events = []
    for byte in record(label):
        client.receive_data(bytes([byte]))
        events += drain(client)
    assert events == [event]


@pytest.mark.parametrize(("label", "event"), DAEMON_MESSAGES, ids=IDS)
def test_server_encodes_exactly_the_daemon_bytes(label: str, event: DaemonMessage) -> None:
    server = open_server()
    wire = record(label)
    if isinstance(event, DataMessage):
        # the daemon passes the sender's hint bytes through (a BE sender's stay BE)
        assert server.encode_data(event, hint_raw=wire[40:44]) == wire
    assert server.send(event) == wire


# --- what the probe sent, and the command it is -----------------------------------------

SENT: list[tuple[str, str, ClientCommand]] = [
    ("c. alice join grp: sent", A, Join("grp")),
    ("d. bob join grp: sent", B, Join("grp")),
    (
        "e. AGREED 0x1234 hello to grp: sent by alice",
        A,
        Multicast(("grp",), b"hello", AGREED, 0x1234),
    ),
    (
        "e. SAFE|SELF_DISCARD 0x1234 hello to grp: sent by alice",
        A,
        Multicast(("grp",), b"hello", SAFE | SD, 0x1234),
    ),
    (
        "e. AGREED multigroup [grp,#bob#localhost]: sent by alice",
        A,
        Multicast(("grp", B), b"hello", AGREED, 0x1234),
    ),
    ("f. AGREED mess_type -1: sent by alice", A, Multicast(("grp",), b"x", AGREED | SD, -1)),
    (
        "f. AGREED mess_type -32768: sent by alice",
        A,
        Multicast(("grp",), b"x", AGREED | SD, -32768),
    ),
    ("g. bob leave grp: sent", B, Leave("grp")),
    ("h. bob rejoin grp: sent", B, Join("grp")),
    ("h. bob disconnect (KILL_MESS): sent", B, Disconnect()),
    ("h. carol join grp: sent", C, Join("grp")),
    ("h. erin join grp: sent", E, Join("grp")),
    ("i. alice(LE) AGREED 0x1234 hi: sent", A, Multicast(("grp",), b"hi", AGREED, 0x1234)),
    ("j. empty private name: disconnect sent", pg("r9109-11"), Disconnect()),
    ("k. no-membership session join grp: sent", N, Join("grp")),
    (
        "k. alice AGREED to grp with no-memb member: sent",
        A,
        Multicast(("grp",), b"data", AGREED | SD, 7),
    ),
    ("z. alice disconnect: sent", A, Disconnect()),
    ("n. bob@d2 join grp: sent", pg("bob", "d2"), Join("grp")),
    (
        "n. alice AGREED cross-daemon: sent",
        pg("alice", "d1"),
        Multicast(("grp",), b"hello", AGREED, 0x1234),
    ),
    ("n. carol@d2 join grp: sent", pg("carol", "d2"), Join("grp")),
]
BIG_ENDIAN_SENT: list[tuple[str, str, ClientCommand]] = [
    ("i. dave(BE) join grp: sent (big-endian header)", D, Join("grp")),
    ("i. dave(BE) AGREED 0x1234 hello: sent", D, Multicast(("grp",), b"hello", AGREED, 0x1234)),
    ("i. dave(BE) disconnect: sent", D, Disconnect()),
]


@pytest.mark.parametrize(("label", "group", "command"), SENT, ids=[s[0] for s in SENT])
def test_client_encodes_exactly_what_the_probe_sent(
    label: str, group: str, command: ClientCommand
) -> None:
    client = open_client(group)
    assert client.send(command) == record(label)


@pytest.mark.parametrize(
    ("label", "group", "command"),
    SENT + BIG_ENDIAN_SENT,
    ids=[s[0] for s in SENT + BIG_ENDIAN_SENT],
)
def test_server_decodes_what_the_probe_sent(label: str, group: str, command: ClientCommand) -> None:
    server = open_server(group)
    wire = record(label)
    server.receive_data(wire)
    event, *rest = drain(server)
    if isinstance(command, Multicast):
        assert event == IncomingMulticast(
            command.groups, command.data, command.service, command.mess_type, wire[40:44], group
        )
    else:
        assert event == command
    assert rest == ([CLOSED] if isinstance(command, Disconnect) else [])


FORWARDED = [
    (
        "e. AGREED 0x1234 hello to grp: sent by alice",
        A,
        "e. AGREED 0x1234 hello to grp: bob receives",
    ),
    (
        "e. SAFE|SELF_DISCARD 0x1234 hello to grp: sent by alice",
        A,
        "e. SAFE|SELF_DISCARD 0x1234 hello to grp: bob receives",
    ),
    (
        "e. AGREED multigroup [grp,#bob#localhost]: sent by alice",
        A,
        "e. AGREED multigroup [grp,#bob#localhost]: bob receives",
    ),
    ("f. AGREED mess_type -1: sent by alice", A, "f. AGREED mess_type -1: bob receives"),
    ("f. AGREED mess_type -32768: sent by alice", A, "f. AGREED mess_type -32768: bob receives"),
    (
        "i. dave(BE) AGREED 0x1234 hello: sent",
        D,
        "i. dave(BE) AGREED 0x1234 hello: alice(LE) receives",
    ),
    ("i. alice(LE) AGREED 0x1234 hi: sent", A, "i. alice(LE) AGREED 0x1234 hi: dave(BE) receives"),
    (
        "k. alice AGREED to grp with no-memb member: sent",
        A,
        "k. no-membership session receives data",
    ),
]


@pytest.mark.parametrize(("sent", "group", "received"), FORWARDED, ids=[f[0] for f in FORWARDED])
def test_forwarding_reproduces_the_real_daemon(sent: str, group: str, received: str) -> None:
    server = open_server(group)
    server.receive_data(record(sent))
    (incoming,) = drain(server)
    assert isinstance(incoming, IncomingMulticast)
    assert encode_forward(incoming) == record(received)


# --- handshake --------------------------------------------------------------------------

CONNECTS = [
    ("a. alice connect", "alice", True, A),
    ("d. bob connect", "bob", True, B),
    ("h. carol connect", "carol", True, C),
    ("h. erin connect", "erin", True, E),
    ("i. dave(BE) connect", "dave", True, D),
    ("j. empty private name", "", True, pg("r9109-11")),
    ("k. no-membership session", "nomemb", False, N),
    ("n. alice@d1 connect", "alice", True, pg("alice", "d1")),
    ("n. bob@d2 connect", "bob", True, pg("bob", "d2")),
]


@pytest.mark.parametrize(
    ("prefix", "name", "membership", "group"), CONNECTS, ids=[c[0] for c in CONNECTS]
)
def test_client_handshake_matches_the_capture(
    prefix: str, name: str, membership: bool, group: str
) -> None:
    client = ClientSession(name, membership=membership)
    assert client.start() == record(f"{prefix}: hello")
    client.receive_data(record(f"{prefix}: auth list"))
    assert client.next_event() is NEED_DATA
    assert client.data_to_send() == record(f"{prefix}: auth choice")
    client.receive_data(record(f"{prefix}: accept"))
    assert client.next_event() == Accepted(group, (5, 0, 1))


@pytest.mark.parametrize(
    ("prefix", "name", "membership", "group"), CONNECTS, ids=[c[0] for c in CONNECTS]
)
def test_server_handshake_matches_the_capture(
    prefix: str, name: str, membership: bool, group: str
) -> None:
    server = ServerSession()
    server.receive_data(record(f"{prefix}: hello"))
    assert server.next_event() == Hello((5, 0, 1), name, membership, False)
    assert server.auth_list() == record(f"{prefix}: auth list")
    server.receive_data(record(f"{prefix}: auth choice"))
    assert server.next_event() == AuthChoice(("NULL",))
    assert server.accept(group) == record(f"{prefix}: accept")


@pytest.mark.parametrize(
    ("sent", "reply"),
    [
        ("b. reject illegal name 'a b': hello", "b. reject illegal name 'a b': reply"),
        ("b. reject version 3.0.0: hello", "b. reject version 3.0.0: reply"),
        (
            "b. reject version 3.0 (only 2 version bytes sent): sent",
            "b. reject version 3.0 (only 2 version bytes sent): reply",
        ),
        ("b. reject 11-char name: hello", "b. reject 11-char name: reply"),
    ],
)
def test_server_refuses_hellos_as_the_real_daemon(sent: str, reply: str) -> None:
    server = ServerSession()
    server.receive_data(record(sent))
    hello = server.next_event()
    assert isinstance(hello, Hello)
    assert hello.refusal is not None
    assert server.reject(hello.refusal) == record(reply)


def test_server_duplicate_name_is_the_daemons_call() -> None:
    server = ServerSession()
    server.receive_data(record("b. reject duplicate name: hello"))
    assert server.next_event() == Hello((5, 0, 1), "alice", True, False)
    assert server.reject(RejectCode.REJECT_NOT_UNIQUE) == record("b. reject duplicate name: reply")


def test_server_refuses_a_disallowed_auth_method_as_the_real_daemon() -> None:
    prefix = "b. disallowed auth method IP"
    server = ServerSession()
    server.receive_data(record(f"{prefix}: hello"))
    drain(server)
    assert server.auth_list() == record(f"{prefix}: auth list")
    server.receive_data(record(f"{prefix}: auth choice"))
    choice = server.next_event()
    assert choice == AuthChoice(("IP",), RejectCode.REJECT_AUTH)
    assert server.reject(RejectCode.REJECT_AUTH) == record(f"{prefix}: reply")


def test_pipelined_hello_and_auth_is_accepted_unlike_the_real_daemon() -> None:
    # The real daemon answers fb (a documented quirk, docs/design/spread-protocol.md#the-handshake);
    # spreadq's daemon is lenient and treats the extra bytes as the auth choice
    # (docs/design/spread-protocol.md#the-handshake).
    assert record("b. pipelined hello+auth choice (one write): reply") == b"\xfb"
    server = ServerSession()
    server.receive_data(record("b. pipelined hello+auth choice (one write): sent", C2D))
    assert drain(server) == [Hello((5, 0, 1), "pipe", True, False)]
    server.auth_list()
    assert drain(server) == [AuthChoice(("NULL",))]
