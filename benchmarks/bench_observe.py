"""Event bus benchmark: what ``publish`` costs per event, with 0, 1 and 2 observers.

A worker publishes a few events per job (started, succeeded), so this is the price of
observability on the hot path. The cases, each per event:

* ``guarded_empty``: ``if JobStarted in bus.routes: bus.publish(JobStarted(...))``
  with nobody taking JobStarted, the way spreadq publishes: no event is built;
* ``publish_empty``: ``bus.publish(event)`` with nobody subscribed, the event prebuilt;
* ``publish_noop``: one observer that does nothing, the event prebuilt;
* ``build_event``: building one JobStarted (a frozen, slotted dataclass), nothing else;
* ``counters_direct``: the always-on counters on the per-job path, per call
  (``job_started`` then ``job_ended``, the worker's two calls per job);
* ``counters_observer``: a prebuilt JobStarted/JobSucceeded pair given to
  :class:`~spreadq.observe.Counters` called as an observer, per event (subscribed to
  a bus it takes only the rare events: this is what the direct calls save);
* ``job_with_prometheus``: what one job costs with the ``spreadq-prometheus`` observer
  subscribed (when installed): the guarded JobStarted (it takes none) and a JobSucceeded
  built and published, per job.

Each figure is the best of ``--repeat`` runs of ``--events`` calls, in nanoseconds.

    .venv/bin/python benchmarks/bench_observe.py
    .venv/bin/python benchmarks/bench_observe.py --events 1000000 --json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from importlib.util import find_spec

from spreadq.observe import Counters, Event, EventBus, JobStarted, JobSucceeded
from spreadq.queue.jobs import JobRef

__all__ = ["main"]

REF = JobRef(b"p" * 16, 1)


def _best(run: Callable[[int], None], events: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter_ns()
        run(events)
        best = min(best, (time.perf_counter_ns() - started) / events)
    return best


def _loop_only(events: int) -> None:
    for _ in range(events):
        pass


def guarded_empty(events: int) -> None:
    bus = EventBus()
    for seq in range(events):
        if JobStarted in bus.routes:
            bus.publish(JobStarted("q", REF, "k", seq))


def publish_empty(events: int) -> None:
    bus = EventBus()
    event = JobStarted("q", REF, "k", 1)
    publish = bus.publish
    for _ in range(events):
        publish(event)


def publish_noop(events: int) -> None:
    def noop(event: Event) -> None:
        pass

    bus = EventBus([noop])
    event = JobStarted("q", REF, "k", 1)
    publish = bus.publish
    for _ in range(events):
        publish(event)


def build_event(events: int) -> None:
    for seq in range(events):
        JobStarted("q", REF, "k", seq)


def counters_direct(events: int) -> None:
    counters = Counters()
    started, ended = counters.job_started, counters.job_ended
    for _ in range(events // 2):
        started(REF, 1.0)
        ended(REF, "k", "succeeded", 0.001)


def counters_observer(events: int) -> None:
    counters = Counters()
    begin, end = JobStarted("q", REF, "k", 1), JobSucceeded("q", REF, "k", 1, 0.001)
    for _ in range(events // 2):
        counters(begin)
        counters(end)


def job_with_prometheus(events: int) -> None:
    from spreadq_prometheus import PrometheusObserver

    bus = EventBus([PrometheusObserver()])
    routes = bus.routes
    for seq in range(events):
        if JobStarted in routes:
            bus.publish(JobStarted("q", REF, "k", seq))
        if JobSucceeded in routes:
            bus.publish(JobSucceeded("q", REF, "k", seq, 0.001))


CASES: dict[str, Callable[[int], None]] = {
    "guarded_empty": guarded_empty,
    "publish_empty": publish_empty,
    "publish_noop": publish_noop,
    "build_event": build_event,
    "counters_direct": counters_direct,
    "counters_observer": counters_observer,
}
if find_spec("spreadq_prometheus") is not None:
    CASES["job_with_prometheus"] = job_with_prometheus


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run every case; print a table (or JSON) of nanoseconds per event and return it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    loop = _best(_loop_only, args.events, args.repeat)
    figures = {
        name: round(_best(case, args.events, args.repeat) - loop, 1) for name, case in CASES.items()
    }
    figures["empty_loop"] = round(loop, 1)
    if args.json:
        print(json.dumps(figures))
    else:
        for name, ns in figures.items():
            print(f"{name:>20}  {ns:8.1f} ns/event")
    return figures


if __name__ == "__main__":
    main()
