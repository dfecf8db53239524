"""Named delivery bugs planted in the embedded daemon, each caught by the random traffic test.

Each bug wraps ``Engine.take`` (what the daemon hands one session) for one session, s4,
which is an anchor of no group, so it joins and leaves at random. The test then runs the
engine's seeded random traffic test (``test_engine.py``, the property of
``interleaving.py``) on every seed, and asserts that it fails on every seed where the bug
changed a delivery, and that the bug did change something on some seed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import test_engine as engine_tests

from spreadq.daemon.engine import Engine, Output, SessionId
from spreadq.wire.events import DataMessage, RegularMembership

VICTIM = "#s4#localhost"
SEEDS = range(5)


class Bug:
    """A change to what the victim is handed; ``fired`` counts the changes made."""

    fired = 0

    def __call__(self, outputs: list[Output]) -> list[Output]:
        raise NotImplementedError


class ViewOvertakesMessage(Bug):
    """A message is held back and handed over after the next view (of any group)."""

    def __init__(self) -> None:
        self.held: Output | None = None

    def __call__(self, outputs: list[Output]) -> list[Output]:
        out: list[Output] = []
        for output in outputs:
            if self.held is None and not self.fired and isinstance(output.message, DataMessage):
                self.held = output
                continue
            out.append(output)
            if self.held is not None and isinstance(output.message, RegularMembership):
                out.append(self.held)
                self.held = None
                self.fired += 1
        return out


class JoinerMissesAMessage(Bug):
    """The first message after each of the victim's own joins is never delivered."""

    def __init__(self) -> None:
        self.joined = False

    def __call__(self, outputs: list[Output]) -> list[Output]:
        out: list[Output] = []
        for output in outputs:
            message = output.message
            if isinstance(message, RegularMembership) and message.changed_member == VICTIM:
                self.joined = True
            elif self.joined and isinstance(message, DataMessage):
                self.joined = False
                self.fired += 1
                continue
            out.append(output)
        return out


class MessageTwice(Bug):
    """Every tenth message to the victim is delivered twice."""

    seen = 0

    def __call__(self, outputs: list[Output]) -> list[Output]:
        out: list[Output] = []
        for output in outputs:
            out.append(output)
            if isinstance(output.message, DataMessage):
                self.seen += 1
                if self.seen % 10 == 0:
                    out.append(output)
                    self.fired += 1
        return out


class MembersInAnotherOrder(Bug):
    """The victim's views of two or more members list them in reverse."""

    def __call__(self, outputs: list[Output]) -> list[Output]:
        out: list[Output] = []
        for output in outputs:
            message = output.message
            if isinstance(message, RegularMembership) and len(message.members) > 1:
                reversed_view = dataclasses.replace(message, members=message.members[::-1])
                output = dataclasses.replace(output, message=reversed_view)
                self.fired += 1
            out.append(output)
        return out


class GroupsReorderedAtOneMember(Bug):
    """Two messages in a row for different groups reach the victim swapped: each group's
    own order is intact, the total order across groups is not."""

    def __init__(self) -> None:
        self.held: Output | None = None

    def __call__(self, outputs: list[Output]) -> list[Output]:
        out: list[Output] = []
        for output in outputs:
            message = output.message
            if not isinstance(message, DataMessage):
                out.append(output)
                continue
            held = self.held
            if held is None:
                self.held = output
                continue
            assert isinstance(held.message, DataMessage)
            if set(held.message.groups).isdisjoint(message.groups):
                out += [output, held]
                self.fired += 1
            else:
                out += [held, output]
            self.held = None
        return out


BUGS: dict[str, Callable[[], Bug]] = {
    "view_overtakes_message": ViewOvertakesMessage,
    "joiner_misses_a_message": JoinerMissesAMessage,
    "message_twice": MessageTwice,
    "members_in_another_order": MembersInAnotherOrder,
    "groups_reordered_at_one_member": GroupsReorderedAtOneMember,
}


@pytest.mark.parametrize("name", sorted(BUGS))
def test_the_random_traffic_test_catches(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    original = Engine.take
    bugs: list[Bug] = []  # the one planted in the current run

    def take(self: Engine, session_id: SessionId) -> list[Output]:
        outputs = original(self, session_id)
        if self.session(session_id).private_group == VICTIM:
            return bugs[-1](list(outputs))
        return outputs

    monkeypatch.setattr(Engine, "take", take)
    fired_on = []
    for seed in SEEDS:
        bugs.append(BUGS[name]())
        try:
            engine_tests.test_random_traffic_keeps_one_order_and_identical_views(seed)
        except AssertionError:
            caught = True
        else:
            caught = False
        if bugs[-1].fired:
            fired_on.append(seed)
            assert caught, f"{name} changed {bugs[-1].fired} deliveries on seed {seed}, unnoticed"
    assert fired_on, f"{name} never fired"
