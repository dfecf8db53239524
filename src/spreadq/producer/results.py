"""Asking the consumers for a job's outcome: the bookkeeping behind ``Producer.result``.

Theory of operation
-------------------
Consumers remember the outcomes of completed jobs in a bounded history
(``Settings.completed_history`` jobs per consumer, oldest forgotten first). To learn a
job's outcome from any process, the asker multicasts a RESULT query
(:class:`~spreadq.queue.envelope.ResultQuery`) to the WORK group. Every consumer
delivers it at the same place in the order, in the same view, and only the member at
the query's ``index`` in that view answers, to the asker's private group: KNOWN with
the outcome, PENDING if the job is still outstanding, UNKNOWN if it has no record. So
one query gets exactly one answer. On UNKNOWN the asker asks the next index, up to the
view's size (a member that joined after the job's ACK, or whose history dropped it,
does not remember it; an older one may). On PENDING it waits for the job's ACK on the
FEEDBACK group (from a listed consumer), which it watches from before its first query,
so an ACK ordered after the query cannot slip past. An ACK from a FEEDBACK member that
no VIEW has listed as a consumer yet (a new asker may read ACKs before its first VIEW)
is held for the open asks until a VIEW lists its sender, as the producer's core holds
such an ACK for its receipts; it never counts otherwise. A CANCEL for the job seen there
makes it ask again (the consumers decide whether that CANCEL took; the asker cannot
tell who sent the job).

:class:`Asks` holds the open questions and is fed what the producer's reader sees;
the waiting is the facade's, on the :class:`~spreadq.producer.condition.Changed` it
passes in (the facade also notifies it at every input, such as a new session, after
which an answer sent to the old private group is lost and the asker asks again).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Final

from spreadq.producer.condition import Changed
from spreadq.queue.envelope import ResultAnswer
from spreadq.queue.jobs import JobRef, Outcome

__all__ = ["MAX_HELD_OUTCOMES", "Ask", "Asks"]

MAX_HELD_OUTCOMES: Final = 1024
"""Outcomes from senders not listed yet that :class:`Asks` holds at most."""


@dataclass(eq=False)
class Ask:
    """One open ``Producer.result`` call: the job, the last answer, the outcome seen."""

    ref: JobRef
    query_id: int = 0
    answer: ResultAnswer | None = None
    """The answer to the current ``query_id``, once it came."""
    outcome: Outcome | None = None
    """The job's outcome, from a KNOWN answer or an ACK or CANCEL seen on FEEDBACK."""
    recheck: bool = False
    """A CANCEL for the job went by after the last answer: ask again."""
    reason: str = ""
    """Why the outcome is unknown so far, for :class:`~spreadq.errors.OutcomeUnknown`."""

    def is_rechecked(self) -> bool:
        """Whether a CANCEL went by since the last query (the asker asks again)."""
        return self.recheck


class Asks:
    """The open asks of one producer, matched to answers by query id and to FEEDBACK
    ACKs and CANCELs by job ref."""

    def __init__(self, changed: Changed | None = None) -> None:
        self.changed = Changed() if changed is None else changed
        """Notified whenever an ask learns something."""
        self._next_id = 0
        self._by_query: dict[int, Ask] = {}
        self._by_ref: dict[JobRef, list[Ask]] = {}
        self._held: list[tuple[str, JobRef, Outcome]] = []  # from senders not listed yet

    def __bool__(self) -> bool:
        return bool(self._by_ref)

    def __contains__(self, ref: object) -> bool:
        """Whether an open ask waits for ``ref``'s outcome."""
        return ref in self._by_ref

    def open(self, ref: JobRef) -> Ask:
        """Start watching for ``ref``'s outcome (before the first query goes out)."""
        ask = Ask(ref)
        self._by_ref.setdefault(ref, []).append(ask)
        return ask

    def query(self, ask: Ask) -> int:
        """A new query id for ``ask``; its earlier answer is forgotten."""
        self._by_query.pop(ask.query_id, None)
        self._next_id += 1
        ask.query_id, ask.answer, ask.recheck = self._next_id, None, False
        self._by_query[ask.query_id] = ask
        return ask.query_id

    def close(self, ask: Ask) -> None:
        """Stop watching for ``ask``."""
        self._by_query.pop(ask.query_id, None)
        asks = self._by_ref.get(ask.ref, [])
        if ask in asks:
            asks.remove(ask)
        if not asks:
            self._by_ref.pop(ask.ref, None)
        if not self._by_ref:
            self._held.clear()

    def on_answer(self, answer: ResultAnswer) -> bool:
        """An answer came to our private group; False if no open ask matches it."""
        ask = self._by_query.get(answer.query_id)
        if ask is None or ask.ref != answer.ref:
            return False
        ask.answer = answer
        if answer.outcome is not None and ask.outcome is None:
            ask.outcome = answer.outcome
        self.changed.notify()
        return True

    def on_outcome(self, ref: JobRef, outcome: Outcome) -> None:
        """A consumer's ACK on FEEDBACK reported ``ref`` (the first one counts)."""
        for ask in self._by_ref.get(ref, ()):
            if ask.outcome is None:
                ask.outcome = outcome
                self.changed.notify()

    def hold(self, sender: str, ref: JobRef, outcome: Outcome) -> None:
        """An ACK from ``sender``, a FEEDBACK member that no VIEW has listed as a
        consumer yet, reported ``ref``: kept for the open asks until :meth:`release`
        finds the sender listed (at most :data:`MAX_HELD_OUTCOMES` are kept)."""
        if ref in self._by_ref and len(self._held) < MAX_HELD_OUTCOMES:
            self._held.append((sender, ref, outcome))

    def release(self, consumers: Container[str], members: Container[str] | None = None) -> None:
        """The consumer list (or the FEEDBACK membership, ``members``) changed: the held
        outcomes of the senders it lists now count (:meth:`on_outcome`), in the order
        they came; those of senders that left FEEDBACK are dropped (a later client of
        the same name is someone else); the others stay held."""
        held, self._held = self._held, []
        for sender, ref, outcome in held:
            if sender in consumers:
                self.on_outcome(ref, outcome)
            elif members is None or sender in members:
                self._held.append((sender, ref, outcome))

    def on_cancel(self, ref: JobRef) -> None:
        """A CANCEL for ``ref`` went by on FEEDBACK: asks waiting on PENDING ask again."""
        for ask in self._by_ref.get(ref, ()):
            ask.recheck = True
            self.changed.notify()
