"""Flow control in the producer's core: admission (``room()``) and send clearance
(``clear_to_send()``) after synthetic ACK, VIEW and FEEDBACK inputs; and the one
condition (:class:`~spreadq.producer.condition.Changed`) the facade waits on.

"Exactly when" is checked input by input: the answer is False after every input that
does not open the window and True right after the one that does.
"""

from __future__ import annotations

import anyio
from anyio import wait_all_tasks_blocked
from core_driver import PID, Driver

from spreadq.producer.condition import Changed
from spreadq.producer.inputs import Cleared
from spreadq.queue.windows import BlockReason

OTHER = bytes(16)
WAIT = 5.0


def driver(
    *, window: int = 4, max_in_flight: int = 100, max_backlog: int = 50, batch_max_jobs: int = 1
) -> Driver:
    return Driver.make(
        window=window,
        max_in_flight=max_in_flight,
        max_backlog=max_backlog,
        batch_max_jobs=batch_max_jobs,
    )


def send_one(d: Driver) -> None:
    d.put()
    assert d.send() is not None


def test_a_gated_put_may_go_exactly_when_an_ack_opens_the_window() -> None:
    d = driver()
    d.consumers("#c1#d")
    for _ in range(4):  # window 4: messages 1..4 may run ahead of read 0
        send_one(d)
    core = d.core
    assert core.blocked() is BlockReason.WINDOW
    assert core.flow_state().in_flight == 4

    d.put()  # one batch (batch_max_jobs=1) may wait while the window is shut
    batch = core.next_batch()
    assert batch is not None
    assert (core.clear_to_send(batch), core.room()) == (False, False)

    # inputs that do not open the window change neither answer
    d.read("#c1#d", 0)  # no progress
    d.ack("#c1#d", ((OTHER, 99),))  # another producer's position
    d.read("#gone#d", 4)  # not a FEEDBACK member at all
    assert (core.clear_to_send(batch), core.room()) == (False, False)

    # it read all four; the ACKs seen since count too, capped one below the window:
    # 5 - 4 + 3 <= 4
    d.read("#c1#d", 4)
    assert (core.clear_to_send(batch), core.room()) == (True, True)
    d.finish(batch)
    d.put()
    state = core.flow_state()
    assert state.last_mseq == 5
    assert state.admitted == 1  # the put let in, not yet sent


def test_the_window_is_the_slowest_live_consumer() -> None:
    d = driver()
    d.consumers("#a#d", "#b#d")
    for _ in range(4):
        send_one(d)
    d.put()
    batch = d.core.next_batch()
    assert batch is not None
    d.read("#a#d", 4)
    assert not d.core.clear_to_send(batch)  # b has read nothing
    d.leave("#b#d")
    assert d.core.clear_to_send(batch)


def test_a_put_admitted_leaves_room_accounted_and_a_refused_one_takes_none() -> None:
    d = driver(max_in_flight=3)
    d.consumers("#c1#d")
    for _ in range(3):
        d.put()
    assert not d.core.room()
    state = d.core.flow_state()
    assert (state.admitted, state.in_flight, state.last_mseq) == (3, 0, 0)
    d.send()  # sent: now in flight, still held
    assert not d.core.room()
    assert (d.core.flow_state().admitted, d.core.flow_state().in_flight) == (2, 1)
    d.succeed("#c1#d", 0)
    assert d.core.room()


def test_jobs_are_held_while_no_consumer_is_present() -> None:
    d = driver(max_in_flight=3, batch_max_jobs=8)
    for _ in range(3):  # admitted although nobody could receive them yet
        d.put()
    assert not d.core.room()
    batch = d.core.next_batch()
    assert batch is not None
    assert not d.core.clear_to_send(batch)
    assert d.core.blocked() is BlockReason.NO_CONSUMERS
    d.consumers("#c1#d")
    assert d.core.clear_to_send(batch)
    d.finish(batch)
    assert not d.core.room()  # 3 unconfirmed = max_in_flight
    d.succeed("#c1#d", 0)  # one confirmed: room for one
    assert d.core.room()


def test_a_consumer_backlog_past_its_bound_holds_sends() -> None:
    d = driver(window=100, max_backlog=10)
    d.consumers("#c1#d")
    send_one(d)
    d.read("#c1#d", 1, backlog=11)
    d.put()
    batch = d.core.next_batch()
    assert batch is not None
    assert not d.core.clear_to_send(batch)
    assert d.core.blocked() is BlockReason.BACKLOG
    assert not d.core.room()  # a batch's worth already waits unsent
    d.read("#c1#d", 1, backlog=10)
    assert d.core.clear_to_send(batch)


def test_producers_share_the_window() -> None:
    d = driver(window=600)
    d.consumers("#c1#d")
    assert d.core.share == 600
    d.join("#p2#d", "#p3#d")  # two more FEEDBACK members that are not consumers
    assert d.core.share == 200
    d.leave("#p2#d", "#p3#d")
    d.ack("#c1#d", ((PID, 0), (OTHER, 5), (bytes([7]) * 16, 1)))
    assert d.core.share == 200  # three producers in its read positions


def test_admission_counts_each_put_and_each_clearance() -> None:
    d = driver(window=100, batch_max_jobs=10, max_in_flight=25)
    d.consumers("#c1#d")
    for n in range(1, 12):
        assert d.core.room()
        d.put()
        assert d.core.flow_state().admitted == n
    batch = d.core.next_batch()
    assert batch is not None
    assert len(batch.jobs) == 10
    d.finish(batch)
    state = d.core.flow_state()
    assert (state.admitted, state.in_flight) == (1, 10)


def test_a_message_not_cleared_takes_nothing() -> None:
    d = driver()
    d.put()
    batch = d.core.next_batch()
    assert batch is not None
    assert not d.core.clear_to_send(batch)  # nobody there; the sender gives up waiting
    d.consumers("#c1#d")
    state = d.core.flow_state()
    assert (state.last_mseq, state.in_flight, state.admitted) == (0, 0, 1)


def test_a_message_that_waited_is_counted() -> None:
    d = driver()
    d.consumers("#c1#d")
    d.put()
    batch = d.core.next_batch()
    assert batch is not None
    d.apply(Cleared(batch, waited=True))
    assert d.core.flow_state().sends_waited == 1


def test_other_consumers_acks_count_against_a_silent_consumers_window() -> None:
    d = driver()  # window 4
    d.consumers("#quiet#d", "#busy#d")
    for _ in range(2):  # two ACKs wait, unread, in the quiet consumer's queue
        d.read("#busy#d", 0)
    send_one(d)
    send_one(d)  # 2 of ours + 2 ACKs = 4
    assert d.core.flow_state().ack_slack == 2
    d.put()
    batch = d.core.next_batch()
    assert batch is not None
    assert not d.core.clear_to_send(batch)
    # an ACK that reports none of ours may be read by nobody yet: it counts too
    d.read("#quiet#d", 0)
    d.read("#quiet#d", 2)  # quiet read ours: 3 - 2 + 2
    assert not d.core.clear_to_send(batch)  # busy has read none of ours: 3 - 0 + 3 > 4
    d.read("#busy#d", 2)  # 3 - 2 + 3 <= 4
    assert d.core.clear_to_send(batch)
    assert d.core.flow_state().ack_slack == 3


def test_ack_slack_never_blocks_a_consumer_that_has_read_everything() -> None:
    d = driver()  # window 4
    d.consumers("#new#d", "#busy#d")
    for _ in range(50):  # a long tail of other work being acknowledged
        d.ack("#busy#d")
    assert d.core.flow_state().ack_slack == 3  # capped one below the share
    d.put()
    batch = d.core.next_batch()
    assert batch is not None
    assert d.core.clear_to_send(batch)  # the newcomer gets a message, reads it, ACKs


def test_a_fire_and_forget_core_bounds_only_its_queue() -> None:
    d = Driver.make(member=False, max_in_flight=2, batch_max_jobs=1)
    d.put()
    d.put()
    assert not d.core.room()
    batch = d.core.next_batch()
    assert batch is not None
    assert d.core.clear_to_send(batch)  # no consumer known, no gate
    d.finish(batch)
    assert d.core.room()


# -- the condition the facade waits on ---------------------------------------------------


def waiting(changed: Changed) -> bool:
    return changed.waiting


async def test_changed_wakes_every_waiter_at_the_next_notify_only() -> None:
    changed = Changed()
    assert not waiting(changed)
    changed.notify()  # nobody waits: nothing is made, nothing is remembered
    assert not waiting(changed)
    woken: list[int] = []
    room = [False]

    async def waiter(n: int) -> None:
        await changed.wait_for(lambda: room[0])
        woken.append(n)

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter, 1)
            tg.start_soon(waiter, 2)
            await wait_all_tasks_blocked()
            assert waiting(changed)
            changed.notify()  # the condition still says no: they look and wait again
            await wait_all_tasks_blocked()
            assert woken == []
            room[0] = True
            changed.notify()
    assert sorted(woken) == [1, 2]
    assert not changed.waiting


async def test_a_cancelled_wait_leaves_nothing_behind() -> None:
    changed = Changed()
    with anyio.fail_after(WAIT):
        with anyio.move_on_after(0):
            await changed.wait()
        changed.notify()
        assert not changed.waiting
        async with anyio.create_task_group() as tg:
            tg.start_soon(changed.wait)
            await wait_all_tasks_blocked()
            changed.notify()


def test_room_for_several_needs_max_in_flight_room_for_all_of_them() -> None:
    d = driver(max_in_flight=5, batch_max_jobs=8)
    d.consumers("#c1#d")
    core = d.core
    for _ in range(3):
        d.put()  # admitted, not yet sent
    assert [core.room_for(n) for n in (1, 2, 3)] == [True, True, False]
    assert core.room() is core.room_for(1)
    batch = core.next_batch()
    assert batch is not None
    d.finish(batch)  # sent: in flight now, still held
    assert [core.room_for(n) for n in (2, 3)] == [True, False]
    d.succeed("#c1#d", 0, 1)
    assert [core.room_for(n) for n in (4, 5)] == [True, False]


def test_room_for_several_waits_for_the_window_once_a_batch_is_admitted() -> None:
    d = driver(window=1, max_in_flight=100, batch_max_jobs=2)
    d.consumers("#c1#d")
    send_one(d)  # the window (1 message) is full
    assert d.core.blocked() is BlockReason.WINDOW
    assert d.core.room_for(5)  # fewer than a batch wait to be sent: admitted anyway
    d.put()
    d.put()
    assert (d.core.room_for(1), d.core.room_for(5)) == (False, False)
    d.read("#c1#d", 1)
    assert d.core.room_for(5)
