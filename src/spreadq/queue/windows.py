"""Flow-control windows: pure counters in the shape of h2's window objects.

Theory of operation
-------------------
A Spread daemon disconnects a client once 1000 messages are queued for it
(``DEFAULT_MAX_SESSION_MESSAGES``, docs/design/flow-control.md), and it never pushes back on a
sender. So consumers report how far they have read, and producers hold back:

* :class:`AckCadence` (consumer side) says when an ACK is due. While the consumer is
  busy (jobs ready to run): once the messages read and the jobs finished reach
  ``every``, ``every_seconds`` after the first thing became pending, and whenever the
  outcomes waiting would fill an ACK. Reads count messages, not jobs: the daemon's limit
  and the window count messages, and one message may carry hundreds of jobs. Once it
  is idle (nothing ready to run) an outcome waiting makes an ACK due at once, but no
  sooner than ``idle_gap`` after the last ACK: batching happens only under load, and
  the gap bounds the ACK messages a consumer sends per second (every consumer and
  producer of the queue receives each one). An outcome that also goes to its producer
  in a NOTICE does not: its receipt resolves without the ACK, which then waits for the
  cadence. A draining consumer (``draining``) ACKs each outcome at once: its drain ends
  only once every outcome it reached went out.
* :class:`ProducerGate` (producer side) says whether a producer may multicast its next
  message. Each consumer's read position *in this producer's message sequence* (mseq)
  comes from its ACKs. The producer may send message ``next_mseq`` only if, for every
  live consumer, ``next_mseq - read_pos <= window // active_producers``; with
  ``active_producers`` at least the number of producers really sending, the messages
  any consumer has not yet read stay under ``window`` in total (the daemon's limit is
  1000, the default window 600). ``active_producers`` is the larger of the producer
  count hint (:meth:`ProducerGate.on_peers`, e.g. from the FEEDBACK membership) and the
  number of distinct producers in the consumers' latest ACKs (plus this one). Learning
  it only from ACKs lags: a producer that starts while another already has a full
  window out can overshoot ``window`` briefly, which is what the hint is for.

* The window counts more than jobs. Every consumer's ACK goes to the WORK group too,
  so while a consumer is not reading, ACKs pile up in its daemon queue beside the
  jobs. The gate counts the ACK messages seen since it sent the message each live
  consumer last reported reading (its *ACK slack*: any ACK ordered after that message
  may still be unread there, the consumer's own included) and treats them as sent:
  ``next_mseq - read_pos + slack <= share``. Each producer reserves room for all ACKs,
  which errs on the safe side. The slack is capped at ``share - 1``, so a consumer
  that has read every message of ours can always be sent one more: a consumer that
  reads nothing new never ACKs again, so without the cap an idle consumer behind a
  long tail of other consumers' ACKs would hold the producer back for good. The cost
  of that rule: when ACKs alone fill a share of a stalled consumer's queue, one more
  message of ours may join them. ACKs are counted when the producer sees them, so
  those still on their way to it are part of the margin the window leaves below the
  daemon's limit.

Neither object reads a clock; ``now`` is passed in.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from spreadq.queue.envelope import MAX_ENVELOPE_SIZE, ack_overhead, outcome_size
from spreadq.queue.jobs import JobRef, Outcome

__all__ = ["AckCadence", "BlockReason", "ProducerGate", "Report"]


@dataclass(frozen=True, slots=True)
class Report:
    """What one ACK carries, as :meth:`AckCadence.take` hands it out."""

    outcomes: tuple[tuple[JobRef, Outcome], ...]
    positions: tuple[tuple[bytes, int], ...]


class AckCadence:
    """When a consumer must send an ACK, and what it reports.

    Args:
        every: an ACK is due once the messages read (those carrying jobs or a
            producer's position) and the jobs finished since the last one reach this
            many.
        every_seconds: an ACK is due this long after the first unreported read or outcome.
        position_seconds: ... but only this long after the first unreported read when
            there is nothing else to report (no outcome, and, as the caller says, no job
            of its own held): a member that only follows the queue reports how far it
            has read this often, and ``every`` still bounds it in messages (None:
            ``every_seconds``).
        max_bytes: the size of one ACK envelope at most; outcomes waiting that would
            fill it make an ACK due.
        position_horizon: a producer not read for this long is left out of ACKs and
            forgotten (so ephemeral producers do not pile up).
        max_positions: read positions one ACK carries at most (the most recent).
        idle_gap: while idle, an outcome that no NOTICE carries makes an ACK due this
            long after the last ACK at the earliest (None: idle or not, only the
            cadence makes ACKs due).
    """

    __slots__ = (
        "_count",
        "_last_sent",
        "_outcome_bytes",
        "_outcomes",
        "_positions",
        "_reads",
        "_since",
        "_sizes",
        "_urgent",
        "draining",
        "every",
        "every_seconds",
        "idle",
        "idle_gap",
        "max_bytes",
        "max_positions",
        "position_horizon",
        "position_seconds",
        "read_every",
    )

    def __init__(
        self,
        every: int = 200,
        every_seconds: float = 0.05,
        *,
        max_bytes: int = MAX_ENVELOPE_SIZE,
        position_horizon: float = 5.0,
        max_positions: int = 1024,
        idle_gap: float | None = None,
        position_seconds: float | None = None,
    ) -> None:
        self.every = every
        self.every_seconds = every_seconds
        self.position_seconds = every_seconds if position_seconds is None else position_seconds
        self.max_bytes = max_bytes
        self.position_horizon = position_horizon
        self.max_positions = max_positions
        self.idle_gap = idle_gap
        self.read_every: int | None = None
        """An ACK is also due once this many messages were read since the last one
        (None: only ``every`` counts them): set where the window is split among many
        producers, so that a consumer that owns none of a producer's jobs reports its
        position before that producer's share is read."""
        self.idle = False
        """Whether the consumer has nothing ready to run (its owner says so)."""
        self.draining = False
        """Whether the consumer is draining: then an outcome makes an ACK due at once."""
        self._last_sent = -math.inf
        self._count = 0
        self._reads = 0
        self._since: float | None = None
        self._outcomes: list[tuple[JobRef, Outcome]] = []
        self._sizes: list[int] = []  # each outcome's bytes in an ACK, computed once
        self._outcome_bytes = 0
        self._urgent = False  # an outcome waits that no NOTICE carries to its producer
        self._positions: dict[bytes, tuple[int, float]] = {}

    @property
    def pending(self) -> bool:
        """True when something is waiting to be reported."""
        return self._since is not None

    @property
    def outcomes_pending(self) -> bool:
        """True when an outcome waits for an ACK."""
        return bool(self._outcomes)

    @property
    def outcome_budget(self) -> int:
        """The most bytes one outcome may take and still fit in an ACK."""
        return self.max_bytes - ack_overhead(self.max_positions)

    def _touch(self, now: float) -> None:
        if self._since is None:
            self._since = now

    def on_read(self, now: float, producer_id: bytes | None = None, mseq: int = 0) -> None:
        """Record that a message carrying jobs (or a part of one) was read at ``now``,
        and, for a producer's message, that ``mseq`` is the last of its messages read.

        One message counts once, however many jobs it packs: what the daemon and the
        producers' windows count is messages, and counting jobs made a consumer under a
        flood ACK after almost every batch it read (each ACK read by every consumer and
        producer of the queue)."""
        if producer_id is not None:
            self._positions[producer_id] = (mseq, now)
        self._count += 1
        self._reads += 1
        self._touch(now)

    def on_finished(self, ref: JobRef, outcome: Outcome, now: float) -> None:
        """Queue ``outcome`` of ``ref`` for the next ACK."""
        self.on_finished_all(((ref, outcome),), (outcome_size(outcome),), now)

    def on_finished_all(
        self,
        finished: Sequence[tuple[JobRef, Outcome]],
        sizes: Sequence[int],
        now: float,
        *,
        noticed: int = 0,
    ) -> None:
        """:meth:`on_finished` for several outcomes (``sizes``: each one's
        :func:`~spreadq.queue.envelope.outcome_size`), in order.

        ``noticed`` of them go to their producer in a NOTICE as well: those resolve
        their receipts without this ACK, so they make no idle ACK due; they wait for
        the cadence (``every``, ``every_seconds``) like outcomes reached while busy.
        """
        if not finished:
            return
        if noticed < len(finished):
            self._urgent = True
        self._outcomes += finished
        self._sizes += sizes
        self._outcome_bytes += sum(sizes)
        self._count += len(finished)
        self._touch(now)

    def _wait(self, holding: bool) -> float:
        """How long after the first unreported read or outcome an ACK falls due."""
        return self.every_seconds if holding or self._outcomes else self.position_seconds

    def deadline(self, *, holding: bool = True) -> float | None:
        """When an ACK falls due by time alone, or ``None`` when nothing is pending.

        ``holding``: the consumer holds jobs of its own (its backlog, which every ACK
        carries, is not 0); False lets an ACK with nothing but read positions wait
        ``position_seconds``."""
        if self._since is None:
            return None
        due = self._since + self._wait(holding)
        if self.draining and self._outcomes:
            return self._since
        if self.idle and self._urgent and self.idle_gap is not None:
            return min(due, self._last_sent + self.idle_gap)
        return due

    def due(self, now: float, *, holding: bool = True) -> bool:
        """True when an ACK should be sent now (``holding`` as for :meth:`deadline`)."""
        if self._since is None:
            return False
        return (
            self._count >= self.every
            or (self.read_every is not None and self._reads >= self.read_every)
            or now - self._since >= self._wait(holding)
            or self._outcome_bytes >= self.outcome_budget
            or (self.draining and bool(self._outcomes))
            or (
                self.idle
                and self.idle_gap is not None
                and self._urgent
                and now - self._last_sent >= self.idle_gap
            )
        )

    def take(self, now: float) -> Report:
        """Return what an ACK sent at ``now`` reports, and reset the counters.

        Positions are those of the producers read within ``position_horizon``, most
        recent first. Outcomes fill what the positions leave of ``max_bytes`` (at least
        one is taken); any left over stay pending and keep the next ACK due at once.
        """
        horizon = now - self.position_horizon
        for producer_id in [p for p, (_, at) in self._positions.items() if at < horizon]:
            del self._positions[producer_id]
        recent = sorted(self._positions.items(), key=lambda item: -item[1][1])
        positions = tuple((pid, mseq) for pid, (mseq, _) in recent[: self.max_positions])
        room = self.max_bytes - ack_overhead(len(positions))
        taken = 0
        size = 0
        for cost in self._sizes:
            if taken and size + cost > room:
                break
            size += cost
            taken += 1
        batch = tuple(self._outcomes[:taken])
        del self._outcomes[:taken]
        del self._sizes[:taken]
        self._last_sent = now
        self._outcome_bytes -= size
        self._reads = 0
        if self._outcomes:
            self._count = self.every
            self._since = now
        else:  # (what stays is due at once anyway, urgent or not)
            self._count = 0
            self._since = None
            self._urgent = False
        return Report(batch, positions)

    def clear(self) -> None:
        """Forget everything pending (we left the group)."""
        self._outcomes.clear()
        self._sizes.clear()
        self._outcome_bytes = 0
        self._urgent = False
        self._positions.clear()
        self._count = 0
        self._reads = 0
        self._since = None


class BlockReason(enum.StrEnum):
    """Why a producer may not send now."""

    NO_CONSUMERS = "no_consumers"
    WINDOW = "window"
    IN_FLIGHT = "in_flight"
    BACKLOG = "backlog"


class ProducerGate:
    """May this producer multicast its next message? (one per producer and queue)

    Args:
        producer_id: this producer's 16-byte id, as it appears in ACK read positions.
        window: the total unread messages allowed at any consumer, shared by producers.
        max_in_flight: the most jobs sent and not yet confirmed by an ACK.
        max_backlog: the most outstanding jobs any consumer may report owning.
    """

    __slots__ = (
        "_acks",
        "_acks_at",
        "_backlog",
        "_changes",
        "_checked",
        "_in_flight",
        "_last",
        "_last_mseq",
        "_latest_producers",
        "_peers",
        "_read",
        "_share",
        "_window",
        "max_backlog",
        "max_in_flight",
        "producer_id",
    )

    def __init__(
        self,
        producer_id: bytes,
        *,
        window: int = 600,
        max_in_flight: int = 10_000,
        max_backlog: int = 10_000,
    ) -> None:
        self.producer_id = producer_id
        self._window = window
        self.max_in_flight = max_in_flight
        self.max_backlog = max_backlog
        self._read: dict[str, int] = {}
        self._backlog: dict[str, int] = {}
        self._latest_producers: dict[str, frozenset[bytes]] = {}
        self._peers = 1
        self._share: int | None = None  # cached; None after anything it depends on changed
        self._in_flight = 0
        self._last: BlockReason | None = BlockReason.NO_CONSUMERS
        self._last_mseq = 0
        self._acks = 0  # ACK messages seen on the queue, from any consumer
        self._acks_at: dict[int, int] = {0: 0}  # our mseq -> ``_acks`` when it was sent
        # check() is asked on every put under load: its last answer is kept, keyed by
        # its arguments, the limits and a count of the changes to everything else
        self._changes = 0
        self._checked: tuple[tuple[int, int, int, int, int], BlockReason | None] | None = None

    @property
    def window(self) -> int:
        """The total unread messages allowed at any consumer, shared by producers."""
        return self._window

    @window.setter
    def window(self, window: int) -> None:
        self._window = window
        self._share = None
        self._changes += 1

    @property
    def consumers(self) -> tuple[str, ...]:
        """The live consumers, in the order the last view listed them."""
        return tuple(self._read)

    @property
    def in_flight(self) -> int:
        """Jobs sent and not yet confirmed."""
        return self._in_flight

    @property
    def last_mseq(self) -> int:
        """The last mseq recorded by :meth:`on_sent` (0 before the first)."""
        return self._last_mseq

    @property
    def ack_slack(self) -> int:
        """The most ACK messages counted against any live consumer's window (capped one
        below the share; see the module doc)."""
        cap = self.share - 1
        return max((min(self._acks_after(read), cap) for read in self._read.values()), default=0)

    def acks_unread(self, member: str) -> int | None:
        """ACK messages that may still be unread at live consumer ``member`` (uncapped):
        those seen since we sent the last message it reported reading."""
        read = self._read.get(member)
        return None if read is None else self._acks_after(read)

    @property
    def active_producers(self) -> int:
        """How many producers share the window (at least 1)."""
        seen = {self.producer_id}
        for producers in self._latest_producers.values():
            seen |= producers
        return max(len(seen), self._peers)

    @property
    def share(self) -> int:
        """How far ahead of every consumer this producer may run, in messages."""
        share = self._share
        if share is None:  # asked per put under load: computed once per change
            share = self._share = max(1, self.window // self.active_producers)
        return share

    def read_position(self, member: str) -> int | None:
        """The last of our mseqs ``member`` is known to have read, if it is live."""
        return self._read.get(member)

    def on_view(self, members: Iterable[str], now_mseq: int) -> None:
        """Install the live consumer list (from VIEW or the membership).

        A consumer we have not heard from starts at ``now_mseq``, the last mseq this
        producer sent before learning of it: it never sees messages ordered before it
        joined. Consumers not listed are forgotten.
        """
        self._changes += 1
        old = self._read
        self._read = {member: old.get(member, now_mseq) for member in members}
        for table in (self._backlog, self._latest_producers):
            for member in [m for m in table if m not in self._read]:
                del table[member]
        self._share = None
        self._prune()

    def on_ack(
        self,
        member: str,
        positions: Mapping[bytes, int] | Iterable[tuple[bytes, int]],
        backlog: int,
    ) -> None:
        """Take in an ACK from ``member``: its read positions and owned backlog.

        Every ACK counts towards the ACK slack (it went to the WORK group, whoever sent
        it); otherwise ACKs from consumers that are not live (gone, or not yet in a
        VIEW) are ignored.
        """
        self._acks += 1
        self._changes += 1
        if member not in self._read:
            return
        items = positions.items() if isinstance(positions, Mapping) else positions
        producers: set[bytes] = set()
        for producer_id, mseq in items:
            producers.add(producer_id)
            if producer_id == self.producer_id and mseq > self._read[member]:
                self._read[member] = mseq
        latest = frozenset(producers)
        if self._latest_producers.get(member) != latest:
            self._latest_producers[member] = latest
            self._share = None
        self._backlog[member] = backlog
        self._prune()

    def on_peers(self, producers: int) -> None:
        """Hint how many producers share the queue (e.g. FEEDBACK members that are not
        consumers); the gate divides the window by at least this many."""
        self._peers = max(1, producers)
        self._share = None
        self._changes += 1

    def on_sent(self, jobs: int, mseq: int | None = None) -> None:
        """Record that message ``mseq`` (the one after the last, when None) carrying
        ``jobs`` jobs was sent."""
        self._in_flight += jobs
        self._changes += 1
        if mseq is None:
            mseq = self._last_mseq + 1
        if mseq > self._last_mseq:
            self._last_mseq = mseq
            self._acks_at[mseq] = self._acks
            self._prune()

    def on_confirmed(self, jobs: int) -> None:
        """Record that ``jobs`` of ours were confirmed (completed, or given up on)."""
        self._in_flight = max(0, self._in_flight - jobs)
        self._changes += 1

    def check(self, next_mseq: int, jobs: int = 1) -> BlockReason | None:
        """Why message ``next_mseq`` carrying ``jobs`` jobs may not be sent now, or None."""
        key = (next_mseq, jobs, self._changes, self.max_in_flight, self.max_backlog)
        checked = self._checked
        if checked is not None and checked[0] == key:
            return checked[1]
        reason = self._check(next_mseq, jobs)
        self._checked = (key, reason)
        return reason

    def _check(self, next_mseq: int, jobs: int) -> BlockReason | None:
        if not self._read:
            return BlockReason.NO_CONSUMERS
        share = self.share
        cap = share - 1
        for read in self._read.values():
            if next_mseq - read + min(self._acks_after(read), cap) > share:
                return BlockReason.WINDOW
        if self._in_flight and self._in_flight + jobs > self.max_in_flight:
            return BlockReason.IN_FLIGHT
        if any(backlog > self.max_backlog for backlog in self._backlog.values()):
            return BlockReason.BACKLOG
        return None

    def may_send(self, next_mseq: int, jobs: int = 1) -> bool:
        """True when message ``next_mseq`` carrying ``jobs`` jobs may be sent now."""
        self._last = self.check(next_mseq, jobs)
        return self._last is None

    def blocked_reason(self) -> BlockReason | None:
        """Why the last :meth:`may_send` said no (``None`` if it said yes)."""
        return self._last

    def slowest(self) -> tuple[str, int] | None:
        """The live consumer furthest behind in our sequence, and its read position."""
        if not self._read:
            return None
        member = min(self._read, key=self._read.__getitem__)
        return member, self._read[member]

    def _acks_after(self, read: int) -> int:
        """ACKs seen since we sent message ``read`` (since the last one sent before it,
        when ``read`` was never sent: more, never fewer)."""
        at = self._acks_at.get(read)
        if at is None:
            at = 0
            for mseq, seen in self._acks_at.items():
                if mseq > read:
                    break
                at = seen
        return self._acks - at

    def _prune(self) -> None:
        """Forget the snapshots no live consumer's read position needs any more (keep
        the newest one at or below the lowest position)."""
        floor = min(self._read.values(), default=self._last_mseq)
        acks_at = self._acks_at
        while len(acks_at) > 1:
            keys = iter(acks_at)
            first, second = next(keys), next(keys)
            if second > floor:
                break
            del acks_at[first]
