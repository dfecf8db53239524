"""STATS: the golden bytes, a hypothesis round trip, the refusals, and where it is read.

STATS goes to FEEDBACK only; a reader that predates it meets ``unknown envelope kind 7``
(an EnvelopeError), which is what these tests pin for the kind byte too.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spreadq.errors import EnvelopeError, LocalProtocolError
from spreadq.queue.envelope import Kind, Stats, StatsState, declared_slots, decode, encode

PID = bytes(range(16))
OTHER = bytes(range(16, 32))

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
names = st.text(st.characters(min_codepoint=0x24, max_codepoint=0x7E), min_size=1, max_size=31)

stats_values = st.builds(
    Stats,
    incarnation=st.binary(min_size=16, max_size=16),
    member=names,
    state=st.sampled_from(StatsState),
    owned=u32,
    running=u32,
    done=u64,
    failed=u64,
    oldest_ms=u32,
    failovers=u32,
    takeover_ms_sum=u64,
    takeover_ms_max=u32,
    group_id=st.tuples(i32, i32, i32),
    ordinal=u64,
    interval_ms=u32,
    producers=st.lists(st.tuples(st.binary(min_size=16, max_size=16), u32, u64), max_size=5).map(
        tuple
    ),
)


def test_golden_stats_bytes() -> None:
    """One STATS, byte for byte: the layout in the envelope module's docstring."""
    stats = Stats(
        PID,
        "#w1#host",
        StatsState.DRAINING,
        owned=3,
        running=2,
        done=1000,
        failed=4,
        oldest_ms=1500,
        failovers=1,
        takeover_ms_sum=25,
        takeover_ms_max=25,
        group_id=(7, -1, 2),
        ordinal=5,
        interval_ms=1000,
        producers=((OTHER, 9, 77),),
    )
    expected = (
        b"SQ\x01\x07\x00\x00"  # magic, version 1, kind STATS, no slots
        + PID  # incarnation
        + b"\x01"  # draining
        + struct.pack("<IIQQ", 3, 2, 1000, 4)  # owned, running, done, failed
        + struct.pack("<IIQI", 1500, 1, 25, 25)  # oldest, failovers, takeover sum, max
        + struct.pack("<iiiQI", 7, -1, 2, 5, 1000)  # gid, ordinal, interval
        + b"\x08#w1#host"
        + struct.pack("<H", 1)
        + OTHER
        + struct.pack("<IQ", 9, 77)
    )
    data = encode(stats)
    assert data == expected
    assert decode(data) == stats
    assert declared_slots(data) == 0
    assert Kind.STATS.value == 7


@given(stats_values)
def test_stats_round_trip(stats: Stats) -> None:
    assert decode(encode(stats)) == stats


@given(stats_values, st.data())
def test_a_cut_stats_is_an_envelope_error(stats: Stats, data: st.DataObject) -> None:
    raw = encode(stats)
    cut = data.draw(st.integers(6, len(raw) - 1))
    with pytest.raises(EnvelopeError):
        decode(raw[:cut])


def test_stats_refusals() -> None:
    with pytest.raises(EnvelopeError, match="trailing"):
        decode(encode(Stats(PID, "a")) + b"\x00")
    bad_state = bytearray(encode(Stats(PID, "a")))
    bad_state[6 + 16] = 9
    with pytest.raises(EnvelopeError, match="unknown STATS state 9"):
        decode(bytes(bad_state))
    with pytest.raises(EnvelopeError, match="cannot take"):
        decode(b"SQ\x01\x07\x01\x00" + encode(Stats(PID, "a"))[6:])
    with pytest.raises(LocalProtocolError, match="owned -1"):
        encode(Stats(PID, "a", owned=-1))
    with pytest.raises(LocalProtocolError, match="incarnation"):
        encode(Stats(PID[:4], "a"))
    with pytest.raises(LocalProtocolError, match="producer_id"):
        encode(Stats(PID, "a", producers=((b"x", 1, 1),)))


U32, U64 = 2**32 - 1, 2**64 - 1


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("owned", U32 + 1, "owned"),
        ("running", U32 + 1, "running"),
        ("done", U64 + 1, "done"),
        ("failed", U64 + 1, "failed"),
        ("oldest_ms", U32 + 1, "oldest_ms"),
        ("failovers", U32 + 1, "failovers"),
        ("takeover_ms_sum", U64 + 1, "takeover_ms_sum"),
        ("takeover_ms_max", U32 + 1, "takeover_ms_max"),
        ("ordinal", U64 + 1, "view ordinal"),
        ("interval_ms", U32 + 1, "interval_ms"),
        ("incarnation", b"short", "incarnation"),
        ("member", "m" * 256, "member name"),
        ("producers", ((b"p" * 16, U32 + 1, 0),), "outstanding"),
        ("producers", ((b"p" * 16, 0, U64 + 1),), "mseq"),
        ("producers", ((b"short", 0, 0),), "producer_id"),
        ("producers", tuple((b"p" * 16, 0, 0) for _ in range(2**16)), "producers per STATS"),
    ],
)
def test_a_stats_field_out_of_range_is_refused_by_name(
    field: str, value: object, named: str
) -> None:
    fields: dict[str, object] = {"incarnation": b"i" * 16, "member": "#w#h", field: value}
    with pytest.raises(LocalProtocolError) as info:
        encode(Stats(**fields))  # type: ignore[arg-type]
    assert str(info.value).startswith(named)


def test_a_stats_member_name_of_255_bytes_is_carried() -> None:
    stats = Stats(incarnation=b"i" * 16, member="m" * 255)
    decoded = decode(encode(stats))
    assert isinstance(decoded, Stats)
    assert decoded.member == "m" * 255


def test_a_stats_member_that_is_not_utf8_is_refused_by_name() -> None:
    data = encode(Stats(incarnation=b"i" * 16, member="#w!h"))
    broken = data.replace(b"#w!h", b"#w\xffh")
    with pytest.raises(EnvelopeError, match=r"^member name is not UTF-8"):
        decode(broken)
