"""spreadq-msgpack: a MessagePack payload codec for spreadq.

Install it and every app gains the ``msgpack`` codec (the ``spreadq.plugins`` entry
point ``msgpack`` resolves to :data:`plugin`); select it per handler::

    @app.handler("resize", codec="msgpack")
    async def resize(job: ResizeJob) -> Thumbnail: ...

Encoding: pydantic dumps the value in Python mode (``model_dump(mode="python")`` for a
model), and msgpack packs the result. ``bytes`` stay binary (no base64), ints and
floats stay numbers; values msgpack has no type for (datetimes, UUIDs, decimals,
enums, sets ...) are packed as their JSON form (ISO strings, lists ...). Decoding
unpacks and validates with the handler's ``TypeAdapter.validate_python``, in pydantic's
default lax mode, which turns those forms back into the declared types. Models in
strict mode that hold such types therefore need the ``json`` codec.

No pickle and no msgpack extension types are used: any MessagePack implementation in
any language can read and write these payloads.
"""

from __future__ import annotations

from typing import TypeVar, final

import msgpack  # type: ignore[import-untyped]  # msgpack ships no type information
from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from spreadq.codecs import validation_failure
from spreadq.errors import PayloadError
from spreadq.plugins import Plugin

__all__ = ["MsgpackCodec", "plugin"]

T = TypeVar("T")


@final
class MsgpackCodec:
    """The ``msgpack`` codec: pydantic's Python-mode dump, packed with MessagePack."""

    __slots__ = ()

    @property
    def name(self) -> str:
        """Always ``"msgpack"``."""
        return "msgpack"

    def encode(self, value: T, adapter: TypeAdapter[T]) -> bytes:
        """Return ``value`` (of the adapter's type) as MessagePack bytes.

        Raises:
            PayloadError: the value does not match its declared type, or holds something
                neither msgpack nor pydantic can serialise (such as an int beyond 64 bits).
        """
        try:
            plain = adapter.dump_python(value, mode="python", warnings="error")
            packed = msgpack.packb(plain, default=to_jsonable_python, use_bin_type=True)
        except (PydanticSerializationError, TypeError, ValueError, OverflowError) as error:
            raise PayloadError(
                f"msgpack: cannot encode {type(value).__name__}: {type(error).__name__}: {error}"
            ) from error
        assert isinstance(packed, bytes)
        return packed

    def decode(self, data: bytes, adapter: TypeAdapter[T]) -> T:
        """Return ``data`` unpacked and validated as the adapter's type.

        Raises:
            PayloadError: not one complete MessagePack value, or not valid for the type.
        """
        try:
            plain = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException) as error:
            raise PayloadError(
                f"msgpack: cannot unpack payload: {type(error).__name__}: {error}"
            ) from error
        try:
            return adapter.validate_python(plain)
        except ValidationError as error:
            raise validation_failure("msgpack", error) from error

    def __repr__(self) -> str:
        return "MsgpackCodec()"


plugin = Plugin(
    name="msgpack",
    description="MessagePack payload codec ('msgpack')",
    codecs=(MsgpackCodec(),),
)
"""The declaration the ``spreadq.plugins`` entry point ``msgpack`` resolves to."""
