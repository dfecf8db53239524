"""Quickstart: a worker and a producer in one process, on the embedded daemon.

Run it with ``python examples/quickstart.py``. In production the worker runs in its own
processes (``spreadq worker quickstart:app --spread 4803``) next to a real Spread daemon,
and producers run wherever jobs come from.

spreadq logs through the standard ``logging`` module and prints nothing by itself; this
program shows spreadq's info lines on stderr with one ``logging.basicConfig`` call, and
its own results on stdout.
"""

from __future__ import annotations

import logging
import sys
from functools import partial

import anyio
from pydantic import BaseModel

import spreadq
from spreadq.daemon import serve


class Resize(BaseModel):
    path: str
    width: int


class Thumbnail(BaseModel):
    path: str
    member: str


app = spreadq.App(queue="images")


@app.handler("resize")
async def resize(job: Resize, ctx: spreadq.Context) -> Thumbnail:
    return Thumbnail(path=f"{job.path}@{job.width}px", member=ctx.member)


async def main(count: int = 5) -> None:
    async with serve() as daemon, anyio.create_task_group() as tg:
        # the worker: returns once it has joined the queue's group
        await tg.start(partial(app.run, spread=daemon.address, handle_signals=False))
        async with spreadq.Producer("images", daemon.address) as producer:
            receipts = [
                await producer.put(resize, Resize(path=f"photo{i}.png", width=128))
                for i in range(count)
            ]
            for receipt in receipts:
                thumbnail = await receipt  # a Thumbnail, typed from the handler
                print(f"{thumbnail.path} made by {thumbnail.member}")
        app.stop()  # drain: finish running jobs, flush ACKs, leave


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 5)
