"""Ownership rules: which member of a view owns a job, as a pure function.

A rule is any object with a ``name`` and a method
``owner(members, state, job) -> member``. The table calls it once per job slot with
the view's *eligible* members (Spread's order, draining members left out unless that
leaves nobody) and again at failover with the *candidates* (the members that came with
us and hold the job's payload). ``state`` is read-only and the same on every replica
that has seen the same messages since the view began:

* ``state.index`` - the slot number k in this view (0, 1, 2, ...) counting jobs, not
  messages; at failover, the number of jobs reassigned so far from the same origin view.
* ``state.load(member)`` - jobs assigned to ``member`` at slots of this view that are
  still outstanding (at failover: assigned so far in this failover round).
* ``state.capacity(member)`` - the capacity ``member`` announced with HELLO in this view,
  or ``None``.

A rule whose choice never depends on the job may also define
``owner_without_job(members, state) -> member`` (:class:`JoblessRule`), returning what
``owner`` returns for any job. The table then reads the jobs it does not own no
further than their refs (docs/deployment.md#what-to-size: every consumer reads every job, and most
of them belong to others). ``round_robin`` and ``least_loaded`` do; ``key_affinity`` reads
the job's key.

A rule must be deterministic: never use ``hash()`` (Python's ``str`` hash differs per
process), a clock, randomness or anything outside its arguments. The built-ins are
:class:`~spreadq.queue.rules.round_robin.RoundRobin`,
:class:`~spreadq.queue.rules.key_affinity.KeyAffinity` and
:class:`~spreadq.queue.rules.least_loaded.LeastLoaded`; :func:`builtin_rules` returns a
fresh registry the App extends with plugin rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from spreadq.queue.jobs import Job
from spreadq.queue.rules.key_affinity import KeyAffinity
from spreadq.queue.rules.least_loaded import LeastLoaded
from spreadq.queue.rules.round_robin import RoundRobin

__all__ = [
    "JoblessRule",
    "KeyAffinity",
    "LeastLoaded",
    "RoundRobin",
    "Rule",
    "RuleState",
    "SlotState",
    "builtin_rules",
]


class RuleState(Protocol):
    """What a rule may know besides the members and the job (read-only)."""

    @property
    def index(self) -> int:
        """The slot number in this view (or the failover counter)."""
        ...

    def load(self, member: str) -> int:
        """Outstanding jobs assigned to ``member`` in this view (or this failover round)."""
        ...

    def capacity(self, member: str) -> int | None:
        """The capacity ``member`` announced in this view, if any."""
        ...


@runtime_checkable
class Rule(Protocol):
    """An ownership rule: a name and a pure ``owner`` function."""

    @property
    def name(self) -> str:
        """The name the rule is selected by (``App(rule=...)``)."""
        ...

    def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
        """Return the member of ``members`` (never empty) that owns ``job``."""
        ...


@runtime_checkable
class JoblessRule(Rule, Protocol):
    """A rule whose owner never depends on the job (the table's fast path)."""

    def owner_without_job(self, members: tuple[str, ...], state: RuleState) -> str:
        """Return what :meth:`owner` returns for any job."""
        ...


class SlotState:
    """The table's concrete :class:`RuleState`: a slot counter and per-member loads.

    The table owns one per view (and one per failover round) and updates it after each
    assignment; rules only read it.
    """

    __slots__ = ("_capacities", "_loads", "index")

    def __init__(self, capacities: Mapping[str, int] | None = None) -> None:
        self.index = 0
        self._loads: dict[str, int] = {}
        self._capacities: Mapping[str, int] = capacities if capacities is not None else {}

    def load(self, member: str) -> int:
        """Outstanding jobs assigned to ``member``."""
        return self._loads.get(member, 0)

    def capacity(self, member: str) -> int | None:
        """The capacity ``member`` announced, if any."""
        return self._capacities.get(member)

    def assigned(self, member: str) -> None:
        """Record that the slot at ``index`` went to ``member`` and move to the next one."""
        self.index += 1
        self._loads[member] = self._loads.get(member, 0) + 1

    def released(self, member: str) -> None:
        """Record that one job counted for ``member`` left the table."""
        self._loads[member] = self._loads.get(member, 0) - 1


def builtin_rules() -> dict[str, Rule]:
    """A new registry of the three built-in rules, keyed by name."""
    rules: list[Rule] = [RoundRobin(), KeyAffinity(), LeastLoaded()]
    return {rule.name: rule for rule in rules}
