"""The exact text of each refusal of the wire layer: what was refused, which value, why.

A message is part of the interface a user debugs with; these pin the ones the other
tests leave loose (from the survivors of ``scripts/mutate``, docs/mutation.md).
"""

from __future__ import annotations

import re
import struct

import pytest
from wire_helpers import drain, name32, open_client, open_server

from spreadq.errors import InvalidName, LocalProtocolError, RemoteProtocolError
from spreadq.wire import ClientSession, ServerSession
from spreadq.wire.events import AuthChoice, Disconnect, Hello, Join, Multicast, check_private_name
from spreadq.wire.layouts import hint_for


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def hello_from(version: tuple[int, int, int]) -> ServerSession:
    server = ServerSession()
    server.receive_data(bytes([*version, 1, 5]) + b"alice")
    assert isinstance(server.next_event(), Hello)
    return server


def test_no_bytes_after_eof() -> None:
    for session in (open_client(), open_server()):
        session.receive_data(b"")
        with pytest.raises(LocalProtocolError, match=exactly("receive_data() after EOF")):
            session.receive_data(b"x")


def test_private_name_reasons() -> None:
    with pytest.raises(InvalidName) as info:
        check_private_name("a b")
    assert (info.value.name, info.value.reason) == (
        "a b",
        "private names use only the bytes '$' (0x24) to '~' (0x7e)",
    )
    with pytest.raises(InvalidName) as info:
        check_private_name("n" * 11)
    assert (info.value.name, info.value.reason) == ("n" * 11, "private names are at most 10 bytes")


def test_client_send_refusals() -> None:
    client = ClientSession("a")
    with pytest.raises(LocalProtocolError, match=exactly("cannot send Join in state START")):
        client.send(Join("g"))
    with pytest.raises(LocalProtocolError, match=exactly("cannot send in state START")):
        client.send_many([Join("g")])
    client = open_client()
    with pytest.raises(LocalProtocolError, match=exactly("no command may follow a Disconnect")):
        client.send_many([Disconnect(), Join("g")])


def test_server_answer_refusals() -> None:
    with pytest.raises(
        LocalProtocolError,
        match=exactly("a client >= 3.16.0 must get the auth list before the accept"),
    ):
        hello_from((5, 0, 1)).accept("#alice#h")
    old = ServerSession()
    old.receive_data(bytes([3, 15, 0, 1, 5]) + b"alice")
    assert isinstance(old.next_event(), Hello)
    with pytest.raises(
        LocalProtocolError, match=exactly("a 3.15.0 client takes no part in the auth exchange")
    ):
        old.auth_list()
    refused = hello_from((5, 0, 1))
    refused.auth_list()
    refused.receive_data(b"BOGUS".ljust(90, b"\0"))
    choice = refused.next_event()
    assert isinstance(choice, AuthChoice)
    assert choice.refusal is not None
    with pytest.raises(
        LocalProtocolError,
        match=exactly("the auth choice was refused; answer reject(REJECT_AUTH)"),
    ):
        refused.accept("#alice#h")
    with pytest.raises(LocalProtocolError, match=exactly("cannot send in state HELLO_RECEIVED")):
        hello_from((5, 0, 1)).send(Join("g"))  # type: ignore[arg-type]


def test_server_header_refusals() -> None:
    server = open_server()
    head = struct.pack("<I32siIi", 0x80000080, name32("#alice#localhost"), 1, 0x80, 0)
    server.receive_data(head + name32("g"))
    with pytest.raises(
        RemoteProtocolError,
        match=exactly(
            "service bits: type 0x00000000 must set exactly one of "
            "UNRELIABLE..SAFE, JOIN, LEAVE, KILL"
        ),
    ):
        server.next_event()
    server = open_server()
    head = struct.pack("<I32siIi", 0x80000090, name32("#bob#localhost"), 1, 0x80, 0)
    server.receive_data(head + name32("g"))
    with pytest.raises(
        RemoteProtocolError,
        match=exactly(
            "sender field: b'#bob#localhost' is not this session's private group '#alice#localhost'"
        ),
    ):
        server.next_event()


def test_mess_type_refusals() -> None:
    with pytest.raises(
        LocalProtocolError, match=exactly("mess_type 32768 is not a signed 16-bit value")
    ):
        Multicast(("g",), b"", mess_type=32768)
    with pytest.raises(
        LocalProtocolError, match=exactly("mess_type -32769 is not a signed 16-bit value")
    ):
        hint_for(-32769)


def test_the_size_limit_names_the_size_of_a_later_message_in_a_chunk() -> None:
    small = struct.pack("<I32siIi", 0x80000090, name32("#b#h"), 1, 0x80, 0) + name32("g")
    big = struct.pack("<I32siIi", 0x80000090, name32("#b#h"), 1, 0x80, 40)
    client = open_client(max_message_size=100)
    client.receive_data(small + big)
    with pytest.raises(
        RemoteProtocolError, match=exactly("message of 120 bytes is over the limit of 100")
    ):
        drain(client)
