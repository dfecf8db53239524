"""Witnesses: which consumers a producer knows, and which of them hold each job it sent.

Theory of operation
-------------------
A member producer learns the consumer list from VIEW envelopes on the FEEDBACK group
and sees consumers leave in FEEDBACK memberships. Every job it sends is delivered to
the consumers present then, and only they hold its payload (a consumer that joins
later never sees it). So the producer numbers the consumer sets it sends under:
*epoch* ``e`` is the set installed by the ``e``-th change, and a job records the epoch
it was last sent in. Its *witnesses* are that set minus the consumers seen leaving
since. When an epoch loses its last witness, nobody holds the payloads of its jobs any
more, and every unconfirmed job of that epoch must be sent again (with the same
``(producer_id, seq)``: consumers that remember its outcome answer from memory).

Two more rules:

* A job cleared for sending while no consumer was known (everyone left while it waited
  for clearance) went to whoever had joined by then: unknown. Its epoch has no
  witnesses; when consumers appear again it counts as lost.
* A lost session loses every witness: the producer installs an empty set (:meth:`reset`
  then ``change(())``), and every unconfirmed job is sent again once consumers appear.

VIEWs are announced again when a producer joins FEEDBACK and after NETWORK changes, so
an announcement can arrive after a newer one of the same group lifetime; those are
recognised by the group id (same ring id, lower index) and ignored.

Trust. Spread authenticates nobody: any program that reaches a daemon can join
FEEDBACK, or multicast to it without joining, and send VIEW or ACK envelopes. The
producer is a FEEDBACK member, not a WORK member, so Spread tells it who is in FEEDBACK
and who sent each message, never who the consumers are. What it checks
(:meth:`Witnesses.judge_view`, :meth:`Witnesses.judge_ack`), using only what Spread
itself reports:

* a VIEW counts only if its sender is a current FEEDBACK member and the first member
  the VIEW lists (consumers announce only as the first member of their WORK view);
* the consumers are the members of the last VIEW that counted *and* are current
  FEEDBACK members: a listed member that joins FEEDBACK later is added then, and one
  that leaves FEEDBACK is dropped (a LEAVE, DISCONNECT or NETWORK change);
* an ACK counts only if its sender is a current FEEDBACK member listed by the last VIEW
  that counted. An ACK from a FEEDBACK member no VIEW lists (yet) is :attr:`Trust.UNLISTED`:
  the producer may hold it until a VIEW lists its sender (a consumer's ACK can overtake
  the VIEW that announces it).

A sender that is not a FEEDBACK member is refused outright; a FEEDBACK member that
announces itself first in a VIEW of its own making is not caught (that takes a
shared secret: ``docs/security.md``).

Pure and deterministic: no I/O, no clock. The producer owns one :class:`Witnesses`
per lifetime (it survives reconnections) and carries out what :meth:`Witnesses.change`
reports.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from spreadq.queue.protocol import count_producers
from spreadq.queue.view import View

__all__ = ["ConsumersChanged", "Trust", "Witnesses"]

GroupId = tuple[int, int, int]


class Trust(enum.Enum):
    """What :meth:`Witnesses.judge_view` and :meth:`Witnesses.judge_ack` make of a sender."""

    TRUSTED = "trusted"
    UNLISTED = "a FEEDBACK member that no VIEW taken lists as a consumer"
    NOT_A_MEMBER = "not a member of the FEEDBACK group"
    NOT_FIRST = "a VIEW must come from the first member it lists"


@dataclass(frozen=True, slots=True)
class ConsumersChanged:
    """What a change of the consumer list means for the jobs a producer holds.

    Attributes:
        consumers: the new list, in the order of the last VIEW.
        gone: consumers that left.
        lost: epochs whose unconfirmed jobs nobody holds any more: send them again.
        epoch: the epoch jobs sent from now on belong to.
    """

    consumers: tuple[str, ...]
    gone: frozenset[str]
    lost: frozenset[int]
    epoch: int


class Witnesses:
    """A producer's consumer list and the witnesses of each send epoch.

    Args:
        me: our own member name, never counted as a consumer (it can be set later,
            when a session opens: :attr:`me`).
    """

    __slots__ = ("_consumers", "_epoch", "_feedback", "_last_gid", "_listed", "_witnesses", "me")

    def __init__(self, me: str = "") -> None:
        self.me = me
        self._consumers: dict[str, None] = {}
        self._feedback: frozenset[str] = frozenset()
        self._listed: tuple[str, ...] = ()  # the last VIEW taken, without us
        self._last_gid: GroupId | None = None
        self._epoch = 0
        self._witnesses: dict[int, set[str]] = {0: set()}

    @property
    def consumers(self) -> tuple[str, ...]:
        """The consumers known to be present, in the order of the last VIEW."""
        return tuple(self._consumers)

    @property
    def epoch(self) -> int:
        """The epoch of jobs sent now."""
        return self._epoch

    def witnesses(self, epoch: int) -> frozenset[str]:
        """The consumers that still hold the jobs sent in ``epoch`` (empty if forgotten)."""
        return frozenset(self._witnesses.get(epoch, ()))

    def peers(self, consumers: Iterable[str]) -> int:
        """How many FEEDBACK members besides ``consumers`` and observers (producers,
        ourselves included) share the queue; at least 1: a hint for the window split
        (:func:`~spreadq.queue.protocol.count_producers`)."""
        return count_producers(self._feedback, consumers)

    # -- trust ---------------------------------------------------------------------------

    def judge_view(self, view: View, sender: str) -> Trust:
        """Whether a VIEW from ``sender`` (as Spread reports it) may be taken."""
        if sender not in self._feedback:
            return Trust.NOT_A_MEMBER
        if not view.members or view.members[0] != sender:
            return Trust.NOT_FIRST
        return Trust.TRUSTED

    def is_member(self, sender: str) -> bool:
        """Whether ``sender`` is a FEEDBACK member now."""
        return sender in self._feedback

    def judge_ack(self, sender: str) -> Trust:
        """Whether an ACK from ``sender`` may settle receipts: :attr:`Trust.TRUSTED`, or
        :attr:`Trust.UNLISTED` (hold it until a VIEW lists the sender), or refused."""
        if sender not in self._feedback:
            return Trust.NOT_A_MEMBER
        if sender not in self._listed:
            return Trust.UNLISTED
        return Trust.TRUSTED

    # -- inputs: each returns the consumer list to install -------------------------------

    def on_view(self, view: View) -> tuple[str, ...] | None:
        """A VIEW announcement judged trusted: its members (without us) that are
        FEEDBACK members, or None when it is overtaken by a newer view of the same group
        lifetime already seen."""
        gid = view.group_id
        last = self._last_gid
        if last is not None and last[:2] == gid[:2] and gid[2] < last[2]:
            return None
        self._last_gid = gid
        me = self.me
        self._listed = tuple(member for member in view.members if member != me)
        return self._present()

    def on_feedback(self, members: Sequence[str]) -> tuple[str, ...]:
        """A FEEDBACK membership: the consumers listed by the last VIEW taken that are
        FEEDBACK members now."""
        self._feedback = frozenset(members)
        return self._present()

    def _present(self) -> tuple[str, ...]:
        present = self._feedback
        return tuple(member for member in self._listed if member in present)

    def reset(self) -> None:
        """The session ended: forget the FEEDBACK members and the last VIEW seen (install
        ``change(())`` next: every witness is lost with the session)."""
        self._feedback = frozenset()
        self._listed = ()
        self._last_gid = None

    # -- the change ----------------------------------------------------------------------

    def change(self, members: Sequence[str]) -> ConsumersChanged | None:
        """Install ``members`` as the consumer list; None when it is the same set."""
        old = self._consumers
        new = dict.fromkeys(members)
        if new.keys() == old.keys():
            return None
        self._consumers = new
        gone = frozenset(old.keys() - new.keys())
        lost: set[int] = set()
        for epoch, witnesses in self._witnesses.items():
            if witnesses and gone:
                witnesses -= gone
                if not witnesses:
                    lost.add(epoch)
            elif not witnesses and not old and new:
                lost.add(epoch)  # sent while no consumer was known: whoever got it is unknown
        self._epoch += 1
        self._witnesses[self._epoch] = set(new)
        return ConsumersChanged(tuple(new), gone, frozenset(lost), self._epoch)

    def forget(self, live: Iterable[int]) -> None:
        """Drop the epochs no unconfirmed job belongs to any more (``live``: the epochs
        that still have one; the current epoch is always kept)."""
        keep = set(live)
        keep.add(self._epoch)
        for epoch in [e for e in self._witnesses if e not in keep]:
            del self._witnesses[epoch]
