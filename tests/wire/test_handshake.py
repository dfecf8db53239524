"""The handshake in both roles: accept and reject paths, every reject code, version rules.

Also the transition tables themselves: every ``(state, input)`` pair is either in the
table or refused with the right error kind (h2's test_state_machines idea).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from wire_helpers import drain, hx

from spreadq.errors import InvalidName, LocalProtocolError, RemoteProtocolError
from spreadq.wire import (
    CLIENT_TRANSITIONS,
    CLOSED,
    NEED_DATA,
    SERVER_TRANSITIONS,
    Accepted,
    AuthChoice,
    ClientInput,
    ClientSession,
    ClientState,
    Hello,
    Join,
    RejectCode,
    Rejected,
    ServerInput,
    ServerSession,
    ServerState,
)
from spreadq.wire.handshake import describe_tables, transition
from spreadq.wire.session import describe_kinds

WIRE_REJECTS = [
    RejectCode.REJECT_QUOTA,
    RejectCode.REJECT_NO_NAME,
    RejectCode.REJECT_ILLEGAL_NAME,
    RejectCode.REJECT_NOT_UNIQUE,
    RejectCode.REJECT_VERSION,
    RejectCode.REJECT_AUTH,
]

# --- client ------------------------------------------------------------------------------


def test_client_happy_path_bytes() -> None:
    client = ClientSession("hs003542")
    assert client.start() == hx("05 00 01 01 08") + b"hs003542"
    assert client.state is ClientState.HELLO_SENT
    client.receive_data(hx("05") + b"NULL ")
    assert client.next_event() is NEED_DATA
    assert client.data_to_send() == b"NULL" + bytes(86)
    assert client.data_to_send() == b""
    assert client.state.name == "AUTH_SENT"  # (mypy keeps the narrowed literal)
    client.receive_data(hx("01 05 00 01 13") + b"#hs003542#localhost")
    assert client.next_event() == Accepted("#hs003542#localhost", (5, 0, 1))
    assert client.state.name == "OPEN"
    assert client.private_group == "#hs003542#localhost"
    assert client.daemon_version == (5, 0, 1)
    assert client.next_event() is NEED_DATA


def test_client_handshake_in_one_byte_chunks() -> None:
    client = ClientSession("")
    client.start()
    events = []
    for byte in hx("05") + b"NULL " + hx("01 05 00 01 12") + b"#r1439-9#localhost":
        client.receive_data(bytes([byte]))
        events += drain(client)
    assert events == [Accepted("#r1439-9#localhost", (5, 0, 1))]
    assert client.data_to_send() == b"NULL" + bytes(86)


@pytest.mark.parametrize(
    ("membership", "priority", "flags"),
    [(True, False, 0x01), (False, False, 0x00), (True, True, 0x11), (False, True, 0x10)],
)
def test_client_hello_flags(membership: bool, priority: bool, flags: int) -> None:
    hello = ClientSession("a", membership=membership, priority=priority).start()
    assert hello == bytes([5, 0, 1, flags, 1]) + b"a"


@pytest.mark.parametrize("code", WIRE_REJECTS)
def test_client_reject_in_place_of_the_auth_list(code: RejectCode) -> None:
    client = ClientSession("a")
    client.start()
    client.receive_data(int(code).to_bytes(1, "little", signed=True))
    assert client.next_event() == Rejected(code)
    assert client.state is ClientState.CLOSED
    assert client.next_event() is CLOSED
    assert client.data_to_send() == b""


@pytest.mark.parametrize("code", WIRE_REJECTS)
def test_client_reject_in_place_of_the_accept(code: RejectCode) -> None:
    client = ClientSession("a")
    client.start()
    client.receive_data(b"\x05NULL " + int(code).to_bytes(1, "little", signed=True))
    assert client.next_event() == Rejected(code)
    assert client.next_event() is CLOSED


@pytest.mark.parametrize("auth_list", [b"\x03IP ", b"\x00", b"\x09NULLX FOO"])
def test_client_refuses_locally_when_null_is_not_offered(auth_list: bytes) -> None:
    client = ClientSession("a")
    client.start()
    client.receive_data(auth_list)
    assert client.next_event() == Rejected(RejectCode.REJECT_AUTH)
    assert client.data_to_send() == b""
    assert client.state is ClientState.CLOSED


def test_client_accepts_null_among_other_methods() -> None:
    client = ClientSession("a")
    client.start()
    client.receive_data(b"\x0aIP NULL FO")
    assert client.next_event() is NEED_DATA
    assert client.data_to_send()[:4] == b"NULL"


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"\x5b" + bytes(91), "over 90"),
        (b"\x05NULL \x02", "neither accept"),
        (b"\x05NULL \xf6", "unknown reject code"),
        (b"\x05NULL \xfe", "unknown reject code"),  # COULD_NOT_CONNECT is library-only
        (b"\x05NULL \x01\x05\x00\x01\x20" + b"#" * 32, "over 31"),
    ],
)
def test_client_refuses_malformed_answers(answer: bytes, match: str) -> None:
    client = ClientSession("a")
    client.start()
    client.receive_data(answer)
    with pytest.raises(RemoteProtocolError, match=match):
        client.next_event()
    assert client.state is ClientState.CLOSED
    assert client.next_event() is CLOSED


@pytest.mark.parametrize("received", [b"", b"\x05NUL", b"\x05NULL ", b"\x05NULL \x01\x05"])
def test_client_eof_during_handshake_is_connection_closed(received: bytes) -> None:
    client = ClientSession("a")
    client.start()
    client.receive_data(received)
    client.receive_data(b"")
    if received in (b"", b"\x05NULL "):
        assert drain(client) == [Rejected(RejectCode.CONNECTION_CLOSED), CLOSED]
    else:
        with pytest.raises(RemoteProtocolError, match="closed the connection"):
            client.next_event()
    assert client.next_event() is CLOSED


def test_client_refuses_a_daemon_older_than_3() -> None:
    client = ClientSession("a")
    client.start()
    client.receive_data(b"\x05NULL \x01\x02\x09\x09\x04#a#x")
    assert client.next_event() == Rejected(RejectCode.REJECT_VERSION)


def test_client_picks_membership_parser_from_daemon_major() -> None:
    client = ClientSession("a")
    client.start()
    client.receive_data(b"\x05NULL \x01\x04\x04\x00\x04#a#x")
    assert client.next_event() == Accepted("#a#x", (4, 4, 0))


def test_client_315_skips_auth_and_reads_patch() -> None:
    client = ClientSession("a", version=(3, 15, 0))
    assert client.start() == hx("03 0f 00 01 01") + b"a"
    client.receive_data(hx("01 05 00 01 04") + b"#a#x")
    assert client.next_event() == Accepted("#a#x", (5, 0, 1))
    assert client.data_to_send() == b""


def test_client_314_sends_no_patch_and_reads_none() -> None:
    client = ClientSession("a", version=(3, 14, 9))
    assert client.start() == hx("03 0e 01 01") + b"a"
    client.receive_data(hx("01 05 00 04") + b"#a#x")
    assert client.next_event() == Accepted("#a#x", (5, 0, 0))


def test_client_misuse_is_local() -> None:
    client = ClientSession("a")
    with pytest.raises(LocalProtocolError):
        client.send(Join("g"))
    client.start()
    with pytest.raises(LocalProtocolError):
        client.start()
    client.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        client.receive_data(b"x")


@pytest.mark.parametrize("name", ["", "a", "abcdefghij", "$~", "Z_9-x.y"])
def test_legal_private_names(name: str) -> None:
    assert ClientSession(name).start()[5:] == name.encode()


@pytest.mark.parametrize("name", ["abcdefghijk", "a#b", "a b", "a!", 'a"', "\xe9", "\x7f", "a\0"])
def test_illegal_private_names(name: str) -> None:
    with pytest.raises(InvalidName):
        ClientSession(name)


# --- server ------------------------------------------------------------------------------


def test_server_happy_path_bytes() -> None:
    server = ServerSession()
    server.receive_data(hx("05 00 01 01 08") + b"hs003542")
    assert server.next_event() == Hello((5, 0, 1), "hs003542", True, False)
    assert server.next_event() is NEED_DATA
    assert server.auth_list() == b"\x05NULL "
    server.receive_data(b"NULL" + bytes(86))
    assert server.next_event() == AuthChoice(("NULL",))
    assert server.accept("#hs003542#localhost") == hx("01 05 00 01 13") + b"#hs003542#localhost"
    assert server.state is ServerState.OPEN
    assert server.private_group == "#hs003542#localhost"


def test_server_buffers_a_hello_sent_in_pieces() -> None:
    server = ServerSession()
    events = []
    for byte in hx("05 00 01 11 03") + b"abc":
        server.receive_data(bytes([byte]))
        events += drain(server)
    assert events == [Hello((5, 0, 1), "abc", True, True)]


def test_server_keeps_bytes_after_the_hello_for_the_next_step() -> None:
    # the real daemon answers fb here; spreadq's daemon is lenient
    # (docs/design/spread-protocol.md#the-handshake)
    server = ServerSession()
    server.receive_data(hx("05 00 01 01 04") + b"pipe" + b"NULL" + bytes(86))
    assert drain(server) == [Hello((5, 0, 1), "pipe", True, False)]
    server.auth_list()
    assert drain(server) == [AuthChoice(("NULL",))]


def test_server_auth_choice_and_first_join_in_one_write() -> None:
    # p11: the 90 bytes and the first JOIN arrive together
    server = ServerSession()
    server.receive_data(hx("05 00 01 01 01") + b"a")
    drain(server)
    server.auth_list()
    join = hx("80 00 01 80") + b"#a#x".ljust(32, b"\0") + hx("01 00 00 00 80 00 00 80 00 00 00 00")
    server.receive_data(b"NULL" + bytes(86) + join + b"g".ljust(32, b"\0"))
    assert drain(server) == [AuthChoice(("NULL",))]
    server.accept("#a#x")
    assert drain(server) == [Join("g")]


@pytest.mark.parametrize(
    ("hello", "version", "name", "refusal"),
    [
        (hx("03 00 00 01 04") + b"carl", (3, 0, 0), "", RejectCode.REJECT_VERSION),
        (hx("03 00"), (3, 0, 0), "", RejectCode.REJECT_VERSION),
        (hx("02 09"), (2, 9, 0), "", RejectCode.REJECT_VERSION),
        (hx("05 00 01 01 03") + b"a b", (5, 0, 1), "a b", RejectCode.REJECT_ILLEGAL_NAME),
        (hx("05 00 01 01 03") + b"a#b", (5, 0, 1), "a#b", RejectCode.REJECT_ILLEGAL_NAME),
        (hx("05 00 01 01 01 7f"), (5, 0, 1), "\x7f", RejectCode.REJECT_ILLEGAL_NAME),
        (hx("05 00 01 01 0b"), (5, 0, 1), "", RejectCode.REJECT_ILLEGAL_NAME),
        (hx("05 00 01 01 ff"), (5, 0, 1), "", RejectCode.REJECT_ILLEGAL_NAME),
    ],
)
def test_server_hello_refusals(
    hello: bytes, version: tuple[int, int, int], name: str, refusal: RejectCode
) -> None:
    server = ServerSession()
    server.receive_data(hello)
    event = server.next_event()
    assert isinstance(event, Hello)
    assert (event.version, event.private_name, event.refusal) == (version, name, refusal)
    with pytest.raises(LocalProtocolError, match="refused"):
        server.auth_list()
    with pytest.raises(LocalProtocolError, match="refused"):
        server.accept("#x#y")
    assert server.reject(refusal) == int(refusal).to_bytes(1, "little", signed=True)
    assert server.state is ServerState.CLOSED
    assert server.next_event() is CLOSED


@pytest.mark.parametrize("code", WIRE_REJECTS)
def test_server_sends_every_wire_reject_code(code: RejectCode) -> None:
    server = ServerSession()
    server.receive_data(hx("05 00 01 01 01") + b"a")
    drain(server)
    assert server.reject(code) == bytes([256 + int(code)])


def test_server_quota_reject_before_any_hello() -> None:
    server = ServerSession()
    assert server.reject(RejectCode.REJECT_QUOTA) == b"\xfd"
    assert server.next_event() is CLOSED


@pytest.mark.parametrize(
    "code", [RejectCode.ILLEGAL_SPREAD, RejectCode.COULD_NOT_CONNECT, RejectCode.CONNECTION_CLOSED]
)
def test_server_will_not_send_library_only_codes(code: RejectCode) -> None:
    server = ServerSession()
    with pytest.raises(LocalProtocolError):
        server.reject(code)


@pytest.mark.parametrize(
    ("block", "methods", "refused"),
    [
        (b"NULL".ljust(90, b"\0"), ("NULL",), False),
        (b"NULL".ljust(30, b"\0") * 2 + bytes(30), ("NULL", "NULL"), False),
        (b"IP".ljust(90, b"\0"), ("IP",), True),
        (b"FOO".ljust(30, b"\0") + b"NULL".ljust(60, b"\0"), ("FOO", "NULL"), True),
        (bytes(90), (), True),
    ],
)
def test_server_auth_choice_checks(block: bytes, methods: tuple[str, ...], refused: bool) -> None:
    server = ServerSession()
    server.receive_data(hx("05 00 01 01 01") + b"a")
    drain(server)
    server.auth_list()
    server.receive_data(block[:40])
    assert server.next_event() is NEED_DATA  # lenient: waits for all 90 bytes
    server.receive_data(block[40:])
    choice = server.next_event()
    assert choice == AuthChoice(methods, RejectCode.REJECT_AUTH if refused else None)
    if refused:
        with pytest.raises(LocalProtocolError):
            server.accept("#a#x")
        assert server.reject(RejectCode.REJECT_AUTH) == b"\xf7"
    else:
        assert server.accept("#a#x")[0] == 1


def test_server_315_client_gets_no_auth_exchange_and_a_patch_byte() -> None:
    server = ServerSession()
    server.receive_data(hx("03 0f 00 01 01") + b"a")
    hello = server.next_event()
    assert hello == Hello((3, 15, 0), "a", True, False)
    assert isinstance(hello, Hello)
    assert not hello.wants_auth
    with pytest.raises(LocalProtocolError, match="auth exchange"):
        server.auth_list()
    assert server.accept("#a#localhost") == hx("01 05 00 01 0c") + b"#a#localhost"


def test_server_314_client_sends_4_byte_hello_and_gets_no_patch() -> None:
    server = ServerSession()
    server.receive_data(hx("03 0e 01 01") + b"a")
    assert server.next_event() == Hello((3, 14, 0), "a", True, False)
    assert server.accept("#a#localhost") == hx("01 05 00 0c") + b"#a#localhost"


@pytest.mark.parametrize("version", [(3, 16, 0), (4, 4, 0), (9, 9, 9)])
def test_server_takes_any_new_version_through_auth(version: tuple[int, int, int]) -> None:
    server = ServerSession()
    server.receive_data(bytes([*version, 1, 1]) + b"a")
    hello = server.next_event()
    assert isinstance(hello, Hello)
    assert hello.refusal is None
    assert hello.wants_auth
    with pytest.raises(LocalProtocolError, match="auth list before"):
        server.accept("#a#x")
    assert server.auth_list(["NULL"]) == b"\x05NULL "


def test_server_misuse_is_local() -> None:
    server = ServerSession()
    with pytest.raises(LocalProtocolError):
        server.accept("#a#x")
    server.receive_data(hx("05 00 01 01 01") + b"a")
    drain(server)
    server.auth_list()
    with pytest.raises(LocalProtocolError):
        server.auth_list()
    server.receive_data(b"NULL".ljust(90, b"\0"))
    drain(server)
    with pytest.raises(LocalProtocolError):
        server.accept("")
    with pytest.raises(LocalProtocolError):
        server.accept("#" + "x" * 31)
    server.accept("#a#x")
    with pytest.raises(LocalProtocolError):
        server.reject(RejectCode.REJECT_AUTH)


def test_server_eof_before_open_closes_quietly() -> None:
    server = ServerSession()
    server.receive_data(hx("05 00"))
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="closed the connection"):
        server.next_event()
    server = ServerSession()
    server.receive_data(b"")
    assert server.next_event() is CLOSED


# --- the tables --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "event"), list(itertools.product(ClientState, ClientInput)), ids=str
)
def test_every_client_pair_is_defined_or_refused(state: ClientState, event: ClientInput) -> None:
    if (state, event) in CLIENT_TRANSITIONS:
        assert transition(CLIENT_TRANSITIONS, state, event, local=True) in ClientState
        return
    with pytest.raises(LocalProtocolError):
        transition(CLIENT_TRANSITIONS, state, event, local=True)
    with pytest.raises(RemoteProtocolError):
        transition(CLIENT_TRANSITIONS, state, event, local=False)


@pytest.mark.parametrize(
    ("state", "event"), list(itertools.product(ServerState, ServerInput)), ids=str
)
def test_every_server_pair_is_defined_or_refused(state: ServerState, event: ServerInput) -> None:
    if (state, event) in SERVER_TRANSITIONS:
        assert transition(SERVER_TRANSITIONS, state, event, local=True) in ServerState
        return
    with pytest.raises(LocalProtocolError):
        transition(SERVER_TRANSITIONS, state, event, local=True)


def test_every_state_is_reachable_and_closed_is_terminal() -> None:
    for table, states, closed in (
        (CLIENT_TRANSITIONS, ClientState, ClientState.CLOSED),
        (SERVER_TRANSITIONS, ServerState, ServerState.CLOSED),
    ):
        targets = set(table.values())
        sources = {state for state, _ in table}
        first = next(iter(states))
        assert set(states) - targets == {first}
        assert all(target is closed for (state, _), target in table.items() if state is closed)
        assert sources == set(states)


def test_describe_tables_draws_every_state() -> None:
    text = describe_tables()
    for state in [*ClientState, *ServerState]:
        assert state.name in text


def test_architecture_doc_matches_the_tables() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text()
    generated = doc.split("<!-- generated: start -->\n")[1].split("<!-- generated: end -->")[0]
    expected = (
        describe_tables()
        + "\n### Kinds of daemon messages, tried in this order\n\n"
        + describe_kinds()
    )
    assert generated == expected, "regenerate docs/architecture.md from the tables"
