"""Handler tests with ``spreadq.testing.run_app``: ``pytest examples/test_thumbnails.py``.

``run_app(app)`` starts an embedded Spread daemon, runs the app as a worker in the
test's event loop and yields a producer for its queue, so each job goes through the
codecs, the middleware, retries, timeouts and ``on_failure`` hooks as in production.
The tests are marked for pytest-asyncio (``@pytest.mark.anyio`` works the same way).
"""

from __future__ import annotations

import anyio
import pytest
from structlog.testing import capture_logs
from thumbnails import Resize, Thumbnail, app, resize

import spreadq
from spreadq.testing import run_app

# Retries without waiting: the app's own settings with no backoff.
FAST = app.settings.replace(retry_backoff_base=0.0, retry_jitter=0.0)


@pytest.mark.asyncio
async def test_a_thumbnail_is_made() -> None:
    with anyio.fail_after(10):
        async with run_app(app) as producer:
            thumbnail = await (await producer.put(resize, Resize(path="cat.png", width=128)))
    assert thumbnail == Thumbnail(path="cat.png@128px", attempt=1)


@pytest.mark.asyncio
async def test_a_flaky_store_is_retried() -> None:
    with anyio.fail_after(10):
        async with run_app(app, settings=FAST) as producer:
            thumbnail = await (await producer.put(resize, Resize(path="flaky/cat.png", width=8)))
    assert thumbnail.attempt == 2


@pytest.mark.asyncio
async def test_a_bad_width_fails_once_and_is_reported() -> None:
    with capture_logs() as logs, anyio.fail_after(10):
        async with run_app(app, settings=FAST) as producer:
            receipt = await producer.put(resize, Resize(path="cat.png", width=0))
            with pytest.raises(spreadq.JobFailed) as failed:
                await receipt
    assert failed.value.error_type == "ValueError"
    assert failed.value.attempts == 1  # ValueError is not in retry_on
    (reported,) = [entry for entry in logs if entry["event"] == "thumbnail_failed"]
    assert reported["error"] == "ValueError"
    assert any(entry["event"] == "thumbnail_timed" for entry in logs)
