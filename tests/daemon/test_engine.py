"""The sans-IO engine: sessions, membership, one total order, limits, network changes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from interleaving import check_one_order, random_traffic

from spreadq.daemon.engine import Engine, SessionInfo, daemon_proc_id
from spreadq.errors import ConfigurationError
from spreadq.wire.constants import Cause, RejectCode, ServiceType
from spreadq.wire.events import (
    DaemonMessage,
    DataMessage,
    GroupId,
    RegularMembership,
    SelfLeave,
    TransitionalMembership,
)

START = 1_700_000_000
LOCALHOST = 482711334  # a real daemon "localhost": docs/design/spread-protocol.md#group-ids


def open_(engine: Engine, name: str, **kwargs: object) -> SessionInfo:
    result = engine.open_session(name, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, SessionInfo), result
    return result


def drain(engine: Engine, session: SessionInfo) -> list[DaemonMessage]:
    return [output.message for output in engine.take(session.id)]


def reg(
    group: str,
    index: int,
    members: tuple[str, ...],
    cause: Cause,
    changed: str,
    *,
    proc_id: int = LOCALHOST,
    time: int = START,
) -> RegularMembership:
    return RegularMembership(group, GroupId(proc_id, time, index), members, cause, ((changed,),), 0)


# --- the proc_id hash -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("localhost", 482711334),  # [Group ids], measured on Spread 5.0.1
        ("pd1", 1250143154),  # a group id measured on Spread 5.0.1
        ("d1", 1552775919),  # golden_net capture, live gid of daemon d1
    ],
)
def test_proc_id_is_the_one_at_a_time_hash(name: str, expected: int) -> None:
    assert daemon_proc_id(name) == expected


@given(st.text(alphabet=st.characters(min_codepoint=0x24, max_codepoint=0x7E), min_size=1))
def test_proc_id_is_a_signed_int32(name: str) -> None:
    assert -(2**31) <= daemon_proc_id(name) < 2**31


# --- sessions ---------------------------------------------------------------------------


def test_open_session_names_the_private_group() -> None:
    engine = Engine(start_time=START)
    alice = open_(engine, "alice")
    assert alice.private_group == "#alice#localhost"
    assert alice.daemon == "localhost"
    assert engine.find_session("alice") == alice
    assert engine.find_session("#alice#localhost") == alice


def test_empty_name_gets_a_daemon_chosen_name() -> None:
    engine = Engine(start_time=START)
    names = {open_(engine, "").name for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert name.startswith("r")
        assert len(name) <= 9
        number, _, serial = name[1:].partition("-")
        assert number.isdigit()
        assert serial.isdigit() or serial == "" or name == f"r{number}-{serial}"[:9]


@pytest.mark.parametrize(
    ("name", "version", "code"),
    [
        ("a b", (5, 0, 1), RejectCode.REJECT_ILLEGAL_NAME),
        ("a#b", (5, 0, 1), RejectCode.REJECT_ILLEGAL_NAME),
        ("abcdefghijk", (5, 0, 1), RejectCode.REJECT_ILLEGAL_NAME),
        ("a!", (5, 0, 1), RejectCode.REJECT_ILLEGAL_NAME),
        ("carl", (3, 0, 0), RejectCode.REJECT_VERSION),
        ("carl", (3, 0, 9), RejectCode.REJECT_VERSION),
    ],
)
def test_handshake_rejects(name: str, version: tuple[int, int, int], code: RejectCode) -> None:
    engine = Engine(start_time=START)
    assert engine.open_session(name, version=version) is code


@pytest.mark.parametrize("version", [(3, 1, 0), (4, 4, 0), (9, 9, 9)])
def test_any_version_from_3_1_is_accepted(version: tuple[int, int, int]) -> None:
    engine = Engine(start_time=START)
    assert isinstance(engine.open_session("x", version=version), SessionInfo)


def test_duplicate_name_is_not_unique_until_the_first_leaves() -> None:
    engine = Engine(start_time=START)
    first = open_(engine, "alice")
    assert engine.open_session("alice") is RejectCode.REJECT_NOT_UNIQUE
    engine.close_session(first.id)
    assert isinstance(engine.open_session("alice"), SessionInfo)


def test_quota() -> None:
    engine = Engine(start_time=START, max_sessions=2)
    first = open_(engine, "a")
    open_(engine, "b")
    assert not engine.has_room()
    assert engine.open_session("c") is RejectCode.REJECT_QUOTA
    engine.close_session(first.id)
    assert isinstance(engine.open_session("c"), SessionInfo)


def test_engine_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        Engine(daemons=())
    with pytest.raises(ConfigurationError):
        Engine(daemons=("d1", "d1"))
    with pytest.raises(ConfigurationError):
        Engine(daemons=("x" * 20,))
    with pytest.raises(ConfigurationError):
        Engine(max_session_messages=0)


# --- membership -------------------------------------------------------------------------


def test_join_is_seen_by_the_joiner_and_the_members() -> None:
    engine = Engine(start_time=START)
    b = open_(engine, "bob")
    a = open_(engine, "alice")
    engine.join(b.id, "g")
    assert drain(engine, b) == [reg("g", 1, ("#bob#localhost",), Cause.JOIN, "#bob#localhost")]
    engine.join(a.id, "g")
    expected = reg("g", 2, ("#alice#localhost", "#bob#localhost"), Cause.JOIN, "#alice#localhost")
    assert drain(engine, a) == [expected]
    assert drain(engine, b) == [expected]
    assert engine.view("g") == (GroupId(LOCALHOST, START, 2), expected.members)


def test_members_are_in_byte_order() -> None:
    engine = Engine(daemons=("pd1",), start_time=START)
    names = ["aa0786", "__7763", "W724022", "AA1407", "997024"]
    for name in names:
        engine.join(open_(engine, name).id, "g")
    _, members = engine.view("g", "pd1")
    # docs/design/membership.md#what-a-regular-membership-says
    assert members == ("#997024#pd1", "#AA1407#pd1", "#W724022#pd1", "#__7763#pd1", "#aa0786#pd1")


def test_join_twice_and_leave_a_stranger_group_do_nothing() -> None:
    engine = Engine(start_time=START)
    a = open_(engine, "a")
    engine.join(a.id, "g")
    drain(engine, a)
    engine.join(a.id, "g")
    engine.leave(a.id, "other")
    assert drain(engine, a) == []
    assert engine.view("g")[0].index == 1


def test_leave_sends_a_self_leave_and_tells_the_others() -> None:
    engine = Engine(start_time=START)
    a, b = open_(engine, "a"), open_(engine, "b")
    engine.join(a.id, "g")
    engine.join(b.id, "g")
    drain(engine, a)
    drain(engine, b)
    engine.leave(a.id, "g")
    assert drain(engine, a) == [SelfLeave("g")]
    assert drain(engine, b) == [reg("g", 3, ("#b#localhost",), Cause.LEAVE, "#a#localhost")]
    assert engine.groups_of(a.id) == frozenset()


def test_disconnect_walks_the_groups_in_name_order() -> None:
    engine = Engine(start_time=START)
    a, b = open_(engine, "a"), open_(engine, "b")
    for group in ("zz", "Ab", "m"):
        engine.join(a.id, group)
        engine.join(b.id, group)
    drain(engine, b)
    engine.close_session(a.id)
    got = drain(engine, b)
    assert [m.group for m in got if isinstance(m, RegularMembership)] == ["Ab", "m", "zz"]
    assert all(
        isinstance(m, RegularMembership)
        and m.cause is Cause.DISCONNECT
        and m.changed_member == "#a#localhost"
        and m.members == ("#b#localhost",)
        and m.group_id.index == 3
        for m in got
    )
    engine.close_session(a.id)  # twice: ignored
    with pytest.raises(KeyError):
        engine.session(a.id)


def test_group_ids_count_changes_and_repeat_after_the_group_empties() -> None:
    engine = Engine(start_time=START)
    a, b = open_(engine, "a"), open_(engine, "b")
    engine.join(a.id, "g")
    engine.join(b.id, "g")
    engine.leave(b.id, "g")
    engine.leave(a.id, "g")
    with pytest.raises(KeyError):
        engine.view("g")
    engine.join(a.id, "g")
    indexes = [m.group_id.index for m in drain(engine, a) if isinstance(m, RegularMembership)]
    assert indexes == [1, 2, 3, 1]  # docs/design/membership.md#group-ids-repeat


def test_no_membership_flag_gets_data_but_no_views() -> None:
    engine = Engine(start_time=START)
    quiet = open_(engine, "quiet", membership=False)
    talker = open_(engine, "talker")
    engine.join(quiet.id, "g")
    engine.join(talker.id, "g")
    engine.multicast(talker.id, ["g"], b"hi")
    engine.leave(quiet.id, "g")
    got = drain(engine, quiet)
    assert len(got) == 1
    assert isinstance(got[0], DataMessage)
    assert got[0].data == b"hi"


# --- data -------------------------------------------------------------------------------


def test_multicast_reaches_members_once_with_the_full_group_list() -> None:
    engine = Engine(start_time=START)
    a, b, c = open_(engine, "a"), open_(engine, "b"), open_(engine, "c")
    engine.join(a.id, "g1")
    engine.join(a.id, "g2")
    engine.join(b.id, "g2")
    for s in (a, b, c):
        drain(engine, s)
    groups = ["g1", "g2", "#a#localhost", "nobody"]
    count = engine.multicast(c.id, groups, b"x", service=int(ServiceType.SAFE), mess_type=-2)
    assert count == 2
    expected = DataMessage("#c#localhost", tuple(groups), ServiceType.SAFE, -2, b"x", False)
    assert drain(engine, a) == [expected]
    assert drain(engine, b) == [expected]
    assert drain(engine, c) == []  # an open group: a non-member may send, and gets nothing


def test_self_delivery_and_self_discard() -> None:
    engine = Engine(start_time=START)
    a = open_(engine, "a")
    engine.join(a.id, "g")
    drain(engine, a)
    engine.multicast(a.id, ["g"], b"1")
    engine.multicast(a.id, ["g"], b"2", service=int(ServiceType.AGREED | ServiceType.SELF_DISCARD))
    got = drain(engine, a)
    assert [m.data for m in got if isinstance(m, DataMessage)] == [b"1"]


def test_unknown_group_no_groups_and_hash_groups_go_nowhere() -> None:
    engine = Engine(start_time=START)
    a = open_(engine, "a")
    engine.join(a.id, "#weird")  # can be joined (docs/design/spread-protocol.md#names) ...
    drain(engine, a)
    assert engine.multicast(a.id, ["#weird"], b"x") == 0  # ... but nothing is delivered
    assert engine.multicast(a.id, ["unknown"], b"x") == 0
    assert engine.multicast(a.id, [], b"x") == 0
    assert drain(engine, a) == []


def test_unicast_to_a_private_group() -> None:
    engine = Engine(start_time=START)
    a, b = open_(engine, "a"), open_(engine, "b")
    assert engine.multicast(a.id, ["#b#localhost"], b"psst") == 1
    assert [m.data for m in drain(engine, b) if isinstance(m, DataMessage)] == [b"psst"]


def test_the_hint_is_passed_to_the_encoder_and_marks_endian_mismatch() -> None:
    seen: list[bytes | None] = []

    def encode(message: DaemonMessage, hint: bytes | None) -> tuple[bytes, ...]:
        seen.append(hint)
        return (b"wire",)

    engine = Engine(start_time=START, encode=encode)
    a = open_(engine, "a")
    engine.join(a.id, "g")
    engine.multicast(a.id, ["g"], b"", hint=b"\x00\x01\x02\x00")
    outputs = engine.take(a.id)
    assert seen == [None, b"\x00\x01\x02\x00"]
    assert [o.wire for o in outputs] == [(b"wire",), (b"wire",)]
    data = outputs[1].message
    assert isinstance(data, DataMessage)
    assert data.endian_mismatch


def test_one_output_object_is_shared_by_all_receivers() -> None:
    engine = Engine(start_time=START)
    sessions = [open_(engine, f"s{i}") for i in range(4)]
    for s in sessions:
        engine.join(s.id, "g")
    for s in sessions:
        engine.take(s.id)
    engine.multicast(sessions[0].id, ["g"], b"x")
    outputs = [engine.take(s.id)[0] for s in sessions]
    assert all(o is outputs[0] for o in outputs)


def test_ready_reports_sessions_whose_queue_was_empty() -> None:
    engine = Engine(start_time=START)
    a, b = open_(engine, "a"), open_(engine, "b")
    engine.join(a.id, "g")
    engine.join(b.id, "g")
    assert engine.pop_ready() == [a.id, b.id]
    engine.multicast(a.id, ["g"], b"x")
    assert engine.pop_ready() == []  # both queues were already non-empty
    engine.take(a.id)
    engine.multicast(a.id, ["g"], b"x")
    assert engine.pop_ready() == [a.id]


# --- the per-session queue limit --------------------------------------------------------


def test_a_session_over_the_limit_is_dropped_as_a_disconnect() -> None:
    engine = Engine(start_time=START, max_session_messages=5)
    slow, fast, sender = open_(engine, "slow"), open_(engine, "fast"), open_(engine, "send")
    engine.join(slow.id, "g")
    engine.join(fast.id, "g")
    engine.take(slow.id)
    for i in range(5):
        engine.multicast(sender.id, ["g"], b"%d" % i)
        engine.take(fast.id)
    assert engine.queued(slow.id) == 5
    assert engine.pop_dropped() == []
    engine.multicast(sender.id, ["g"], b"5")  # the sixth queued message
    assert engine.pop_dropped() == [slow.id]
    got = drain(engine, fast)
    assert isinstance(got[0], DataMessage)
    assert got[1] == reg("g", 3, ("#fast#localhost",), Cause.DISCONNECT, "#slow#localhost")
    assert slow not in engine.sessions()


def test_drops_cascade() -> None:
    engine = Engine(start_time=START, max_session_messages=1)
    a, b, c = open_(engine, "a"), open_(engine, "b"), open_(engine, "c")
    for s in (a, b, c):
        engine.join(s.id, "g")
    # a holds 3 joins, b 2, c 1; everyone but the newest is over the limit already
    assert sorted(engine.pop_dropped()) == [a.id, b.id]
    engine.take(c.id)
    assert engine.view("g")[1] == ("#c#localhost",)


# --- the total order (seeded simulation) ------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_random_traffic_keeps_one_order_and_identical_views(seed: int) -> None:
    # views and messages, interleaved, at every member (interleaving.py says what holds)
    engine = Engine(start_time=START, max_session_messages=10_000)
    sessions = [open_(engine, f"s{i}") for i in range(6)]
    groups = ["g1", "g2", "g3"]
    anchors = {"g1": [0, 1], "g2": [2], "g3": [3, 0]}
    setup, plan = random_traffic(random.Random(seed), len(sessions), groups, anchors, 400)
    received: dict[str, list[DaemonMessage]] = {s.private_group: [] for s in sessions}
    for step in setup + plan:
        s = sessions[step.client]
        if step.kind == "join":
            engine.join(s.id, step.groups[0])
        elif step.kind == "leave":
            engine.leave(s.id, step.groups[0])
        else:
            engine.multicast(s.id, list(step.groups), step.data)
        for other in sessions:
            received[other.private_group].extend(drain(engine, other))
    named = {g: [sessions[c].private_group for c in cs] for g, cs in anchors.items()}
    assert check_one_order(received, named) > 20  # episodes compared, visitors included


# --- virtual daemons and network changes ------------------------------------------------


D1, D2, D3 = daemon_proc_id("d1"), daemon_proc_id("d2"), daemon_proc_id("d3")


def two_daemons() -> tuple[Engine, SessionInfo, SessionInfo, SessionInfo, SessionInfo]:
    engine = Engine(daemons=("d1", "d2"), start_time=START)
    a2 = open_(engine, "aA2", daemon="d1")
    z1 = open_(engine, "zA1", daemon="d1")
    b2 = open_(engine, "AB2", daemon="d2")
    b1 = open_(engine, "bB1", daemon="d2")
    for s in (a2, z1, b2, b1):
        engine.join(s.id, "g")
    for s in (a2, z1, b2, b1):
        engine.take(s.id)
    return engine, a2, z1, b2, b1


def test_members_are_ordered_by_daemon_then_name() -> None:
    engine, *_ = two_daemons()
    gid, members = engine.view("g", "d2")
    assert members == ("#aA2#d1", "#zA1#d1", "#AB2#d2", "#bB1#d2")  # as on real daemons
    assert gid == GroupId(D1, START, 4)


def test_partition_sends_trans_then_reg_network_to_each_side() -> None:
    engine, a2, z1, b2, b1 = two_daemons()
    old = GroupId(D1, START, 4)
    engine.reconfigure([["d2"], ["d1"]], now=START + 10)
    assert engine.components() == (("d1",), ("d2",))
    d1_side = RegularMembership(
        "g", GroupId(D1, START + 10, 1), ("#aA2#d1", "#zA1#d1"), Cause.NETWORK,
        (("#aA2#d1", "#zA1#d1"),), 0,
    )  # fmt: skip
    d2_side = RegularMembership(
        "g", GroupId(D2, START + 10, 1), ("#AB2#d2", "#bB1#d2"), Cause.NETWORK,
        (("#AB2#d2", "#bB1#d2"),), 0,
    )  # fmt: skip
    for s in (a2, z1):
        assert drain(engine, s) == [TransitionalMembership("g", old), d1_side]
    for s in (b2, b1):
        assert drain(engine, s) == [TransitionalMembership("g", old), d2_side]
    assert d1_side.changed_member is None


def test_traffic_stays_inside_a_component_during_a_partition() -> None:
    engine, a2, z1, b2, b1 = two_daemons()
    engine.reconfigure([["d1"], ["d2"]], now=START + 10)
    for s in (a2, z1, b2, b1):
        engine.take(s.id)
    assert engine.multicast(a2.id, ["g", "#bB1#d2"], b"x") == 2
    assert drain(engine, b2) == drain(engine, b1) == []
    assert len(drain(engine, z1)) == 1
    # a join on one side is lightweight there and unseen on the other
    c = open_(engine, "c", daemon="d2")
    engine.join(c.id, "g")
    assert drain(engine, a2) != []  # a2's own message
    assert drain(engine, z1) == []
    got = drain(engine, b1)
    assert got == [
        RegularMembership(
            "g", GroupId(D2, START + 10, 2), ("#AB2#d2", "#bB1#d2", "#c#d2"), Cause.JOIN,
            (("#c#d2",),), 0,
        )
    ]  # fmt: skip


def test_merge_sends_reg_network_with_vs_sets_and_no_trans() -> None:
    engine, a2, z1, b2, b1 = two_daemons()
    engine.reconfigure([["d1"], ["d2"]], now=START + 10)
    for s in (a2, z1, b2, b1):
        engine.take(s.id)
    engine.reconfigure([["d1", "d2"]], now=START + 20)
    gid = GroupId(D1, START + 20, 1)
    members = ("#aA2#d1", "#zA1#d1", "#AB2#d2", "#bB1#d2")
    # sets ordered by the old views' ring ids: (D2, t) sorts before (D1, t) as D2 < D1
    assert D2 < D1
    sets = (("#AB2#d2", "#bB1#d2"), ("#aA2#d1", "#zA1#d1"))
    for s in (a2, z1):
        assert drain(engine, s) == [RegularMembership("g", gid, members, Cause.NETWORK, sets, 1)]
    for s in (b2, b1):
        assert drain(engine, s) == [RegularMembership("g", gid, members, Cause.NETWORK, sets, 0)]


def test_a_group_on_one_side_keeps_its_gid() -> None:
    engine = Engine(daemons=("d1", "d2"), start_time=START)
    a = open_(engine, "a", daemon="d1")
    engine.join(a.id, "g")
    engine.join(a.id, "g2")
    b = open_(engine, "b", daemon="d2")
    engine.join(b.id, "g2")
    engine.take(a.id)
    engine.reconfigure([["d1"], ["d2"]], now=START)
    got = drain(engine, a)
    assert [type(m) for m in got] == [TransitionalMembership, RegularMembership]
    assert all(m.group == "g2" for m in got)  # type: ignore[union-attr]
    assert engine.view("g", "d1")[0] == GroupId(D1, START, 1)
    # the new ring's time is kept strictly after the old one
    assert engine.ring("d1") == engine.ring("d1").__class__(D1, START + 1)
    engine.reconfigure([["d1", "d2"]], now=START)
    assert engine.view("g", "d1")[0] == GroupId(D1, START, 1)
    assert engine.view("g2", "d2")[0] == GroupId(D1, START + 2, 1)


def test_a_trans_goes_only_to_members_whose_view_lost_someone() -> None:
    engine = Engine(daemons=("d1", "d2", "d3"), start_time=START)
    engine.reconfigure([["d1", "d2"], ["d3"]], now=START + 5)
    a = open_(engine, "a", daemon="d1")
    b = open_(engine, "b", daemon="d2")
    c = open_(engine, "c", daemon="d3")
    for s in (a, b, c):
        engine.join(s.id, "g")
    for s in (a, b, c):
        engine.take(s.id)
    engine.reconfigure([["d1", "d3"], ["d2"]], now=START + 9)
    got_a, got_c = drain(engine, a), drain(engine, c)
    assert isinstance(got_a[0], TransitionalMembership)
    assert len(got_a) == 2
    assert len(got_c) == 1  # c's view lost no one: only the REG
    reg_a, reg_c = got_a[1], got_c[0]
    assert isinstance(reg_a, RegularMembership)
    assert isinstance(reg_c, RegularMembership)
    assert reg_a.members == reg_c.members == ("#a#d1", "#c#d3")
    assert reg_a.vs_sets == reg_c.vs_sets
    assert set(reg_a.vs_sets) == {("#a#d1",), ("#c#d3",)}
    assert reg_a.local_vs_members == ("#a#d1",)
    assert reg_c.local_vs_members == ("#c#d3",)
    assert drain(engine, b)[-1] == RegularMembership(
        "g", GroupId(D2, START + 9, 1), ("#b#d2",), Cause.NETWORK, (("#b#d2",),), 0
    )


def test_reconfigure_needs_every_daemon_once() -> None:
    engine = Engine(daemons=("d1", "d2"), start_time=START)
    for layout in ([["d1"]], [["d1"], ["d1", "d2"]], [["d1", "d2"], []], [["d1", "x"]]):
        with pytest.raises(ConfigurationError):
            engine.reconfigure(layout, now=START)


def pressing(engine: Engine) -> bool:
    return engine.pressing  # a call, so that mypy does not narrow the property


def test_ready_reports_a_queue_again_at_high_water() -> None:
    engine = Engine(start_time=START, max_session_messages=100, high_water=3)
    a = open_(engine, "a")
    engine.join(a.id, "g")
    assert pressing(engine) is False
    assert engine.pop_ready() == [a.id]
    engine.multicast(a.id, ["g"], b"1")
    assert pressing(engine) is False
    engine.multicast(a.id, ["g"], b"2")  # the third queued message
    assert pressing(engine) is True
    assert engine.pop_ready() == [a.id]
    assert pressing(engine) is False
    engine.multicast(a.id, ["g"], b"3")
    assert engine.pop_ready() == []
