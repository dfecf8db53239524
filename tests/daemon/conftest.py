from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from spreadq.testing import WireClient

Connect = Callable[..., Awaitable[WireClient]]


@pytest.fixture
async def wire() -> AsyncIterator[Connect]:
    """``await wire(address, name, **options)``: a WireClient closed after the test."""
    clients: list[WireClient] = []

    async def connect(address: str, name: str = "", **options: Any) -> WireClient:
        client = await WireClient.connect(address, name, **options)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.aclose()
