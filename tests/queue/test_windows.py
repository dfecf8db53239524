"""Flow-control windows: the ACK cadence fires exactly at N jobs and at T seconds, and
producers obeying the gate never let any consumer's unread messages pass the window."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spreadq.queue.envelope import MAX_ENVELOPE_SIZE, ack_overhead, outcome_size
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.queue.windows import AckCadence, BlockReason, ProducerGate

P1, P2, P3 = (bytes([n]) * 16 for n in (1, 2, 3))


def ref(n: int) -> JobRef:
    return JobRef(P1, n)


# --- AckCadence ---------------------------------------------------------------------


def test_cadence_is_due_exactly_at_n_messages_read() -> None:
    cadence = AckCadence(every=5, every_seconds=10.0)
    assert not cadence.due(0.0)
    assert cadence.deadline() is None
    for mseq in range(1, 5):
        cadence.on_read(0.0, P1, mseq)
    assert not cadence.due(0.0)
    cadence.on_read(0.0, P1, 5)
    assert cadence.due(0.0)
    report = cadence.take(0.0)
    assert report.positions == ((P1, 5),)
    assert not cadence.due(0.0)
    assert not cadence.pending


def test_finished_jobs_count_towards_n_and_come_out_in_order() -> None:
    cadence = AckCadence(every=3, every_seconds=10.0)
    cadence.on_read(0.0)
    cadence.on_finished(ref(1), Outcome.success(b"a"), 0.0)
    assert not cadence.due(0.0)
    cadence.on_finished(ref(2), Outcome.failure("E", "m"), 0.0)
    assert cadence.due(0.0)
    assert [r for r, _ in cadence.take(0.0).outcomes] == [ref(1), ref(2)]


@given(
    st.lists(st.tuples(st.integers(0, 50), st.binary(max_size=200)), max_size=30),
    st.integers(0, 30),
    st.floats(0.0, 0.2),
    st.integers(1, 40),
    st.integers(300, 8000),
)
def test_outcomes_given_at_once_are_as_if_given_one_by_one(
    done: list[tuple[int, bytes]], split: int, later: float, every: int, max_bytes: int
) -> None:
    pairs = [(ref(n), Outcome.success(result)) for n, result in done]
    sizes = [outcome_size(outcome) for _, outcome in pairs]
    one_by_one, at_once = (
        AckCadence(every=every, every_seconds=0.1, max_bytes=max_bytes, max_positions=0)
        for _ in range(2)
    )
    for pair in pairs:
        one_by_one.on_finished(*pair, 0.01)
    at_once.on_finished_all(pairs[:split], sizes[:split], 0.01)
    at_once.on_finished_all(pairs[split:], sizes[split:], 0.01)
    for now in (0.01, later):
        assert at_once.due(now) == one_by_one.due(now)
        assert at_once.deadline() == one_by_one.deadline()
        assert at_once.pending == one_by_one.pending
        if one_by_one.pending:
            assert at_once.take(now) == one_by_one.take(now)


def test_cadence_is_due_exactly_at_t_seconds() -> None:
    cadence = AckCadence(every=200, every_seconds=0.05)
    cadence.on_read(10.0)
    cadence.on_read(10.04)  # later reads do not push the deadline back
    assert cadence.deadline() == pytest.approx(10.05)
    assert not cadence.due(10.0499)
    assert cadence.due(10.05)
    cadence.take(10.05)
    assert cadence.deadline() is None


def test_read_every_makes_an_ack_due_after_so_many_messages_alone() -> None:
    cadence = AckCadence(every=200, every_seconds=10.0)
    cadence.read_every = 3
    cadence.on_finished(ref(1), Outcome.success(), 0.0)  # finished jobs do not count here
    cadence.on_read(0.0, P1, 1)
    cadence.on_read(0.0, P1, 2)
    assert not cadence.due(0.0)
    cadence.on_read(0.0, P1, 3)
    assert cadence.due(0.0)
    cadence.take(0.0)
    cadence.on_read(1.0, P1, 4)  # counted from zero again after the ACK
    assert not cadence.due(1.0)
    cadence.read_every = None
    for mseq in range(5, 10):
        cadence.on_read(1.0, P1, mseq)
    assert not cadence.due(1.0)  # without it only ``every`` counts reads


def test_a_fragment_that_completes_no_job_is_a_message_read() -> None:
    cadence = AckCadence(every=2, every_seconds=0.05)
    cadence.on_read(1.0, P1, 7)  # its position must reach the producer's window
    assert cadence.pending
    assert cadence.deadline() == pytest.approx(1.05)
    cadence.on_read(1.01, P1, 8)
    assert cadence.due(1.01)
    assert cadence.take(1.01).positions == ((P1, 8),)


def test_positions_most_recent_first_within_the_horizon() -> None:
    cadence = AckCadence(position_horizon=5.0, max_positions=2)
    cadence.on_read(0.0, P1, 1)
    cadence.on_read(3.0, P2, 10)
    cadence.on_read(4.0, P3, 20)
    assert cadence.take(4.0).positions == ((P3, 20), (P2, 10))
    cadence.on_read(7.0)
    assert cadence.take(7.0).positions == ((P3, 20), (P2, 10))
    cadence.on_read(8.5)
    assert cadence.take(8.5).positions == ((P3, 20),)  # P2 not read for 5.5 s: forgotten


def test_outcomes_over_the_byte_budget_are_split_and_stay_due() -> None:
    cadence = AckCadence(every=1000, every_seconds=10.0, max_bytes=1000, max_positions=0)
    big = Outcome.success(b"x" * 300)
    for n in range(5):
        cadence.on_finished(ref(n), big, 0.0)
    assert cadence.due(0.0)  # 5 x ~330 bytes pass the budget
    sizes = []
    while cadence.pending:
        report = cadence.take(0.0)
        sizes.append(len(report.outcomes))
        assert ack_overhead(0) + sum(outcome_size(o) for _, o in report.outcomes) <= 1000
        assert cadence.due(0.0) == cadence.pending
    assert sizes == [2, 2, 1]


def test_default_budget_is_the_envelope_cap() -> None:
    cadence = AckCadence()
    assert cadence.outcome_budget == MAX_ENVELOPE_SIZE - ack_overhead(1024)


@given(
    every=st.integers(1, 10),
    position_seconds=st.sampled_from([None, 0.25]),
    holding=st.booleans(),
    steps=st.lists(
        st.tuples(
            st.floats(0, 0.1), st.sampled_from(["read", "finish", "tick"]), st.integers(0, 3)
        ),
        max_size=60,
    ),
)
def test_cadence_matches_its_definition(
    every: int, position_seconds: float | None, holding: bool, steps: list[tuple[float, str, int]]
) -> None:
    """due(now) iff N messages read and jobs finished accumulated or T passed since the
    first pending one (T: 0.05 s, or ``position_seconds`` while nothing but read
    positions waits and the consumer holds no job of its own); an ACK taken whenever due
    leaves nothing waiting longer than T or more than N of them; the deadline says when
    time alone makes it due."""
    cadence = AckCadence(every=every, every_seconds=0.05, position_seconds=position_seconds)
    now = 0.0
    count = 0
    first: float | None = None
    outcomes = False
    seq = 0
    for dt, action, n in steps:
        now += dt
        if action == "read":  # n messages
            for _ in range(n):
                cadence.on_read(now)
            count += n
            first = now if first is None and n else first
        elif action == "finish":
            seq += 1
            cadence.on_finished(ref(seq), Outcome.success(), now)
            count += 1
            outcomes = True
            first = now if first is None else first
        positions_only = position_seconds is not None and not (holding or outcomes)
        wait = 0.25 if positions_only else 0.05
        assert cadence.deadline(holding=holding) == (None if first is None else first + wait)
        expected = first is not None and (count >= every or now - first >= wait)
        assert cadence.due(now, holding=holding) == expected
        if expected:
            cadence.take(now)
            count, first, outcomes = 0, None, False


def test_positions_alone_wait_the_position_interval_unless_the_consumer_holds_jobs() -> None:
    cadence = AckCadence(every=200, every_seconds=0.05, position_seconds=0.25)
    cadence.on_read(10.0, P1, 1)
    assert cadence.deadline(holding=False) == pytest.approx(10.25)
    assert not cadence.due(10.2, holding=False)  # a follower: only how far it has read
    assert cadence.due(10.05, holding=True)  # its backlog goes on the usual cadence
    assert cadence.deadline(holding=True) == pytest.approx(10.05)
    cadence.on_finished(ref(1), Outcome.success(), 10.1)  # an outcome: the usual cadence
    assert cadence.due(10.1, holding=False)
    assert cadence.take(10.1).positions == ((P1, 1),)
    for mseq in range(2, 202):  # ``every`` still bounds the messages between two
        cadence.on_read(11.0, P1, mseq)
    assert cadence.due(11.0, holding=False)


def test_idle_outcome_is_due_at_once_and_busy_waits_for_the_cadence() -> None:
    cadence = AckCadence(every=200, every_seconds=0.05, idle_gap=0.002)
    cadence.on_finished(ref(1), Outcome.success(), 1.0)
    assert not cadence.due(1.0)  # busy: waits for company
    assert cadence.deadline() == pytest.approx(1.05)
    cadence.idle = True
    assert cadence.due(1.0)  # idle: at once (no ACK sent yet)
    cadence.take(1.0)
    cadence.on_finished(ref(2), Outcome.success(), 1.0005)
    assert not cadence.due(1.0005)  # within the gap after the last ACK
    assert cadence.deadline() == pytest.approx(1.002)
    assert cadence.due(1.002)


def test_an_idle_outcome_a_notice_carries_waits_for_the_cadence() -> None:
    cadence = AckCadence(every=200, every_seconds=0.05, idle_gap=0.002)
    cadence.idle = True
    noticed = [(ref(1), Outcome.success()), (ref(2), Outcome.success())]
    cadence.on_finished_all(noticed, [outcome_size(o) for _, o in noticed], 1.0, noticed=2)
    assert not cadence.due(1.0)  # its producer has it: no idle ACK for it
    assert cadence.deadline() == pytest.approx(1.05)
    cadence.on_finished(ref(3), Outcome.success(), 1.01)  # no NOTICE takes this one
    assert cadence.due(1.01)
    assert [r for r, _ in cadence.take(1.01).outcomes] == [ref(1), ref(2), ref(3)]
    # the next batch, one of two noticed: the other makes the idle ACK due again
    cadence.on_finished_all(noticed, [outcome_size(o) for _, o in noticed], 1.02, noticed=1)
    assert cadence.due(1.02)
    cadence.take(1.02)
    cadence.on_finished_all(noticed, [outcome_size(o) for _, o in noticed], 1.03, noticed=2)
    assert not cadence.due(1.03)  # what was urgent went with the last ACK
    cadence.draining = True
    assert cadence.due(1.03)  # a draining consumer waits for nothing


def test_a_draining_consumer_acks_each_outcome_at_once() -> None:
    cadence = AckCadence(every=200, every_seconds=60.0, idle_gap=None)
    cadence.draining = True
    cadence.on_read(1.0, P1, 3)
    assert not cadence.due(1.0)  # reads alone wait for the cadence
    cadence.on_finished(ref(1), Outcome.success(), 2.0)
    assert cadence.due(2.0)
    assert cadence.deadline() == pytest.approx(1.0)  # already due
    cadence.take(2.0)
    assert not cadence.due(2.0)


def test_idle_reads_alone_do_not_make_an_ack_due() -> None:
    cadence = AckCadence(every=200, every_seconds=0.05, idle_gap=0.002)
    cadence.idle = True
    cadence.on_read(1.0, P1, 3)
    assert not cadence.due(1.0)
    assert cadence.deadline() == pytest.approx(1.05)


def test_without_an_idle_gap_idleness_changes_nothing() -> None:
    cadence = AckCadence(every=200, every_seconds=0.05)
    cadence.idle = True
    cadence.on_finished(ref(1), Outcome.success(), 1.0)
    assert not cadence.due(1.0)
    assert cadence.deadline() == pytest.approx(1.05)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.floats(0, 0.004), st.booleans(), st.integers(0, 3), st.integers(0, 3)),
        max_size=80,
    ),
)
def test_acks_taken_whenever_due_respect_the_rate_bound_and_leave_no_idle_outcome_behind(
    steps: list[tuple[float, bool, int, int]],
) -> None:
    """Taking an ACK whenever one is due: while idle no two ACKs are closer than the
    gap unless the cadence itself made the second due (N jobs or T seconds), an idle
    outcome no NOTICE carries never waits past the later of the gap and its arrival,
    and outcomes a NOTICE carries alone never make an ACK due before the cadence."""
    gap, every, every_seconds = 0.002, 50, 0.05
    cadence = AckCadence(every=every, every_seconds=every_seconds, idle_gap=gap)
    now, seq, last_ack = 0.0, 0, -1.0
    count = 0
    first: float | None = None
    urgent = False  # an outcome no NOTICE carries is pending
    for dt, idle, finished, noticed in steps:
        now += dt
        cadence.idle = idle
        for _ in range(finished):
            seq += 1
            cadence.on_finished(ref(seq), Outcome.success(), now)
            count += 1
            first = now if first is None else first
            urgent = True
        batch = [(ref(seq + n + 1), Outcome.success()) for n in range(noticed)]
        seq += noticed
        cadence.on_finished_all(batch, [outcome_size(o) for _, o in batch], now, noticed=noticed)
        count += noticed
        first = now if first is None and noticed else first
        by_cadence = count >= every or (first is not None and now - first >= every_seconds)
        if cadence.due(now):
            assert by_cadence or (urgent and now - last_ack >= gap - 1e-12)
            cadence.take(now)
            last_ack, count, first, urgent = now, 0, None, False
        elif idle and urgent:
            assert now - last_ack < gap  # an idle outcome waits only for the gap
            deadline = cadence.deadline()
            assert deadline is not None
            assert deadline <= last_ack + gap + 1e-12


# --- ProducerGate -------------------------------------------------------------------


def test_gate_without_consumers_holds() -> None:
    gate = ProducerGate(P1)
    assert not gate.may_send(1)
    assert gate.blocked_reason() is BlockReason.NO_CONSUMERS


def test_gate_window_and_read_positions() -> None:
    gate = ProducerGate(P1, window=600)
    gate.on_view(["#a#h", "#b#h"], now_mseq=0)
    assert gate.may_send(600)
    assert gate.blocked_reason() is None
    assert not gate.may_send(601)
    assert gate.blocked_reason() is BlockReason.WINDOW
    gate.on_ack("#a#h", {P1: 1}, backlog=0)
    assert not gate.may_send(601)  # b has not read anything yet
    assert gate.slowest() == ("#b#h", 0)
    gate.on_ack("#b#h", [(P1, 5)], backlog=0)
    assert gate.may_send(599)  # a read ours up to 1; both ACKs came after it
    assert not gate.may_send(600)
    gate.on_ack("#b#h", [(P1, 3)], backlog=0)  # positions never go backwards
    assert gate.read_position("#b#h") == 5


def test_gate_new_consumer_starts_at_the_current_mseq_and_gone_ones_are_dropped() -> None:
    gate = ProducerGate(P1, window=10)
    gate.on_view(["#a#h"], now_mseq=0)
    gate.on_ack("#a#h", {P1: 100}, 0)
    gate.on_view(["#a#h", "#c#h"], now_mseq=100)
    assert gate.read_position("#c#h") == 100
    assert gate.acks_unread("#c#h") == 1  # for all we know, a's ACK came after our 100
    assert gate.may_send(109)
    assert not gate.may_send(110)
    gate.on_view(["#c#h"], now_mseq=105)
    assert gate.consumers == ("#c#h",)
    gate.on_ack("#a#h", {P1: 500}, 0)  # from a consumer that left: ignored
    assert gate.read_position("#a#h") is None


def test_gate_shares_the_window_among_active_producers() -> None:
    gate = ProducerGate(P1, window=600)
    gate.on_view(["#a#h", "#b#h"], now_mseq=0)
    assert (gate.active_producers, gate.share) == (1, 600)
    gate.on_ack("#a#h", {P1: 0, P2: 7}, 0)
    assert (gate.active_producers, gate.share) == (2, 300)
    gate.on_ack("#b#h", {P3: 1}, 0)
    assert gate.share == 200
    assert not gate.may_send(201)
    gate.on_ack("#a#h", {P1: 0}, 0)  # a's latest ACK no longer mentions P2
    assert gate.share == 300
    gate.on_peers(4)
    assert gate.share == 150


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("view"), st.sets(st.sampled_from("abcd"))),
            st.tuples(
                st.just("ack"),
                st.sampled_from("abcd"),
                st.sets(st.sampled_from([P1, P2, P3])),
            ),
            st.tuples(st.just("peers"), st.integers(0, 5)),
            st.tuples(st.just("window"), st.integers(1, 900)),
        ),
        max_size=40,
    ),
)
def test_the_cached_share_always_equals_its_definition(steps: list[tuple[object, ...]]) -> None:
    gate = ProducerGate(P1, window=600)
    for step in steps:
        if step[0] == "view":
            gate.on_view(sorted(step[1]), gate.last_mseq)  # type: ignore[call-overload]
        elif step[0] == "ack":
            _, member, producers = step
            gate.on_ack(str(member), [(p, 0) for p in producers], 0)  # type: ignore[attr-defined]
        elif step[0] == "peers":
            gate.on_peers(int(step[1]))  # type: ignore[call-overload]
        else:
            gate.window = int(step[1])  # type: ignore[call-overload]
        assert gate.share == max(1, gate.window // gate.active_producers)


def test_gate_in_flight_and_backlog() -> None:
    gate = ProducerGate(P1, max_in_flight=10, max_backlog=50)
    gate.on_view(["#a#h"], now_mseq=0)
    gate.on_sent(8)
    assert gate.may_send(1, jobs=2)
    assert not gate.may_send(1, jobs=3)
    assert gate.blocked_reason() is BlockReason.IN_FLIGHT
    gate.on_confirmed(5)
    assert gate.in_flight == 3
    assert gate.may_send(1, jobs=3)
    gate.on_ack("#a#h", {}, backlog=51)
    assert not gate.may_send(1)
    assert gate.blocked_reason() is BlockReason.BACKLOG
    gate.on_ack("#a#h", {}, backlog=50)
    assert gate.may_send(1)


def test_an_oversized_first_batch_is_not_held_forever() -> None:
    gate = ProducerGate(P1, max_in_flight=10)
    gate.on_view(["#a#h"], now_mseq=0)
    assert gate.may_send(1, jobs=50)


def test_the_window_bound_is_tight() -> None:
    gate = ProducerGate(P1, window=25)
    gate.on_view(["#a#h"], now_mseq=0)
    sent = 0
    while gate.may_send(sent + 1):
        sent += 1
    assert sent == 25


@dataclass
class _Consumer:
    name: str
    inbox: deque[tuple[bytes, int]] = field(default_factory=deque)
    read: dict[bytes, int] = field(default_factory=dict)


@settings(max_examples=60)
@given(
    producers=st.integers(1, 3),
    window=st.integers(3, 40),
    actions=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 8)), max_size=300),
)
def test_obeying_producers_never_overfill_a_consumer(
    producers: int, window: int, actions: list[tuple[int, int]]
) -> None:
    """Producers share consumers; ACKs reach producers late and in order; consumers
    join and leave. Whatever happens, no consumer ever has more than ``window``
    messages delivered to it and not yet read, summed over all producers."""
    pids = [bytes([n + 1]) * 16 for n in range(producers)]
    gates = {pid: ProducerGate(pid, window=window) for pid in pids}
    for gate in gates.values():
        gate.on_peers(producers)
    sent = dict.fromkeys(pids, 0)
    consumers = [_Consumer("#c0#h")]
    acks: deque[tuple[str, tuple[tuple[bytes, int], ...]]] = deque()
    serial = 1

    def install() -> None:
        for pid, gate in gates.items():
            gate.on_view([c.name for c in consumers], now_mseq=sent[pid])

    install()
    for action, pick in actions:
        if action <= 3:  # a producer sends if its gate allows (the most common step)
            pid = pids[pick % producers]
            if gates[pid].may_send(sent[pid] + 1):
                sent[pid] += 1
                for consumer in consumers:
                    consumer.inbox.append((pid, sent[pid]))
        elif action == 4 and consumers:  # a consumer reads one message
            consumer = consumers[pick % len(consumers)]
            if consumer.inbox:
                pid, mseq = consumer.inbox.popleft()
                consumer.read[pid] = mseq
        elif action == 5 and consumers:  # a consumer sends an ACK
            consumer = consumers[pick % len(consumers)]
            acks.append((consumer.name, tuple(consumer.read.items())))
        elif action == 6 and acks:  # the oldest ACK reaches the producers
            name, positions = acks.popleft()
            for gate in gates.values():
                gate.on_ack(name, positions, backlog=0)
        elif action == 7:  # membership change
            if pick < 4 and len(consumers) < 4:
                consumers.append(_Consumer(f"#n{serial}#h"))
                serial += 1
            elif consumers and pick >= 6:
                consumers.pop(pick % len(consumers))
            install()
        for consumer in consumers:
            assert len(consumer.inbox) <= window, (consumer.name, len(consumer.inbox))


@dataclass
class _Reader:
    """A consumer whose daemon queue holds jobs ``(producer_id, mseq)`` and ACKs (None)."""

    name: str
    inbox: deque[tuple[bytes, int] | None] = field(default_factory=deque)
    read: dict[bytes, int] = field(default_factory=dict)
    unreported: int = 0  # jobs read since its last ACK

    def unread_jobs(self, producer_id: bytes) -> int:
        return sum(1 for item in self.inbox if item is not None and item[0] == producer_id)

    def unread_acks(self) -> int:
        return sum(1 for item in self.inbox if item is None)


@settings(max_examples=150)
@given(
    producers=st.integers(1, 3),
    window=st.integers(3, 40),
    consumers=st.integers(1, 4),
    actions=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 11)), max_size=400),
)
def test_acks_on_the_work_group_count_against_a_stalled_consumers_window(
    producers: int, window: int, consumers: int, actions: list[tuple[int, int]]
) -> None:
    """Consumers ACK on the WORK group, so ACKs wait in every consumer's daemon queue
    beside the jobs. Consumers read at any pace (one that is never picked has stalled),
    ACK whenever they have read a job since their last ACK, join and leave. Producers
    see each ACK as it is ordered and send whenever their gate allows.

    Whenever a producer's message reaches a consumer, that consumer's unread messages
    (jobs of every producer and ACKs) stay within the window; the one exception is the
    gate's liveness rule: when the ACKs counted against a consumer already fill a share,
    one message of ours may still go to a consumer that has read all the others."""
    pids = [bytes([n + 1]) * 16 for n in range(producers)]
    gates = {pid: ProducerGate(pid, window=window) for pid in pids}
    for gate in gates.values():
        gate.on_peers(producers)
    share = window // producers
    sent = dict.fromkeys(pids, 0)
    readers = [_Reader(f"#c{n}#h") for n in range(consumers)]
    serial = consumers

    def install() -> None:
        for pid, gate in gates.items():
            gate.on_view([r.name for r in readers], now_mseq=sent[pid])

    install()
    for action, pick in actions:
        if action <= 3:  # a producer sends if its gate allows
            pid = pids[pick % producers]
            gate = gates[pid]
            if gate.may_send(sent[pid] + 1):
                sent[pid] += 1
                gate.on_sent(1, sent[pid])
                for reader in readers:
                    reader.inbox.append((pid, sent[pid]))
                for reader in readers:
                    counted = gate.acks_unread(reader.name)
                    assert counted is not None
                    assert counted >= reader.unread_acks()  # the count errs on the safe side
                    unread = len(reader.inbox)
                    assert unread <= window or (
                        counted >= share and reader.unread_jobs(pid) == 1
                    ), (reader.name, unread, counted)
        elif action <= 6 and readers:  # a consumer reads one message, or all of them
            reader = readers[pick % len(readers)]
            for _ in range(1 if action <= 5 else len(reader.inbox)):
                if not reader.inbox:
                    break
                item = reader.inbox.popleft()
                if item is not None:
                    reader.read[item[0]] = item[1]
                    reader.unreported += 1
        elif action <= 8 and readers:  # a consumer ACKs what it read, on WORK + FEEDBACK
            reader = readers[pick % len(readers)]
            if reader.unreported:
                reader.unreported = 0
                for other in readers:
                    other.inbox.append(None)
                positions = tuple(reader.read.items())
                for gate in gates.values():
                    gate.on_ack(reader.name, positions, backlog=0)
        elif action == 9:  # membership change
            if pick < 3 and len(readers) < 4:
                readers.append(_Reader(f"#n{serial}#h"))
                serial += 1
            elif readers and pick >= 9:
                readers.pop(pick % len(readers))
            install()


def test_an_ack_that_reports_nothing_new_still_counts() -> None:
    """An ACK is counted from the last message its sender reported reading, not reset
    by the sender's own ACK: the ACKs before it may still wait unread in its queue."""
    gate = ProducerGate(P1, window=10)
    gate.on_view(["#a#h", "#b#h"], now_mseq=0)
    for mseq in range(1, 4):
        gate.on_sent(1, mseq)
    gate.on_ack("#b#h", {P1: 3}, 0)
    gate.on_ack("#b#h", {P1: 3}, 0)
    gate.on_ack("#a#h", {P1: 3}, 0)  # a read ours, not necessarily b's ACKs after them
    assert (gate.acks_unread("#a#h"), gate.acks_unread("#b#h")) == (3, 3)
    assert gate.ack_slack == 3
    assert gate.may_send(10)  # 10 - 3 + 3 == 10
    assert not gate.may_send(11)
    gate.on_sent(1, 4)
    gate.on_ack("#a#h", {P1: 4}, 0)
    assert gate.acks_unread("#a#h") == 1  # its own ACK
    assert gate.acks_unread("#b#h") == 4


def test_an_idle_ack_is_due_exactly_one_gap_after_the_last() -> None:
    cadence = AckCadence(every=200, every_seconds=10.0, idle_gap=0.5)  # exact in binary
    cadence.idle = True
    cadence.on_finished(ref(1), Outcome.success(), 1.0)
    cadence.take(1.0)
    cadence.on_finished(ref(2), Outcome.success(), 1.25)
    assert not cadence.due(1.25)
    assert cadence.deadline() == 1.5
    assert cadence.due(1.5)


_GATE_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("view"), st.sets(st.sampled_from("abcd"))),
        st.tuples(
            st.just("ack"),
            st.sampled_from("abcde"),
            st.integers(0, 40),
            st.integers(0, 30),
            st.booleans(),
        ),
        st.tuples(st.just("sent"), st.integers(0, 50)),
        st.tuples(st.just("confirmed"), st.integers(0, 50)),
        st.tuples(st.just("peers"), st.integers(1, 4)),
        st.tuples(st.just("window"), st.integers(2, 40)),
        st.tuples(st.just("limits"), st.integers(1, 80), st.integers(0, 30)),
    ),
    max_size=40,
)


@given(_GATE_STEPS, st.integers(0, 3), st.integers(1, 60))
@settings(max_examples=300)
def test_a_kept_check_answer_is_always_what_checking_again_gives(
    steps: list[tuple[object, ...]], ahead: int, jobs: int
) -> None:
    """``check`` keeps its last answer for the put path: whatever changed in between,
    the kept answer must be the one a fresh check gives."""
    me = b"p" * 16
    gate = ProducerGate(me, window=12, max_in_flight=40, max_backlog=20)
    for step in steps:
        match step:
            case ("view", set() as members):
                gate.on_view(sorted(map(str, members)), gate.last_mseq)
            case ("ack", str() as member, int() as mseq, int() as backlog, bool() as ours):
                producer = me if ours else b"q" * 16
                gate.on_ack(member, [(producer, mseq)], backlog)
            case ("sent", int() as count):
                gate.on_sent(count)
            case ("confirmed", int() as count):
                gate.on_confirmed(count)
            case ("peers", int() as producers):
                gate.on_peers(producers)
            case ("window", int() as window):
                gate.window = window
            case ("limits", int() as in_flight, int() as backlog):
                gate.max_in_flight, gate.max_backlog = in_flight, backlog
            case _:
                raise AssertionError(f"a step the strategy does not make: {step!r}")
        next_mseq = gate.last_mseq + 1 + ahead
        kept = gate.check(next_mseq, jobs)
        assert kept == gate.check(next_mseq, jobs)
        assert kept == gate._check(next_mseq, jobs)
