"""Board: trust (VIEW from its first member, STATS from the member it names), order,
rates, consumers waiting and gone, and the producers' rows."""

from __future__ import annotations

from spreadq.observe.board import GONE_FOR, Board
from spreadq.queue.envelope import Stats, StatsState
from spreadq.queue.view import View

A, B, C = "#a#h", "#b#h", "#c#h"
P1, P2 = b"\x01" * 16, b"\x02" * 16


def stats(member: str, done: int = 0, **fields: object) -> Stats:
    return Stats(b"i" * 16, member, done=done, interval_ms=1000, **fields)  # type: ignore[arg-type]


def board_with(*members: str) -> Board:
    board = Board("q", window=600)
    board.on_feedback([*members, "#~top1#h"])
    assert board.on_view(View(members, (1, 1, 1), 1), members[0])
    return board


def test_views_count_only_from_their_first_member_present_in_feedback() -> None:
    board = Board("q")
    board.on_feedback([A, B])
    assert not board.on_view(View((A, B), (1, 1, 2), 2), B)  # not the first member
    assert not board.on_view(View((C,), (1, 1, 2), 2), C)  # not in FEEDBACK
    assert board.on_view(View((A, B), (1, 1, 2), 2), A)
    assert not board.on_view(View((A,), (1, 1, 1), 1), A)  # older, same lifetime
    assert board.view is not None
    assert board.view.ordinal == 2


def test_stats_count_only_from_the_member_they_name() -> None:
    board = board_with(A, B)
    assert not board.on_stats(stats(B, 5), A, 1.0)
    assert board.on_stats(stats(A, 5), A, 1.0)
    assert not board.complete()
    assert board.on_stats(stats(B, 5), B, 1.0)
    assert board.complete()


def test_rows_follow_the_view_with_rates_waiting_and_draining() -> None:
    board = board_with(B, A, C)
    board.on_stats(stats(A, 100), A, 10.0)
    board.on_stats(stats(A, 300), A, 11.0)
    board.on_stats(stats(B, 10, state=StatsState.DRAINING, running=1, oldest_ms=500), B, 11.0)
    rows = board.snapshot(11.5).consumers
    assert [(r.member, r.state) for r in rows] == [(B, "draining"), (A, "running"), (C, "waiting")]
    assert rows[1].done_per_s == 200.0
    assert rows[0].done_per_s is None  # one report: no rate yet
    assert rows[0].oldest_s == 1.0  # 0.5 s reported, 0.5 s since


def test_a_consumer_is_gone_when_it_leaves_or_stops_reporting_and_then_forgotten() -> None:
    board = board_with(A, B)
    board.on_stats(stats(A, 1), A, 0.0)
    board.on_stats(stats(B, 1), B, 0.0)
    assert [r.state for r in board.snapshot(2.9).consumers] == ["running", "running"]
    board.on_stats(stats(A, 2, running=1, oldest_ms=250), A, 2.9)
    assert [r.state for r in board.snapshot(3.5).consumers] == ["running", "gone"]  # B silent
    board.on_feedback([B])  # A left FEEDBACK
    board.on_view(View((B,), (1, 1, 2), 2), B)
    board.on_stats(stats(B, 3), B, 3.6)
    rows = board.snapshot(3.6).consumers
    assert [(r.member, r.state) for r in rows] == [(B, "running"), (A, "gone")]
    assert rows[1].done_per_s is None
    assert rows[1].oldest_s == 0.25  # as last reported: a gone member's age stops
    assert [r.member for r in board.snapshot(3.6 + GONE_FOR + 1).consumers] == [B]


def test_producers_take_outstanding_from_the_newest_report_and_lag_across_consumers() -> None:
    board = board_with(A, B)
    board.on_stats(stats(A, producers=((P1, 9, 100), (P2, 1, 7))), A, 1.0)
    board.on_stats(stats(B, producers=((P1, 8, 140),)), B, 1.2)
    producers = board.snapshot(1.3).producers
    assert [(p.producer, p.outstanding, p.lag, p.window) for p in producers] == [
        (P1.hex()[:8], 8, 40, 600),
        (P2.hex()[:8], 0, 0, 600),
    ]
