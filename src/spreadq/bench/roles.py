"""The benchmark's child processes: the embedded daemon, a worker, a raw flood receiver.

``spreadq bench --role ROLE`` runs one of them (:func:`run_role`). They talk to the
parent through their standard output:

* the daemon prints its address once it listens;
* a worker prints one line on each SIGUSR1: how many Spread messages its connection has
  multicast so far (ACKs, VIEWs, ...), then how many of them went to private groups
  only (NOTICEs to the producer). It counts them by wrapping
  :meth:`spreadq.Connection.multicast` in its own process, the one place every message
  a worker sends passes through, so the count needs nothing from the worker runtime.
  Its no-op handler returns the wall-clock time it started (8 bytes), which the
  producer reads from the receipt for the one-way latency.
"""

from __future__ import annotations

import contextlib
import signal
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any, Final

import anyio
import anyio.abc

from spreadq.bench.procs import Role
from spreadq.client import Connection, connect
from spreadq.daemon import Daemon, run_forever
from spreadq.errors import ConfigurationError
from spreadq.eventloop import Loop, use_uvloop
from spreadq.settings import Settings
from spreadq.wire.events import DataMessage, RegularMembership
from spreadq.worker.app import App

__all__ = [
    "ACK_EVERY",
    "NOOP",
    "QUEUE",
    "RAW_CONTROL",
    "RAW_GROUP",
    "STAMP",
    "run_role",
]

QUEUE: Final = "spreadq-bench"
"""The queue the benchmark's producer and workers use."""
NOOP: Final = "noop"
"""The kind of the benchmark's jobs."""
RAW_GROUP: Final = "spreadq-rawflood"
RAW_CONTROL: Final = "spreadq-rawflood-ctl"
ACK_EVERY: Final = 200
"""Raw receivers report their progress every this many messages."""
STAMP: Final = struct.Struct("<d")
"""What the no-op handler returns: ``time.time()`` when it started."""


def run_role(
    role: Role,
    address: str | None,
    *,
    count: int,
    ack_interval: float,
    loop: Loop,
    plugins: bool = False,
    rule: str = "round_robin",
) -> None:
    """Run one child process of the benchmark (``spreadq bench --role ...``).

    Raises:
        ConfigurationError: a role other than ``daemon`` without an address.
    """
    options = {"use_uvloop": use_uvloop(loop)}
    if role == "daemon":
        anyio.run(_serve_daemon, backend_options=options)
        return
    if address is None:
        raise ConfigurationError(f"the {role} role needs --address")
    if role == "worker":
        with contextlib.suppress(KeyboardInterrupt):
            anyio.run(_worker, address, ack_interval, plugins, rule, backend_options=options)
        return
    anyio.run(_raw_receiver, address, count, backend_options=options)


async def _serve_daemon() -> None:
    def ready(daemon: Daemon) -> None:
        print(daemon.address, flush=True)  # the parent reads this line

    with contextlib.suppress(anyio.get_cancelled_exc_class()):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_stop_on_signal, tasks.cancel_scope)
            await run_forever(port=0, ready=ready)


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


# --- worker -------------------------------------------------------------------------------


def _count_multicasts() -> list[int]:
    """Count every :meth:`Connection.multicast` call of this process from now on: all of
    them, and those to private groups only (a NOTICE reaches one process, not all)."""
    sent = [0, 0]
    original = Connection.multicast

    def counted(self: Connection, groups: str | Sequence[str], *args: Any, **kwargs: Any) -> Any:
        sent[0] += 1
        names = (groups,) if isinstance(groups, str) else groups
        if all(name.startswith("#") for name in names):
            sent[1] += 1
        return original(self, groups, *args, **kwargs)

    setattr(Connection, "multicast", counted)  # noqa: B010 (mypy refuses a method assignment)
    return sent


async def _worker(address: str, ack_interval: float, plugins: bool, rule: str) -> None:
    sent = _count_multicasts()
    settings = Settings(ack_interval=ack_interval, metrics_port=0 if plugins else None)
    app = App(QUEUE, address, rule=rule, plugins=plugins, settings=settings)

    @app.handler(NOOP)
    async def noop(data: bytes) -> bytes:
        return STAMP.pack(time.time())

    async with anyio.create_task_group() as tasks:
        await tasks.start(_report_on_signal, sent)
        await app.run()
        tasks.cancel_scope.cancel()


async def _report_on_signal(
    sent: list[int], *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGUSR1) as signals:
        task_status.started()
        async for _ in signals:
            sys.stdout.write(f"{sent[0]} {sent[1]}\n")
            sys.stdout.flush()


# --- raw flood receiver -------------------------------------------------------------------


async def _raw_receiver(address: str, count: int) -> None:
    """Read ``count`` messages of the raw flood; report progress every 200."""
    async with connect(address) as rx:
        await rx.join(RAW_GROUP)
        while not isinstance(await rx.receive(), RegularMembership):
            pass
        await rx.multicast(RAW_CONTROL, b"ready")
        seen = reported = 0
        while seen < count:
            for event in await rx.receive_batch():
                if type(event) is DataMessage:
                    seen += 1
            if seen - reported >= ACK_EVERY or seen >= count:
                reported = seen
                await rx.multicast(RAW_CONTROL, b"ack" + seen.to_bytes(8, "big"))
        await rx.flush()
