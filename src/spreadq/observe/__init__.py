"""Observability: the event stream a worker and a producer publish, and what reads it.

* :mod:`spreadq.observe.events`: the events (frozen, slotted dataclasses).
* :mod:`spreadq.observe.bus`: :class:`EventBus` (``publish``, ``subscribe``) and the
  :class:`Observer` protocol; plugins contribute observers with ``Plugin(observers=...)``.
* :mod:`spreadq.observe.counters`: :class:`Counters`, the always-on totals.
* :mod:`spreadq.observe.stats`: :class:`StatsReporter`, a consumer's STATS envelope.
"""

from __future__ import annotations

from spreadq.observe.bus import EventBus as EventBus
from spreadq.observe.bus import ManagedObserver as ManagedObserver
from spreadq.observe.bus import Observer as Observer
from spreadq.observe.bus import ObserversArg as ObserversArg
from spreadq.observe.bus import ObserveScope as ObserveScope
from spreadq.observe.bus import check_observer as check_observer
from spreadq.observe.bus import wanted_types as wanted_types
from spreadq.observe.counters import Counters as Counters
from spreadq.observe.counters import OutcomeTotals as OutcomeTotals
from spreadq.observe.events import Event as Event
from spreadq.observe.events import JobAssigned as JobAssigned
from spreadq.observe.events import JobFailed as JobFailed
from spreadq.observe.events import JobRetried as JobRetried
from spreadq.observe.events import JobStarted as JobStarted
from spreadq.observe.events import JobSucceeded as JobSucceeded
from spreadq.observe.events import JobTakenOver as JobTakenOver
from spreadq.observe.events import SessionLost as SessionLost
from spreadq.observe.events import SessionRegained as SessionRegained
from spreadq.observe.events import ViewInstalled as ViewInstalled
from spreadq.observe.events import WindowBlocked as WindowBlocked
from spreadq.observe.events import WindowOpened as WindowOpened
from spreadq.observe.events import event_types as event_types
from spreadq.observe.stats import DEFAULT_STATS_INTERVAL as DEFAULT_STATS_INTERVAL
from spreadq.observe.stats import StatsReporter as StatsReporter
from spreadq.observe.stats import TableSnapshot as TableSnapshot

__all__ = [
    "DEFAULT_STATS_INTERVAL",
    "Counters",
    "Event",
    "EventBus",
    "JobAssigned",
    "JobFailed",
    "JobRetried",
    "JobStarted",
    "JobSucceeded",
    "JobTakenOver",
    "ManagedObserver",
    "ObserveScope",
    "Observer",
    "ObserversArg",
    "OutcomeTotals",
    "SessionLost",
    "SessionRegained",
    "StatsReporter",
    "TableSnapshot",
    "ViewInstalled",
    "WindowBlocked",
    "WindowOpened",
    "check_observer",
    "event_types",
    "wanted_types",
]
