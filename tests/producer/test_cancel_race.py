"""The ACK/CANCEL race is decided the same way by every consumer and by the producer.

Hypothesis draws the order in which ACKs (from any consumer) and CANCELs (from the
job's producer, or from an intruder) of a few jobs are delivered. The same stream goes
to three consumer tables (WORK) and to the producer's core (FEEDBACK, where both kinds
also go); at the end each job's outcome as every table remembers it and as the
producer settled it must be one and the same: cancelled exactly when the producer's
CANCEL came before the first ACK of the job.
"""

from __future__ import annotations

from core_driver import ME, PID, Driver
from hypothesis import given
from hypothesis import strategies as st

from spreadq.producer.inputs import AckReceived, CancelDelivered
from spreadq.queue.envelope import MESS_TYPE, Ack, Cancel, JobSpec, encode, encode_batch
from spreadq.queue.inputs import MessageDelivered
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.queue.rules import builtin_rules
from spreadq.queue.table import OutstandingTable
from spreadq.queue.view import ChangeCause, ViewInstalled

MEMBERS = ("#a#d", "#b#d", "#c#d")
INTRUDER = "#evil#d"
JOBS = 4

# an event: ("ack", job, member index) or ("cancel", job, from the producer?)
events = st.lists(
    st.one_of(
        st.tuples(st.just("ack"), st.integers(0, JOBS - 1), st.integers(0, 2)),
        st.tuples(st.just("cancel"), st.integers(0, JOBS - 1), st.booleans()),
    ),
    max_size=12,
)


def ref(seq: int) -> JobRef:
    return JobRef(PID, seq)


@given(events)
def test_every_consumer_and_the_producer_decide_each_job_alike(
    stream: list[tuple[str, int, int | bool]],
) -> None:
    rule = builtin_rules()["round_robin"]
    tables = [OutstandingTable(m, rule=rule, incarnation=bytes(16)) for m in MEMBERS]
    for table in tables:
        table.apply(ViewInstalled(MEMBERS, (1, 1, 1), ChangeCause.JOIN, MEMBERS[-1]), 0.0)
    producer = Driver.make()
    producer.consumers(*MEMBERS)
    for _ in range(JOBS):
        producer.put()
    assert producer.send() == list(range(JOBS))
    batch = encode_batch(PID, 1, "json", [JobSpec(seq, "k", b"{}") for seq in range(JOBS)])
    deliver(tables, ME, batch)

    expected: dict[int, Outcome] = {}
    for kind, seq, arg in stream:
        if kind == "ack":
            sender = MEMBERS[int(arg)]
            ack = Ack(bytes(16), ((ref(seq), Outcome.success(b"1")),))
            deliver(tables, sender, encode(ack))
            producer.apply(AckReceived(sender, ack))
            expected.setdefault(seq, Outcome.success(b"1"))
        else:
            sender = ME if arg else INTRUDER
            deliver(tables, sender, encode(Cancel(ref(seq))))
            producer.apply(CancelDelivered(sender, ref(seq)))
            if arg:
                expected.setdefault(seq, Outcome.cancelled())

    for seq in range(JOBS):
        remembered = {table.remembers(ref(seq)) for table in tables}
        assert remembered == {expected.get(seq)}
        assert producer.settled.get(seq) == expected.get(seq)
        assert all(table.is_outstanding(ref(seq)) == (seq not in expected) for table in tables)


def deliver(tables: list[OutstandingTable], sender: str, data: bytes) -> None:
    for table in tables:
        table.apply(MessageDelivered(sender, MESS_TYPE, data), 0.0)
