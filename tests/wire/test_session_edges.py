"""Edges of the client session: the auth exchange from 3.16.0 on, the size limit at its
boundary, names the daemon sends without a NUL, and the exact text of its refusals.

Written from the survivors of ``scripts/mutate src/spreadq/wire`` (docs/mutation.md).
"""

from __future__ import annotations

import re
import struct

import pytest
from wire_helpers import drain, name32, open_client, open_server

from spreadq.errors import RemoteProtocolError
from spreadq.wire import NEED_DATA, ClientSession, ServerSession
from spreadq.wire.events import Accepted, DataMessage


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def data_message(sender: bytes, data_len: int, *, count: int = 1) -> bytes:
    head = struct.pack("<I32siIi", 0x80000090, sender.ljust(32, b"\0")[:32], count, 0x80, data_len)
    return head + name32("g") * count + bytes(data_len)


@pytest.mark.parametrize(("version", "auth"), [((3, 15, 9), False), ((3, 16, 0), True)])
def test_the_auth_exchange_starts_at_3_16_0(version: tuple[int, int, int], auth: bool) -> None:
    client = ClientSession("a", version=version)
    client.start()
    accept = b"\x01\x05\x00\x01\x05#a#hh"
    if auth:
        client.receive_data(b"\x05NULL ")
        assert client.next_event() is NEED_DATA
        assert len(client.data_to_send()) == 90
    client.receive_data(accept)
    assert client.next_event() == Accepted("#a#hh", (5, 0, 1))


def test_a_message_of_exactly_the_limit_is_taken() -> None:
    size = 48 + 32 + 100
    client = open_client(max_message_size=size)
    client.receive_data(data_message(b"#b#h", 100))
    (event,) = drain(client)
    assert isinstance(event, DataMessage)
    client = open_client(max_message_size=size)
    client.receive_data(data_message(b"#b#h", 101)[:48])
    with pytest.raises(
        RemoteProtocolError,
        match=exactly(f"message of {size + 1} bytes is over the limit of {size}"),
    ):
        client.next_event()


def test_a_sender_field_without_a_nul_is_read_whole() -> None:
    client = open_client()
    client.receive_data(data_message(b"s" * 32, 0))
    (event,) = drain(client)
    assert isinstance(event, DataMessage)
    assert event.sender == "s" * 32


def test_negative_counts_from_the_daemon() -> None:
    client = open_client()
    client.receive_data(struct.pack("<I32siIi", 0x80000090, name32("#b#h"), -1, 0x80, 0))
    with pytest.raises(
        RemoteProtocolError,
        match=exactly("header with num_groups=-1 and data_len=0; neither may be negative"),
    ):
        client.next_event()


def test_sessions_print_their_state_and_group() -> None:
    assert repr(ClientSession("a")) == "<ClientSession START >"
    assert repr(open_client()) == "<ClientSession OPEN #alice#localhost>"
    assert repr(open_server()) == "<ServerSession OPEN #alice#localhost>"
    assert repr(ServerSession()) == "<ServerSession AWAIT_HELLO >"


def test_a_session_without_a_name_sends_an_empty_one() -> None:
    hello = ClientSession().start()
    assert hello[-1] == 0  # name length 0: the daemon picks a name


def test_the_size_limit_applies_to_each_message_of_a_chunk() -> None:
    one = data_message(b"#b#h", 20)
    client = open_client(max_message_size=len(one))
    client.receive_data(one + one + one)  # the later ones start past offset 0
    assert len(drain(client)) == 3
