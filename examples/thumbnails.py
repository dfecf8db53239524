"""A small worker app with the parts a handler test should cover (see test_thumbnails.py).

The handler retries a flaky source, refuses a bad width for good, and has a timeout;
a middleware measures each attempt, and an ``on_failure`` hook reports jobs that failed
for good. Run it as a worker with ``spreadq worker thumbnails:app`` from this folder.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

import spreadq
from spreadq.middleware import CallNext

__all__ = ["Resize", "Thumbnail", "app", "resize"]


class Resize(BaseModel):
    path: str
    width: int


class Thumbnail(BaseModel):
    path: str
    attempt: int


app = spreadq.App(queue="thumbnails", plugins=False)


@app.middleware
async def timed(ctx: spreadq.Context, payload: object, call_next: CallNext) -> object:
    started = time.perf_counter()
    try:
        return await call_next(ctx, payload)
    finally:
        ctx.log.info("thumbnail_timed", seconds=round(time.perf_counter() - started, 6))


@app.on_failure
async def report(ctx: spreadq.Context, error: BaseException) -> None:
    ctx.log.warning("thumbnail_failed", error=type(error).__name__, attempts=ctx.attempt)


@app.handler("resize", max_attempts=3, timeout=5.0, retry_on=(ConnectionError,))
async def resize(job: Resize, ctx: spreadq.Context) -> Thumbnail:
    if job.width <= 0:
        raise ValueError(f"width must be positive, got {job.width}")
    if job.path.startswith("flaky/") and ctx.attempt == 1:
        raise ConnectionError("the image store did not answer")
    # the real work would read, scale and write the image here
    return Thumbnail(path=f"{job.path}@{job.width}px", attempt=ctx.attempt)
