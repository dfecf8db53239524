"""Ownership rules: one owner among the offered members, pure and process-independent,
round robin exactly k mod n, key affinity moves only the departed member's keys, least
loaded breaks ties by list order."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from spreadq.queue.jobs import Job, JobRef
from spreadq.queue.rules import (
    FillFirst,
    HeadroomRule,
    JoblessRule,
    LoadRule,
    MessageRule,
    Rule,
    RuleState,
    SlotRule,
    SlotState,
    builtin_rules,
    keeps_key_order,
)
from spreadq.queue.rules.key_affinity import KeyAffinity, weight
from spreadq.queue.rules.least_loaded import LeastLoaded
from spreadq.queue.rules.round_robin import RoundRobin
from spreadq.queue.rules.sticky import Sticky

RULES = builtin_rules()
names = st.text(st.characters(min_codepoint=36, max_codepoint=126), min_size=1, max_size=12)
member_lists = st.lists(names, min_size=1, max_size=8, unique=True).map(tuple)
keys = st.none() | st.text(max_size=16)


def job(key: str | None = None, seq: int = 0) -> Job:
    return Job(JobRef(b"p" * 16, seq), "kind", key, "json", b"")


def state_with(
    index: int, loads: dict[str, int] | None = None, capacities: dict[str, int] | None = None
) -> SlotState:
    state = SlotState(capacities)
    for member, load in (loads or {}).items():
        for _ in range(load):
            state.assigned(member)
    state.index = index
    return state


def test_builtin_registry() -> None:
    rules = builtin_rules()
    assert list(rules) == ["round_robin", "key_affinity", "least_loaded", "sticky", "fill_first"]
    assert all(isinstance(rule, Rule) and rule.name == name for name, rule in rules.items())
    rules.pop("round_robin")
    assert "round_robin" in builtin_rules()  # a fresh dict every time, no shared registry


def test_which_rules_say_they_never_read_the_job() -> None:
    jobless = {name for name, rule in RULES.items() if isinstance(rule, JoblessRule)}
    assert jobless == {"round_robin", "least_loaded", "sticky", "fill_first"}  # not key_affinity


def test_which_rules_say_their_owner_is_the_slot_alone() -> None:
    slotted = {name for name, rule in RULES.items() if isinstance(rule, SlotRule)}
    assert slotted == {"round_robin"}  # least_loaded reads loads, key_affinity the key


def test_which_rules_say_their_owner_is_the_loads_alone() -> None:
    by_load = {name for name, rule in RULES.items() if isinstance(rule, LoadRule)}
    assert by_load == {"least_loaded", "fill_first"}


def test_which_rules_say_their_owner_is_the_message_alone() -> None:
    by_message = {name for name, rule in RULES.items() if isinstance(rule, MessageRule)}
    assert by_message == {"sticky"}


@given(
    members=member_lists,
    first=st.integers(0, 10_000),
    count=st.integers(0, 300),
    loads=st.lists(st.integers(0, 5), max_size=8),
)
def test_round_robin_owners_of_a_run_of_slots_are_its_owners_one_by_one(
    members: tuple[str, ...], first: int, count: int, loads: list[int]
) -> None:
    rule = RoundRobin()
    one_by_one = [
        rule.owner(members, state_with(first + i, dict(zip(members, loads, strict=False))), job())
        for i in range(count)
    ]
    assert list(rule.owners(members, first, count)) == one_by_one


def test_only_rules_that_say_so_keep_key_order() -> None:
    assert {name for name, rule in RULES.items() if keeps_key_order(rule)} == {"key_affinity"}

    @dataclass(frozen=True)
    class Sticky:  # a plugin's rule, named anything, that declares it
        name: str = "not_key_affinity"
        keeps_key_order: bool = True

        def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
            return members[0]

    @dataclass(frozen=True)
    class Named:  # the name alone means nothing
        name: str = "key_affinity"

        def owner(self, members: tuple[str, ...], state: RuleState, job: Job) -> str:
            return members[0]

    assert keeps_key_order(Sticky())
    assert not keeps_key_order(Sticky(keeps_key_order=False))
    assert not keeps_key_order(Named())


@pytest.mark.parametrize("name", ["round_robin", "least_loaded", "sticky", "fill_first"])
@given(
    members=member_lists,
    index=st.integers(0, 10_000),
    loads=st.lists(st.integers(0, 5), max_size=8),
    key=keys,
    seq=st.integers(0, 2**64 - 1),
)
def test_a_jobless_owner_is_the_owner_of_any_job(
    name: str, members: tuple[str, ...], index: int, loads: list[int], key: str | None, seq: int
) -> None:
    rule = RULES[name]
    assert isinstance(rule, JoblessRule)
    state = state_with(index, dict(zip(members, loads, strict=False)))
    assert rule.owner_without_job(members, state) == rule.owner(members, state, job(key, seq))


@pytest.mark.parametrize("name", sorted(RULES))
@given(
    members=member_lists,
    index=st.integers(0, 10_000),
    loads=st.lists(st.integers(0, 5), max_size=8),
    key=keys,
)
def test_exactly_one_owner_and_pure(
    name: str, members: tuple[str, ...], index: int, loads: list[int], key: str | None
) -> None:
    rule = RULES[name]
    load_map = dict(zip(members, loads, strict=False))
    owner = rule.owner(members, state_with(index, load_map), job(key))
    assert owner in members
    # same inputs, fresh objects (another replica): same owner
    again = builtin_rules()[name].owner(tuple(members), state_with(index, dict(load_map)), job(key))
    assert again == owner


@given(members=member_lists, index=st.integers(0, 10_000), key=keys)
def test_round_robin_is_k_mod_n(members: tuple[str, ...], index: int, key: str | None) -> None:
    assert RoundRobin().owner(members, state_with(index), job(key)) == members[index % len(members)]


def test_round_robin_worked_example() -> None:
    members = ("#a#h", "#b#h", "#c#h")
    owners = [RoundRobin().owner(members, state_with(k), job()) for k in range(6)]
    assert owners == ["#a#h", "#b#h", "#c#h", "#a#h", "#b#h", "#c#h"]
    assert RoundRobin().owner(("#a#h", "#c#h"), state_with(3), job()) == "#c#h"


@given(
    members=st.lists(names, min_size=2, max_size=8, unique=True).map(tuple),
    gone=st.integers(0, 7),
    job_keys=st.lists(st.text(max_size=8), min_size=1, max_size=30),
)
def test_key_affinity_moves_only_the_departed_members_keys(
    members: tuple[str, ...], gone: int, job_keys: list[str]
) -> None:
    rule = KeyAffinity()
    departed = members[gone % len(members)]
    after = tuple(m for m in members if m != departed)
    for key in job_keys:
        before_owner = rule.owner(members, state_with(0), job(key))
        after_owner = rule.owner(after, state_with(0), job(key))
        if before_owner != departed:
            assert after_owner == before_owner, key


@given(
    members=st.lists(names, min_size=1, max_size=8, unique=True).map(tuple),
    newcomer=names,
    at=st.integers(0, 8),
    job_keys=st.lists(st.text(max_size=8), min_size=1, max_size=30),
)
def test_key_affinity_moves_keys_only_to_a_newcomer(
    members: tuple[str, ...], newcomer: str, at: int, job_keys: list[str]
) -> None:
    assume(newcomer not in members)
    rule = KeyAffinity()
    at %= len(members) + 1
    joined = (*members[:at], newcomer, *members[at:])
    moved = 0
    for key in job_keys:
        before_owner = rule.owner(members, state_with(0), job(key))
        after_owner = rule.owner(joined, state_with(0), job(key))
        assert after_owner in (before_owner, newcomer), key
        moved += after_owner == newcomer
    # the newcomer takes exactly the keys it outweighs everyone on
    assert moved == sum(
        weight(newcomer, key) > max(weight(m, key) for m in members) for key in job_keys
    )


@given(members=member_lists, key=st.text(max_size=16))
def test_key_affinity_picks_the_heaviest_member(members: tuple[str, ...], key: str) -> None:
    owner = KeyAffinity().owner(members, state_with(0), job(key))
    assert weight(owner, key) == max(weight(member, key) for member in members)


@given(members=member_lists, index=st.integers(0, 100))
def test_key_affinity_without_key_is_round_robin(members: tuple[str, ...], index: int) -> None:
    assert (
        KeyAffinity().owner(members, state_with(index), job(None)) == members[index % len(members)]
    )


def test_key_affinity_spreads_keys() -> None:
    members = ("#a#h", "#b#h", "#c#h", "#d#h")
    counts = dict.fromkeys(members, 0)
    for n in range(400):
        counts[KeyAffinity().owner(members, state_with(0), job(f"key-{n}"))] += 1
    assert all(60 <= count <= 140 for count in counts.values()), counts


def test_key_affinity_does_not_depend_on_member_order() -> None:
    members = ("#a#h", "#b#h", "#c#h")
    for n in range(50):
        key = f"k{n}"
        assert KeyAffinity().owner(members, state_with(0), job(key)) == KeyAffinity().owner(
            members[::-1], state_with(0), job(key)
        )


_HASHSEED_SCRIPT = """
import json, sys
from spreadq.queue.jobs import Job, JobRef
from spreadq.queue.rules import SlotState, builtin_rules
members = ("#a#h", "#b#h", "#c#h", "#d#h", "#e#h")
out = {}
for name, rule in builtin_rules().items():
    owners = []
    for n in range(60):
        state = SlotState()
        state.index = n
        job = Job(JobRef(b"p" * 16, n), "k", f"key{n}", "j", b"")
        owners.append(rule.owner(members, state, job))
    out[name] = owners
json.dump(out, sys.stdout)
"""


def test_owners_do_not_depend_on_the_process_hash_seed() -> None:
    """Replicas are separate processes with different str hash seeds."""
    results = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", _HASHSEED_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        results.append(json.loads(proc.stdout))
    assert results[0] == results[1]
    # and the weights are the documented blake2b ones
    digest = hashlib.blake2b(b"#a#h\0key", digest_size=8).digest()
    assert weight("#a#h", "key") == int.from_bytes(digest, "big")


def test_least_loaded_picks_the_fewest_and_ties_by_list_order() -> None:
    members = ("#c#h", "#a#h", "#b#h")
    rule = LeastLoaded()
    assert rule.owner(members, state_with(0), job()) == "#c#h"
    assert rule.owner(members, state_with(0, {"#c#h": 1}), job()) == "#a#h"
    assert rule.owner(members, state_with(0, {"#c#h": 2, "#a#h": 1, "#b#h": 1}), job()) == "#a#h"
    assert rule.owner(members, state_with(0, {"#c#h": 1, "#a#h": 1, "#b#h": 0}), job()) == "#b#h"


@given(members=member_lists, loads=st.lists(st.integers(0, 5), max_size=8))
def test_least_loaded_property(members: tuple[str, ...], loads: list[int]) -> None:
    load_map = dict(zip(members, loads, strict=False))
    state = state_with(0, load_map)
    owner = LeastLoaded().owner(members, state, job())
    lowest = min(state.load(m) for m in members)
    assert state.load(owner) == lowest
    assert members.index(owner) == min(i for i, m in enumerate(members) if state.load(m) == lowest)


def test_least_loaded_worked_example() -> None:
    members = ("a", "b", "c")
    state = SlotState()
    owners = []
    for _ in range(3):
        owners.append(LeastLoaded().owner(members, state, job()))
        state.assigned(owners[-1])
    state.released("b")  # an ACK completed j2
    for _ in range(2):
        owners.append(LeastLoaded().owner(members, state, job()))
        state.assigned(owners[-1])
    assert owners == ["a", "b", "c", "b", "a"]


@pytest.mark.parametrize("room", [1, 2, 5, 256])
@pytest.mark.parametrize("rule_of", [lambda room: LeastLoaded(), lambda room: FillFirst(room=room)])
@given(
    members=member_lists,
    loads=st.lists(st.integers(0, 8), max_size=8),
    capacities=st.lists(st.integers(0, 2), max_size=8),  # 0: a member that said it is busy
    count=st.integers(0, 60),
)
def test_a_load_rule_gives_a_run_of_slots_the_owners_it_gives_one_by_one(
    rule_of: Callable[[int], LeastLoaded | FillFirst],
    room: int,
    members: tuple[str, ...],
    loads: list[int],
    capacities: list[int],
    count: int,
) -> None:
    rule = rule_of(room)
    announced = dict(zip(members, capacities, strict=False))
    state = state_with(0, dict(zip(members, loads, strict=False)), announced)
    at_once = list(rule.load_owners(members, state, count))
    one_by_one = []
    for _ in range(count):
        one_by_one.append(rule.owner_without_job(members, state))
        state.assigned(one_by_one[-1])
    assert at_once == one_by_one


@given(
    members=member_lists,
    loads=st.lists(st.integers(0, 6), max_size=8),
    capacities=st.lists(st.integers(0, 2), max_size=8),
    room=st.integers(1, 5),
)
def test_fill_first_takes_the_first_member_with_room_else_the_least_loaded(
    members: tuple[str, ...], loads: list[int], capacities: list[int], room: int
) -> None:
    announced = dict(zip(members, capacities, strict=False))
    state = state_with(0, dict(zip(members, loads, strict=False)), announced)
    owner = FillFirst(room=room).owner(members, state, job())
    # room: fewer than `room` jobs held, and no capacity of 0 announced (busy)
    with_room = [m for m in members if state.load(m) < room and announced.get(m) != 0]
    if with_room:
        assert owner == with_room[0]
    else:
        lowest = min(map(state.load, members))
        assert owner == next(m for m in members if state.load(m) == lowest)


def test_fill_first_worked_example() -> None:
    # the example in fill_first's docstring, room 2
    members = ("a", "b", "c")
    rule = FillFirst(room=2)
    state = SlotState()
    owners = []
    for _ in range(4):
        owners.append(rule.owner(members, state, job()))
        state.assigned(owners[-1])
    state.released("a", 2)  # an ACK from a completes j1 and j2
    for _ in range(5):
        owners.append(rule.owner(members, state, job()))
        state.assigned(owners[-1])
    assert owners == ["a", "a", "b", "b", "a", "a", "c", "c", "a"]


def test_fill_first_busy_worked_example() -> None:
    # the second example in fill_first's docstring: room 512, capacities announced
    members = ("a", "b", "c")
    rule = FillFirst()
    capacities = dict.fromkeys(members, 4)  # what the HELLOs said, as the table keeps it
    state = SlotState(capacities)
    owners = []
    for change in ({}, {"a": 0}, {}, {"b": 0}, {"a": 4}):
        capacities.update(change)
        owners.append(rule.owner(members, state, job()))
        state.assigned(owners[-1])
    assert owners == ["a", "b", "b", "c", "a"]
    assert rule.jobs_before(members, state, "c") == (512 - 2) + 0  # b is busy


def test_only_fill_first_says_how_many_jobs_go_to_others_first() -> None:
    assert {name for name, rule in RULES.items() if isinstance(rule, HeadroomRule)} == {
        "fill_first"
    }


@given(
    members=member_lists,
    loads=st.lists(st.integers(0, 6), max_size=8),
    capacities=st.lists(st.integers(0, 2), max_size=8),
    room=st.integers(1, 5),
    at=st.integers(0, 7),
)
def test_fill_first_gives_the_jobs_it_says_go_first_to_others(
    members: tuple[str, ...], loads: list[int], capacities: list[int], room: int, at: int
) -> None:
    member = members[at % len(members)]
    rule = FillFirst(room=room)
    announced = dict(zip(members, capacities, strict=False))
    state = state_with(0, dict(zip(members, loads, strict=False)), announced)
    before = rule.jobs_before(members, state, member)
    owners = list(rule.load_owners(members, state, before + 1))
    assert member not in owners[:before]  # those go to others, as it says
    earlier = [m for m in members[: members.index(member)] if announced.get(m) != 0]
    assert before == sum(max(0, room - state.load(m)) for m in earlier)
    if state.load(member) < room and announced.get(member) != 0:  # room of its own: next
        assert owners[before] == member


def test_fill_first_needs_room_for_one_job_at_least() -> None:
    with pytest.raises(ValueError, match="room must be at least 1, not 0"):
        FillFirst(room=0)


def test_slot_state_capacities_are_read_only_lookups() -> None:
    state = SlotState({"a": 4})
    assert (state.capacity("a"), state.capacity("b")) == (4, None)
    state.assigned("a")
    state.released("a")
    assert (state.index, state.load("a")) == (1, 0)


def test_key_affinity_takes_lone_surrogates_in_keys_and_names() -> None:
    # str keys may hold lone surrogates (from os.fsdecode, say): they hash, never raise
    key, member = "k\ud800", "#a\udfff#h"
    expected = hashlib.blake2b(
        member.encode("utf-8", "surrogatepass") + b"\0" + key.encode("utf-8", "surrogatepass"),
        digest_size=8,
    ).digest()
    assert weight(member, key) == int.from_bytes(expected, "big")
    members = (member, "#b#h", "#c\ud800#h")
    owner = KeyAffinity().owner(members, state_with(0), job(key))
    assert weight(owner, key) == max(weight(m, key) for m in members)


def test_slot_state_counts_from_zero() -> None:
    state = SlotState()
    assert (state.index, state.load("a"), state.capacity("a")) == (0, 0, None)
    state.assigned("a")
    state.assigned("b")
    state.assigned("a")
    assert (state.index, state.load("a"), state.load("b")) == (3, 2, 1)
    state.released("c")  # a job counted for a member that had none: below zero
    assert state.load("c") == -1


def in_message(index: int, message: int, first: int, count: int) -> SlotState:
    state = state_with(index)
    state.message, state.message_first, state.message_slots = message, first, count
    return state


@given(
    members=member_lists,
    message=st.integers(0, 10_000),
    first=st.integers(0, 10_000),
    count=st.integers(0, 300),
    run=st.integers(1, 64),
)
def test_sticky_owners_of_a_message_are_its_owners_one_by_one(
    members: tuple[str, ...], message: int, first: int, count: int, run: int
) -> None:
    rule = Sticky(run=run)
    one_by_one = [
        rule.owner(members, in_message(first + i, message, first, count), job())
        for i in range(count)
    ]
    assert list(rule.message_owners(members, message, count)) == one_by_one


@given(count=st.integers(0, 2000), run=st.integers(1, 64))
def test_sticky_cuts_a_message_into_the_fewest_parts_of_at_most_run_jobs_alike(
    count: int, run: int
) -> None:
    sizes = Sticky(run=run).sizes(count)
    assert sum(sizes) == count
    assert len(sizes) == -(-count // run)  # as few as can be
    assert all(0 < size <= run for size in sizes)
    assert not sizes or max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)


@given(members=member_lists, message=st.integers(0, 10_000), count=st.integers(1, 32))
def test_sticky_gives_a_message_of_one_run_to_member_m_mod_n(
    members: tuple[str, ...], message: int, count: int
) -> None:
    owners = Sticky().message_owners(members, message, count)
    assert set(owners) == {members[message % len(members)]}


def test_sticky_shares_a_long_message_out_in_parts_alike() -> None:
    owners = Sticky().message_owners(("a", "b", "c"), 1, 100)  # four parts of 25
    assert owners == ["b"] * 25 + ["c"] * 25 + ["a"] * 25 + ["b"] * 25
    assert Sticky().message_owners(("a", "b"), 0, 37) == ["a"] * 19 + ["b"] * 18


def test_sticky_worked_example() -> None:
    # the module's example: run 2; batches of 2, a RAW message, 3, then 1
    rule, members = Sticky(run=2), ("#a#h", "#b#h", "#c#h")
    state, owners = SlotState(), []
    for count in (2, 1, 3, 1):
        state.message_begins(count)
        for _ in range(count):
            owners.append(rule.owner_without_job(members, state))
            state.skip(1)
        state.message_ends()
    assert [o[1] for o in owners] == ["a", "a", "b", "c", "c", "a", "a"]
    assert state.message == 4


def test_sticky_reassigns_in_runs_at_failover() -> None:
    # a failover round's state has no messages: runs of ``run`` in the original order
    rule, state = Sticky(run=2), SlotState()
    owners = []
    for _ in range(5):
        owners.append(rule.owner_without_job(("x", "y"), state))
        state.assigned(owners[-1])
    assert owners == ["x", "x", "y", "y", "x"]


def test_sticky_needs_a_run_of_one_job_at_least() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Sticky(run=0)


def test_a_message_counts_only_when_it_took_a_slot() -> None:
    state = SlotState()
    state.message_begins(0)
    state.message_ends()  # an ACK, a VIEW: no slot
    assert (state.message, state.message_first) == (0, 0)
    state.message_begins(3)
    state.skip(3)
    state.message_ends()
    state.message_begins(5)
    assert (state.message, state.message_first, state.message_slots, state.index) == (1, 3, 5, 3)
