"""Queue benchmark: 1 producer and 4 worker processes, against a raw flood on the same daemon.

The measuring lives in :mod:`spreadq.bench` (also behind ``spreadq bench``); this script
runs it on the embedded daemon (in its own process) and on a real Spread daemon when
``SPREADQ_SPREAD_DAEMON`` names its binary, with larger default sizes, and prints one
line per daemon (``--json`` for the reports):

* raw flood: one sender to 4 receiver processes, windowed by their reports (msg/s);
* queue flood: ``Producer.put()`` as fast as flow control lets it, to 4 ``App.run()``
  workers with a no-op handler (jobs/s, p50/p99 from ``put()`` to the receipt);
* queue at half load: the same, paced at half the flood rate (p50/p99 one way, from
  ``put()`` to the handler starting, and round trip, to the receipt).

The ratio is the queue's jobs/s over the raw flood's msg/s (jobs are packed several to
a message, so it can pass 1).

    .venv/bin/python benchmarks/bench_queue.py              # about 30-60 s on 2 cores
    .venv/bin/python benchmarks/bench_queue.py --jobs 20000 --only embedded --loop asyncio
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio

from spreadq.bench import BenchReport, embedded_daemon, run_bench
from spreadq.eventloop import Loop, use_uvloop
from spreadq.logs import configure_logging
from spreadq.settings import Settings

__all__ = ["main"]

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "interop"))


@contextlib.contextmanager
def real_daemon() -> Iterator[str | None]:
    import real_daemon as launcher  # tests/interop/real_daemon.py

    binary = launcher.daemon_binary()
    if binary is None:
        yield None
        return
    with (
        tempfile.TemporaryDirectory() as tmp,
        launcher.start_real_daemon(binary, Path(tmp)) as daemon,
    ):
        yield str(daemon.tcp_address)


def line(report: BenchReport) -> str:
    flood, half = report.flood, report.half_load
    raw = "-" if report.raw_msgs_per_s is None else f"{report.raw_msgs_per_s:,.0f}"
    ratio = "-" if flood.ratio_to_raw is None else f"x{flood.ratio_to_raw:.2f}"
    return (
        f"{report.daemon:>10}  raw {raw:>8} msg/s | queue"
        f" {flood.jobs_per_s:>8,.0f} jobs/s ({ratio}), flood round trip p50"
        f" {flood.round_trip.p50_ms:.1f} ms p99 {flood.round_trip.p99_ms:.1f} ms"
        f" | at {half.jobs_per_s:,.0f} jobs/s one way p50 {half.one_way.p50_ms:.2f} ms"
        f" p99 {half.one_way.p99_ms:.2f} ms, round trip p50 {half.round_trip.p50_ms:.2f} ms"
        f" p99 {half.round_trip.p99_ms:.2f} ms | re-sent {report.resent}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40_000, help="jobs in the flood run")
    parser.add_argument("--raw", type=int, default=40_000, help="messages in the raw flood")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--only", choices=["embedded", "real"])
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    parser.add_argument("--log-level", default="warning", help="for every child process")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")
    parser.add_argument(
        "--ack-interval",
        type=float,
        default=Settings().ack_interval,
        help="the workers' ACK interval (seconds): latency against ACK traffic",
    )
    args = parser.parse_args()
    configure_logging(args.log_level)
    loop: Loop = args.loop
    options = {"use_uvloop": use_uvloop(loop)}

    def measure(address: str, name: str) -> BenchReport:
        return anyio.run(
            lambda: run_bench(
                address,
                daemon=name,
                workers=args.workers,
                jobs=args.jobs,
                raw=args.raw,
                ack_interval=args.ack_interval,
                loop=loop,
                log_level=args.log_level,
            ),
            backend_options=options,
        )

    async def on_embedded() -> BenchReport:
        async with embedded_daemon(loop, args.log_level) as embedded:
            return await run_bench(
                embedded.address,
                daemon="embedded",
                daemon_pid=embedded.pid,
                workers=args.workers,
                jobs=args.jobs,
                raw=args.raw,
                ack_interval=args.ack_interval,
                loop=loop,
                log_level=args.log_level,
            )

    if not args.json:
        print(
            f"1 producer, {args.workers} worker processes, 100 B payloads, no-op handler,"
            f" ACK interval {args.ack_interval * 1e3:g} ms, uvloop {options['use_uvloop']}",
            flush=True,
        )
    reports: list[BenchReport] = []
    if args.only != "real":
        reports.append(anyio.run(on_embedded, backend_options=options))
        if not args.json:
            print(line(reports[-1]), flush=True)
    if args.only != "embedded":
        with real_daemon() as address:
            if address is None:
                if not args.json:
                    print("      real  skipped: SPREADQ_SPREAD_DAEMON is not set")
            else:
                reports.append(measure(address, "real 5.0.1"))
                if not args.json:
                    print(line(reports[-1]), flush=True)
    if args.json:
        print(json.dumps([report.model_dump(mode="json") for report in reports], indent=2))


if __name__ == "__main__":
    main()
