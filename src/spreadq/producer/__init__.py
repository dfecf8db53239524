"""The producer side of spreadq: put jobs on a queue and await their outcomes.

* :mod:`~spreadq.producer.facade`: :class:`Producer`, the async context manager users
  hold (the session, its tasks, every wait), with its put path in
  :mod:`~spreadq.producer.putting` (``put()``, ``put_many()``);
* :mod:`~spreadq.producer.core`: :class:`~spreadq.producer.core.ProducerCore`, the
  sans-IO state machine behind it (jobs, consumers, windows, trust), with its
  :mod:`~spreadq.producer.inputs`, :mod:`~spreadq.producer.effects` and
  :mod:`~spreadq.producer.jobs`;
* :mod:`~spreadq.producer.sender`: the task that takes batches from the core and
  multicasts them;
* :mod:`~spreadq.producer.receipt`: :class:`Receipt`, a job's awaitable outcome;
* :mod:`~spreadq.producer.routes`: how each handler's or kind's payloads are encoded and
  results decoded;
* :mod:`~spreadq.producer.sessions`: the session with the daemon, kept across
  reconnections;
* :mod:`~spreadq.producer.feedback`: the reader of a member producer's session;
* :mod:`~spreadq.producer.asking` and :mod:`~spreadq.producer.results`: cancels and
  result queries on the wire, and the open questions they keep;
* :mod:`~spreadq.producer.hooks`: the headers the plugins' put hooks add;
* :mod:`~spreadq.producer.condition`: the one way the producer's tasks wait.
"""

from __future__ import annotations

from spreadq.producer.core import MAX_HELD_ACKS as MAX_HELD_ACKS
from spreadq.producer.core import FlowState as FlowState
from spreadq.producer.facade import Producer as Producer
from spreadq.producer.facade import ProducerStatistics as ProducerStatistics
from spreadq.producer.receipt import Receipt as Receipt
from spreadq.producer.receipt import ReceiptState as ReceiptState

__all__ = [
    "MAX_HELD_ACKS",
    "FlowState",
    "Producer",
    "ProducerStatistics",
    "Receipt",
    "ReceiptState",
]
