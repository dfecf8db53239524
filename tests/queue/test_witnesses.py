"""Witnesses: the consumer list a producer installs and the jobs it must send again."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spreadq.queue.view import View
from spreadq.queue.witnesses import ConsumersChanged, Trust, Witnesses

A, B, C, ME = "#a#h", "#b#h", "#c#h", "#me#h"


def test_an_epoch_is_lost_only_when_its_last_witness_leaves() -> None:
    witnesses = Witnesses(ME)
    first = witnesses.change([A, B])  # epoch 0 (nobody known) counts as lost
    assert first == ConsumersChanged((A, B), frozenset(), frozenset({0}), 1)
    assert witnesses.change([B, A]) is None  # the same set: nothing changes
    second = witnesses.change([A, B, C])
    assert second is not None
    assert (second.lost, second.epoch) == (frozenset(), 2)
    third = witnesses.change([C])  # a and b leave: epoch 1 (a, b) has no witness left
    assert third is not None
    assert (third.gone, third.lost) == (frozenset({A, B}), frozenset({1}))
    assert witnesses.witnesses(2) == {C}  # epoch 2 is still held by c
    fourth = witnesses.change([])
    assert fourth is not None
    assert fourth.lost == frozenset({2, 3})


def test_jobs_sent_while_no_consumer_was_known_are_lost_when_consumers_appear() -> None:
    witnesses = Witnesses(ME)
    assert witnesses.epoch == 0  # sent under epoch 0: nobody known
    change = witnesses.change([A])
    assert change is not None
    assert change.lost == frozenset({0})
    again = witnesses.change([A, B])  # epoch 1 has a witness: nothing lost
    assert again is not None
    assert again.lost == frozenset()


def test_an_overtaken_view_is_ignored_and_we_are_never_a_consumer() -> None:
    witnesses = Witnesses(ME)
    witnesses.on_feedback([A, B, C, ME])
    assert witnesses.on_view(View((A, ME, B), (1, 10, 5), 3)) == (A, B)
    assert witnesses.on_view(View((A,), (1, 10, 4), 2)) is None  # older, same lifetime
    assert witnesses.on_view(View((C,), (2, 20, 1), 1)) == (C,)  # a new ring id
    witnesses.reset()  # a new session: any view goes
    witnesses.on_feedback([B, ME])
    assert witnesses.on_view(View((B,), (1, 10, 1), 1)) == (B,)


def test_feedback_memberships_drop_leavers_and_count_peers() -> None:
    witnesses = Witnesses(ME)
    witnesses.on_feedback([A, B, ME])
    assert witnesses.on_view(View((A, B), (1, 10, 1), 1)) == (A, B)
    witnesses.change([A, B])
    assert witnesses.on_feedback([A, B, ME, "#p#h"]) == (A, B)
    assert witnesses.peers([A, B]) == 2  # ourselves and another producer
    witnesses.on_feedback([A, B, ME, "#p#h", "#~top1#h"])
    assert witnesses.peers([A, B]) == 2  # an observer (spreadq top) takes no share
    assert witnesses.on_feedback([A, ME]) == (A,)
    assert witnesses.peers([A]) == 1
    witnesses.reset()
    assert witnesses.peers([]) == 1  # at least one: ourselves


def test_consumers_are_the_listed_members_that_are_in_feedback() -> None:
    witnesses = Witnesses(ME)
    witnesses.on_feedback([A, ME])
    # b joined WORK, and its FEEDBACK join comes after the VIEW that lists it
    assert witnesses.on_view(View((A, B), (1, 10, 2), 2)) == (A,)
    assert witnesses.on_feedback([A, B, ME]) == (A, B)
    assert witnesses.on_feedback([A, B, C, ME]) == (A, B)  # c is listed by no VIEW


def test_a_view_counts_only_from_a_feedback_member_announcing_itself_first() -> None:
    witnesses = Witnesses(ME)
    view = View((A, B), (1, 10, 2), 2)
    assert witnesses.judge_view(view, A) is Trust.NOT_A_MEMBER  # multicast from outside
    witnesses.on_feedback([A, B, C, ME])
    assert witnesses.judge_view(view, A) is Trust.TRUSTED
    assert witnesses.judge_view(view, B) is Trust.NOT_FIRST  # consumers announce as first
    assert witnesses.judge_view(view, C) is Trust.NOT_FIRST
    assert witnesses.judge_view(View((), (1, 10, 3), 3), A) is Trust.NOT_FIRST


def test_an_ack_counts_only_from_a_listed_consumer_in_feedback() -> None:
    witnesses = Witnesses(ME)
    assert witnesses.judge_ack(A) is Trust.NOT_A_MEMBER
    witnesses.on_feedback([A, B, C, ME])
    assert witnesses.judge_ack(A) is Trust.UNLISTED  # no VIEW yet: held, not taken
    witnesses.on_view(View((A, B), (1, 10, 2), 2))
    assert witnesses.judge_ack(A) is Trust.TRUSTED
    assert witnesses.judge_ack(B) is Trust.TRUSTED
    assert witnesses.judge_ack(C) is Trust.UNLISTED  # a FEEDBACK member, not a consumer
    assert witnesses.judge_ack("#x#h") is Trust.NOT_A_MEMBER
    witnesses.on_feedback([A, C, ME])  # b left
    assert witnesses.judge_ack(B) is Trust.NOT_A_MEMBER
    witnesses.reset()
    assert witnesses.judge_ack(A) is Trust.NOT_A_MEMBER


def test_forget_keeps_the_live_epochs_and_the_current_one() -> None:
    witnesses = Witnesses(ME)
    for members in ([A], [A, B], [A]):
        witnesses.change(members)
    witnesses.forget({1})
    assert witnesses.witnesses(1) == frozenset({A})
    assert witnesses.witnesses(2) == frozenset()  # forgotten: no job of it is left
    assert witnesses.witnesses(3) == frozenset({A})


@given(st.lists(st.lists(st.sampled_from([A, B, C]), unique=True), max_size=12))
def test_a_job_is_resent_exactly_when_no_consumer_that_got_it_remains(
    views: list[list[str]],
) -> None:
    """Model: one job sent in each epoch; it is held by the consumers of that epoch that
    have not left since. It must be reported lost exactly when none remain (or when it
    was sent while nobody was known and consumers appear)."""
    witnesses = Witnesses(ME)
    holders: dict[int, set[str]] = {0: set()}
    reported: set[int] = set()
    present: set[str] = set()
    for members in views:
        change = witnesses.change(members)
        if change is None:
            assert set(members) == present
            continue
        gone = present - set(members)
        expected = set()
        for epoch, held in holders.items():
            if epoch in reported:
                continue
            every_holder_left = bool(held) and held <= gone
            sent_to_nobody_known = not held and not present and bool(members)
            if every_holder_left or sent_to_nobody_known:
                expected.add(epoch)
            held -= gone
        assert change.lost == expected
        reported |= expected
        present = set(members)
        holders[change.epoch] = set(members)
        witnesses.forget(e for e in holders if e not in reported)


def test_is_member_follows_the_feedback_membership() -> None:
    witnesses = Witnesses(me="#p#h")
    assert not witnesses.is_member("#w1#h")
    witnesses.on_feedback(["#p#h", "#w1#h"])
    assert witnesses.is_member("#w1#h")
    assert not witnesses.is_member("#w2#h")
    witnesses.on_feedback(["#p#h"])
    assert not witnesses.is_member("#w1#h")
