"""Codecs: round-trips (hypothesis), typed decoding, failures as PayloadError, the registry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, TypeAdapter

from spreadq.codecs import (
    UNTYPED,
    Codec,
    CodecRegistry,
    JsonCodec,
    RawCodec,
    check_codec,
    codec_for_value,
    default_codecs,
)
from spreadq.errors import ConfigurationError, PayloadError

T = TypeVar("T")


class Size(BaseModel):
    model_config = ConfigDict(frozen=True)
    width: int
    height: int


class Resize(BaseModel):
    model_config = ConfigDict(frozen=True)
    path: str
    sizes: tuple[Size, ...] = ()
    quality: float | None = None
    tags: dict[str, int] = {}
    at: dt.datetime | None = None


JSON = JsonCodec()
RAW = RawCodec()
RESIZE: TypeAdapter[Resize] = TypeAdapter(Resize)
BYTES: TypeAdapter[bytes] = TypeAdapter(bytes)

finite = st.floats(allow_nan=False, allow_infinity=False)
sizes = st.builds(Size, width=st.integers(), height=st.integers())
resizes = st.builds(
    Resize,
    path=st.text(),
    sizes=st.lists(sizes, max_size=4).map(tuple),
    quality=st.none() | finite,
    tags=st.dictionaries(st.text(), st.integers(), max_size=4),
    at=st.none() | st.datetimes(timezones=st.just(dt.UTC)),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(resizes)
def test_json_round_trips_models(job: Resize) -> None:
    assert JSON.decode(JSON.encode(job, RESIZE), RESIZE) == job


@given(json_values)
def test_json_round_trips_untyped_values(value: object) -> None:
    assert JSON.decode(JSON.encode(value, UNTYPED), UNTYPED) == value


@given(resizes)
def test_untyped_encoding_decodes_as_the_typed_model(job: Resize) -> None:
    # A producer that puts by kind name encodes untyped; the handler decodes typed.
    assert JSON.decode(JSON.encode(job, UNTYPED), RESIZE) == job


@given(st.binary())
def test_json_decode_of_any_bytes_is_a_model_or_payload_error(data: bytes) -> None:
    outcome: object
    try:
        outcome = JSON.decode(data, RESIZE)
    except PayloadError as error:
        outcome = error
    if isinstance(outcome, PayloadError):
        assert outcome.__cause__ is not None
    else:
        assert isinstance(outcome, Resize)


@given(st.binary())
def test_raw_round_trips_bytes_exactly(data: bytes) -> None:
    encoded = RAW.encode(data, BYTES)
    assert encoded == data
    assert RAW.decode(encoded, BYTES) == data


def test_raw_decode_keeps_the_object_and_encode_copies_buffers() -> None:
    data = b"from a C program"
    assert RAW.decode(data, BYTES) is data
    assert RAW.decode(data, UNTYPED) is data  # a result read by kind name: no validation
    assert RAW.encode(bytearray(b"ab"), UNTYPED) == b"ab"
    assert RAW.encode(memoryview(b"cd"), UNTYPED) == b"cd"


def test_raw_refuses_non_bytes() -> None:
    with pytest.raises(PayloadError, match=r"raw: cannot encode str"):
        RAW.encode("text", UNTYPED)
    with pytest.raises(PayloadError, match="raw"):
        RAW.decode(b"\x00", TypeAdapter(int))


def test_json_decode_error_names_type_and_field() -> None:
    with pytest.raises(PayloadError, match=r"json: payload is not a valid Resize: path:") as info:
        JSON.decode(b'{"path": 3}', RESIZE)
    assert info.value.__cause__ is not None
    with pytest.raises(PayloadError, match="Invalid JSON"):
        JSON.decode(b"{", RESIZE)


def test_json_encode_refuses_a_value_of_the_wrong_type() -> None:
    with pytest.raises(PayloadError, match="json: cannot encode dict"):
        JSON.encode({"path": "x"}, RESIZE)  # type: ignore[misc]
    with pytest.raises(PayloadError, match="cannot encode object"):
        JSON.encode(object(), UNTYPED)


def test_json_encode_refuses_bytes_that_are_not_utf8() -> None:
    class Blob(BaseModel):
        data: bytes

    with pytest.raises(PayloadError, match="utf-8"):
        JSON.encode(Blob(data=b"\xff"), TypeAdapter(Blob))


def test_codec_for_value() -> None:
    assert codec_for_value(b"x") == "raw"
    assert codec_for_value(bytearray()) == "raw"
    assert codec_for_value({"a": 1}) == "json"
    assert codec_for_value(Size(width=1, height=2), default="msgpack") == "msgpack"


def test_builtins_are_codecs() -> None:
    assert isinstance(JSON, Codec)
    assert isinstance(RAW, Codec)


def test_default_registry() -> None:
    registry = default_codecs()
    assert sorted(registry) == ["json", "raw"]
    assert isinstance(registry["json"], JsonCodec)
    assert registry.require("raw") is registry["raw"]
    assert default_codecs() is not registry  # a fresh value each time, nothing global


class Upper:
    """A toy third-party codec: upper-cased JSON of strings."""

    name = "upper"

    def encode(self, value: T, adapter: TypeAdapter[T]) -> bytes:
        return adapter.dump_json(value).upper()

    def decode(self, data: bytes, adapter: TypeAdapter[T]) -> T:
        return adapter.validate_json(data)


def test_with_codecs_returns_a_new_registry() -> None:
    base = default_codecs()
    extended = base.with_codecs(Upper())
    assert sorted(extended) == ["json", "raw", "upper"]
    assert "upper" not in base
    assert extended["upper"].encode("a", TypeAdapter(str)) == b'"A"'


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="two codecs are named 'json'"):
        default_codecs().with_codecs(JsonCodec())


def test_require_lists_known_names() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown codec 'cbor' \(known: json, raw\)"):
        default_codecs().require("cbor")


class NoName:
    def encode(self, value: object, adapter: object) -> bytes:
        return b""

    def decode(self, data: bytes, adapter: object) -> object:
        return data


class BadName(NoName):
    name = "has space"


class NoDecode:
    name = "nodecode"

    def encode(self, value: object, adapter: object) -> bytes:
        return b""


class AsyncDecode(NoDecode):
    name = "asyncdecode"

    async def decode(self, data: bytes, adapter: object) -> object:
        return data


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (NoName, "needs a name"),
        (BadName, "needs a name"),
        (NoDecode, r"'nodecode' .* has no decode\(\)"),
        (AsyncDecode, r"decode\(\) must be a plain function, not async"),
    ],
)
def test_check_codec_refuses_non_codecs(factory: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_codec(factory())
    with pytest.raises(ConfigurationError, match=message):
        CodecRegistry([factory()])  # type: ignore[list-item]
