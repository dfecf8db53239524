"""Type-checked only (``mypy --strict tests/typing/api_usage.py``); never run by pytest.

Shows the typed handler surface: ``@app.handler`` keeps the payload and result types,
the Handler stays callable as the function, and a ``put(handler, payload)`` shaped like
``Producer.put`` checks the payload against the handler. Lines ending in a
``type: ignore[...]`` must be errors: ``--strict`` reports an unused ignore otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar, assert_type

from pydantic import BaseModel

from spreadq.context import Context
from spreadq.handlers import Handler, HandlerSpec, handler
from spreadq.middleware import CallNext
from spreadq.producer import Producer
from spreadq.producer import Receipt as ProducerReceipt
from spreadq.settings import Settings
from spreadq.worker.app import App

P = TypeVar("P")
R = TypeVar("R")


class ResizeJob(BaseModel):
    path: str
    width: int


class Thumbnail(BaseModel):
    path: str


app = App("images", "4803", rule="key_affinity", settings=Settings(concurrency=4))


@app.handler("resize", max_attempts=5, timeout=30.0)
async def resize(job: ResizeJob, ctx: Context) -> Thumbnail:
    ctx.log.info("resizing", path=job.path, attempt=ctx.attempt)
    return Thumbnail(path=f"{job.path}.thumb")


@app.handler("ping")
async def ping(job: ResizeJob) -> None:
    return None


@app.handler(raw=0x1234)
async def from_c(data: bytes) -> None:
    return None


@handler("standalone")
async def standalone(job: int) -> str:
    return str(job)


@app.middleware
async def timing(ctx: Context, payload: object, call_next: CallNext) -> object:
    return await call_next(ctx, payload)


@app.on_failure
async def report(ctx: Context, error: BaseException) -> None:
    ctx.log.error("job_failed_for_good", error=repr(error))


assert_type(resize, Handler[ResizeJob, Thumbnail])
assert_type(ping, Handler[ResizeJob, None])
assert_type(from_c, Handler[bytes, None])
assert_type(standalone, Handler[int, str])


async def plain(job: int, ctx: Context) -> str:
    return ctx.kind * job


assert_type(HandlerSpec.build(plain, "plain"), HandlerSpec[int, str])
assert_type(app.work_group, str)

second = App("thumbs", handlers=[standalone, resize.spec], plugins=False)


class Receipt(Generic[R]):
    """Stands in for spreadq.producer.Receipt."""

    def __init__(self, kind: str) -> None:
        self.kind = kind


def put(kind: Handler[P, R], payload: P) -> Receipt[R]:
    """Shaped like ``Producer.put(handler, payload)``."""
    return Receipt(kind.kind)


async def use() -> None:
    job = ResizeJob(path="a.png", width=100)
    ctx = Context(job="t-1", kind="resize", queue="images", member="#w1#host")
    assert_type(await resize(job, ctx), Thumbnail)
    assert_type(await standalone(3), str)
    assert_type(put(resize, job), Receipt[Thumbnail])
    assert_type(put(standalone, 3), Receipt[str])
    put(resize, Thumbnail(path="x"))  # type: ignore[misc]
    put(standalone, "three")  # type: ignore[misc]
    await standalone("three")  # type: ignore[arg-type]


async def use_producer(producer: Producer) -> None:
    """The real ``Producer``: ``put`` and ``put_many`` check payloads the same way."""
    job = ResizeJob(path="a.png", width=100)
    assert_type(await producer.put(resize, job), ProducerReceipt[Thumbnail])
    assert_type(await producer.put_many(resize, [job, job]), list[ProducerReceipt[Thumbnail]])
    assert_type(await producer.put_many("resize", [{}]), list[ProducerReceipt[Any]])
    await producer.put_many(resize, [Thumbnail(path="x")])  # type: ignore[misc]


@app.handler("sync")
def checksum(job: ResizeJob) -> str:  # a plain def: run in a worker thread
    return job.path


def use_sync() -> None:
    assert_type(put(checksum, ResizeJob(path="a.png", width=1)), Receipt[str])
    put(checksum, 3)  # type: ignore[misc]


app.middleware(ping)  # type: ignore[type-var]


class Pool:
    async def close(self) -> None:
        return None


@asynccontextmanager
async def lifespan(app: App) -> AsyncIterator[Pool]:
    pool = Pool()
    yield pool
    await pool.close()


with_lifespan = App("pooled", lifespan=lifespan, dead_letter=True)
App("pooled", lifespan=Pool)  # type: ignore[arg-type]
