"""Routes: how a producer encodes the payload of each handler or kind, and decodes results.

A job put by handler is encoded with the handler's payload codec and checked against its
payload type; its result decodes as the handler's result type. A job put by kind name
is encoded with the producer's codec (``raw`` for bytes) from any value pydantic can
serialise, and its result decodes to plain values. Either way the worker encodes a
result with its handler's result codec, and the ACK outcome names that codec when it
is not the job's own (:meth:`~spreadq.queue.jobs.Outcome.result_codec`): the result is
decoded with the codec named, so a handler that returns ``bytes`` to a job put by kind
gives ``bytes``.

Routes are built once per handler or ``(kind, raw)`` and cached; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from pydantic import TypeAdapter

from spreadq.codecs import UNTYPED, Codec, CodecRegistry
from spreadq.errors import PayloadError
from spreadq.handlers import AnyHandlerSpec, check_kind
from spreadq.queue.jobs import Outcome

__all__ = ["Route", "Routes"]


@dataclass(frozen=True, slots=True)
class Route:
    """How jobs of one kind are encoded and their results decoded.

    ``decode`` decodes a result encoded with ``result_codec`` as ``result_adapter`` says.
    """

    kind: str
    codec: Codec
    adapter: TypeAdapter[Any]
    result_codec: str
    result_adapter: TypeAdapter[Any]
    decode: Callable[[bytes], Any]


def _decode_with(codec: Codec, adapter: TypeAdapter[Any], data: bytes) -> Any:
    return codec.decode(data, adapter)


def _unknown_codec(kind: str, codec: str, data: bytes) -> Any:
    raise PayloadError(f"{kind}: the result is encoded with codec {codec!r}, unknown here")


class Routes:
    """The routes of one producer, cached.

    Args:
        codecs: the codecs the producer knows.
        codec: the codec of payloads put by kind name (``bytes`` always go ``raw``).

    Raises:
        ConfigurationError: ``codec`` is not in ``codecs``.
    """

    __slots__ = ("_cache", "_codec", "_codecs")

    def __init__(self, codecs: CodecRegistry, codec: str) -> None:
        codecs.require(codec)
        self._codecs = codecs
        self._codec = codec
        self._cache: dict[object, Route] = {}

    def for_handler(self, spec: AnyHandlerSpec) -> Route:
        """The route of jobs put by handler.

        Raises:
            ConfigurationError: the handler names a codec this producer does not know.
        """
        route = self._cache.get(spec)
        if route is None:
            result_codec = self._codecs.require(spec.result_codec)
            adapter = spec.result_adapter
            route = self._cache[spec] = Route(
                spec.kind,
                self._codecs.require(spec.payload_codec),
                spec.payload_adapter,
                result_codec.name,
                adapter,
                partial(_decode_with, result_codec, adapter),
            )
        return route

    def for_kind(self, kind: str, raw: bool) -> Route:
        """The route of jobs put by kind name, with a ``bytes`` payload when ``raw``.

        Raises:
            ConfigurationError: a bad kind name.
        """
        route = self._cache.get((kind, raw))
        if route is None:
            check_kind(kind)
            codec = self._codecs.require("raw" if raw else self._codec)
            decode = partial(_decode_with, codec, UNTYPED)
            route = self._cache[(kind, raw)] = Route(
                kind, codec, UNTYPED, codec.name, UNTYPED, decode
            )
        return route

    def result_decoder(
        self, route: Route, job_codec: str, outcome: Outcome
    ) -> Callable[[bytes], Any] | None:
        """How to decode ``outcome``'s result, for a job sent with ``job_codec`` on
        ``route``: None when the route's own decoder fits. A codec this producer does
        not know gives a decoder that raises :class:`~spreadq.errors.PayloadError`."""
        codec = outcome.result_codec(job_codec)
        if codec == route.result_codec:
            return None
        found = self._codecs.get(codec)
        if found is None:
            return partial(_unknown_codec, route.kind, codec)
        return partial(_decode_with, found, route.result_adapter)
