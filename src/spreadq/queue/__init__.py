"""spreadq's queue protocol, sans-IO: envelopes, ownership rules, the replicated table
of outstanding jobs, and flow-control windows.

Nothing here does I/O, reads a clock or draws random numbers: time comes in as
``now: float`` and ids (producer ids, incarnations) are chosen by the caller. The
Dispatcher actor feeds :class:`OutstandingTable` and carries out its effects and uses
:class:`AckCadence`; the producer's core uses :class:`ProducerGate`.
"""

from __future__ import annotations

from spreadq.queue.effects import AnnounceDrain as AnnounceDrain
from spreadq.queue.effects import AnnounceHello as AnnounceHello
from spreadq.queue.effects import AnnounceLedger as AnnounceLedger
from spreadq.queue.effects import AnnounceRelease as AnnounceRelease
from spreadq.queue.effects import AnnounceView as AnnounceView
from spreadq.queue.effects import CancelJob as CancelJob
from spreadq.queue.effects import Effect as Effect
from spreadq.queue.effects import GiveUpJob as GiveUpJob
from spreadq.queue.effects import JobOrphaned as JobOrphaned
from spreadq.queue.effects import JobRejected as JobRejected
from spreadq.queue.effects import JobsCompleted as JobsCompleted
from spreadq.queue.effects import RunJob as RunJob
from spreadq.queue.effects import SendAck as SendAck
from spreadq.queue.effects import SendNotice as SendNotice
from spreadq.queue.effects import ViewChanged as ViewChanged
from spreadq.queue.envelope import MESS_TYPE as MESS_TYPE
from spreadq.queue.envelope import Ack as Ack
from spreadq.queue.envelope import Drain as Drain
from spreadq.queue.envelope import Hello as Hello
from spreadq.queue.envelope import JobBatch as JobBatch
from spreadq.queue.envelope import JobFragment as JobFragment
from spreadq.queue.envelope import JobSpec as JobSpec
from spreadq.queue.envelope import decode as decode
from spreadq.queue.envelope import encode as encode
from spreadq.queue.envelope import encode_batch as encode_batch
from spreadq.queue.envelope import encode_fragments as encode_fragments
from spreadq.queue.inputs import Busy as Busy
from spreadq.queue.inputs import GiveBack as GiveBack
from spreadq.queue.inputs import Idle as Idle
from spreadq.queue.inputs import Input as Input
from spreadq.queue.inputs import JobFinished as JobFinished
from spreadq.queue.inputs import JobsFinished as JobsFinished
from spreadq.queue.inputs import JobsStarted as JobsStarted
from spreadq.queue.inputs import JobStarted as JobStarted
from spreadq.queue.inputs import MessageDelivered as MessageDelivered
from spreadq.queue.inputs import Producers as Producers
from spreadq.queue.inputs import StartDraining as StartDraining
from spreadq.queue.inputs import Tick as Tick
from spreadq.queue.inputs import TurnEnded as TurnEnded
from spreadq.queue.jobs import Job as Job
from spreadq.queue.jobs import JobRef as JobRef
from spreadq.queue.jobs import Outcome as Outcome
from spreadq.queue.jobs import Status as Status
from spreadq.queue.outstanding import OutstandingJob as OutstandingJob
from spreadq.queue.rules import Rule as Rule
from spreadq.queue.rules import RuleState as RuleState
from spreadq.queue.rules import builtin_rules as builtin_rules
from spreadq.queue.table import OutstandingTable as OutstandingTable
from spreadq.queue.table import TableStats as TableStats
from spreadq.queue.view import ChangeCause as ChangeCause
from spreadq.queue.view import LeftGroup as LeftGroup
from spreadq.queue.view import Transitional as Transitional
from spreadq.queue.view import View as View
from spreadq.queue.view import ViewInstalled as ViewInstalled
from spreadq.queue.windows import AckCadence as AckCadence
from spreadq.queue.windows import BlockReason as BlockReason
from spreadq.queue.windows import ProducerGate as ProducerGate

__all__ = [
    "MESS_TYPE",
    "Ack",
    "AckCadence",
    "AnnounceDrain",
    "AnnounceHello",
    "AnnounceLedger",
    "AnnounceRelease",
    "AnnounceView",
    "BlockReason",
    "CancelJob",
    "ChangeCause",
    "Drain",
    "Effect",
    "GiveUpJob",
    "Hello",
    "Busy",
    "GiveBack",
    "Idle",
    "Input",
    "Job",
    "JobBatch",
    "JobsCompleted",
    "JobFinished",
    "JobsFinished",
    "JobsStarted",
    "JobFragment",
    "JobOrphaned",
    "JobRef",
    "JobRejected",
    "JobSpec",
    "JobStarted",
    "LeftGroup",
    "MessageDelivered",
    "Outcome",
    "OutstandingJob",
    "OutstandingTable",
    "ProducerGate",
    "Producers",
    "Rule",
    "RuleState",
    "StartDraining",
    "Status",
    "TableStats",
    "Tick",
    "TurnEnded",
    "Transitional",
    "View",
    "ViewChanged",
    "ViewInstalled",
    "builtin_rules",
    "decode",
    "encode",
    "encode_batch",
    "encode_fragments",
]
