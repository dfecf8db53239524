"""Sealed envelopes: a shared-secret tag on every spreadq message of a queue.

Theory of operation
-------------------
Spread authenticates nobody (``docs/security.md``): anyone who reaches a daemon can
multicast to a queue's groups. When the members of a queue share a secret
(``Settings.secret``), each spreadq message is *sealed*: the version byte of its
preamble becomes :data:`SEALED_VERSION` and a tag follows the body::

    offset 0   b"SQ" | u8 version = 2 | u8 kind | u16 slots      (the same preamble)
    offset 6   the version-1 body, unchanged
    last 16    tag = HMAC-SHA256(secret, b"spreadq-seal\\0" + sender + b"\\0" + all bytes
                     before the tag)[:16]

``sender`` is the sender's Spread private group name as the daemon reports it (UTF-8),
so a sealed message multicast again by another member does not verify. The tag covers
the whole message, preamble included, once per Spread message: a producer packs many
jobs in one message and pays one HMAC for all of them. Unsealing checks the tag with
:func:`hmac.compare_digest` and gives back the version-1 message, which
:func:`~spreadq.queue.envelope.decode` reads as before. Messages of a queue without a
secret stay version 1, byte for byte; a reader without the secret cannot read a sealed
one (``decode`` refuses version 2), and the preamble's ``slots`` keeps its meaning.

A seal proves that the sender knows the secret and that the bytes are as sent. It
hides nothing (payloads travel in clear) and does not stop a member with the secret,
or anyone replaying a captured message, from sending it again.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from spreadq.errors import EnvelopeError, LocalProtocolError
from spreadq.queue.envelope import MAGIC, SEAL_SIZE, VERSION

__all__ = ["SEALED_VERSION", "SEAL_SIZE", "Seal", "is_spreadq"]

SEALED_VERSION: Final = 2
"""The preamble's version byte of a sealed envelope (a version-1 body and a tag)."""

_PLAIN: Final = MAGIC + bytes([VERSION])
_SEALED: Final = MAGIC + bytes([SEALED_VERSION])
_CONTEXT: Final = b"spreadq-seal\0"
_PREAMBLE_SIZE: Final = 6


def is_spreadq(data: bytes | memoryview) -> bool:
    """Whether ``data`` claims to be a spreadq envelope (starts with the magic); if not,
    it is a RAW message from a plain Spread program, which cannot be sealed."""
    return bytes(data[:2]) == MAGIC


class Seal:
    """Seals and unseals a queue's messages with its shared secret.

    Args:
        secret: the shared secret (any length; UTF-8 of ``Settings.secret``).

    Raises:
        LocalProtocolError: an empty secret.
    """

    __slots__ = ("_mac",)

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise LocalProtocolError("a seal needs a non-empty secret")
        self._mac = hmac.new(secret, _CONTEXT, hashlib.sha256)

    def __repr__(self) -> str:
        return "Seal(<secret>)"

    def _tag(self, sender: str, head: bytes | memoryview) -> bytes:
        mac = self._mac.copy()
        mac.update(sender.encode("utf-8", "surrogatepass"))
        mac.update(b"\0")
        mac.update(head)
        return mac.digest()[:SEAL_SIZE]

    def seal(self, data: bytes, sender: str) -> bytes:
        """Seal a version-1 envelope that ``sender`` (our private group) will multicast.

        Raises:
            LocalProtocolError: ``data`` is not a version-1 spreadq envelope.
        """
        if data[:3] != _PLAIN or len(data) < _PREAMBLE_SIZE:
            raise LocalProtocolError("only a version-1 spreadq envelope can be sealed")
        head = _SEALED + data[3:]
        return head + self._tag(sender, head)

    def unseal(self, data: bytes | memoryview, sender: str) -> bytes:
        """Check a sealed envelope from ``sender``; return the version-1 envelope inside.

        Raises:
            EnvelopeError: RAW data, a version-1 (unsealed) envelope, a message too
                short, or a tag that does not verify (another secret, another sender,
                or altered bytes). The message says which.
        """
        view = memoryview(data)
        start = bytes(view[:3])
        if start[:2] != MAGIC:
            raise EnvelopeError("not a spreadq envelope (RAW data cannot be sealed)")
        if start != _SEALED:
            version = start[2] if len(start) > 2 else "missing"
            raise EnvelopeError(f"an unsealed envelope (version {version})")
        if len(view) < _PREAMBLE_SIZE + SEAL_SIZE:
            raise EnvelopeError("a sealed envelope too short to hold its tag")
        head = view[: len(view) - SEAL_SIZE]
        expected = self._tag(sender, head)
        if not hmac.compare_digest(expected, view[len(view) - SEAL_SIZE :]):
            raise EnvelopeError("the seal does not verify (another secret, or altered)")
        return _PLAIN + head[3:]
