"""FlowControl: the actor that owns a producer's :class:`~spreadq.queue.windows.ProducerGate`.

Theory of operation
-------------------
A producer has two things to hold back, and this actor decides both:

* **Admission** (``put()``): a job may enter the producer while the jobs it holds (admitted
  and not yet sent, plus sent and not yet confirmed) stay under ``max_in_flight``. While
  the gate is shut by a consumer's window or backlog, at most one batch's worth of jobs
  (``batch_max_jobs``) may wait unsent, so ``put()`` blocks about when a consumer is a
  window behind. While no consumer is present the producer *holds* jobs (up to
  ``max_in_flight``) and sends them once one appears.
* **Sending** (the producer's batcher): message ``mseq`` carrying ``jobs`` new jobs may be
  multicast only when :meth:`ProducerGate.may_send <spreadq.queue.windows.ProducerGate.may_send>`
  says so: some consumer is live, every live consumer has read within this producer's
  share of the window, the unconfirmed jobs and every consumer's backlog are in bounds.

The window counts more than our own messages: ACKs pile up in a stalled consumer's
daemon queue beside our jobs. The gate does that accounting too (the *ACK slack*, see
:mod:`spreadq.queue.windows`); this actor only forwards what the producer sees to it.

Admission is granted in *credits*: a waiting ``put()`` is answered with as many job
slots as are free at that moment (at most ``batch_max_jobs``), and the handle spends
them on the puts that follow without another round trip. A credit is counted as
admitted from the moment it is granted until the job it admits is sent (or the credit
is given back), so the bound holds with credits outstanding.

Nothing polls. Requests that cannot be granted wait in FIFO order; after every batch
of inputs (an ACK, a view, a confirmation, a send) the actor grants what the gate now
allows, so a waiting ``put()`` resumes exactly when the input that opens its window is
applied. A cancelled ``put()`` or send withdraws its request: the actor drops it if it
still waits, and any credit already granted to it comes back, so a cancelled ``put()``
leaves no slot taken.

When the actor stops, every waiting request fails with the error it was stopped with
(the producer passes :class:`~spreadq.errors.ConnectionLost`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

import anyio
from anyio.abc import TaskStatus

from spreadq.actors.mailbox import Inbox, Mailbox, Reply
from spreadq.errors import CloseReason, ConnectionLost
from spreadq.logs import get_logger
from spreadq.queue.windows import BlockReason, ProducerGate

__all__ = [
    "AckSeen",
    "Admit",
    "ClearToSend",
    "ConsumersSeen",
    "FlowCommand",
    "FlowControl",
    "FlowHandle",
    "FlowState",
    "GiveBack",
    "JobsSettled",
    "PeersSeen",
    "Snapshot",
    "Withdraw",
]

log = get_logger(__name__)

INBOX_SIZE: Final = 1024


# -- commands (immutable values; replies are one-shot) ------------------------------------


@dataclass(frozen=True, slots=True)
class Admit:
    """A ``put()`` asks for room for one job; the reply is the credits granted (>= 1)."""

    reply: Reply[int]


@dataclass(frozen=True, slots=True)
class Withdraw:
    """A cancelled ``put()`` or send takes back its request.

    The actor answers the request at once if it still waits (an ``Admit`` with 0
    credits, a ``ClearToSend`` with ``False``); a request already answered is left as
    it was, and its owner gives back what it was granted.
    """

    request: Admit | ClearToSend


@dataclass(frozen=True, slots=True)
class GiveBack:
    """Credits granted and never spent (a cancelled ``put()``, a producer closing)."""

    credits: int


@dataclass(frozen=True, slots=True)
class ClearToSend:
    """The batcher asks to multicast message ``mseq`` carrying ``jobs`` newly admitted jobs.

    ``jobs`` counts only jobs sent for the first time (a re-sent job is already
    unconfirmed); a non-final fragment carries 0. The reply is ``True`` once the message
    may go, ``False`` if the request was withdrawn first.
    """

    mseq: int
    jobs: int
    reply: Reply[bool]


@dataclass(frozen=True, slots=True)
class ConsumersSeen:
    """The live consumers, in the order of the last VIEW (minus those seen leaving)."""

    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AckSeen:
    """An ACK from consumer ``member``: its read positions and owned backlog."""

    member: str
    positions: tuple[tuple[bytes, int], ...]
    backlog: int


@dataclass(frozen=True, slots=True)
class JobsSettled:
    """``jobs`` of this producer's unconfirmed jobs got their outcome (or were given up)."""

    jobs: int


@dataclass(frozen=True, slots=True)
class PeersSeen:
    """How many producers share the queue (a hint; the window is split among them)."""

    producers: int


@dataclass(frozen=True, slots=True)
class FlowState:
    """A snapshot of the actor's accounting, for tests, logs and ``spreadq top``."""

    consumers: tuple[str, ...]
    admitted: int
    """Credits granted and not yet spent on a sent job (jobs waiting to be sent, too)."""
    in_flight: int
    """Jobs sent and not yet confirmed."""
    last_mseq: int
    """The last message the batcher was cleared to send (0 before the first)."""
    share: int
    """How many messages this producer may run ahead of the slowest consumer."""
    blocked: BlockReason | None
    """Why the next message may not be sent now, or None."""
    waiting_puts: int
    waiting_send: bool
    sends_waited: int
    """How many messages had to wait for clearance (the window, backlog, no consumer)."""
    ack_slack: int
    """ACK messages counted against the window as possibly unread (the most for any
    consumer, capped; see :mod:`spreadq.queue.windows`)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Ask for a :class:`FlowState`."""

    reply: Reply[FlowState]


FlowCommand = (
    Admit
    | Withdraw
    | GiveBack
    | ClearToSend
    | ConsumersSeen
    | AckSeen
    | JobsSettled
    | PeersSeen
    | Snapshot
)


# -- the handle ----------------------------------------------------------------------------


class FlowHandle:
    """What the producer holds: admission with local credits, send clearance, reports.

    Only the producer's own tasks use a handle; its credit pool is theirs.
    """

    __slots__ = ("_credits", "_mailbox")

    def __init__(self, mailbox: Mailbox[FlowCommand]) -> None:
        self._mailbox = mailbox
        self._credits = 0

    @property
    def credits(self) -> int:
        """Credits held locally: puts that may proceed without asking the actor."""
        return self._credits

    def take_credit(self) -> bool:
        """Take one local credit if there is one (the fast path of :meth:`admit`)."""
        if self._credits:
            self._credits -= 1
            return True
        return False

    async def admit(self) -> None:
        """Wait until one more job may enter the producer, then take its slot.

        Cancellation-safe: if cancelled while waiting, the request is withdrawn and any
        credit it had already been granted is given back.

        Raises:
            ConnectionLost: (or the actor's terminal error) the actor has stopped.
        """
        if self._credits:
            self._credits -= 1
            return
        request = Admit(Reply[int]())
        await self._mailbox.put(request)
        try:
            granted = await request.reply.wait()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._withdraw(request)
            raise
        self._credits += granted - 1

    def refund(self) -> None:
        """Put back the slot the last :meth:`admit` took, unused (the job was refused)."""
        self._credits += 1

    async def _withdraw(self, request: Admit) -> None:
        try:
            await self._mailbox.put(Withdraw(request))
            granted = await request.reply.wait()
        except Exception:  # the actor stopped: nothing is held anywhere any more
            return
        if granted:
            await self._mailbox.put(GiveBack(granted))

    async def clear_to_send(self, mseq: int, jobs: int) -> bool:
        """Wait until message ``mseq`` carrying ``jobs`` new jobs may be multicast.

        Returns True once cleared: the jobs now count as in flight, so the caller must
        treat them as sent even if it never gets to send them (they are re-sent later).
        Cancelled while waiting, the request is withdrawn; if the clearance came first,
        it still returns True (anyio cancellation is level-triggered: the caller's next
        checkpoint raises), otherwise the cancellation propagates.

        Raises:
            ConnectionLost: (or the actor's terminal error) the actor has stopped.
        """
        request = ClearToSend(mseq, jobs, Reply[bool]())
        await self._mailbox.put(request)
        try:
            return await request.reply.wait()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                try:
                    await self._mailbox.put(Withdraw(request))
                    cleared = await request.reply.wait()
                except Exception:
                    cleared = False
            if cleared:
                return True
            raise

    async def give_back(self) -> None:
        """Return every unspent local credit to the actor (when the producer closes).

        Raises:
            ConnectionLost: (or the actor's terminal error) the actor has stopped.
        """
        credits, self._credits = self._credits, 0
        if credits:
            await self._mailbox.put(GiveBack(credits))

    async def consumers_seen(self, members: tuple[str, ...]) -> None:
        """Report the live consumer list.

        Raises:
            ConnectionLost: the actor has stopped.
        """
        await self._mailbox.put(ConsumersSeen(members))

    async def ack_seen(
        self, member: str, positions: tuple[tuple[bytes, int], ...], backlog: int
    ) -> None:
        """Report an ACK's read positions and backlog.

        Raises:
            ConnectionLost: the actor has stopped.
        """
        await self._mailbox.put(AckSeen(member, positions, backlog))

    async def settled(self, jobs: int) -> None:
        """Report that ``jobs`` unconfirmed jobs got their outcome.

        Raises:
            ConnectionLost: the actor has stopped.
        """
        if jobs:
            await self._mailbox.put(JobsSettled(jobs))

    async def peers_seen(self, producers: int) -> None:
        """Report how many producers share the queue.

        Raises:
            ConnectionLost: the actor has stopped.
        """
        await self._mailbox.put(PeersSeen(producers))

    async def snapshot(self) -> FlowState:
        """The actor's accounting now.

        Raises:
            ConnectionLost: the actor has stopped.
        """
        reply = Reply[FlowState]()
        await self._mailbox.put(Snapshot(reply))
        return await reply.wait()


# -- the actor -----------------------------------------------------------------------------


class FlowControl:
    """The flow-control actor of one producer on one queue.

    Args:
        producer_id: the producer's 16-byte id (as consumers report it in ACKs).
        window: unread messages allowed at any consumer, shared among producers.
        max_in_flight: the most jobs a producer holds (waiting to be sent or unconfirmed).
        max_backlog: the most outstanding jobs a consumer may report before sends wait.
        batch_max_jobs: the most credits granted at once, and the unsent jobs allowed to
            wait while the window is shut.
        queue: the queue name, for logs.
    """

    def __init__(
        self,
        producer_id: bytes,
        *,
        window: int = 600,
        max_in_flight: int = 10_000,
        max_backlog: int = 5_000,
        batch_max_jobs: int = 256,
        queue: str = "",
    ) -> None:
        self._gate = ProducerGate(
            producer_id, window=window, max_in_flight=max_in_flight, max_backlog=max_backlog
        )
        self._max_in_flight = max_in_flight
        self._batch = max(1, batch_max_jobs)
        self._inbox: Inbox[FlowCommand] = Inbox(INBOX_SIZE)
        self._error: BaseException | None = None
        self._admits: deque[Admit] = deque()
        self._send: ClearToSend | None = None
        self._send_waited = False
        self._admitted = 0
        self._blocked: BlockReason | None = None
        self._sends_waited = 0
        self._log = log.bind(queue=queue, producer=producer_id[:4].hex())

    async def run(self, *, task_status: TaskStatus[FlowHandle] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve commands until cancelled; hands back the :class:`FlowHandle`.

        When cancelled, every waiting request fails with ``ConnectionLost``.
        """
        task_status.started(FlowHandle(self._inbox.mailbox(lambda: self._error)))
        try:
            while True:
                try:
                    batch = await self._inbox.receive_batch(INBOX_SIZE)
                except (anyio.ClosedResourceError, anyio.EndOfStream):
                    return  # stopped by stop()
                for command in batch:
                    self._apply(command)
                self._grant()
        finally:
            self.stop(ConnectionLost(CloseReason.CLOSED_LOCALLY, "the producer closed"))

    def stop(self, error: BaseException) -> None:
        """Fail every waiting request with ``error``; later requests raise it too."""
        if self._error is None:
            self._error = error
        leftovers = self._inbox.close_and_drain()
        waiting: list[Admit | ClearToSend] = list(self._admits)
        if self._send is not None:
            waiting.append(self._send)
        self._admits.clear()
        self._send = None
        for command in leftovers:
            if isinstance(command, Admit | ClearToSend):
                waiting.append(command)
            elif isinstance(command, Snapshot):
                command.reply.fail(self._error)
        for request in waiting:
            if not request.reply.done:
                request.reply.fail(self._error)

    # -- inputs ------------------------------------------------------------------------

    def _apply(self, command: FlowCommand) -> None:
        match command:
            case Admit():
                self._admits.append(command)
            case ClearToSend():
                if self._send is not None:  # one batcher: a second request replaces none
                    command.reply.fail(RuntimeError("a send is already waiting for clearance"))
                else:
                    self._send = command
                    self._send_waited = False
            case Withdraw(request=request):
                self._withdraw(request)
            case GiveBack(credits=credits):
                self._admitted = max(0, self._admitted - credits)
            case ConsumersSeen(members=members):
                self._gate.on_view(members, self._gate.last_mseq)
                if members:
                    self._log.debug("flow_consumers", consumers=len(members))
            case AckSeen(member=member, positions=positions, backlog=backlog):
                self._gate.on_ack(member, positions, backlog)
            case JobsSettled(jobs=jobs):
                self._gate.on_confirmed(jobs)
            case PeersSeen(producers=producers):
                self._gate.on_peers(producers)
            case Snapshot(reply=reply):
                reply.set(self._state())

    def _withdraw(self, request: Admit | ClearToSend) -> None:
        if request.reply.done:
            return
        if isinstance(request, Admit):
            try:
                self._admits.remove(request)
            except ValueError:
                return
            request.reply.set(0)
        elif self._send is request:
            self._send = None
            request.reply.set(False)

    # -- decisions ---------------------------------------------------------------------

    def _room(self) -> int:
        """How many more jobs may be admitted now."""
        room = self._max_in_flight - self._gate.in_flight - self._admitted
        reason = self._gate.check(self._gate.last_mseq + 1)
        if reason is BlockReason.WINDOW or reason is BlockReason.BACKLOG:
            room = min(room, self._batch - self._admitted)
        return room

    def _grant(self) -> None:
        send = self._send
        if send is not None:
            cleared = self._gate.may_send(send.mseq, send.jobs)
            if not cleared and not self._send_waited:
                self._send_waited = True
                self._sends_waited += 1
            if cleared:
                self._send = None
                self._gate.on_sent(send.jobs, send.mseq)
                self._admitted = max(0, self._admitted - send.jobs)
                send.reply.set(True)
            self._note_block(self._gate.blocked_reason())
        while self._admits:
            room = self._room()
            if room <= 0:
                break
            granted = min(room, self._batch)
            self._admitted += granted
            self._admits.popleft().reply.set(granted)

    def _note_block(self, reason: BlockReason | None) -> None:
        if reason is self._blocked:
            return
        if reason is None:
            self._log.debug("window_opened", last_mseq=self._gate.last_mseq)
        else:
            slowest = self._gate.slowest()
            self._log.debug(
                "window_blocked",
                reason=str(reason),
                last_mseq=self._gate.last_mseq,
                slowest=slowest[0] if slowest else None,
                share=self._gate.share,
            )
        self._blocked = reason

    def _state(self) -> FlowState:
        return FlowState(
            consumers=self._gate.consumers,
            admitted=self._admitted,
            in_flight=self._gate.in_flight,
            last_mseq=self._gate.last_mseq,
            share=self._gate.share,
            blocked=self._gate.check(self._gate.last_mseq + 1),
            ack_slack=self._gate.ack_slack,
            waiting_puts=len(self._admits),
            waiting_send=self._send is not None,
            sends_waited=self._sends_waited,
        )
