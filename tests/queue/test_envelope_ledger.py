"""LEDGER (kind 10): golden bytes, a hypothesis round trip, and typed refusals."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spreadq.errors import EnvelopeError, LocalProtocolError
from spreadq.queue.envelope import (
    MAX_ENVELOPE_SIZE,
    Kind,
    Ledger,
    declared_slots,
    decode,
    encode,
)
from spreadq.queue.view import GroupIdTuple

HEAD = b"SQ\x01\x0a\x00\x00"
i32 = st.integers(-(2**31), 2**31 - 1)
names = st.text(min_size=1, max_size=30)


def test_ledger_golden_bytes() -> None:
    ledger = Ledger((7, -2, 3), ("#a#h", "#b#h"), (("report", 12), ("é", 2**64 - 1)))
    data = encode(ledger)
    assert data == (
        HEAD
        + struct.pack("<iiiH", 7, -2, 3, 2)
        + b"\x04#a#h\x04#b#h"
        + struct.pack("<H", 2)
        + b"\x06report"
        + struct.pack("<Q", 12)
        + b"\x02\xc3\xa9"
        + struct.pack("<Q", 2**64 - 1)
    )
    assert declared_slots(data) == 0
    assert int(Kind.LEDGER) == 10


def test_an_empty_ledger_golden_bytes() -> None:
    data = encode(Ledger((1, 2, 3), ("#a#h",)))
    assert data == HEAD + struct.pack("<iiiH", 1, 2, 3, 1) + b"\x04#a#h" + b"\x00\x00"
    assert decode(data) == Ledger((1, 2, 3), ("#a#h",), ())


@given(
    st.tuples(i32, i32, i32),
    st.lists(names, max_size=6).map(tuple),
    st.dictionaries(names, st.integers(0, 2**64 - 1), max_size=6),
)
def test_ledger_round_trips(
    group_id: GroupIdTuple, members: tuple[str, ...], latest: dict[str, int]
) -> None:
    ledger = Ledger(group_id, members, tuple(latest.items()))
    assert decode(encode(ledger)) == ledger


GOOD = encode(Ledger((1, 2, 3), ("#a#h",), (("s", 5),)))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (GOOD[:-1], "truncated"),
        (GOOD + b"\x00", "trailing"),
        (HEAD[:4] + b"\x01\x00" + GOOD[6:], "cannot take 1 job slots"),
        (HEAD + struct.pack("<iiiH", 1, 2, 3, 1) + b"\x02\xff\xfe\x00\x00", "member name"),
        (
            HEAD + struct.pack("<iiiHH", 1, 2, 3, 0, 1) + b"\x02\xff\xfe" + bytes(8),
            "schedule name",
        ),
        (
            HEAD + struct.pack("<iiiHH", 1, 2, 3, 0, 2) + (b"\x01s" + struct.pack("<Q", 1)) * 2,
            "appears twice",
        ),
        (HEAD + struct.pack("<iii", 1, 2, 3), "truncated"),
    ],
)
def test_a_malformed_ledger_is_an_envelope_error(data: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        decode(data)


@pytest.mark.parametrize(
    ("ledger", "message"),
    [
        (Ledger((1, 2, 2**31), ()), "signed 32-bit"),
        (Ledger((1, 2), ()), "3 integers"),  # type: ignore[arg-type]
        (Ledger((1, 2, 3), ("x" * 256,)), "member name"),
        (Ledger((1, 2, 3), (), (("s" * 256, 1),)), "schedule name"),
        (Ledger((1, 2, 3), (), (("s", -1),)), "tick of 's'"),
        (Ledger((1, 2, 3), (), (("s", 2**64),)), "tick of 's'"),
        (Ledger((1, 2, 3), (), (("s", 1), ("s", 2))), "appears twice"),
        (Ledger((1, 2, 3), ("m",) * (2**16)), "members"),
        (
            Ledger((1, 2, 3), tuple(f"{n:0200d}" for n in range(MAX_ENVELOPE_SIZE // 200))),
            "envelope limit",
        ),
    ],
)
def test_a_ledger_the_envelope_cannot_carry_is_refused(ledger: Ledger, message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        encode(ledger)


def test_a_ledger_says_which_name_or_count_it_cannot_carry() -> None:
    gid = (1, 2, 3)
    with pytest.raises(LocalProtocolError, match=r"^member name is 256 bytes"):
        encode(Ledger(gid, ("m" * 256,), ()))
    with pytest.raises(LocalProtocolError, match=r"^schedule name is 256 bytes"):
        encode(Ledger(gid, ("#a#h",), (("s" * 256, 1),)))
    with pytest.raises(LocalProtocolError, match=r"^members 65536 is outside 0\.\.65535$"):
        encode(Ledger(gid, ("#a#h",) * 65536, ()))
    schedules = tuple((f"s{i}", 1) for i in range(65536))
    with pytest.raises(LocalProtocolError, match=r"^schedules 65536 is outside 0\.\.65535$"):
        encode(Ledger(gid, (), schedules))


def test_a_ledger_takes_the_extremes_of_its_fields() -> None:
    low = Ledger((-(2**31), 2**31 - 1, 0), (), ())
    assert decode(encode(low)) == low
    # exactly the envelope limit: 22 bytes of frame, then member names of 1 + n bytes
    room = MAX_ENVELOPE_SIZE - len(encode(Ledger((0, 0, 0), (), ())))
    full, rest = divmod(room, 256)
    assert rest >= 2  # one more name of rest - 1 bytes fills it
    members = ("m" * 255,) * full + ("r" * (rest - 1),)
    at_limit = Ledger((0, 0, 0), members, ())
    assert len(encode(at_limit)) == MAX_ENVELOPE_SIZE
    assert decode(encode(at_limit)) == at_limit


@pytest.mark.parametrize("field", ["member", "schedule"])
def test_a_name_that_is_not_utf8_is_refused_naming_its_field(field: str) -> None:
    bad = b"\x02\xff\xfe"
    if field == "member":
        body = struct.pack("<iiiH", 1, 2, 3, 1) + bad + struct.pack("<H", 0)
    else:
        body = struct.pack("<iiiH", 1, 2, 3, 0) + struct.pack("<H", 1) + bad + bytes(8)
    with pytest.raises(EnvelopeError, match=f"^{field} name is not UTF-8$"):
        decode(HEAD + body)
