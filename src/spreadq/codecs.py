"""Payload codecs: how a job's payload and result become bytes and come back typed.

Theory of operation. A handler declares its payload type ``T`` by annotation;
:mod:`spreadq.handlers` builds one pydantic :class:`~pydantic.TypeAdapter` for it at
registration, once. A codec never sees a bare type: it is handed that adapter, so it
encodes with the schema already compiled and decodes straight into ``T``, and no codec
keeps a cache of its own. A producer that puts by kind name, with no handler to hand,
passes :data:`UNTYPED`, an adapter that serialises any value by its runtime type and
decodes to plain Python values.

Two codecs are built in: ``json`` (:class:`JsonCodec`, pydantic's JSON) for anything
pydantic can serialise, and ``raw`` (:class:`RawCodec`) for ``bytes``, carried as they
are. A value whose declared type is ``bytes`` always travels raw; every other value
uses the handler's codec, ``json`` unless the handler names another (plugins add more,
such as ``msgpack``).

A :class:`CodecRegistry` is an immutable value keyed by codec name; the ``App`` owns
one, built from :func:`default_codecs` plus its own and its plugins' codecs. There is
no module-level registry.

Every failure to encode or decode raises :class:`~spreadq.errors.PayloadError`, with the
underlying pydantic (or codec library) error as its ``__cause__``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Final, Protocol, TypeVar, cast, final, runtime_checkable

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from spreadq.errors import ConfigurationError, PayloadError

__all__ = [
    "UNTYPED",
    "Codec",
    "CodecRegistry",
    "JsonCodec",
    "RawCodec",
    "check_codec",
    "codec_for_value",
    "default_codecs",
    "validation_failure",
]

T = TypeVar("T")

UNTYPED: Final[TypeAdapter[object]] = TypeAdapter(object)
"""The adapter for a value of no declared type: serialised by its runtime type (models,
dataclasses, dates ... included), decoded to plain ``dict``/``list``/``str``/... values."""

_CODEC_NAME = re.compile(r"[!-~]{1,32}")


@runtime_checkable
class Codec(Protocol):
    """Turns values into bytes and back, guided by a pydantic ``TypeAdapter``.

    Implementations are synchronous and hold no per-call state: one instance serves
    every job of every handler that names it. ``name`` is 1..32 visible ASCII characters
    and unique among the codecs of an app.
    """

    @property
    def name(self) -> str:
        """The codec's registry key, e.g. ``"json"``."""
        ...

    def encode(self, value: T, adapter: TypeAdapter[T]) -> bytes:
        """Return ``value`` (declared as the adapter's type) as bytes.

        Raises:
            PayloadError: the value cannot be serialised.
        """
        ...

    def decode(self, data: bytes, adapter: TypeAdapter[T]) -> T:
        """Return ``data`` decoded and validated as the adapter's type.

        Raises:
            PayloadError: the bytes cannot be decoded, or do not validate.
        """
        ...


@final
class JsonCodec:
    """The built-in ``json`` codec: pydantic's ``dump_json`` and ``validate_json``.

    Encoding refuses a value that does not match its declared type (pydantic's
    serializer warnings are raised as errors), so a mistyped payload fails at the
    producer instead of at every consumer.
    """

    __slots__ = ()

    @property
    def name(self) -> str:
        """Always ``"json"``."""
        return "json"

    def encode(self, value: T, adapter: TypeAdapter[T]) -> bytes:
        """Return ``value`` as compact JSON.

        Raises:
            PayloadError: pydantic cannot serialise the value as the declared type.
        """
        try:
            return adapter.dump_json(value, warnings="error")
        except PydanticSerializationError as error:
            raise PayloadError(f"json: cannot encode {type(value).__name__}: {error}") from error

    def decode(self, data: bytes, adapter: TypeAdapter[T]) -> T:
        """Return ``data`` parsed and validated as the declared type.

        Raises:
            PayloadError: not JSON, or not valid for the declared type.
        """
        try:
            return adapter.validate_json(data)
        except ValidationError as error:
            raise validation_failure("json", error) from error

    def __repr__(self) -> str:
        return "JsonCodec()"


@final
class RawCodec:
    """The built-in ``raw`` codec: bytes carried exactly as they are.

    It is the codec of every ``bytes``-typed payload and result, and of RAW jobs (plain
    Spread messages sent to a queue's WORK group by programs that do not speak spreadq).
    """

    __slots__ = ()

    @property
    def name(self) -> str:
        """Always ``"raw"``."""
        return "raw"

    def encode(self, value: T, adapter: TypeAdapter[T]) -> bytes:
        """Return ``value`` itself when it is ``bytes`` (or a copy of a bytearray/memoryview).

        Raises:
            PayloadError: the value is not bytes-like.
        """
        if isinstance(value, bytes):
            return value
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        raise PayloadError(
            f"raw: cannot encode {type(value).__name__}; the raw codec carries bytes"
        )

    def decode(self, data: bytes, adapter: TypeAdapter[T]) -> T:
        """Return ``data`` validated as the declared type (for ``bytes``, ``data`` itself).

        Raises:
            PayloadError: the declared type does not accept bytes.
        """
        if adapter is UNTYPED:  # anything goes: a result read by kind name, once per job
            return cast(T, data)
        try:
            return adapter.validate_python(data)
        except ValidationError as error:
            raise validation_failure("raw", error) from error

    def __repr__(self) -> str:
        return "RawCodec()"


def validation_failure(codec: str, error: ValidationError) -> PayloadError:
    """Return a :class:`PayloadError` that summarises a pydantic validation error.

    For codec authors: ``raise validation_failure("mycodec", error) from error``.
    """
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or '(payload)'}: {problem['msg']}"
        for problem in error.errors(include_url=False)[:5]
    )
    count = error.error_count()
    more = f" (and {count - 5} more)" if count > 5 else ""
    return PayloadError(f"{codec}: payload is not a valid {error.title}: {problems}{more}")


def codec_for_value(value: object, default: str = "json") -> str:
    """Name the codec for a value put with no declared type: ``raw`` for bytes, else ``default``."""
    return "raw" if isinstance(value, bytes | bytearray | memoryview) else default


def check_codec(candidate: object) -> Codec:
    """Return ``candidate`` as a :class:`Codec` after checking it can serve as one.

    Raises:
        ConfigurationError: ``name`` is missing or not 1..32 visible ASCII characters,
            or ``encode``/``decode`` are missing, not callable, or ``async``.
    """
    name = getattr(candidate, "name", None)
    if not isinstance(name, str) or not _CODEC_NAME.fullmatch(name):
        raise ConfigurationError(
            f"codec {candidate!r} needs a name of 1 to 32 visible ASCII characters, got {name!r}"
        )
    for method in ("encode", "decode"):
        function = getattr(candidate, method, None)
        if not callable(function):
            raise ConfigurationError(f"codec {name!r} ({candidate!r}) has no {method}() method")
        if inspect.iscoroutinefunction(function):
            raise ConfigurationError(
                f"codec {name!r} ({candidate!r}): {method}() must be a plain function, not async"
            )
    if not isinstance(candidate, Codec):  # pragma: no cover - implied by the checks above
        raise ConfigurationError(f"codec {name!r} ({candidate!r}) is not a Codec")
    return candidate


@final
class CodecRegistry(Mapping[str, Codec]):
    """An immutable mapping of codec name to :class:`Codec`.

    Build one with :func:`default_codecs` and extend it with :meth:`with_codecs`, which
    returns a new registry; lookups of an unknown name through :meth:`require` raise a
    :class:`ConfigurationError` that lists the known names.

    Raises:
        ConfigurationError: (constructor) a codec fails :func:`check_codec`, or two
            codecs share a name.
    """

    __slots__ = ("_codecs",)

    def __init__(self, codecs: Iterable[Codec] = ()) -> None:
        table: dict[str, Codec] = {}
        for codec in codecs:
            checked = check_codec(codec)
            if checked.name in table:
                raise ConfigurationError(
                    f"two codecs are named {checked.name!r}: "
                    f"{table[checked.name]!r} and {checked!r}"
                )
            table[checked.name] = checked
        self._codecs: Mapping[str, Codec] = MappingProxyType(table)

    def __getitem__(self, name: str) -> Codec:
        return self._codecs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._codecs)

    def __len__(self) -> int:
        return len(self._codecs)

    def __repr__(self) -> str:
        return f"CodecRegistry({list(self._codecs.values())!r})"

    def require(self, name: str) -> Codec:
        """Return the codec called ``name``.

        Raises:
            ConfigurationError: no codec has that name.
        """
        try:
            return self._codecs[name]
        except KeyError:
            known = ", ".join(sorted(self._codecs)) or "none"
            raise ConfigurationError(f"unknown codec {name!r} (known: {known})") from None

    def with_codecs(self, *codecs: Codec) -> CodecRegistry:
        """Return a new registry holding these codecs and ``codecs``.

        Raises:
            ConfigurationError: a codec is invalid or its name is already taken.
        """
        return CodecRegistry((*self._codecs.values(), *codecs))


def default_codecs() -> CodecRegistry:
    """Return a new registry of the built-in codecs, ``json`` and ``raw``."""
    return CodecRegistry((JsonCodec(), RawCodec()))
