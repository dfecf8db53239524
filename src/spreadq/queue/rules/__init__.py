"""Ownership rules: which member of a view owns a job, as a pure function.

A rule is any object with a ``name`` and a method
``owner(members, state, job) -> member``. The table calls it once per job slot with
the view's *eligible* members (Spread's order, draining members left out unless that
leaves nobody) and again at failover with the *candidates* (the members that came with
us and hold the job's payload). ``state`` is read-only and the same on every replica
that has seen the same messages since the view began:

* ``state.index`` - the slot number k in this view (0, 1, 2, ...) counting jobs, not
  messages; at failover, the number of jobs reassigned so far from the same origin view.
* ``state.message`` - how many messages took job slots in this view before the one
  being assigned, and ``state.message_first`` - the slot of that message's first job
  (both 0 at failover).
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

A rule whose choice depends on ``members`` and ``state.index`` alone (not the job, the
loads or the capacities) may also define ``owners(members, first, count)``
(:class:`SlotRule`), the owners of ``count`` slots from ``first`` in one call. The table
then assigns a batch's slots at once and counts no loads for them. ``round_robin`` does.

A rule whose choice depends on ``members``, ``state.message`` (how many messages took
job slots in this view before this one) and the job's place in its message
(``state.index - state.message_first``) alone may define
``message_owners(members, message, count)`` (:class:`MessageRule`), the owners of a
message's ``count`` jobs in one call; the table uses it as it uses ``owners``.
``sticky`` does: a message's jobs go to one member, the next message's to the next.

A rule must be deterministic: never use ``hash()`` (Python's ``str`` hash differs per
process), a clock, randomness or anything outside its arguments. The built-ins are
:class:`~spreadq.queue.rules.round_robin.RoundRobin`,
:class:`~spreadq.queue.rules.key_affinity.KeyAffinity`,
:class:`~spreadq.queue.rules.least_loaded.LeastLoaded` and
:class:`~spreadq.queue.rules.sticky.Sticky`; :func:`builtin_rules` returns a
fresh registry the App extends with plugin rules.
"""

from __future__ import annotations

from spreadq.queue.rules.base import HeadroomRule as HeadroomRule
from spreadq.queue.rules.base import JoblessRule as JoblessRule
from spreadq.queue.rules.base import KeyOrderedRule as KeyOrderedRule
from spreadq.queue.rules.base import LoadRule as LoadRule
from spreadq.queue.rules.base import MessageRule as MessageRule
from spreadq.queue.rules.base import Rule as Rule
from spreadq.queue.rules.base import RuleState as RuleState
from spreadq.queue.rules.base import SlotRule as SlotRule
from spreadq.queue.rules.base import SlotState as SlotState
from spreadq.queue.rules.base import keeps_key_order as keeps_key_order
from spreadq.queue.rules.fill_first import FillFirst
from spreadq.queue.rules.key_affinity import KeyAffinity
from spreadq.queue.rules.least_loaded import LeastLoaded
from spreadq.queue.rules.round_robin import RoundRobin
from spreadq.queue.rules.sticky import Sticky

__all__ = [
    "FillFirst",
    "HeadroomRule",
    "JoblessRule",
    "KeyAffinity",
    "KeyOrderedRule",
    "LeastLoaded",
    "LoadRule",
    "MessageRule",
    "RoundRobin",
    "Rule",
    "RuleState",
    "SlotRule",
    "SlotState",
    "Sticky",
    "builtin_rules",
    "keeps_key_order",
]


def builtin_rules() -> dict[str, Rule]:
    """A new registry of the five built-in rules, keyed by name."""
    rules: list[Rule] = [RoundRobin(), KeyAffinity(), LeastLoaded(), Sticky(), FillFirst()]
    return {rule.name: rule for rule in rules}
