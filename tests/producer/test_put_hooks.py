"""Plugins' put hooks: run by ``Producer.put`` before encoding, their headers added under
the caller's; a hook that raises or returns something else is logged and skipped."""

from __future__ import annotations

from collections.abc import Mapping

import anyio
import pytest
from structlog.testing import capture_logs

from spreadq.context import Context
from spreadq.daemon import Daemon
from spreadq.errors import ConfigurationError
from spreadq.plugins import Plugin, check_put_hook
from spreadq.producer import Producer
from spreadq.testing import run_app
from spreadq.worker.app import App

QUEUE = "hooked"
WAIT = 20


def app() -> App:
    app = App(QUEUE, plugins=False)

    @app.handler("headers")
    async def headers(n: int, ctx: Context) -> dict[str, str]:
        return dict(ctx.headers)

    return app


def tag(queue: str, kind: str) -> Mapping[str, str]:
    return {"hooked": f"{queue}/{kind}", "shared": "hook"}


def broken(queue: str, kind: str) -> Mapping[str, str]:
    raise RuntimeError("a plugin bug")


def wrong(queue: str, kind: str) -> Mapping[str, str]:
    return {"n": 1}  # type: ignore[dict-item]


async def test_hook_headers_travel_with_the_job_under_the_callers(spreadq_daemon: Daemon) -> None:
    plugin = Plugin(name="tagger", put_hooks=(broken, wrong, tag))
    producer_plugins: list[str | Plugin] = [plugin]
    async with run_app(app(), daemon=spreadq_daemon) as plain:
        producer = Producer(QUEUE, spreadq_daemon.address, plugins=producer_plugins)
        with capture_logs() as logs:
            async with producer:
                with anyio.fail_after(WAIT):
                    receipt = await producer.put("headers", 1, headers={"shared": "caller"})
                    headers = await receipt
        assert await (await plain.put("headers", 2)) == {}  # a producer without the hook
    assert headers == {"hooked": f"{QUEUE}/headers", "shared": "caller"}
    failed = [entry for entry in logs if entry["event"] == "put_hook_failed"]
    assert [entry["error"].split(":")[0] for entry in failed] == ["RuntimeError", "TypeError"]


def test_an_async_put_hook_is_refused() -> None:
    async def hook(queue: str, kind: str) -> None:
        return None

    with pytest.raises(ValueError, match="synchronous"):
        Plugin(name="bad", put_hooks=(hook,))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not callable"):
        check_put_hook(42)
