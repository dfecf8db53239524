"""The queue benchmark behind ``spreadq bench`` and the scripts in ``benchmarks/``.

Theory of operation
-------------------
One producer (this process) and ``workers`` worker processes share a daemon: the
embedded one, run in a process of its own (``spreadq bench --role daemon``), or any
daemon given by address (a real Spread daemon). One run measures:

* **raw flood**: one sender multicasts ``payload``-byte messages through
  :func:`spreadq.connect` to a group read by ``workers`` receiver processes, which
  report their progress every 200 messages; the sender keeps at most 600 messages
  ahead of the slowest (the daemon drops a client 1000 behind). Messages per second
  delivered to every receiver: what the daemon and the client library can move.
* **queue, flood**: :meth:`~spreadq.Producer.put` of ``payload``-byte jobs as fast as
  flow control lets it, to ``workers`` processes running :meth:`~spreadq.App.run`
  with a no-op handler, from the first put to the last receipt.
* **queue, half load**: the same at half the flood's rate, paced (open loop): the
  latencies to compare with other queues "at half load".

For each queue run: jobs/s; the **one-way** latency from ``put()`` to the handler
starting (the handler returns ``time.time()`` taken as it starts; every process is on
one machine, so wall clocks compare) and the **round trip** from ``put()`` to the
receipt resolving, each as p50/p99/p999 and a 101-point CDF; the **CPU seconds** of the
producer, of each worker and of the daemon when it is ours (``/proc/<pid>/stat``); the
**Spread messages** the producer and the workers multicast per job (the producer's
:class:`~spreadq.producer.ProducerStatistics` and a count each worker process keeps,
see :mod:`spreadq.bench.roles`) and what the daemon delivers per job; and the **ratio**
of jobs/s to the raw flood's messages/s in the same run (jobs are packed several to a
message, so it can pass 1). At the end, each worker's peak resident set.
"""

from __future__ import annotations

from spreadq.bench.procs import Memory as Memory
from spreadq.bench.procs import Role as Role
from spreadq.bench.procs import cpu_seconds as cpu_seconds
from spreadq.bench.procs import memory as memory
from spreadq.bench.procs import schedstat as schedstat
from spreadq.bench.procs import wait_seconds as wait_seconds
from spreadq.bench.report import BenchReport as BenchReport
from spreadq.bench.report import Cpu as Cpu
from spreadq.bench.report import Latency as Latency
from spreadq.bench.report import QueueFigures as QueueFigures
from spreadq.bench.report import Wire as Wire
from spreadq.bench.report import latency as latency
from spreadq.bench.roles import QUEUE as QUEUE
from spreadq.bench.roles import run_role as run_role
from spreadq.bench.run import START_WITHIN as START_WITHIN
from spreadq.bench.run import Spawned as Spawned
from spreadq.bench.run import Workers as Workers
from spreadq.bench.run import cpu_snapshot as cpu_snapshot
from spreadq.bench.run import cpu_spent as cpu_spent
from spreadq.bench.run import embedded_daemon as embedded_daemon
from spreadq.bench.run import per_slice as per_slice
from spreadq.bench.run import queue_run as queue_run
from spreadq.bench.run import raw_flood as raw_flood
from spreadq.bench.run import run_bench as run_bench
from spreadq.bench.run import sched_snapshot as sched_snapshot
from spreadq.bench.run import sched_spent as sched_spent
from spreadq.bench.run import worker_processes as worker_processes

__all__ = [
    "QUEUE",
    "START_WITHIN",
    "BenchReport",
    "Cpu",
    "Latency",
    "Memory",
    "QueueFigures",
    "Role",
    "Spawned",
    "Wire",
    "Workers",
    "cpu_seconds",
    "cpu_snapshot",
    "cpu_spent",
    "embedded_daemon",
    "latency",
    "memory",
    "per_slice",
    "queue_run",
    "raw_flood",
    "run_bench",
    "run_role",
    "sched_snapshot",
    "sched_spent",
    "schedstat",
    "wait_seconds",
    "worker_processes",
]
