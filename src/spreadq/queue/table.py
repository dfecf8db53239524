"""The replicated table of outstanding jobs: ownership, completion and failover.

Theory of operation
-------------------
Every consumer keeps one :class:`OutstandingTable` and feeds it the WORK group's events
in delivery order (membership changes and messages) plus a few local inputs (our own
handlers starting and finishing, ticks). Spread's AGREED service gives every member
the same messages and membership changes in the same order, and the table is a
deterministic function of that stream, so members that went through the same views hold
the same table without exchanging a word. ``apply(input, now)`` returns the effects for
the dispatcher to carry out; nothing here reads a clock or does I/O. What the table does
at each step, and why replicas agree, is docs/design/replicated-table.md; in short:

* Slots: after each regular view the jobs delivered are numbered k = 0, 1, 2, ... (jobs,
  not messages); slot k's owner is the rule's pick among the view's members that did not
  announce DRAIN (all of them if that leaves none).
* Holders and failover: a job's payload is held by the members of the view it was
  delivered in that came with us since (tracked once per origin view). At a new view,
  every job whose owner is gone or no longer holds it is reassigned, in delivery order,
  over the holders; newcomers get only new work. A job reassigned more than
  ``max_failovers`` times is given up (failed with ``WorkerLost``) instead.
* Completion: an ACK from a current member completes the jobs it lists everywhere, at
  the same point of the order (an ACK from a non-member is ignored); the history
  remembers their outcomes, so a re-sent copy is answered rather than run.
* Re-sent jobs take their new slot and move there; a dedupe key or a periodic tick is
  decided from the dedupe memory or the tick ledger, which every replica of a view holds
  alike (docs/design/dedupe.md, docs/design/periodic.md).
* CANCEL completes a job as cancelled at its place in the order; a RESULT query is
  answered by the one member it names.
* Fragments take their slot when the last one arrives; partitions reassign on each side,
  and the first ACK after the merge completes a job everywhere.

The outstanding jobs themselves live in an :class:`~spreadq.queue.outstanding.Outstanding`:
an entry for each of ours, and one block for the jobs of a batch that others own.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, KeysView, Sequence
from dataclasses import dataclass, fields
from functools import partial
from hashlib import blake2b
from typing import Any, Final

from spreadq.errors import ConfigurationError, EnvelopeError, LocalProtocolError, PluginError
from spreadq.queue.dedupe import DedupeMemory
from spreadq.queue.effects import (
    AnnounceDrain,
    AnnounceHello,
    AnnounceLedger,
    AnnounceRelease,
    AnnounceView,
    AnswerResult,
    CancelJob,
    CancelRefused,
    CancelTaken,
    Effect,
    GiveUpJob,
    JobOrphaned,
    JobRejected,
    JobsCompleted,
    RunJob,
    SendAck,
    SendNotice,
    ViewChanged,
)
from spreadq.queue.envelope import (
    MAX_RELEASE_REFS,
    Ack,
    AckOutcomes,
    BatchJobs,
    Cancel,
    Drain,
    Hello,
    JobBatch,
    JobFragment,
    Ledger,
    Notice,
    Raw,
    Release,
    ResultAnswer,
    ResultQuery,
    ResultState,
    declared_slots,
    decode,
    notice_overhead,
    outcome_chunks,
    outcome_size,
)
from spreadq.queue.fragments import Reassembler
from spreadq.queue.inputs import (
    Busy,
    GiveBack,
    Idle,
    Input,
    JobFinished,
    JobsFinished,
    JobsStarted,
    JobStarted,
    MessageDelivered,
    Producers,
    StartDraining,
    Tick,
    TurnEnded,
)
from spreadq.queue.jobs import (
    Job,
    JobRef,
    Outcome,
    OutcomeHistory,
    Status,
    outcome_of,
)
from spreadq.queue.notices import NoticeQueue
from spreadq.queue.outstanding import (
    Outstanding,
    OutstandingJob,
    _Block,
    _Entry,
    _Origin,
    owner_counts,
)
from spreadq.queue.periodic import TICK_KEY_PREFIX, TickLedger, parse_tick_key
from spreadq.queue.rules import (
    HeadroomRule,
    JoblessRule,
    LoadRule,
    MessageRule,
    Rule,
    SlotRule,
    SlotState,
)
from spreadq.queue.view import LeftGroup, Transitional, View, ViewInstalled, came_with_us
from spreadq.queue.windows import AckCadence

__all__ = ["OutstandingJob", "OutstandingTable", "TableStats"]

_GID = struct.Struct("<iii")


# --- read-only views of the table ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class TableStats:
    """Counters since the table was made."""

    jobs: int = 0
    raw_jobs: int = 0
    bad_envelopes: int = 0
    duplicates: int = 0
    completed: int = 0
    unknown_acks: int = 0
    stale_acks: int = 0
    ignored_messages: int = 0
    reassigned: int = 0
    orphaned: int = 0
    given_up: int = 0
    views: int = 0
    cancelled: int = 0
    refused_cancels: int = 0
    unknown_cancels: int = 0
    results_answered: int = 0
    deduplicated: int = 0
    dedupe_cuts: int = 0
    ticks_accepted: int = 0
    ticks_refused: int = 0
    released: int = 0
    """Jobs a RELEASE dealt anew (to another member, or back to their sender)."""


_STAT_NAMES = tuple(f.name for f in fields(TableStats))


_new_run: Callable[[tuple[Job, str, int, bool, bool, bool]], RunJob] = partial(
    tuple.__new__, RunJob
)
"""``RunJob(...)`` without the named tuple's Python ``__new__``: one per job we run."""


def _too_large(outcome: Outcome) -> Outcome:
    """What an ACK reports of an outcome too big for one: a failure saying so."""
    message = f"a result of {len(outcome.result)} bytes does not fit in an ACK"
    return Outcome.failure("MessageTooLarge", message, outcome.attempts)


_SLOTS_AT_ONCE: Final = 4
"""Jobs in a batch from which a :class:`~spreadq.queue.rules.SlotRule` (or a
:class:`~spreadq.queue.rules.MessageRule`) assigns them in one call (fewer cost less one
by one)."""


# --- the table ----------------------------------------------------------------------


class OutstandingTable:
    """One consumer's replica of the queue's outstanding jobs.

    Raises:
        ConfigurationError: ``incarnation`` is not 16 bytes.

    Args:
        me: our member name (private group) in the WORK group.
        rule: the ownership rule; every consumer of a queue must use the same one.
        incarnation: 16 random bytes chosen when this worker started (put in ACKs).
        capacity: announced with HELLO after every view when given, and again (0 while
            :class:`~spreadq.queue.inputs.Busy` says so, then this) when it changes.
        history_size: completed refs remembered for duplicate detection.
        history_bytes: result bytes remembered with them, at most.
        ack_every: an ACK is due once the messages read and the jobs finished since
            the last one reach this many ...
        ack_every_seconds: ... or this long after the first unreported one.
        ack_position_seconds: ... but this long when all it would report is how far we
            have read: no outcome waits and we hold no job of our own (a member that
            follows the queue, or stands by); None: ``ack_every_seconds``.
        ack_idle_gap: while we are idle (:class:`Idle`), an outcome is ACKed at once,
            but no sooner than this times the view's members after our last ACK: the
            members together send about one such ACK per ``ack_idle_gap``, since every
            member reads every ACK (None: only by the cadence).
        notices: the worker sends the outcome of a job that asks (``Job.notify``) to
            its producer in a NOTICE as well (:class:`SendNotice`, when a turn ends or
            a :class:`Tick` comes, see :class:`~spreadq.queue.notices.NoticeQueue`):
            such an outcome resolves its receipt without an ACK, so it makes no idle
            ACK due (it goes by the cadence).
        notice_interval: seconds between two rounds of NOTICEs on average, with one
            round to spare (:class:`~spreadq.queue.notices.NoticeQueue`).
        window: the producers' window (``Settings.window``): once told how many
            producers share it (:class:`~spreadq.queue.inputs.Producers`), an ACK is
            also due after a third of one producer's share of messages read, when that
            is fewer than ``ack_every`` (None: ``ack_every`` alone).
        position_horizon: read positions of producers not read for this long are
            dropped from ACKs (and forgotten).
        fragment_bytes: the reassembly buffer's byte cap.
        max_failovers: a job reassigned more often than this because its owner left
            is given up (failed with ``WorkerLost``) instead of run again; None: never.
        dedupe_size: dedupe keys remembered (the most recent; 0 remembers none).
        ticks: the ledger of periodic ticks to keep from the stream (a new one when
            not given; the worker's :class:`~spreadq.queue.periodic.Ticker` reads it).
            Every table keeps one and takes part in settling it, with or without
            schedules of its own.
        history: the history to use instead of a new one (``history_size`` and
            ``history_bytes`` are then ignored): a worker keeps one across its sessions,
            so a job re-sent after a reconnection is still recognised.
    """

    def __init__(
        self,
        me: str,
        *,
        rule: Rule,
        incarnation: bytes,
        capacity: int | None = None,
        history_size: int = 100_000,
        history_bytes: int = 16 * 1024 * 1024,
        ack_every: int = 200,
        ack_every_seconds: float = 0.05,
        ack_position_seconds: float | None = None,
        ack_idle_gap: float | None = None,
        notices: bool = False,
        notice_interval: float = 0.0,
        window: int | None = None,
        position_horizon: float = 5.0,
        fragment_bytes: int = 64 * 1024 * 1024,
        max_failovers: int | None = None,
        history: OutcomeHistory | None = None,
        dedupe_size: int = 10_000,
        ticks: TickLedger | None = None,
    ) -> None:
        if len(incarnation) != 16:
            raise ConfigurationError(f"an incarnation is 16 bytes, not {len(incarnation)}")
        self.me = me
        self.rule = rule
        self._jobless = rule.owner_without_job if isinstance(rule, JoblessRule) else None
        self._slots = rule.owners if isinstance(rule, SlotRule) else None
        self._message_owners = rule.message_owners if isinstance(rule, MessageRule) else None
        self._load_owners = rule.load_owners if isinstance(rule, LoadRule) else None
        self._jobs_before = rule.jobs_before if isinstance(rule, HeadroomRule) else None
        self.incarnation = incarnation
        self.capacity = capacity
        self.max_failovers = max_failovers
        self.dedupe_size = dedupe_size
        self._ticks = TickLedger() if ticks is None else ticks
        self._idle_gap = ack_idle_gap
        self._notices = NoticeQueue(notice_interval) if notices else None
        self._window = window
        self._cadence = AckCadence(
            ack_every,
            ack_every_seconds,
            position_horizon=position_horizon,
            idle_gap=ack_idle_gap,
            position_seconds=ack_position_seconds,
        )
        self._history = OutcomeHistory(history_size, history_bytes) if history is None else history
        self._fragments: Reassembler[_Origin] = Reassembler(fragment_bytes)
        self._counts = dict.fromkeys(_STAT_NAMES, 0)
        self._ordinal = 0
        self._serial = 0
        self._self_draining = False
        self._busy = False  # our jobs wait too long for a slot: we announce capacity 0
        self._dispatch: dict[type, Callable[[Any], list[Effect]]] = {
            ViewInstalled: self._on_view,
            Transitional: self._on_transitional,
            LeftGroup: self._on_left,
            MessageDelivered: self._on_message,
            JobStarted: self._on_started,
            JobsStarted: self._on_jobs_started,
            JobFinished: self._on_finished,
            JobsFinished: self._on_jobs_finished,
            Tick: self._on_tick,
            TurnEnded: self._on_turn_ended,
            Idle: self._on_idle,
            Busy: self._on_busy,
            GiveBack: self._on_give_back,
            Producers: self._on_producers,
            StartDraining: self._on_start_draining,
        }
        self._now = 0.0
        self._reset()

    def _reset(self) -> None:
        self._view: View | None = None
        self._members: frozenset[str] = frozenset()
        self._transitional = False
        self._entries = Outstanding()
        self._mine: dict[JobRef, None] = {}
        self._given: set[JobRef] = set()  # ours, given back, their RELEASE not delivered yet
        self._origins: dict[int, _Origin] = {}
        self._origin = self._new_origin(frozenset())
        self._first = self._origin  # the origin of the view we joined in
        self._state = SlotState()
        self._entries.release = self._state.released
        self._capacities: dict[str, int] = {}
        self._takers: set[str] = set()  # members whose HELLO says they take released jobs
        self._draining: set[str] = set()
        self._eligible: tuple[str, ...] = ()
        self._order: tuple[str, ...] = ()
        self._local_refs: dict[str, list[Any]] = {}
        self._dedupe = DedupeMemory(self.dedupe_size)
        self._fragments.clear()
        self._cadence.clear()
        if self._notices is not None:
            self._notices.clear()
        self._ticks.clear()

    # --- public surface -------------------------------------------------------------

    def apply(self, event: Input, now: float) -> list[Effect]:
        """Feed one input at time ``now``; return the effects, in order.

        Raises:
            LocalProtocolError: a view that does not list us.
            PluginError: the rule returned a member it was not offered.
        """
        self._now = now
        return self._dispatch[type(event)](event)

    @property
    def view(self) -> View | None:
        """The current view, ``None`` before the first one and after leaving."""
        return self._view

    @property
    def transitional(self) -> bool:
        """True between a transitional membership and the next regular one."""
        return self._transitional

    @property
    def draining(self) -> frozenset[str]:
        """Members that announced DRAIN in this view."""
        return frozenset(self._draining)

    @property
    def outstanding_count(self) -> int:
        """How many jobs are outstanding (every owner's)."""
        return len(self._entries)

    @property
    def jobs_delivered(self) -> int:
        """How many job slots the table has given owners since it was made (every
        member's jobs; ``stats.jobs`` without building the snapshot)."""
        return self._counts["jobs"]

    def jobs_before_mine(self) -> int:
        """At least how many of the next job slots go to other members before one could
        come to us, if no ACK comes between: what the rule says
        (:class:`~spreadq.queue.rules.HeadroomRule`), else 0."""
        before = self._jobs_before
        if before is None or self._view is None or self.me not in self._eligible:
            return 0
        return before(self._eligible, self._state, self.me)

    @property
    def backlog(self) -> int:
        """Outstanding jobs we own and have not finished."""
        return len(self._mine)

    @property
    def stats(self) -> TableStats:
        """A snapshot of the counters."""
        return TableStats(**self._counts)

    def next_deadline(self) -> float | None:
        """When the next :class:`Tick` is needed for an ACK or NOTICEs held back to go
        out on time."""
        due = self._cadence.deadline(holding=bool(self._mine))
        notices = self._notices
        if notices is not None:
            held = notices.deadline()
            if held is not None and (due is None or held < due):
                return held
        return due

    @property
    def notices_pending(self) -> bool:
        """True when an outcome waits for a NOTICE (:class:`TurnEnded` sends it, or a
        :class:`Tick` once the interval allows)."""
        notices = self._notices
        return notices is not None and notices.pending

    @property
    def unreported(self) -> bool:
        """True while an outcome we reached (or remembered) waits for an ACK."""
        return self._cadence.outcomes_pending

    def owner_of(self, ref: JobRef) -> str | None:
        """The owner of an outstanding job, or ``None`` (unknown, orphaned or not held)."""
        return self._entries.owner_of(ref)

    def is_outstanding(self, ref: JobRef) -> bool:
        """True while ``ref`` is in the table (not completed by an ACK)."""
        return ref in self._entries

    @property
    def outstanding_refs(self) -> KeysView[JobRef]:
        """The refs of the outstanding jobs held one by one, every job we own among
        them, a live view (until we leave the group): ``ref in table.outstanding_refs``
        is :meth:`is_outstanding` without a call, for our own jobs (another member's
        job may be outstanding in a block without being in it)."""
        return self._entries.keys()

    @property
    def outcome_budget(self) -> int:
        """The most bytes one outcome may take in an ACK; a bigger one is reported as a
        ``MessageTooLarge`` failure instead."""
        return self._cadence.outcome_budget

    def sender_of(self, ref: JobRef) -> str | None:
        """Who sent outstanding job ``ref`` (a member producer's private group, for a
        job it put); None when ``ref`` is not outstanding."""
        entry = self._entries.get(ref)
        return None if entry is None else entry.sender  # a block's too

    def outstanding(self) -> list[OutstandingJob]:
        """Every outstanding job, in delivery order."""
        return self._entries.listing(self._given_up)

    def outstanding_per_producer(self) -> dict[bytes, int]:
        """How many jobs of each producer id are outstanding (every owner): what
        :meth:`outstanding` would count, without building a record per job."""
        return self._entries.per_producer()

    def _given_up(self, entry: _Entry) -> bool:
        limit = self.max_failovers
        return limit is not None and entry.failovers > limit

    @property
    def ticks(self) -> TickLedger:
        """The ledger of periodic ticks this table keeps."""
        return self._ticks

    def dedupe_memory(self) -> dict[str, JobRef]:
        """The remembered dedupe keys and the first job of each, oldest first."""
        return self._dedupe.keys()

    def duplicate_of(self, ref: JobRef) -> JobRef | None:
        """The first job an outstanding duplicate ``ref`` shares its dedupe key with."""
        entry = self._entries.get(ref)
        return entry.dedupe_of if isinstance(entry, _Entry) else None  # a block's have none

    def remembers(self, ref: JobRef) -> Outcome | None:
        """The remembered outcome of a completed job, if still in the history."""
        return self._history.get(ref)

    # --- membership -----------------------------------------------------------------

    def _new_origin(self, holders: frozenset[str]) -> _Origin:
        self._serial += 1
        origin = _Origin(self._serial, holders)
        self._origins[origin.serial] = origin
        return origin

    def _on_view(self, event: ViewInstalled) -> list[Effect]:
        if self.me not in event.members:
            raise LocalProtocolError(f"a view of the WORK group without us ({self.me!r})")
        self._ordinal += 1
        self._counts["views"] += 1
        first = self._view is None
        view = View(event.members, event.group_id, self._ordinal)
        effects: list[Effect] = []
        reassigned: list[JobRef] = []
        taken: list[JobRef] = []
        orphaned: list[JobRef] = []
        given_up: list[JobRef] = []
        if self._view is not None:
            entries = self._entries.unblocked()
            came = came_with_us(self._view.members, event) | {self.me}
            live = {e.origin.serial for e in entries.values()}
            live.update(origin.serial for origin in self._fragments.tokens())
            live.add(self._origin.serial)
            live.add(self._first.serial)
            for serial in [s for s in self._origins if s not in live]:
                del self._origins[serial]
            for origin in self._origins.values():
                origin.holders &= came
            if self._dedupe.cut(came, event.members):
                self._counts["dedupe_cuts"] += 1
            rounds: dict[int, SlotState] = {}
            forget: list[JobRef] = []
            members = frozenset(event.members)
            for entry in entries.values():
                entry.counted = None
                holders = entry.origin.holders
                if entry.orphaned or (entry.owner in members and entry.owner in holders):
                    continue
                if not entry.held:  # we cannot know its new owner; wait for its ACK
                    entry.owner = None
                    if entry.origin.holders <= {self.me}:
                        forget.append(entry.ref)  # nobody left who might hold it
                    continue
                ref = entry.ref
                candidates = tuple(
                    m for m in event.members if m in holders and m not in self._draining
                ) or tuple(m for m in event.members if m in holders)
                if not candidates:
                    entry.owner = None
                    entry.orphaned = True
                    orphaned.append(ref)
                    effects.append(JobOrphaned(ref))
                    continue
                state = rounds.setdefault(entry.origin.serial, SlotState())
                entry.slot = state.index
                entry.owner = self._pick(candidates, state, entry)
                entry.view = self._ordinal
                entry.failover = True
                entry.failovers += 1
                reassigned.append(ref)
                if self._given_up(entry):
                    given_up.append(ref)
                if entry.owner == self.me:
                    taken.append(ref)
                    effects += self._become_owner(entry, failover=True)
            for ref in forget:
                del self._entries[ref]
            self._recheck_waiting()
        speech = self._ticks.on_view(
            self.me, event.members, event.group_id, None if first else came
        )
        self._counts["reassigned"] += len(reassigned)
        self._counts["orphaned"] += len(orphaned)
        self._counts["given_up"] += len(given_up)
        self._view = view
        self._members = frozenset(event.members)
        if self._idle_gap is not None:  # every member reads every ACK: share the budget
            self._cadence.idle_gap = self._idle_gap * len(event.members)
        self._order = event.members
        self._transitional = False
        self._origin = self._new_origin(self._members)
        if first:
            self._first = self._origin
        self._capacities = {}
        self._takers = set()
        self._state = SlotState(self._capacities)
        self._entries.release = self._state.released
        self._draining = set()
        self._eligible = event.members
        self._local_refs = {}
        change = ViewChanged(
            view,
            event.cause,
            tuple(reassigned),
            tuple(taken),
            tuple(orphaned),
            tuple(given_up),
        )
        effects.insert(0, change)
        if view.first == self.me:
            effects.append(AnnounceView(view))
        if self._self_draining:
            effects.append(AnnounceDrain(Drain(self.incarnation)))
        hello = self._hello()
        if hello is not None:
            effects.append(hello)
        if speech is not None:
            effects.append(AnnounceLedger(speech))
        return effects

    def _on_transitional(self, event: Transitional) -> list[Effect]:
        if self._view is not None:
            self._transitional = True
        return []

    def _on_left(self, event: LeftGroup) -> list[Effect]:
        effects: list[Effect] = [
            CancelJob(ref, running=entry.started)
            for ref, entry in self._entries.items()
            if isinstance(entry, _Entry) and entry.run_sent and not entry.finished
        ]
        self._reset()
        return effects

    def _on_start_draining(self, event: StartDraining) -> list[Effect]:
        self._self_draining = True
        self._cadence.draining = True  # the drain waits for every outcome to go out
        if self._view is None:
            return []
        effects: list[Effect] = [AnnounceDrain(Drain(self.incarnation))]
        if self._ack_due():
            effects.append(self._make_ack())
        return effects

    # --- messages -------------------------------------------------------------------

    def _on_message(self, event: MessageDelivered) -> list[Effect]:
        if self._view is None:
            self._counts["ignored_messages"] += 1
            return []
        effects: list[Effect] = []
        try:
            decoded = decode(event.data)
        except EnvelopeError as exc:
            slots = declared_slots(event.data)
            self._counts["bad_envelopes"] += 1
            if not slots:
                self._counts["ignored_messages"] += 1
            if slots:
                self._cadence.on_read(self._now)
            reason = f"EnvelopeError: {exc}"
            slot_effects: list[Effect] = []
            self._state.message_begins(slots)
            for _ in range(slots):
                ref = self._local_ref(event.sender)
                job = Job(ref, "invalid", None, "", event.data, b"", reason)
                self._take_slot(slot_effects, job, event.sender, event.mess_type, self._origin)
            self._state.message_ends()
            rejected = [e for e in slot_effects if isinstance(e, JobRejected)]
            effects += [e for e in slot_effects if not isinstance(e, JobRejected)]
            if rejected:  # one effect (one log line) for the message, however many slots
                effects.append(JobRejected(rejected[0].ref, event.sender, reason, len(rejected)))
        else:
            if isinstance(decoded, JobBatch):
                jobs = decoded.jobs
                count = len(jobs)
                self._counts["jobs"] += count
                sender, mess_type, origin = event.sender, event.mess_type, self._origin
                # decode gives every batch BatchJobs: the jobs we do not own are never built
                assert isinstance(jobs, BatchJobs)
                keys = jobs.dedupe_keys
                self._state.message_begins(count)
                if not keys and self._jobless is not None:
                    self._take_batch(effects, jobs, sender, mess_type)
                else:
                    take = self._take_slot
                    for index, ref in enumerate(jobs.refs):
                        dedupe = keys.get(index)
                        take(
                            effects,
                            ref,
                            sender,
                            mess_type,
                            origin,
                            source=jobs,
                            index=index,
                            dedupe=dedupe,
                        )
                self._state.message_ends()
                self._cadence.on_read(self._now, decoded.producer_id, decoded.mseq)
            elif isinstance(decoded, JobFragment):
                self._state.message_begins(1)  # the last fragment takes the job's slot
                self._on_fragment(effects, decoded, event)
                self._state.message_ends()
            elif isinstance(decoded, Raw):
                self._counts["raw_jobs"] += 1
                ref = self._local_ref(event.sender)
                job = Job(ref, f"raw:{event.mess_type}", None, "raw", decoded.data)
                self._state.message_begins(1)
                self._take_slot(effects, job, event.sender, event.mess_type, self._origin)
                self._state.message_ends()
                self._cadence.on_read(self._now)
            elif isinstance(decoded, Ack):
                self._on_ack(effects, event.sender, decoded)
            elif isinstance(decoded, Drain):
                if event.sender in self._members:
                    self._draining.add(event.sender)
                    eligible = tuple(m for m in self._order if m not in self._draining)
                    self._eligible = eligible or self._order
            elif isinstance(decoded, Hello):
                if event.sender in self._members:
                    self._capacities[event.sender] = decoded.capacity
                    if decoded.takes_released:
                        self._takers.add(event.sender)
                    else:
                        self._takers.discard(event.sender)
            elif isinstance(decoded, Release):
                self._on_release(effects, event.sender, decoded)
            elif isinstance(decoded, Ledger):
                if event.sender in self._members:  # like an ACK: members only
                    self._ticks.on_ledger(decoded)
                else:
                    self._counts["ignored_messages"] += 1
            elif isinstance(decoded, Cancel):
                self._on_cancel(effects, event.sender, decoded.ref)
            elif isinstance(decoded, ResultQuery):
                self._on_query(effects, event.sender, decoded)
            else:
                self._counts["ignored_messages"] += 1
        if self._ack_due():
            effects.append(self._make_ack())
        return effects

    def _local_ref(self, sender: str) -> JobRef:
        """A ref for a RAW or unreadable slot: every replica that delivered it agrees.

        ``producer_id`` hashes the view's group id and the sender; ``seq`` counts that
        sender's such slots in this view. Spread keeps one sender's messages in order,
        so even replicas on different sides of a partition number the same message alike.
        """
        assert self._view is not None
        counter = self._local_refs.get(sender)
        if counter is None:
            seed = b"spreadq-local\0" + _GID.pack(*self._view.group_id)
            digest = blake2b(seed + sender.encode("utf-8", "surrogatepass"), digest_size=16)
            counter = self._local_refs[sender] = [digest.digest(), 0]
        ref = JobRef(counter[0], counter[1])
        counter[1] += 1
        return ref

    def _on_fragment(
        self, effects: list[Effect], fragment: JobFragment, event: MessageDelivered
    ) -> None:
        done = self._fragments.add(fragment, self._origin)
        self._cadence.on_read(self._now, fragment.producer_id, fragment.mseq)
        if done is None:
            return
        self._counts["jobs"] += 1
        # without its head we do not hold it; only members that were there when we
        # joined (and came along since) can: joiners after us missed the head too
        origin = done.token if done.token is not None else self._first
        job = done.job
        self._take_slot(effects, job, event.sender, event.mess_type, origin, held=done.held)

    def _job(self, entry: _Entry) -> Job:
        """The entry's job, built from its batch the first time it is needed."""
        job = entry.job
        if job is None:
            assert entry.source is not None
            job = entry.job = entry.source[entry.index]
            entry.source = None
        return job

    def _pick(self, members: tuple[str, ...], state: SlotState, entry: _Entry) -> str:
        jobless = self._jobless
        if jobless is not None:
            owner = jobless(members, state)
        else:
            owner = self.rule.owner(members, state, self._job(entry))
        if owner not in members:
            raise PluginError(self.rule.name, f"rule returned {owner!r}, not one of {members}")
        state.assigned(owner)
        return owner

    def _take_slot(
        self,
        effects: list[Effect],
        job: Job | JobRef,
        sender: str,
        mess_type: int,
        origin: _Origin,
        *,
        held: bool = True,
        source: Sequence[Job] | None = None,
        index: int = 0,
        dedupe: str | None = None,
    ) -> None:
        """Give job slot k its owner (``job`` is the job, or its ref when ``source[index]``
        holds it). The entry this leaves is the same on every replica of the
        configuration, whatever each remembers; only local actions differ."""
        if isinstance(job, JobRef):
            entry = _Entry(job, None, source, index, sender, mess_type, origin, None, 0, 0, held)
        else:
            entry = _Entry(job.ref, job, None, 0, sender, mess_type, origin, None, 0, 0, held)
            dedupe = job.dedupe_key
        if dedupe is not None:
            if dedupe.startswith(TICK_KEY_PREFIX):
                self._decide_tick(entry, dedupe)
            else:
                self._remember_key(entry, dedupe)
        slot = self._state.index
        owner: str | None = self._pick(self._eligible, self._state, entry)
        counted = owner
        failover = False
        if origin is not self._origin and owner not in origin.holders:
            # a fragmented job that began before some member joined: that member lacks it
            holders = origin.holders
            candidates = tuple(m for m in self._eligible if m in holders) or tuple(
                m for m in self._order if m in holders
            )
            if held and candidates:
                state = SlotState()
                state.index = slot
                owner = self._pick(candidates, state, entry)
                failover = True
            else:
                owner = None
        elif not held:
            owner = None
        ref = entry.ref
        entry.owner, entry.slot, entry.view, entry.counted = owner, slot, self._ordinal, counted
        entry.failover = failover
        old = self._entries.entry(ref)
        if old is not None:
            del self._entries[ref]
        if old is None:
            entry.remembered = self._history.get(ref)
            entry.duplicate = entry.remembered is not None
        else:
            # re-sent while outstanding: it moves to this slot (and its owner) everywhere
            entry.duplicate = True
            entry.remembered = old.remembered
            entry.failovers = old.failovers
            if old.counted is not None and old.view == self._ordinal:
                self._state.released(old.counted)
            if old.run_sent and not old.finished:  # we have a run of it going
                if owner == self.me:  # still ours: keep the run we have
                    entry.run_sent, entry.started = True, old.started
                elif old.started:  # let it finish; its outcome still completes the job
                    entry.run_sent, entry.started = True, True
                    self._mine.pop(ref, None)
                else:
                    self._mine.pop(ref, None)
                    effects.append(CancelJob(ref, running=False))
            entry.finished = old.finished and old.owner == owner == self.me
        if entry.duplicate:
            self._counts["duplicates"] += 1
        self._entries[ref] = entry
        if owner == self.me:
            effects += self._become_owner(entry, failover=failover)

    def _take_batch(
        self, effects: list[Effect], jobs: BatchJobs, sender: str, mess_type: int
    ) -> None:
        """:meth:`_take_slot` for each job of a batch without dedupe keys, under a rule
        that never looks at the job: the path every member takes for every job, most of
        them not its own.

        Under a :class:`~spreadq.queue.rules.SlotRule` (``round_robin``), a
        :class:`~spreadq.queue.rules.MessageRule` (``sticky``) or a
        :class:`~spreadq.queue.rules.LoadRule` (``fill_first``, ``least_loaded``) a batch
        of :data:`_SLOTS_AT_ONCE` new jobs or more gets its owners in one call, and the
        jobs other members own enter the table as one block
        (:meth:`~spreadq.queue.outstanding.Outstanding.enter_block`); a load rule's block
        counts its jobs' loads, a member at a time. A batch that may hold a re-sent job
        (one still outstanding or remembered, or a ref twice) goes job by job."""
        seqs = jobs.seqs
        count = len(seqs)
        slots, by_message, by_load = self._slots, self._message_owners, self._load_owners
        if (
            (slots is not None or by_message is not None or by_load is not None)
            and count >= _SLOTS_AT_ONCE
            and self._entries.is_new(jobs.producer_id, seqs)
        ):
            members, first = self._eligible, self._state.index
            if slots is not None:
                owners, asked = slots(members, first, count), "owners()"
            elif by_message is not None:
                owners = by_message(members, self._state.message, count)
                asked = "message_owners()"
            else:
                assert by_load is not None
                owners, asked = by_load(members, self._state, count), "load_owners()"
            if len(owners) != count:
                raise PluginError(self.rule.name, f"{asked} gave {len(owners)} for {count} slots")
            if not frozenset(members).issuperset(owners):
                strays = sorted(set(owners) - set(members))
                why = f"{asked} returned {strays}, not one of {members}"
                raise PluginError(self.rule.name, why)
            counts = slots is None and by_message is None
            if self._enter_block(effects, jobs, sender, mess_type, owners, first, counts):
                if counts:
                    for owner, taken in owner_counts(owners):
                        self._state.assigned_many(owner, taken)
                else:
                    self._state.skip(count)
                return
        self._take_batch_each(effects, jobs, sender, mess_type)

    def _enter_block(
        self,
        effects: list[Effect],
        jobs: BatchJobs,
        sender: str,
        mess_type: int,
        owners: Sequence[str],
        first: int,
        counts: bool,
    ) -> bool:
        """Enter a batch of new jobs whose slots from ``first`` go to ``owners``: the jobs
        of other members as one block, ours as entries (counting their loads when
        ``counts``). False, and nothing entered, when the history may remember one of
        them or a ref comes twice."""
        low, high = self._history.window(jobs.producer_id)
        if low <= high:
            seqs = jobs.seqs  # in a row (is_new said so)
            if seqs[0] <= high and seqs[-1] >= low:  # one may be a re-sent job
                return False
        block = _Block(jobs, sender, mess_type, self._origin, owners, first, self._ordinal, counts)
        mine = self._entries.enter_block(block, self.me)
        if mine:
            self._run_new(effects, mine, jobs)
        return True

    def _run_new(self, effects: list[Effect], entries: Sequence[_Entry], jobs: BatchJobs) -> None:
        """:meth:`_become_owner` for the entries of new jobs of ours that entered with
        their batch ``jobs``: no history, dedupe key, tick or failover of theirs to look
        at, so each is run, unless its record is bad. The path of every job we run."""
        limit = self.max_failovers
        if self._given or (limit is not None and limit < 0):
            # jobs we gave back wait for their RELEASE (or a limit below 0 gives every
            # job up): the careful way, job by job
            for entry in entries:
                effects += self._become_owner(entry, failover=False)
            return
        mine, run = self._mine, effects.append
        built = jobs.build([entry.index for entry in entries], [entry.ref for entry in entries])
        for entry, job in zip(entries, built, strict=True):
            entry.job, entry.source = job, None
            if job.error is not None:
                effects += self._become_owner(entry, failover=False)
                continue
            mine[entry.ref] = None
            entry.run_sent = True
            run(_new_run((job, entry.sender, entry.mess_type, False, False, False)))

    def _take_batch_each(
        self, effects: list[Effect], jobs: BatchJobs, sender: str, mess_type: int
    ) -> None:
        """:meth:`_take_batch` one job at a time, asking the rule for each owner."""
        jobless = self._jobless
        assert jobless is not None
        state, members, origin = self._state, self._eligible, self._origin
        store, me, ordinal = self._entries, self.me, self._ordinal
        entries, arrivals = store.entries, store.arrivals  # entered here, without a call
        assigned = state.assigned
        refs = jobs.refs
        if not refs:
            return
        low, high = self._history.window(refs[0].producer_id)
        for index, ref in enumerate(refs):
            if ref in entries or (store.in_blocks and ref in store):
                self._take_slot(effects, ref, sender, mess_type, origin, source=jobs, index=index)
                continue
            slot = state.index
            owner = jobless(members, state)
            if owner not in members:
                raise PluginError(self.rule.name, f"rule returned {owner!r}, not one of {members}")
            assigned(owner)
            entry = _Entry(
                ref, None, jobs, index, sender, mess_type, origin, owner, slot, ordinal, True, owner
            )
            if low <= ref[1] <= high:  # it may be a job re-sent after it completed
                self._recall(entry)
            entry.arrival = next(arrivals)
            entries[ref] = entry
            if owner == me:
                effects += self._become_owner(entry, failover=False)
        store.held_up_to(jobs.producer_id, max(jobs.seqs))

    def _recall(self, entry: _Entry) -> None:
        """A new entry whose seq the history may hold: if it remembers the job's outcome
        (a job re-sent after it completed), the entry is a duplicate answered from it."""
        remembered = self._history.get(entry.ref)
        if remembered is not None:
            entry.remembered, entry.duplicate = remembered, True
            self._counts["duplicates"] += 1

    def _remember_key(self, entry: _Entry, key: str) -> None:
        """Look ``key`` up in the dedupe memory: remember it, or mark ``entry`` a duplicate.

        A function of the memory alone (never of what this replica remembers otherwise),
        so every replica of the view decides alike."""
        first = self._dedupe.remember(key, entry.ref)
        if first is not None:
            entry.dedupe_of = first
            self._counts["deduplicated"] += 1

    def _decide_tick(self, entry: _Entry, key: str) -> None:
        """A periodic TICK: accepted by the tick ledger (an ordinary job from now on) or
        refused (it keeps its slot, and its owner reports it finished unrun). A function
        of the ledger alone, which every replica of a settled view holds alike."""
        tick = parse_tick_key(key)
        if tick is None:
            reason: str | None = f"{key!r} names no view (a spreadq version before LEDGER?)"
        else:
            reason = self._ticks.decide(*tick)
        if reason is None:
            self._counts["ticks_accepted"] += 1
        else:
            entry.refused = reason
            self._counts["ticks_refused"] += 1

    def _answer_duplicate(self, entry: _Entry, first: JobRef) -> None:
        """Report the first job's outcome (or, forgotten, a ``DuplicateJob`` failure)
        as the outcome of its duplicate ``entry``, which we own; or wait for the first's
        ACK while it is outstanding."""
        outcome = self._history.get(first)
        if outcome is None:
            if first in self._entries:
                self._dedupe.wait(first, entry.ref)
                return
            message = f"job {entry.ref} is a duplicate of job {first}, whose outcome is forgotten"
            outcome = Outcome.failure("DuplicateJob", message)
        entry.finished = True
        self._cadence.on_finished(entry.ref, outcome, self._now)

    def _become_owner(
        self, entry: _Entry, *, failover: bool, released: bool = False
    ) -> list[Effect]:
        ref = entry.ref
        if entry.finished:
            return []
        if entry.run_sent:  # it came back to us while our run of it goes on
            self._mine[ref] = None
            return []
        if entry.remembered is not None:
            entry.finished = True
            self._cadence.on_finished(ref, entry.remembered, self._now)
            return []
        if entry.dedupe_of is not None:  # never run: it gets the first job's outcome
            self._answer_duplicate(entry, entry.dedupe_of)
            return []
        if entry.refused is not None:  # a TICK the ledger refused: never run anywhere
            entry.finished = True
            self._cadence.on_finished(ref, Outcome.failure("StaleTick", entry.refused), self._now)
            return []
        job = self._job(entry)
        if job.error is not None:
            entry.finished = True
            outcome = Outcome.failure("EnvelopeError", job.error)
            self._cadence.on_finished(ref, outcome, self._now)
            return [JobRejected(ref, entry.sender, job.error)]
        self._mine[ref] = None
        entry.run_sent = True
        if self._given:
            self._given.discard(ref)  # ours to run again before its RELEASE lands
        limit = self.max_failovers
        if limit is not None and entry.failovers > limit:
            return [GiveUpJob(job, entry.failovers, limit)]
        return [_new_run((job, entry.sender, entry.mess_type, failover, entry.duplicate, released))]

    def _on_ack(self, effects: list[Effect], sender: str, ack: Ack) -> None:
        if sender not in self._members:
            self._counts["stale_acks"] += 1
            return
        outstanding, mine = self._entries, self._mine
        released = self._state.released
        append = effects.append
        waiting = self._dedupe.waiting
        outcomes = ack.outcomes
        decoded = outcomes if type(outcomes) is AckOutcomes else None
        runs = None if decoded is None or waiting else decoded.runs
        if decoded is None or runs is None:
            refs, records = AckOutcomes.parts(outcomes)
        else:  # the jobs blocks hold complete a run at a time; records only if needed
            refs, records = outstanding.complete_runs(runs), None
        unknown: set[JobRef] | None = None  # refs not outstanding here
        cancelled: set[JobRef] | None = None
        popped: list[_Entry | _Block | None]
        if waiting:
            popped = []
            assert records is not None  # no runs are taken while duplicates wait
            for ref, record in zip(refs, records, strict=True):
                if ref in waiting:  # duplicates waiting for this first job
                    self._answer_waiting(waiting.pop(ref), outcome_of(record))
                popped.append(outstanding.pop(ref))
        else:  # the usual case: all at once
            popped = outstanding.pop_all(refs)
        if None in popped:
            unknown = {ref for ref, entry in zip(refs, popped, strict=True) if entry is None}
            self._counts["unknown_acks"] += popped.count(None)
            for ref in unknown:
                known = self._history.get(ref)
                if known is not None and known.status is Status.CANCELLED:
                    if cancelled is None:
                        cancelled = set()
                    cancelled.add(ref)  # a run that ended after its CANCEL: cancelled
        for entry in popped if _Entry in map(type, popped) else ():
            if type(entry) is not _Entry:  # not outstanding, or in a block: nothing to undo
                continue
            if entry.counted is not None:
                released(entry.counted)
            if entry.run_sent:  # only a run we sent puts a job in mine
                mine.pop(entry.ref, None)
                if not entry.finished:
                    append(CancelJob(entry.ref, running=entry.started))
        history = self._history
        if cancelled is None and runs is not None:  # every outcome is remembered, a run at once
            for run in runs:
                history.add_run(run)
        elif cancelled is None:
            assert records is not None
            history.add_all(refs, records)
        else:
            refs, records = AckOutcomes.parts(outcomes)
            kept = [
                (r, record) for r, record in zip(refs, records, strict=True) if r not in cancelled
            ]
            history.add_all([r for r, _ in kept], [record for _, record in kept])
        if unknown is None:  # the usual case: the ACK completed every job it lists
            done = decoded if decoded is not None else AckOutcomes(refs, records)
        else:  # every job of the ACK but those
            refs, records = AckOutcomes.parts(outcomes)
            pairs = [(r, rec) for r, rec in zip(refs, records, strict=True) if r not in unknown]
            done = AckOutcomes([r for r, _ in pairs], [rec for _, rec in pairs])
        completed = len(done)
        if completed:
            self._counts["completed"] += completed
            append(JobsCompleted(sender, done))

    def _takers_for(self, sender: str) -> list[str]:
        """The members a RELEASE from ``sender`` deals jobs to, in the view's order: those
        whose latest HELLO in this view said they take released jobs and did not say
        they are busy, not draining, and not ``sender``."""
        capacities, takers, draining = self._capacities, self._takers, self._draining
        return [
            m
            for m in self._order
            if m != sender and m in takers and m not in draining and capacities.get(m) != 0
        ]

    @property
    def can_give_back(self) -> bool:
        """Whether we should give back jobs when busy: our rule fills members in order
        (a :class:`~spreadq.queue.rules.HeadroomRule` such as ``fill_first``: under a rule
        that spreads the work every member holds its share, and one that gave some back
        would only sit idle while the others catch up), and a RELEASE would find another
        member to take a job now (its place in the order decides; this is the guess the
        dispatcher acts on)."""
        return (
            self._jobs_before is not None
            and self._view is not None
            and not self._transitional
            and bool(self._takers_for(self.me))
        )

    def _on_give_back(self, event: GiveBack) -> list[Effect]:
        if self._view is None:
            return []
        entries, me, mine, given = self._entries.entries, self.me, self._mine, self._given
        refs = []
        for ref in event.refs:
            entry = entries.get(ref)
            if (
                entry is not None
                and entry.owner == me
                and entry.run_sent
                and not entry.started
                and not entry.finished
            ):
                refs.append(ref)
                entry.run_sent = False  # nothing of ours runs it now
                mine.pop(ref, None)
                given.add(ref)
        step = MAX_RELEASE_REFS
        return [
            AnnounceRelease(Release(self.incarnation, tuple(refs[at : at + step])))
            for at in range(0, len(refs), step)
        ]

    def _on_release(self, effects: list[Effect], sender: str, release: Release) -> None:
        """Deal the jobs ``sender`` gives back, those it still owns here, in turn to the
        members that take them and hold their payloads (docs/design/replicated-table.md#release).
        A job none of them can take stays with ``sender``, which queues it again."""
        if sender not in self._members:
            self._counts["ignored_messages"] += 1
            return
        takers = self._takers_for(sender)
        state, me, mine, given = self._state, self.me, self._mine, self._given
        turn = 0
        outstanding = self._entries
        for ref in release.refs:
            # ours, and still out of our queue (not taken again since we gave it back)
            out = sender == me and ref in given
            if out:
                given.discard(ref)
            if outstanding.owner_of(ref) != sender:
                continue  # completed, cancelled or reassigned since: nothing to give
            entry = outstanding.entry(ref)  # only now: a block of it becomes entries
            assert entry is not None
            owner = sender
            holders = entry.origin.holders
            for step in range(len(takers)):
                candidate = takers[(turn + step) % len(takers)]
                if candidate in holders:
                    owner = candidate
                    turn += step + 1
                    break
            self._counts["released"] += 1
            if owner != sender:
                entry.owner = owner
                if entry.counted is not None:
                    state.released(entry.counted)
                    state.taken(owner)
                    entry.counted = owner
            if owner == me and (out or sender != me):  # nothing of ours runs it now
                effects += self._become_owner(entry, failover=False, released=True)
            elif sender == me and not out and owner != me and entry.run_sent:
                # ours again since we gave it back (a failover, a re-sent copy): every
                # replica deals it by the same rule, so our run of it stops
                entry.run_sent = False
                mine.pop(ref, None)
                if not entry.finished:
                    effects.append(CancelJob(ref, running=entry.started))

    def _on_cancel(self, effects: list[Effect], sender: str, ref: JobRef) -> None:
        entry = self._entries.entry(ref)
        if entry is None:  # completed already, or never delivered here: a no-op
            self._counts["unknown_cancels"] += 1
            return
        if entry.sender != sender:
            self._counts["refused_cancels"] += 1
            reason = f"only {entry.sender}, which sent the job, may cancel it"
            effects.append(CancelRefused(ref, sender, reason))
            return
        del self._entries[ref]
        self._counts["cancelled"] += 1
        self._history.add(ref, Outcome.cancelled())
        waiting = self._dedupe.waiting.pop(ref, None)
        if waiting:  # our duplicates of it: their first job's outcome is "cancelled"
            self._answer_waiting(waiting, Outcome.cancelled())
        if entry.counted is not None:
            self._state.released(entry.counted)
        self._mine.pop(ref, None)
        effects.append(CancelTaken(ref, sender))
        if entry.run_sent and not entry.finished:
            effects.append(CancelJob(ref, running=entry.started))

    def _on_query(self, effects: list[Effect], sender: str, query: ResultQuery) -> None:
        view = self._view
        assert view is not None
        members = view.members
        if query.index >= len(members) or members[query.index] != self.me:
            return
        ref = query.ref
        outcome = None
        if ref in self._entries:
            state = ResultState.PENDING
        else:
            outcome = self._history.get(ref)
            state = ResultState.UNKNOWN if outcome is None else ResultState.KNOWN
        self._counts["results_answered"] += 1
        answer = ResultAnswer(query.query_id, ref, state, len(members), outcome)
        effects.append(AnswerResult(sender, answer))

    def _recheck_waiting(self) -> None:
        """After a view change: keep waiting only for our duplicates whose first job is
        still outstanding; answer the others now (their first was forgotten)."""
        waiting = self._dedupe.take_waiting()
        for first, duplicates in waiting.items():
            for ref in duplicates:
                entry = self._entries.entry(ref)
                if entry is not None and entry.owner == self.me and not entry.finished:
                    self._answer_duplicate(entry, first)

    def _answer_waiting(self, duplicates: list[JobRef], outcome: Outcome) -> None:
        """The first job completed: its outcome is the outcome of our duplicates of it."""
        for ref in duplicates:
            entry = self._entries.entry(ref)
            if entry is not None and entry.owner == self.me and not entry.finished:
                entry.finished = True
                self._cadence.on_finished(ref, outcome, self._now)

    # --- our own handlers and ACKs --------------------------------------------------

    def _on_started(self, event: JobStarted) -> list[Effect]:
        return self._on_jobs_started(JobsStarted((event.ref,)))

    def _on_jobs_started(self, event: JobsStarted) -> list[Effect]:
        entries, me = self._entries.entries, self.me
        for ref in event.refs:
            entry = entries.get(ref)
            if entry is not None and entry.owner == me:
                entry.started = True
        return []

    def _on_finished(self, event: JobFinished) -> list[Effect]:
        if not self._finish((event,)) or not self._ack_due():
            return []
        return [self._make_ack()]

    def _on_jobs_finished(self, event: JobsFinished) -> list[Effect]:
        self._finish(event.finished)
        if self._view is None or not self._ack_due():
            return []
        return [self._make_ack()]

    def _finish(self, finished: Sequence[JobFinished]) -> int:
        """Queue the outcomes of our jobs for the next ACK, in order, handed to the
        cadence in one call; how many were ours to report (not: not outstanding,
        reported already, or no view). An outcome too big for an ACK is reported as a
        ``MessageTooLarge`` failure."""
        if self._view is None:
            return 0
        entries, mine, cadence = self._entries.entries, self._mine, self._cadence
        budget = cadence.outcome_budget
        reported: list[tuple[JobRef, Outcome]] = []
        sizes: list[int] = []
        notices = self._notices
        noticed = 0  # outcomes a NOTICE takes to their producer as well
        for done in finished:
            ref, outcome = done
            entry = entries.get(ref)
            if not isinstance(entry, _Entry) or entry.finished:  # a block's are not ours
                continue
            entry.finished = True
            mine.pop(ref, None)
            size = outcome_size(outcome)
            if size > budget:  # no NOTICE either: the ACK says what became of it
                outcome = _too_large(outcome)
                done, size = JobFinished(ref, outcome), outcome_size(outcome)
            elif notices is not None and entry.job is not None and entry.job.notify:
                notices.add(entry.sender, done)
                noticed += 1
            reported.append(done)
            sizes.append(size)
        cadence.on_finished_all(reported, sizes, self._now, noticed=noticed)
        return len(reported)

    def _on_tick(self, event: Tick) -> list[Effect]:
        effects: list[Effect] = []
        if self._view is not None and self._ack_due():
            effects.append(self._make_ack())
        self._take_notices(effects)
        return effects

    def _on_turn_ended(self, event: TurnEnded) -> list[Effect]:
        effects: list[Effect] = []
        self._take_notices(effects)
        return effects

    def _take_notices(self, effects: list[Effect]) -> None:
        """Add the NOTICEs due now to ``effects``: one per producer, more where its
        outcomes do not fit one message."""
        notices = self._notices
        if notices is None or not notices.pending:
            return
        for producer, outcomes in notices.take(self._now):
            for chunk in outcome_chunks(outcomes, notice_overhead()):
                effects.append(SendNotice(producer, Notice(chunk)))

    def _on_idle(self, event: Idle) -> list[Effect]:
        self._cadence.idle = event.idle
        if event.idle and self._view is not None and self._ack_due():
            return [self._make_ack()]
        return []

    def _on_busy(self, event: Busy) -> list[Effect]:
        if event.busy is self._busy:
            return []
        self._busy = event.busy
        hello = self._hello() if self._view is not None else None
        return [] if hello is None else [hello]

    def _hello(self) -> AnnounceHello | None:
        """Our HELLO: the capacity we were given, 0 while we are busy (None: we announce
        none)."""
        if self.capacity is None:
            return None
        capacity = 0 if self._busy else self.capacity
        return AnnounceHello(Hello(self.incarnation, capacity, takes_released=True))

    def _on_producers(self, event: Producers) -> list[Effect]:
        if self._window is None:
            return []
        cadence = self._cadence
        reads = self._window // max(1, event.count) // 3
        cadence.read_every = max(1, reads) if reads < cadence.every else None
        if self._view is not None and self._ack_due():
            return [self._make_ack()]
        return []

    def _ack_due(self) -> bool:
        """Whether an ACK is due now; one that would report only how far we have read
        (we hold no job of our own) waits the longer ``ack_position_seconds``."""
        return self._cadence.due(self._now, holding=bool(self._mine))

    def _make_ack(self) -> SendAck:
        cadence = self._cadence
        report = cadence.take(self._now)
        notices = self._notices
        if notices is not None and notices.pending:  # the ACK tells them too
            notices.reported(report.outcomes, everything=not cadence.outcomes_pending)
        ack = Ack(self.incarnation, report.outcomes, report.positions, len(self._mine))
        return SendAck(ack)
