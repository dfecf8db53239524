"""Edges of the layout helpers that the byte tables do not reach: offsets, boundaries,
big-endian bodies, and the exact text of each error (what, which and why).

Written from the survivors of ``scripts/mutate src/spreadq/wire`` (docs/mutation.md).
"""

from __future__ import annotations

import re
import struct

import pytest

from spreadq.errors import LocalProtocolError, RemoteProtocolError
from spreadq.wire.constants import ENDIAN_MARKER, GROUP_NAME_SIZE, HEADER_SIZE
from spreadq.wire.events import GroupId
from spreadq.wire.layouts import (
    group_struct,
    is_little_endian,
    mess_type_from_hint,
    pack_auth_choice,
    pack_groups,
    pack_header,
    pack_membership_body,
    pack_membership_body_v3,
    pad_name,
    unpack_auth_choice,
    unpack_groups,
    unpack_header,
    unpack_membership_body,
    unpack_membership_body_v3,
    unpack_old_type,
    unpack_transitional_body,
)


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def field(name: bytes) -> bytes:
    return name.ljust(GROUP_NAME_SIZE, b"\0")


def test_is_little_endian_reads_bit_7_only() -> None:
    assert is_little_endian(0x80) is True
    assert is_little_endian(0xFF) is True
    assert is_little_endian(0x7F) is False
    assert is_little_endian(0x01) is False


def test_pad_name() -> None:
    assert pad_name(b"ab") == b"ab" + bytes(30)
    assert pad_name(b"x" * 31) == b"x" * 31 + b"\0"
    with pytest.raises(
        LocalProtocolError, match=exactly(f"name {b'x' * 32!r} is longer than 31 bytes")
    ):
        pad_name(b"x" * 32)


def test_unpack_header_at_an_offset_and_with_nothing_in_it() -> None:
    header = pack_header(0x10, b"#a#h", 0, 0, 0)
    assert len(header) == HEADER_SIZE
    at_zero = unpack_header(header)
    assert unpack_header(b"junk" + header, 4) == at_zero
    assert (at_zero.num_groups, at_zero.data_len, at_zero.little_endian) == (0, 0, True)
    with pytest.raises(RemoteProtocolError, match=exactly("a header is 48 bytes, got 47")):
        unpack_header(b"junk" + header[:-1], 4)
    with pytest.raises(RemoteProtocolError, match=exactly("a header is 48 bytes, got 44")):
        unpack_header(header, 4)


def test_negative_counts_in_a_header_are_refused() -> None:
    for num_groups, data_len in ((-1, 0), (0, -1)):
        data = struct.pack("<I32siIi", 0x80000090, b"s", num_groups, 0x80, data_len)
        with pytest.raises(
            RemoteProtocolError,
            match=exactly(
                f"header with num_groups={num_groups} and data_len={data_len}; "
                "neither may be negative"
            ),
        ):
            unpack_header(data)


def test_pack_header_sets_the_marker_and_checks_its_inputs() -> None:
    raw = pack_header(0x10, b"s", 1, b"\x80\x00\x00\x80", 5)
    (type_,) = struct.unpack_from("<I", raw)
    assert type_ == 0x10 | ENDIAN_MARKER
    (numbered,) = struct.unpack_from("<I", pack_header(0x10, b"s", 1, 0, 5))
    assert numbered == 0x10 | ENDIAN_MARKER
    with pytest.raises(
        LocalProtocolError, match=exactly(f"name {b'n' * 32!r} is longer than 31 bytes")
    ):
        pack_header(0, b"n" * 32, 0, 0, 0)
    with pytest.raises(LocalProtocolError, match=exactly("a raw hint is 4 bytes, got 3")):
        pack_header(0, b"s", 0, b"\x80\0\0", 0)


def test_hint_errors_name_the_value() -> None:
    with pytest.raises(RemoteProtocolError, match=exactly("a hint is 4 bytes, got 5")):
        mess_type_from_hint(b"\x80\0\0\0\x80")
    # bit 0 of the first byte is not the marker: a big-endian hint stays big-endian
    assert mess_type_from_hint(b"\x01\x00\x05\x00") == (5, False)


def test_group_structs_past_the_precompiled_ones() -> None:
    assert group_struct(3).format == "32s" * 3
    assert group_struct(101).size == 101 * 32
    assert group_struct(250).format == "32s" * 250
    names = [b"g%d" % i for i in range(150)]
    assert unpack_groups(pack_groups(names), 0, 150, strict=True) == tuple(
        n.decode() for n in names
    )


def test_pack_groups_takes_31_bytes_not_32() -> None:
    assert pack_groups([b"x" * 31]) == b"x" * 31 + b"\0"
    with pytest.raises(
        LocalProtocolError, match=exactly(f"name {b'x' * 32!r} is longer than 31 bytes")
    ):
        pack_groups([b"x" * 32])


def test_unpack_groups_at_an_offset_and_short() -> None:
    data = b"pre" + field(b"a") + field(b"b")
    assert unpack_groups(data, 3, 2, strict=True) == ("a", "b")
    with pytest.raises(
        RemoteProtocolError, match=exactly("2 group names do not fit in the message")
    ):
        unpack_groups(data[:-1], 3, 2, strict=True)
    with pytest.raises(
        RemoteProtocolError, match=exactly("-1 group names do not fit in the message")
    ):
        unpack_groups(data, 0, -1, strict=True)
    # a field without a NUL: refused when strict, all 32 bytes otherwise
    full = b"z" * 32
    assert unpack_groups(full, 0, 1, strict=False) == ("z" * 32,)
    with pytest.raises(RemoteProtocolError):
        unpack_groups(full, 0, 1, strict=True)


def test_membership_bodies_in_both_byte_orders_keep_32_byte_names() -> None:
    gid = GroupId(7, 8, 9)
    body = pack_membership_body(gid, [[b"#a#h", b"#b#h"], [b"#c#h"]], 1)
    assert unpack_membership_body(body, True) == (gid, (("#a#h", "#b#h"), ("#c#h",)), 1)
    big = struct.pack(">iiiII", 7, 8, 9, 2, 4 + 64) + struct.pack(">I", 2) + field(b"#a#h")
    big += field(b"#b#h") + struct.pack(">I", 1) + b"w" * 32  # no NUL: taken whole
    assert unpack_membership_body(big, False) == (gid, (("#a#h", "#b#h"), ("w" * 32,)), 1)
    with pytest.raises(
        RemoteProtocolError, match=exactly("membership body ends inside a vs set count")
    ):
        unpack_membership_body(
            struct.pack("<iiiII", 7, 8, 9, 2, 0) + struct.pack("<I", 1) + field(b"a") + b"\0\0",
            True,
        )
    with pytest.raises(
        RemoteProtocolError, match=exactly("membership body has 3 bytes after its 0 vs sets")
    ):
        unpack_membership_body(struct.pack("<iiiII", 7, 8, 9, 0, 0) + b"\0\0\0", True)
    # a count that fits only with true division
    odd = struct.pack("<iiiII", 7, 8, 9, 1, 0) + struct.pack("<I", 2) + b"\0" * 40
    with pytest.raises(
        RemoteProtocolError, match=exactly("vs set of 2 names does not fit in the body")
    ):
        unpack_membership_body(odd, True)
    with pytest.raises(
        RemoteProtocolError, match=exactly("2 vs sets cannot fit in a 27-byte body")
    ):
        unpack_membership_body(struct.pack("<iiiII", 7, 8, 9, 2, 0) + b"\0" * 7, True)


def test_membership_body_with_no_sets() -> None:
    gid = GroupId(1, 2, 3)
    assert unpack_membership_body(pack_membership_body(gid, [], 0), True) == (gid, (), 0)
    with pytest.raises(LocalProtocolError, match=exactly("local vs set 1 is not one of 0 sets")):
        pack_membership_body(gid, [], 1)
    with pytest.raises(LocalProtocolError, match=exactly("local vs set 2 is not one of 2 sets")):
        pack_membership_body(gid, [[b"a"], [b"b"]], 2)


def test_v3_membership_bodies() -> None:
    gid = GroupId(1, 2, 3)
    body = pack_membership_body_v3(gid, [b"#a#h"])
    assert unpack_membership_body_v3(body, True) == (gid, ("#a#h",))
    big = struct.pack(">iiii", 1, 2, 3, 1) + b"q" * 32
    assert unpack_membership_body_v3(big, False) == (gid, ("q" * 32,))
    empty = struct.pack("<iiii", 1, 2, 3, 0)
    assert unpack_membership_body_v3(empty, True) == (gid, ())
    with pytest.raises(
        RemoteProtocolError, match=exactly("a 3.x membership body is at least 16 bytes")
    ):
        unpack_membership_body_v3(empty[:-1], True)
    with pytest.raises(
        RemoteProtocolError, match=exactly("3.x membership body of 16 bytes cannot hold -1 names")
    ):
        unpack_membership_body_v3(struct.pack("<iiii", 1, 2, 3, -1), True)


def test_transitional_body_and_old_type() -> None:
    assert unpack_transitional_body(struct.pack(">iii", 1, 2, 3), False) == GroupId(1, 2, 3)
    with pytest.raises(
        RemoteProtocolError, match=exactly("a transitional body is 12 bytes, got 11")
    ):
        unpack_transitional_body(bytes(11), True)
    assert unpack_old_type(b"xx" + struct.pack("<I", 0x80000010), 2, True) == 0x10
    with pytest.raises(
        RemoteProtocolError, match=exactly("reject message ends inside its old_type field")
    ):
        unpack_old_type(b"xx" + bytes(3), 2, True)


def test_auth_choice() -> None:
    assert unpack_auth_choice(pack_auth_choice([b"NULL", b"IP"])) == ("NULL", "IP")
    assert unpack_auth_choice(b"\xe9" + bytes(89)) == ("\xe9",)  # Latin-1
    with pytest.raises(RemoteProtocolError, match=exactly("an auth choice is 90 bytes, got 89")):
        unpack_auth_choice(bytes(89))


def test_auth_choice_limits() -> None:
    assert unpack_auth_choice(pack_auth_choice([b"A", b"B", b"C" * 29])) == ("A", "B", "C" * 29)
    with pytest.raises(LocalProtocolError, match=exactly("at most 3 auth methods, got 4")):
        pack_auth_choice([b"A"] * 4)
    for bad in (b"", b"C" * 30):
        with pytest.raises(
            LocalProtocolError, match=exactly(f"auth method name {bad!r} must be 1..29 bytes")
        ):
            pack_auth_choice([bad])


def test_a_v3_body_must_hold_exactly_its_names() -> None:
    body = struct.pack("<iiii", 1, 2, 3, 1) + field(b"a") + field(b"b")
    with pytest.raises(
        RemoteProtocolError, match=exactly("3.x membership body of 80 bytes cannot hold 1 names")
    ):
        unpack_membership_body_v3(body, True)
