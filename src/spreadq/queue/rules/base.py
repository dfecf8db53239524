"""The rule contract: :class:`Rule`, :class:`RuleState` and the table's :class:`SlotState`.

The contract itself (what a rule may read and must return) is described in
:mod:`spreadq.queue.rules`, which re-exports every name here; the built-in rules import
this module, not the package, so the package can import them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from spreadq.queue.jobs import Job

__all__ = [
    "HeadroomRule",
    "JoblessRule",
    "KeyOrderedRule",
    "LoadRule",
    "MessageRule",
    "Rule",
    "RuleState",
    "SlotRule",
    "SlotState",
    "keeps_key_order",
]


class RuleState(Protocol):
    """What a rule may know besides the members and the job (read-only)."""

    @property
    def index(self) -> int:
        """The slot number in this view (or the failover counter)."""
        ...

    @property
    def message(self) -> int:
        """How many messages took job slots in this view before the one being assigned
        (0 at failover)."""
        ...

    @property
    def message_first(self) -> int:
        """The slot number of the first job of the message being assigned (0 at
        failover), so ``index - message_first`` is the job's place in its message."""
        ...

    @property
    def message_slots(self) -> int:
        """How many job slots the message being assigned takes (0 at failover)."""
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


@runtime_checkable
class SlotRule(JoblessRule, Protocol):
    """A rule whose owner depends on the members and ``state.index`` alone: never on
    the job, the loads or the capacities.

    The table then gives a whole batch its owners with one call of :meth:`owners` and
    keeps no loads for the jobs it assigns that way (the rule never reads them).
    """

    def owners(self, members: tuple[str, ...], first: int, count: int) -> Sequence[str]:
        """What :meth:`owner` returns for the ``count`` slots from index ``first``, in
        slot order."""
        ...


@runtime_checkable
class MessageRule(JoblessRule, Protocol):
    """A rule whose owner depends on the members, ``state.message`` and the job's place
    in its message (``state.index - state.message_first``) alone.

    The table then gives a whole batch its owners with one call of
    :meth:`message_owners` and keeps no loads for the jobs it assigns that way, as it
    does for a :class:`SlotRule`.
    """

    def message_owners(self, members: tuple[str, ...], message: int, count: int) -> Sequence[str]:
        """What :meth:`owner` returns for the ``count`` jobs of the ``message``-th
        message of the view, in slot order."""
        ...


@runtime_checkable
class LoadRule(JoblessRule, Protocol):
    """A rule whose owner depends on the members and ``state.load`` alone (never on the
    job, the slot number or the capacities).

    The table then gives a batch of new jobs their owners with one call of
    :meth:`load_owners` and counts their loads a member at a time, instead of asking
    :meth:`~JoblessRule.owner_without_job` once a slot.
    """

    def load_owners(self, members: tuple[str, ...], state: RuleState, count: int) -> Sequence[str]:
        """What :meth:`~JoblessRule.owner_without_job` returns for ``count`` slots in a
        row, each slot adding one to its owner's load before the next is asked (no ACK
        comes between them), in slot order. It must give exactly what those calls would:
        a replica that cannot take the batch at once asks slot by slot."""
        ...


@runtime_checkable
class HeadroomRule(Rule, Protocol):
    """A rule that can say how many of the next jobs go to other members before one can
    come to a given member. A worker its rule keeps waiting that long may read the queue
    in batches meanwhile (:mod:`spreadq.worker.standby`)."""

    def jobs_before(self, members: tuple[str, ...], state: RuleState, member: str) -> int:
        """At least how many of the next slots go to members of ``members`` other than
        ``member`` (one of them), whatever the jobs, if no ACK comes between; 0 when the
        next may be ``member``'s."""
        ...


@runtime_checkable
class KeyOrderedRule(Rule, Protocol):
    """A rule that declares whether it gives all the jobs of one key to one member.

    When :attr:`keeps_key_order` is true, a worker runs the jobs of one key one at a
    time, in the order they were delivered (``key_affinity`` does this). A rule says so
    itself; it is never recognised by its name.
    """

    @property
    def keeps_key_order(self) -> bool:
        """Whether every job of a key goes to one member while a view lasts."""
        ...


def keeps_key_order(rule: Rule) -> bool:
    """Whether a worker following ``rule`` must run each key's jobs one at a time, in order."""
    return isinstance(rule, KeyOrderedRule) and bool(rule.keeps_key_order)


class SlotState:
    """The table's concrete :class:`RuleState`: a slot counter, a message counter and
    per-member loads.

    The table owns one per view (and one per failover round) and updates it after each
    assignment; rules only read it.
    """

    __slots__ = ("_capacities", "_loads", "index", "message", "message_first", "message_slots")

    def __init__(self, capacities: Mapping[str, int] | None = None) -> None:
        self.index = 0
        self.message = 0
        self.message_first = 0
        self.message_slots = 0
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

    def assigned_many(self, member: str, count: int) -> None:
        """:meth:`assigned` ``count`` times for ``member``: slots in a row went to it."""
        self.index += count
        self._loads[member] = self._loads.get(member, 0) + count

    def taken(self, member: str) -> None:
        """Record that an outstanding job, assigned before, now counts for ``member``
        (a RELEASE dealt it anew): its load grows; no slot is assigned."""
        self._loads[member] = self._loads.get(member, 0) + 1

    def skip(self, count: int) -> None:
        """Move ``count`` slots on without counting loads (a :class:`SlotRule` assigned
        them: it never reads loads)."""
        self.index += count

    def message_begins(self, slots: int) -> None:
        """The ``slots`` slots of a new message are about to be assigned, from
        ``index`` on."""
        self.message_first, self.message_slots = self.index, slots

    def message_ends(self) -> None:
        """The message begun with :meth:`message_begins` is assigned: it counts in
        ``message`` if it took a slot."""
        if self.index > self.message_first:
            self.message += 1

    def released(self, member: str, count: int = 1) -> None:
        """Record that ``count`` jobs counted for ``member`` left the table."""
        self._loads[member] = self._loads.get(member, 0) - count
