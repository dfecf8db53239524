"""The msgpack codec: round-trips (hypothesis), typed decoding, failures, the plugin."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter
from spreadq_msgpack import MsgpackCodec, plugin

from spreadq.codecs import UNTYPED, Codec, JsonCodec, check_codec
from spreadq.context import Context
from spreadq.errors import PayloadError
from spreadq.plugins import load_plugins
from spreadq.worker.app import App

CODEC = MsgpackCodec()
INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
finite = st.floats(allow_nan=False)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Part(BaseModel):
    name: str
    blob: bytes


class Order(BaseModel):
    id: uuid.UUID
    at: dt.datetime
    price: decimal.Decimal
    color: Color
    tags: frozenset[str]
    parts: tuple[Part, ...]
    counts: dict[int, int]
    note: str | None = None


ORDER: TypeAdapter[Order] = TypeAdapter(Order)

orders = st.builds(
    Order,
    id=st.uuids(),
    at=st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    price=st.decimals(allow_nan=False, allow_infinity=False, places=4),
    color=st.sampled_from(Color),
    tags=st.frozensets(st.text(max_size=8), max_size=4),
    parts=st.lists(st.builds(Part, name=st.text(), blob=st.binary()), max_size=3).map(tuple),
    counts=st.dictionaries(INT64, INT64, max_size=4),
    note=st.none() | st.text(),
)
plain_values = st.recursive(
    st.none() | st.booleans() | INT64 | finite | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def test_is_a_codec() -> None:
    assert isinstance(CODEC, Codec)
    assert check_codec(CODEC) is CODEC
    assert CODEC.name == "msgpack"
    assert repr(CODEC) == "MsgpackCodec()"


@given(orders)
def test_models_round_trip(order: Order) -> None:
    assert CODEC.decode(CODEC.encode(order, ORDER), ORDER) == order


@given(plain_values)
def test_plain_values_round_trip_untyped(value: object) -> None:
    assert CODEC.decode(CODEC.encode(value, UNTYPED), UNTYPED) == value


@given(st.binary())
def test_bytes_travel_as_msgpack_binary(blob: bytes) -> None:
    part = Part(name="p", blob=blob)
    encoded = CODEC.encode(part, TypeAdapter(Part))
    assert msgpack.unpackb(encoded, raw=False) == {"name": "p", "blob": blob}


@given(orders)
def test_untyped_put_decodes_into_the_handler_type(order: Order) -> None:
    # A producer putting by kind name encodes with no type; the handler decodes typed.
    assert CODEC.decode(CODEC.encode(order, UNTYPED), ORDER) == order


@given(st.binary())
def test_any_bytes_decode_to_a_value_or_payload_error(data: bytes) -> None:
    outcome: object
    try:
        outcome = CODEC.decode(data, ORDER)
    except PayloadError as error:
        outcome = error
    if isinstance(outcome, PayloadError):
        assert outcome.__cause__ is not None
    else:
        assert isinstance(outcome, Order)


@given(st.integers())
def test_ints_beyond_64_bits_are_refused(number: int) -> None:
    adapter: TypeAdapter[int] = TypeAdapter(int)
    if -(2**63) <= number < 2**64:
        assert CODEC.decode(CODEC.encode(number, adapter), adapter) == number
    else:
        with pytest.raises(PayloadError, match="msgpack: cannot encode int"):
            CODEC.encode(number, adapter)


def test_encoding_refuses_a_value_of_the_wrong_type() -> None:
    with pytest.raises(PayloadError, match="msgpack: cannot encode dict"):
        CODEC.encode({"name": "p"}, TypeAdapter(Part))  # type: ignore[misc]
    with pytest.raises(PayloadError, match="msgpack: cannot encode object"):
        CODEC.encode(object(), UNTYPED)


def test_decoding_errors() -> None:
    with pytest.raises(PayloadError, match="msgpack: cannot unpack payload: ExtraData"):
        CODEC.decode(msgpack.packb(1) + msgpack.packb(2), UNTYPED)
    with pytest.raises(PayloadError, match="msgpack: cannot unpack payload"):
        CODEC.decode(b"\xc1", UNTYPED)  # 0xc1 is never used in MessagePack
    with pytest.raises(PayloadError, match="msgpack: payload is not a valid Part: blob"):
        CODEC.decode(msgpack.packb({"name": "p"}), TypeAdapter(Part))


def test_smaller_than_json_for_binary() -> None:
    part = Part(name="p", blob=bytes(range(200)) * 5)
    with pytest.raises(PayloadError):  # JSON cannot even carry non-UTF-8 bytes
        JsonCodec().encode(part, TypeAdapter(Part))
    assert len(CODEC.encode(part, TypeAdapter(Part))) < 1_020


def test_plugin_declaration() -> None:
    assert plugin.name == "msgpack"
    assert plugin.summary()["codecs"] == ["msgpack"]


def test_entry_point_is_installed_with_provenance() -> None:
    (loaded,) = load_plugins(names=["msgpack"], disabled=())
    assert loaded.plugin is plugin
    assert loaded.entry_point == "spreadq_msgpack:plugin"
    assert loaded.distribution == "spreadq-msgpack"
    assert loaded.version


async def test_an_app_runs_a_msgpack_handler() -> None:
    app = App("orders", plugins=["msgpack"])

    @app.handler("total", codec="msgpack")
    async def total(order: Order) -> int:
        return sum(order.counts.values())

    app.freeze()
    prepared = app.prepared["total"]
    order = Order(
        id=uuid.UUID(int=7),
        at=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        price=decimal.Decimal("9.99"),
        color=Color.BLUE,
        tags=frozenset({"a"}),
        parts=(Part(name="x", blob=b"\x00\xff"),),
        counts={1: 2, 3: 4},
    )
    ctx = Context(job="j", kind="total", queue="orders", member="#w#h")
    result = await prepared.run(ctx, CODEC.encode(order, ORDER))
    assert msgpack.unpackb(result) == 6
