"""The App that ``spreadq demo`` runs in its worker processes (``spreadq.cli.demo_app:app``)."""

from __future__ import annotations

import anyio
from pydantic import BaseModel

from spreadq.context import Context
from spreadq.worker.app import App

__all__ = ["QUEUE", "Render", "Rendered", "app", "render"]

QUEUE = "spreadq-demo"


class Render(BaseModel):
    """A demo job: pretend to render frame ``n`` for ``work_ms`` milliseconds."""

    n: int
    work_ms: float = 1.0


class Rendered(BaseModel):
    """What a worker reports back: which member ran the frame, on which attempt."""

    n: int
    member: str
    attempt: int


app = App(queue=QUEUE)


@app.handler("render")
async def render(job: Render, ctx: Context) -> Rendered:
    """Sleep for the job's work time and say who did it."""
    await anyio.sleep(job.work_ms / 1000)
    return Rendered(n=job.n, member=ctx.member, attempt=ctx.attempt)
