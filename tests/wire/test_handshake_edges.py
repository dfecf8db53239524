"""Edges of the handshake codecs and the receive buffer: version and length boundaries,
the flags of a refused hello, what is left unread, and the exact text of each error.

Written from the survivors of ``scripts/mutate src/spreadq/wire`` (docs/mutation.md).
"""

from __future__ import annotations

import re

import pytest

from spreadq.errors import LocalProtocolError, RemoteProtocolError
from spreadq.wire.buffer import ReceiveBuffer
from spreadq.wire.constants import RejectCode
from spreadq.wire.events import Hello, Rejected
from spreadq.wire.handshake import (
    encode_accept,
    encode_auth_choice,
    encode_auth_list,
    encode_hello,
    encode_reject,
    read_accept,
    read_auth_list,
    read_hello,
    version_number,
)


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def buffer_of(data: bytes) -> ReceiveBuffer:
    buffer = ReceiveBuffer(1000)
    buffer.feed(data)
    return buffer


@pytest.mark.parametrize(
    ("version", "refused"),
    [
        ((3, 0), True),  # 30000
        ((2, 99), True),  # 29900
        ((2, 100), True),  # 30000 (with minor * 101 it would pass at 30100)
        ((3, 1), False),  # 30100: the oldest accepted
        ((3, 2), False),
    ],
)
def test_the_oldest_client_is_3_1(version: tuple[int, int], refused: bool) -> None:
    major, minor = version
    buffer = buffer_of(bytes([major, minor, 1, 1]) + b"a" + b"tail")  # no patch byte
    hello = read_hello(buffer)
    assert hello is not None
    if refused:
        assert hello == Hello((major, minor, 0), "", False, False, RejectCode.REJECT_VERSION)
        assert buffer.take_all() == bytes([1, 1]) + b"atail"  # two bytes read, no more
    else:
        assert hello == Hello((major, minor, 0), "a", True, False, None)


def test_a_refused_version_reads_no_flags_even_when_they_are_set() -> None:
    hello = read_hello(buffer_of(bytes([3, 0, 0x11, 1]) + b"a"))
    assert hello == Hello((3, 0, 0), "", False, False, RejectCode.REJECT_VERSION)
    assert hello is not None
    assert (hello.membership, hello.priority) == (False, False)


@pytest.mark.parametrize(
    ("flags", "membership", "priority"),
    [(0x00, False, False), (0x01, True, False), (0x10, False, True), (0x11, True, True)],
)
def test_hello_flags(flags: int, membership: bool, priority: bool) -> None:
    hello = read_hello(buffer_of(bytes([4, 4, 0, flags, 1]) + b"a"))
    assert hello == Hello((4, 4, 0), "a", membership, priority, None)


@pytest.mark.parametrize("priority", [False, True])
def test_a_long_name_is_refused_with_the_flags_read(priority: bool) -> None:
    flags = 0x01 | (0x10 if priority else 0)
    buffer = buffer_of(bytes([4, 4, 0, flags, 11]) + b"n" * 11)
    hello = read_hello(buffer)
    assert hello == Hello((4, 4, 0), "", True, priority, RejectCode.REJECT_ILLEGAL_NAME)
    assert len(buffer) == 11  # only the fixed part was read
    ten = read_hello(buffer_of(bytes([4, 4, 0, 0, 10]) + b"n" * 10))
    assert ten == Hello((4, 4, 0), "n" * 10, False, False, None)


def test_a_name_with_a_hash_or_latin1_is_refused() -> None:
    hashed = read_hello(buffer_of(bytes([4, 4, 0, 1, 3]) + b"a#b"))
    assert hashed is not None
    assert (hashed.private_name, hashed.refusal) == ("a#b", RejectCode.REJECT_ILLEGAL_NAME)
    plain = read_hello(buffer_of(bytes([4, 4, 0, 1, 3]) + b"aXb"))
    assert plain is not None
    assert plain.refusal is None


def test_encode_hello_errors() -> None:
    with pytest.raises(
        LocalProtocolError, match=exactly("version field 256 does not fit in one byte")
    ):
        encode_hello(b"a", membership=True, priority=False, version=(4, 256, 0))
    with pytest.raises(
        LocalProtocolError, match=exactly(f"private name {b'n' * 11!r} is over 10 bytes")
    ):
        encode_hello(b"n" * 11, membership=True, priority=False)


def test_encode_auth_list() -> None:
    assert encode_auth_list(["NULL", "IP"]) == b"\x08NULL IP "
    for bad in ("", "A B"):
        with pytest.raises(
            LocalProtocolError,
            match=exactly(f"auth method name {bad!r} must be non-empty, no spaces"),
        ):
            encode_auth_list(["NULL", bad])
    with pytest.raises(
        LocalProtocolError,
        match=exactly("auth method names 'N\u0100 ' cannot be sent: not Latin-1"),
    ):
        encode_auth_list(["N\u0100"])
    # 90 bytes is the most: 9 names of 9 letters and a space each
    assert len(encode_auth_list(["ABCDEFGHI"] * 9)) == 91
    with pytest.raises(LocalProtocolError, match=exactly("auth list of 100 bytes is over 90")):
        encode_auth_list(["ABCDEFGHI"] * 10)


def test_encode_auth_choice_names_latin1() -> None:
    with pytest.raises(
        LocalProtocolError, match=exactly("auth method name '\u0100' cannot be sent: not Latin-1")
    ):
        encode_auth_choice(["\u0100"])


def test_encode_accept() -> None:
    assert encode_accept("#a#h", (5, 0, 1), (4, 4, 0)) == b"\x01\x05\x00\x01\x04#a#h"
    assert encode_accept("#", (5, 0, 1), (3, 14, 0)) == b"\x01\x05\x00\x01#"
    for bad in ("", "#" * 32):
        with pytest.raises(
            LocalProtocolError, match=exactly(f"private group {bad!r} must be 1..31 bytes")
        ):
            encode_accept(bad, (5, 0, 1), (4, 4, 0))
    with pytest.raises(
        LocalProtocolError,
        match=exactly("a private group name '#\u0100' cannot be sent: not Latin-1"),
    ):
        encode_accept("#\u0100", (5, 0, 1), (4, 4, 0))
    with pytest.raises(
        LocalProtocolError, match=exactly("version field -1 does not fit in one byte")
    ):
        encode_accept("#a#h", (5, -1, 1), (4, 4, 0))


def test_encode_reject() -> None:
    assert encode_reject(RejectCode.REJECT_AUTH) == bytes([RejectCode.REJECT_AUTH & 0xFF])
    with pytest.raises(
        LocalProtocolError,
        match=exactly("CONNECTION_CLOSED is not a reject code a daemon sends"),
    ):
        encode_reject(RejectCode.CONNECTION_CLOSED)


def test_receive_buffer() -> None:
    buffer = ReceiveBuffer(8)
    assert not buffer
    buffer.feed(b"")
    assert buffer.unread()[0] == b""
    buffer.feed(bytearray(b"ab"))
    assert type(buffer.unread()[0]) is bytes  # a received chunk is kept as bytes
    assert bool(buffer)
    assert buffer.peek(3) is None
    assert buffer.peek(2) == b"ab"
    buffer.skip(1)
    assert (buffer.unread()[1], len(buffer)) == (1, 1)
    buffer.feed(memoryview(b"cd"))
    assert (buffer.unread()[1], buffer.take_all()) == (0, b"bcd")
    assert not buffer
    buffer.feed(b"xyz")
    assert buffer.consume(1) == b"x"
    buffer.feed(b"w")
    buffer.skip(1)
    buffer.feed(b"v")
    assert buffer.take_all() == b"zwv"
    buffer.skip(5)  # past the end: stops at the end
    assert len(buffer) == 0
    assert buffer.ensure(8, "a unit") is False
    with pytest.raises(
        RemoteProtocolError, match=exactly("a unit of 9 bytes is over the limit of 8")
    ):
        buffer.ensure(9, "a unit")
    with pytest.raises(RemoteProtocolError, match=exactly("needed 2 bytes, have 0")):
        buffer.consume(2)
    buffer.feed(b"12345678")
    assert buffer.ensure(8, "a unit") is True
    assert buffer.slice(2, 4) == b"34"


def test_read_auth_list_lengths() -> None:
    assert read_auth_list(buffer_of(bytes([90]) + b"A" * 89 + b" ")) == ("A" * 89,)
    with pytest.raises(RemoteProtocolError, match=exactly("auth list length 91 is over 90")):
        read_auth_list(buffer_of(bytes([91]) + b"A" * 91))
    with pytest.raises(RemoteProtocolError, match=exactly("auth list length 127 is over 90")):
        read_auth_list(buffer_of(bytes([127])))
    with pytest.raises(
        RemoteProtocolError, match=exactly("unknown reject code -128 (not one a daemon sends)")
    ):
        read_auth_list(buffer_of(bytes([128])))


def test_read_accept_first_bytes() -> None:
    with pytest.raises(
        RemoteProtocolError, match=exactly("handshake answer 0 is neither accept (1) nor a reject")
    ):
        read_accept(buffer_of(b"\x00\x05\x00\x01\x01#"), with_patch=True)
    with pytest.raises(
        RemoteProtocolError,
        match=exactly("handshake answer 127 is neither accept (1) nor a reject"),
    ):
        read_accept(buffer_of(b"\x7f"), with_patch=True)
    with pytest.raises(
        RemoteProtocolError, match=exactly("unknown reject code -128 (not one a daemon sends)")
    ):
        read_accept(buffer_of(b"\x80"), with_patch=True)


def test_version_fields_up_to_255() -> None:
    assert encode_hello(b"a", membership=False, priority=False, version=(255, 255, 255))[:3] == (
        b"\xff\xff\xff"
    )
    assert version_number((4, 1, 7)) == 40107
    assert version_number((3, 15, 0)) == 31500


def test_a_reject_reads_one_byte() -> None:
    buffer = buffer_of(bytes([RejectCode.REJECT_AUTH & 0xFF]) + b"x")
    assert read_auth_list(buffer) == Rejected(RejectCode.REJECT_AUTH)
    assert buffer.take_all() == b"x"
    buffer = buffer_of(bytes([RejectCode.REJECT_VERSION & 0xFF]) + b"y")
    assert read_accept(buffer, with_patch=True) == Rejected(RejectCode.REJECT_VERSION)
    assert buffer.take_all() == b"y"


def test_ensure_counts_only_unread_bytes() -> None:
    buffer = buffer_of(b"abcd")
    buffer.skip(2)
    assert buffer.ensure(2, "x") is True
    assert buffer.ensure(3, "x") is False
