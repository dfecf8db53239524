"""Routes: a producer's payload encoding and result decoding, per handler or kind."""

from __future__ import annotations

import pytest

from spreadq.codecs import default_codecs
from spreadq.errors import ConfigurationError, PayloadError
from spreadq.producer.routes import Routes
from spreadq.queue.jobs import Outcome
from spreadq.worker.app import App


def test_kind_routes_are_cached_and_decode_with_the_named_codec() -> None:
    routes = Routes(default_codecs(), "json")
    route = routes.for_kind("add", raw=False)
    assert routes.for_kind("add", raw=False) is route
    assert (route.codec.name, route.result_codec) == ("json", "json")
    assert routes.for_kind("add", raw=True).codec.name == "raw"
    assert routes.result_decoder(route, "json", Outcome.success(b"3")) is None
    decode = routes.result_decoder(route, "json", Outcome.success(b"\x00", codec="raw"))
    assert decode is not None
    assert decode(b"\x00") == b"\x00"
    unknown = routes.result_decoder(route, "json", Outcome.success(b"x", codec="msgpack"))
    assert unknown is not None
    with pytest.raises(PayloadError, match="msgpack"):
        unknown(b"x")
    with pytest.raises(ConfigurationError):
        routes.for_kind("bad kind", raw=False)


def test_handler_routes_decode_results_as_the_declared_type() -> None:
    app = App("routes", plugins=False)

    @app.handler("count")
    async def count(data: bytes) -> int:
        return len(data)

    routes = Routes(default_codecs(), "json")
    route = routes.for_handler(count.spec)
    assert routes.for_handler(count.spec) is route
    assert (route.codec.name, route.result_codec) == ("raw", "json")
    # the worker names "json" (not the job's raw): the route's own decoder fits
    assert routes.result_decoder(route, "raw", Outcome.success(b"3", codec="json")) is None
    assert route.decode(b"3") == 3
    with pytest.raises(PayloadError):
        route.decode(b'"three"')


def test_an_unknown_producer_codec_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Routes(default_codecs(), "nope")
