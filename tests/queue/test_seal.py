"""Sealed envelopes: round trips, and every way a seal must refuse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spreadq.errors import EnvelopeError, LocalProtocolError
from spreadq.queue.envelope import (
    MAX_ENVELOPE_SIZE,
    SEAL_SIZE,
    Ack,
    JobBatch,
    JobSpec,
    declared_slots,
    decode,
    encode,
    encode_batch,
)
from spreadq.queue.jobs import JobRef, Outcome
from spreadq.queue.seal import SEALED_VERSION, Seal, is_spreadq

PID = bytes(range(16))
SENDER = "#p#host"
SEAL = Seal(b"s3cret")


def batch(*payloads: bytes) -> bytes:
    specs = [JobSpec(seq, "kind", payload) for seq, payload in enumerate(payloads)]
    return encode_batch(PID, 7, "json", specs)


@given(st.lists(st.binary(max_size=64), min_size=1, max_size=8), st.text(max_size=31))
def test_a_sealed_message_unseals_to_the_same_bytes(payloads: list[bytes], sender: str) -> None:
    plain = batch(*payloads)
    sealed = SEAL.seal(plain, sender)
    assert len(sealed) == len(plain) + SEAL_SIZE
    assert sealed[:2] == b"SQ"
    assert sealed[2] == SEALED_VERSION
    assert sealed[3:6] == plain[3:6]  # kind and slots keep their place
    assert SEAL.unseal(sealed, sender) == plain
    assert SEAL.unseal(memoryview(sealed), sender) == plain


def test_without_a_secret_nothing_changes_and_decode_refuses_a_sealed_message() -> None:
    plain = batch(b"1", b"2")
    decoded = decode(plain)
    assert isinstance(decoded, JobBatch)
    sealed = SEAL.seal(plain, SENDER)
    with pytest.raises(EnvelopeError, match="sealed envelope"):
        decode(sealed)
    assert declared_slots(sealed) == 2  # a reader without the secret still counts slots


def test_every_forgery_is_refused_with_its_reason() -> None:
    plain = batch(b"job")
    sealed = SEAL.seal(plain, SENDER)
    with pytest.raises(EnvelopeError, match="unsealed"):
        SEAL.unseal(plain, SENDER)
    with pytest.raises(EnvelopeError, match="RAW"):
        SEAL.unseal(b"hello from a C program", SENDER)
    with pytest.raises(EnvelopeError, match="too short"):
        SEAL.unseal(sealed[:10], SENDER)
    with pytest.raises(EnvelopeError, match="does not verify"):
        SEAL.unseal(sealed, "#other#host")  # replayed under another name
    with pytest.raises(EnvelopeError, match="does not verify"):
        Seal(b"guess").unseal(sealed, SENDER)
    with pytest.raises(EnvelopeError, match="does not verify"):
        Seal(b"guess").unseal(Seal(b"guess").seal(plain, SENDER)[:-1] + b"\0", SENDER)


@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_any_changed_byte_breaks_the_seal(position: int, xor: int) -> None:
    outcome = Outcome.success(b"result")
    sealed = bytearray(SEAL.seal(encode(Ack(PID, ((JobRef(PID, 3), outcome),))), SENDER))
    position %= len(sealed)
    sealed[position] ^= xor or 1
    with pytest.raises(EnvelopeError):
        SEAL.unseal(bytes(sealed), SENDER)


def test_only_version_one_envelopes_are_sealed_and_the_secret_is_not_shown() -> None:
    with pytest.raises(LocalProtocolError):
        SEAL.seal(b"raw bytes", SENDER)
    with pytest.raises(LocalProtocolError):
        SEAL.seal(SEAL.seal(batch(b"x"), SENDER), SENDER)
    with pytest.raises(LocalProtocolError):
        Seal(b"")
    assert "s3cret" not in repr(SEAL)
    assert is_spreadq(batch(b"x"))
    assert not is_spreadq(b"plain spread data")


def test_the_cap_leaves_room_for_the_seal() -> None:
    # a message to two groups must stay under 140,000 bytes with 48 + 32 per group
    assert MAX_ENVELOPE_SIZE + SEAL_SIZE + 48 + 2 * 32 <= 140_000


def test_a_seal_is_pinned_bytes_that_other_versions_must_reproduce() -> None:
    # a worker and a producer of different releases must agree on every tag: the tag of
    # one batch with one secret and sender is fixed here
    plain = encode_batch(PID, 7, "json", [JobSpec(0, "kind", b"x")])
    sealed = Seal(b"s3cret").seal(plain, SENDER)
    assert sealed[-SEAL_SIZE:].hex() == "20bb3b40c33f96424c70af9675c4c679"
    assert sealed[:-SEAL_SIZE] == b"SQ" + bytes([SEALED_VERSION]) + plain[3:]


def test_a_sender_name_of_any_string_seals() -> None:
    lone = "#p\udcff#host"  # not valid UTF-8 on its own: still a distinct, sealable name
    sealed = SEAL.seal(batch(b"x"), lone)
    assert SEAL.unseal(sealed, lone) == batch(b"x")
    with pytest.raises(EnvelopeError, match="does not verify"):
        SEAL.unseal(sealed, "#p?#host")


def test_the_shortest_envelope_seals_and_unseals() -> None:
    preamble = batch(b"x")[:6]  # a preamble alone: the least a seal takes
    sealed = SEAL.seal(preamble, SENDER)
    assert len(sealed) == 6 + SEAL_SIZE
    assert SEAL.unseal(sealed, SENDER) == preamble
    with pytest.raises(LocalProtocolError, match=r"^only a version-1 spreadq envelope"):
        SEAL.seal(preamble[:5], SENDER)
    with pytest.raises(EnvelopeError, match=r"^a sealed envelope too short to hold its tag$"):
        SEAL.unseal(sealed[:-1], SENDER)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RAW bytes", r"^not a spreadq envelope \(RAW data cannot be sealed\)$"),
        (b"SQ", r"^an unsealed envelope \(version missing\)$"),
        (b"SQ\x01\x01\x00\x00", r"^an unsealed envelope \(version 1\)$"),
        (
            b"SQ\x02" + bytes(3 + SEAL_SIZE),
            r"^the seal does not verify \(another secret, or altered\)$",
        ),
    ],
)
def test_each_refusal_says_why(data: bytes, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        SEAL.unseal(data, SENDER)


def test_a_seal_needs_a_secret_and_never_shows_it() -> None:
    with pytest.raises(LocalProtocolError, match=r"^a seal needs a non-empty secret$"):
        Seal(b"")
    assert repr(SEAL) == "Seal(<secret>)"
    assert "s3cret" not in repr(SEAL)
