"""Translation of one group's daemon events into queue inputs, sealing included."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spreadq.errors import EnvelopeError
from spreadq.queue import ChangeCause, LeftGroup, MessageDelivered, Transitional, ViewInstalled
from spreadq.queue.envelope import Ack, JobSpec, encode, encode_batch
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.queue.seal import Seal
from spreadq.session.translate import (
    RAW_REFUSED,
    GroupTranslator,
    Refused,
    change_cause,
    read_envelope,
    unseal,
)
from spreadq.wire.constants import Cause, ServiceType
from spreadq.wire.events import (
    DataMessage,
    GroupId,
    RegularMembership,
    RejectedMessage,
    SelfLeave,
    TransitionalMembership,
)

WORK, FEEDBACK = "q", "q~fb"
PID = bytes(range(16))
SENDER = "#p#host"
SEAL = Seal(b"s3cret")
GID = GroupId(1, 2, 3)


def batch() -> bytes:
    return encode_batch(PID, 7, "json", [JobSpec(0, "kind", b"{}")])


def message(data: bytes, groups: tuple[str, ...] = (WORK,), sender: str = SENDER) -> DataMessage:
    return DataMessage(sender, groups, ServiceType.AGREED, 5, data)


def test_a_data_message_on_the_group_is_delivered_as_it_came() -> None:
    data = batch()
    event = message(data, (WORK, FEEDBACK))
    assert GroupTranslator(WORK).translate(event) == MessageDelivered(SENDER, 5, data)
    assert GroupTranslator(WORK).translate(message(data, (FEEDBACK,))) is None


def test_memberships_of_the_group_become_views_and_of_others_nothing() -> None:
    translator = GroupTranslator(WORK)
    joined = RegularMembership(WORK, GID, ("#a#h", "#b#h"), Cause.JOIN, (("#b#h",),))
    assert translator.translate(joined) == ViewInstalled(
        members=("#a#h", "#b#h"),
        group_id=(1, 2, 3),
        cause=ChangeCause.JOIN,
        changed_member="#b#h",
        vs_set=("#b#h",),
    )
    network = RegularMembership(
        WORK, GID, ("#a#h", "#b#h"), Cause.NETWORK, (("#b#h",), ("#a#h",)), local_vs_set=1
    )
    installed = translator.translate(network)
    assert isinstance(installed, ViewInstalled)
    assert (installed.cause, installed.changed_member, installed.vs_set) == (
        ChangeCause.NETWORK,
        None,
        ("#a#h",),
    )
    assert translator.translate(RegularMembership(FEEDBACK, GID, ("#a#h",), Cause.JOIN)) is None
    assert translator.translate(TransitionalMembership(WORK, GID)) == Transitional((1, 2, 3))
    assert translator.translate(TransitionalMembership(FEEDBACK, GID)) is None
    assert translator.translate(SelfLeave(WORK)) == LeftGroup()
    assert translator.translate(SelfLeave(FEEDBACK)) is None
    rejected = RejectedMessage(SENDER, (WORK,), 0, 5, b"x")
    assert translator.translate(rejected) is None


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (Cause.JOIN, ChangeCause.JOIN),
        (Cause.LEAVE, ChangeCause.LEAVE),
        (Cause.DISCONNECT, ChangeCause.DISCONNECT),
        (Cause.NETWORK, ChangeCause.NETWORK),
    ],
)
def test_change_causes(cause: Cause, expected: ChangeCause) -> None:
    assert change_cause(cause) is expected


@given(st.text(min_size=1, max_size=20).map(lambda name: f"#{name}#h"))
def test_with_a_secret_a_sealed_message_is_delivered_unsealed(sender: str) -> None:
    plain = batch()
    translator = GroupTranslator(WORK, SEAL)
    delivered = translator.translate(message(SEAL.seal(plain, sender), sender=sender))
    assert delivered == MessageDelivered(sender, 5, plain)


def test_with_a_secret_forgeries_and_raw_data_are_refused_with_the_reason() -> None:
    plain = batch()
    translator = GroupTranslator(WORK, SEAL)
    assert translator.translate(message(plain)) == Refused(
        SENDER, "an unsealed envelope (version 1)"
    )
    other = translator.translate(message(Seal(b"guess").seal(plain, SENDER)))
    assert isinstance(other, Refused)
    assert "does not verify" in other.reason
    replayed = translator.translate(message(SEAL.seal(plain, "#x#h")))
    assert isinstance(replayed, Refused)
    assert translator.translate(message(b"from a C program")) == Refused(SENDER, RAW_REFUSED)
    lenient = GroupTranslator(WORK, SEAL, accept_unsealed_raw=True)
    assert lenient.translate(message(b"from a C program")) == MessageDelivered(
        SENDER, 5, b"from a C program"
    )
    assert isinstance(lenient.translate(message(plain)), Refused)  # RAW only, not envelopes


def test_unseal_and_read_envelope() -> None:
    ack = Ack(PID, ((JobRef(PID, 3), Outcome.success(b"r")),))
    plain = encode(ack)
    assert unseal(message(plain), None) == plain
    assert read_envelope(message(plain), None) == ack
    assert read_envelope(message(SEAL.seal(plain, SENDER)), SEAL) == ack
    with pytest.raises(EnvelopeError, match="RAW message refused"):
        read_envelope(message(b"raw"), SEAL)
    with pytest.raises(EnvelopeError, match="unsealed"):
        read_envelope(message(plain), SEAL)
