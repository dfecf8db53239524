"""The figures a benchmark run reports, and the pure arithmetic that makes them.

Everything here is a value (frozen pydantic models, the ``--json`` output) or a function
of plain numbers: no processes, no clocks, so the summaries are tested on their own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

__all__ = [
    "BenchReport",
    "Cpu",
    "Latency",
    "QueueFigures",
    "Wire",
    "delivered_per_job",
    "latency",
    "quantile",
]

CDF_POINTS = 101
"""A latency CDF is kept as its 0th, 1st, ... 100th percentiles."""


class Latency(BaseModel):
    """The distribution of one latency over the jobs of a run, in milliseconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    cdf_ms: tuple[float, ...]
    """The 0th, 1st, ..., 100th percentiles (101 points), for charts."""


class Cpu(BaseModel):
    """Seconds of each process during one run: on a CPU (user + system), as
    :attr:`QueueFigures.cpu`, ready to run and waiting for one, as
    :attr:`QueueFigures.waited`, or on a CPU each time it was switched in, on average,
    as :attr:`QueueFigures.mean_slice`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    producer_s: float
    workers_s: tuple[float, ...]
    daemon_s: float | None
    """None when the daemon's process is not known: one given by address, without
    ``spreadq bench --daemon-pid``."""

    @property
    def total_s(self) -> float:
        """All the processes measured, together."""
        return self.producer_s + sum(self.workers_s) + (self.daemon_s or 0.0)


class Wire(BaseModel):
    """Spread messages the run put on the wire.

    ``producer_messages`` is the producer's own count of its multicasts
    (:attr:`~spreadq.producer.ProducerStatistics.messages`); ``worker_messages`` is the
    sum of what each bench worker process counted its connection multicast (ACKs,
    VIEWs, NOTICEs, ...). Deliveries are computed from the group sizes: a JOB message
    reaches every worker, a worker's message to WORK and FEEDBACK every worker and the
    producer, and one to a private group only (a NOTICE) the producer alone.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    producer_messages: int
    worker_messages: int
    worker_private_messages: int = 0
    """Of ``worker_messages``, those sent to a private group only (NOTICEs)."""
    sent_per_job: float
    """(producer + worker messages) / jobs: messages clients hand to the daemon."""
    delivered_per_job: float
    """Messages the daemon hands to clients, per job."""


class QueueFigures(BaseModel):
    """One queue run (flood or half load): rate, latencies, CPU, messages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    jobs: int
    seconds: float
    """From the first ``put()`` to the last receipt resolved."""
    jobs_per_s: float
    one_way: Latency
    """From ``put()`` to the handler starting (wall clocks of one machine)."""
    round_trip: Latency
    """From ``put()`` to the receipt resolving."""
    cpu: Cpu | None
    """None where ``/proc`` cannot be read (not Linux)."""
    waited: Cpu | None = None
    """The seconds each process was ready to run and waited for a CPU (its main
    thread's, ``/proc/<pid>/schedstat``): on a saturated machine, where the latency goes.
    None where that cannot be read."""
    mean_slice: Cpu | None = None
    """The seconds each process ran each time it was switched in (woken, or resumed
    after a preemption), on average (its main thread's, ``/proc/<pid>/schedstat``): how
    long the next process woken may wait behind it. None where that cannot be read."""
    wire: Wire
    ratio_to_raw: float | None
    """``jobs_per_s`` over the raw flood's messages/s of the same run; None without one."""


class BenchReport(BaseModel):
    """What one benchmark run measured on one daemon (``spreadq bench --json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    daemon: str
    address: str
    workers: int
    payload_bytes: int
    uvloop: bool
    rule: str = "round_robin"
    """The workers' ownership rule (``spreadq bench --rule``)."""
    raw_messages: int
    raw_msgs_per_s: float | None
    """None when the raw flood was skipped (``raw=0``)."""
    flood: QueueFigures
    half_load: QueueFigures
    """The paced run: at half the flood's rate, or at ``paced_rate`` when one was asked."""
    paced_rate: float | None = None
    """The paced run's rate when asked for (``spreadq bench --rate``); None: half load."""
    smooth: bool = False
    """The paced run put each job when it was due, yielding to the loop between puts
    (``spreadq bench --smooth``); False: a millisecond's jobs at a time."""
    resent: int
    """Jobs the producer sent again (after a consumer left, for instance)."""
    worker_peak_rss_mb: tuple[float, ...] | None
    """Each worker's peak resident set (``VmHWM``) at the end; None without ``/proc``."""


def quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``ordered`` (sorted), interpolating between ranks.

    Raises:
        ValueError: ``ordered`` is empty or ``q`` is outside 0..1.
    """
    if not ordered:
        raise ValueError("no samples")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a quantile is between 0 and 1, not {q!r}")
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency(seconds: Sequence[float]) -> Latency:
    """Summarise latency samples given in seconds (any order) in milliseconds.

    Raises:
        ValueError: no samples.
    """
    ordered = sorted(seconds)
    if not ordered:
        raise ValueError("no latency samples")

    def ms(q: float) -> float:
        return quantile(ordered, q) * 1e3

    return Latency(
        p50_ms=ms(0.5),
        p99_ms=ms(0.99),
        p999_ms=ms(0.999),
        max_ms=ordered[-1] * 1e3,
        cdf_ms=tuple(ms(i / (CDF_POINTS - 1)) for i in range(CDF_POINTS)),
    )


def delivered_per_job(
    producer_messages: int, worker_messages: int, workers: int, jobs: int, *, private: int = 0
) -> float:
    """Messages the daemon delivers per job: JOBs reach every worker, the workers' own
    messages every worker and the producer, except the ``private`` ones among them
    (NOTICEs to the producer's private group), which reach one process.

    Raises:
        ValueError: ``jobs`` is not positive, or ``private`` is not within
            ``0..worker_messages``.
    """
    if jobs <= 0:
        raise ValueError(f"jobs must be positive, not {jobs}")
    if not 0 <= private <= worker_messages:
        raise ValueError(f"private messages {private} are not within 0..{worker_messages}")
    shared = worker_messages - private
    return (producer_messages * workers + shared * (workers + 1) + private) / jobs
