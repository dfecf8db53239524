"""Byte layouts of the Spread client protocol: precompiled structs and pack/unpack helpers.

Theory of operation
-------------------
Every message after the handshake is a 48-byte header, ``32 * num_groups`` bytes of
NUL-padded names and ``data_len`` bytes of data (docs/design/spread-protocol.md#the-message-header).
There is no fixed byte order: each writer uses its own and says which by the marker bits
``0x80000080`` in ``type`` (set = little-endian). The marker in ``hint`` describes ``hint``
alone, because a daemon forwards the sender's hint untouched [Byte order]. So this module reads
any byte order, always writes little-endian with the marker set (what x86 daemons and
clients write), and keeps ``hint`` as its four raw bytes so that a daemon can pass it
through.

These helpers know nothing about sessions or states; they raise
:class:`~spreadq.errors.RemoteProtocolError` for bytes that cannot be decoded and
:class:`~spreadq.errors.LocalProtocolError` for values that cannot be encoded. Checks
that need the whole message (sizes, service bits) live in the session modules.

Names in brackets, such as [Byte order], are sections of ``docs/design/spread-protocol.md``
(or, prefixed ``membership:``, of ``docs/design/membership.md``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final, NamedTuple

from spreadq.errors import LocalProtocolError, RemoteProtocolError
from spreadq.wire.constants import (
    AUTH_BLOCK_SIZE,
    AUTH_NAME_SIZE,
    ENDIAN_MARKER,
    GROUP_NAME_SIZE,
    HEADER_SIZE,
    MAX_AUTH_METHODS,
    MAX_GROUPS_PER_MESSAGE,
)
from spreadq.wire.events import GroupId

__all__ = [
    "GID",
    "GROUP",
    "HEADER_BE",
    "HEADER_LE",
    "HEADER_OUT",
    "HINT_MASK",
    "MARKER_HINT",
    "MEMBERSHIP_HEAD",
    "MEMBERSHIP_HEAD_SIZE",
    "MEMBERSHIP_V3_HEAD",
    "OLD_TYPE_SIZE",
    "U32_BE",
    "U32_LE",
    "Header",
    "decode_name",
    "group_struct",
    "hint_for",
    "is_little_endian",
    "mess_type_from_hint",
    "pack_auth_choice",
    "pack_groups",
    "pack_header",
    "pack_membership_body",
    "pack_membership_body_v3",
    "pack_old_type",
    "pack_transitional_body",
    "pad_name",
    "unpack_auth_choice",
    "unpack_groups",
    "unpack_header",
    "unpack_membership_body",
    "unpack_membership_body_v3",
    "unpack_old_type",
    "unpack_transitional_body",
]

# --- header [The message header] ------------------------------------------------------------------

HEADER_LE: Final = struct.Struct("<I32si4si")
"""``type``, ``private_group_name``, ``num_groups``, raw ``hint``, ``data_len`` (LE)."""
HEADER_BE: Final = struct.Struct(">I32si4si")
"""The same header written by a big-endian peer (marker clear)."""
HEADER_OUT: Final = struct.Struct("<I32siIi")
"""The header as spreadq writes it: LE, the hint as a number (marker included)."""
assert HEADER_LE.size == HEADER_BE.size == HEADER_OUT.size == HEADER_SIZE

U32_LE: Final = struct.Struct("<I")
U32_BE: Final = struct.Struct(">I")
HINT_MASK: Final = 0x00FFFF00
"""Bits of ``hint`` that carry ``mess_type``; with the marker, all a hint may hold
[What a daemon refuses]."""
MARKER_HINT: Final = U32_LE.pack(ENDIAN_MARKER)
"""A hint with ``mess_type`` 0: ``80 00 00 80`` (the same in both orders)."""
_MARKER_MASK: Final = 0xFFFFFFFF & ~ENDIAN_MARKER
OLD_TYPE_SIZE: Final = 4
"""The reject message's extra ``old_type`` field after the header [Daemon → client]."""


class Header(NamedTuple):
    """A decoded header; ``type`` has the marker removed and ``hint`` is raw."""

    type: int
    sender: bytes
    num_groups: int
    hint: bytes
    data_len: int
    little_endian: bool


def is_little_endian(first_byte: int) -> bool:
    """Whether a field whose first byte is ``first_byte`` was written little-endian.

    The marker ``0x80000080`` looks the same under byte swapping, so bit 7 of the
    field's first byte tells the order [Byte order].
    """
    return bool(first_byte & 0x80)


def unpack_header(buffer: bytes | bytearray | memoryview, offset: int = 0) -> Header:
    """Decode the 48-byte header at ``offset`` in either byte order.

    Raises:
        RemoteProtocolError: fewer than 48 bytes, or a negative ``num_groups`` or
            ``data_len``.
    """
    if len(buffer) - offset < HEADER_SIZE:
        raise RemoteProtocolError(f"a header is {HEADER_SIZE} bytes, got {len(buffer) - offset}")
    little = bool(buffer[offset] & 0x80)
    layout = HEADER_LE if little else HEADER_BE
    type_, sender, num_groups, hint, data_len = layout.unpack_from(buffer, offset)
    if num_groups < 0 or data_len < 0:
        raise RemoteProtocolError(
            f"header with num_groups={num_groups} and data_len={data_len}; neither may be negative"
        )
    return Header(type_ & _MARKER_MASK, sender, num_groups, hint, data_len, little)


def hint_for(mess_type: int) -> int:
    """The LE hint (as a number, marker set) that carries ``mess_type``.

    Raises:
        LocalProtocolError: ``mess_type`` is not a signed 16-bit value.
    """
    if not -32768 <= mess_type <= 32767:
        raise LocalProtocolError(f"mess_type {mess_type} is not a signed 16-bit value")
    return ((mess_type << 8) & HINT_MASK) | ENDIAN_MARKER


def mess_type_from_hint(hint: bytes) -> tuple[int, bool]:
    """``(mess_type, little_endian)`` from a raw 4-byte hint, read by its own marker.

    ``mess_type`` is signed 16-bit: ``80 ff ff 80`` is -1 and ``80 00 80 80`` is -32768
    [Byte order]. ``little_endian`` is false when the sender wrote its hint big-endian.

    Raises:
        RemoteProtocolError: ``hint`` is not 4 bytes long.
    """
    if len(hint) != 4:
        raise RemoteProtocolError(f"a hint is 4 bytes, got {len(hint)}")
    little = bool(hint[0] & 0x80)
    value = ((int.from_bytes(hint, "little" if little else "big")) >> 8) & 0xFFFF
    return (value - 0x10000 if value & 0x8000 else value), little


def pack_header(
    type_: int, sender: bytes, num_groups: int, hint: int | bytes, data_len: int
) -> bytes:
    """Encode a header LE with the marker set in ``type``.

    ``sender`` is the unpadded name (at most 31 bytes). ``hint`` is either a number
    (see :func:`hint_for`), written LE, or four raw bytes passed through unchanged.

    Raises:
        LocalProtocolError: ``sender`` longer than 31 bytes or a raw hint not 4 bytes.
    """
    if len(sender) >= GROUP_NAME_SIZE:
        raise LocalProtocolError(f"name {sender!r} is longer than {GROUP_NAME_SIZE - 1} bytes")
    if isinstance(hint, bytes):
        if len(hint) != 4:
            raise LocalProtocolError(f"a raw hint is 4 bytes, got {len(hint)}")
        return HEADER_LE.pack(type_ | ENDIAN_MARKER, sender, num_groups, hint, data_len)
    return HEADER_OUT.pack(type_ | ENDIAN_MARKER, sender, num_groups, hint, data_len)


# --- names and group lists [Names; The message header] --------------------------------------------

GROUP: Final = struct.Struct("32s")
_GROUPS_N: Final = tuple(struct.Struct("32s" * n) for n in range(MAX_GROUPS_PER_MESSAGE + 1))


def group_struct(count: int) -> struct.Struct:
    """A struct of ``count`` consecutive 32-byte name fields (precompiled up to 100)."""
    if count < len(_GROUPS_N):
        return _GROUPS_N[count]
    return struct.Struct("32s" * count)


def pad_name(name: bytes) -> bytes:
    """``name`` NUL-padded to a 32-byte wire field.

    Raises:
        LocalProtocolError: ``name`` is longer than 31 bytes.
    """
    if len(name) >= GROUP_NAME_SIZE:
        raise LocalProtocolError(f"name {name!r} is longer than {GROUP_NAME_SIZE - 1} bytes")
    return name.ljust(GROUP_NAME_SIZE, b"\0")


def decode_name(field: bytes, *, strict: bool) -> str:
    """A name from its 32-byte field: the bytes up to the first NUL, as Latin-1.

    With ``strict`` (names from a client), a field with no NUL is refused, because the
    real daemon would overflow a buffer on it
    (docs/design/spread-protocol.md#what-a-daemon-refuses). Otherwise all 32 bytes are the
    name, as a C reader would see them.

    Raises:
        RemoteProtocolError: ``strict`` and the field holds no NUL.
    """
    end = field.find(b"\0")
    if end < 0:
        if strict:
            raise RemoteProtocolError(f"name field {field!r} has no NUL in {GROUP_NAME_SIZE} bytes")
        end = len(field)
    return field[:end].decode("latin-1")


def pack_groups(names: Sequence[bytes]) -> bytes:
    """Encode names (unpadded, at most 31 bytes each) as consecutive 32-byte fields.

    Raises:
        LocalProtocolError: a name longer than 31 bytes.
    """
    for name in names:
        if len(name) >= GROUP_NAME_SIZE:
            raise LocalProtocolError(f"name {name!r} is longer than {GROUP_NAME_SIZE - 1} bytes")
    return group_struct(len(names)).pack(*names)


def unpack_groups(
    buffer: bytes | bytearray | memoryview, offset: int, count: int, *, strict: bool
) -> tuple[str, ...]:
    """Decode ``count`` 32-byte name fields starting at ``offset``.

    Raises:
        RemoteProtocolError: the buffer is too short, or ``strict`` and a field has no NUL.
    """
    if count < 0 or len(buffer) - offset < count * GROUP_NAME_SIZE:
        raise RemoteProtocolError(f"{count} group names do not fit in the message")
    fields = group_struct(count).unpack_from(buffer, offset)
    return tuple([decode_name(field, strict=strict) for field in fields])


# --- membership bodies [Daemon → client; Versions] ------------------------------------------------

GID: Final = struct.Struct("<iii")
_GID_BE: Final = struct.Struct(">iii")
MEMBERSHIP_HEAD: Final = struct.Struct("<iiiII")
"""gid (3 x i32), ``num_vs_sets``, ``local_vs_set_offset`` (LE)."""
_MEMBERSHIP_HEAD_BE: Final = struct.Struct(">iiiII")
MEMBERSHIP_HEAD_SIZE: Final = MEMBERSHIP_HEAD.size
MEMBERSHIP_V3_HEAD: Final = struct.Struct("<iiii")
"""3.x: gid (3 x i32) and ``num_vs`` (LE)."""
_MEMBERSHIP_V3_HEAD_BE: Final = struct.Struct(">iiii")


def pack_membership_body(
    group_id: GroupId, vs_sets: Sequence[Sequence[bytes]], local_vs_set: int
) -> bytes:
    """The 4.x/5.x regular-membership body: gid, sets, and the offset of set ``local_vs_set``.

    The offset is counted in bytes from offset 20, the start of the first set [Daemon → client].

    Raises:
        LocalProtocolError: ``local_vs_set`` does not index ``vs_sets`` (0 is allowed
            when there are no sets), or a name longer than 31 bytes.
    """
    if not (0 <= local_vs_set < len(vs_sets) or (local_vs_set == 0 and not vs_sets)):
        raise LocalProtocolError(f"local vs set {local_vs_set} is not one of {len(vs_sets)} sets")
    parts: list[bytes] = []
    offset = 0
    local_offset = 0
    for index, names in enumerate(vs_sets):
        if index == local_vs_set:
            local_offset = offset
        chunk = U32_LE.pack(len(names)) + pack_groups(names)
        parts.append(chunk)
        offset += len(chunk)
    head = MEMBERSHIP_HEAD.pack(
        group_id.proc_id, group_id.time, group_id.index, len(vs_sets), local_offset
    )
    return head + b"".join(parts)


def unpack_membership_body(
    body: bytes | bytearray | memoryview, little_endian: bool
) -> tuple[GroupId, tuple[tuple[str, ...], ...], int]:
    """``(group_id, vs_sets, local_vs_set index)`` from a 4.x/5.x membership body.

    Raises:
        RemoteProtocolError: the body is truncated, has bytes left over, or its
            ``local_vs_set_offset`` is not the start of one of its sets.
    """
    size = len(body)
    if size < MEMBERSHIP_HEAD_SIZE:
        raise RemoteProtocolError(
            f"a membership body is at least {MEMBERSHIP_HEAD_SIZE} bytes, got {size}"
        )
    head = MEMBERSHIP_HEAD if little_endian else _MEMBERSHIP_HEAD_BE
    u32 = U32_LE if little_endian else U32_BE
    proc_id, time, index, num_sets, local_offset = head.unpack_from(body, 0)
    if num_sets > (size - MEMBERSHIP_HEAD_SIZE) // 4:
        raise RemoteProtocolError(f"{num_sets} vs sets cannot fit in a {size}-byte body")
    sets: list[tuple[str, ...]] = []
    local_index = -1 if num_sets else 0
    if local_offset and not num_sets:
        raise RemoteProtocolError(f"local vs set offset {local_offset} with no vs sets")
    position = MEMBERSHIP_HEAD_SIZE
    for set_index in range(num_sets):
        if position - MEMBERSHIP_HEAD_SIZE == local_offset:
            local_index = set_index
        if size - position < 4:
            raise RemoteProtocolError("membership body ends inside a vs set count")
        (count,) = u32.unpack_from(body, position)
        position += 4
        if count > (size - position) // GROUP_NAME_SIZE:
            raise RemoteProtocolError(f"vs set of {count} names does not fit in the body")
        sets.append(unpack_groups(body, position, count, strict=False))
        position += count * GROUP_NAME_SIZE
    if position != size:
        raise RemoteProtocolError(
            f"membership body has {size - position} bytes after its {num_sets} vs sets"
        )
    if local_index < 0:
        raise RemoteProtocolError(
            f"local vs set offset {local_offset} is not the start of any vs set"
        )
    return GroupId(proc_id, time, index), tuple(sets), local_index


def pack_membership_body_v3(group_id: GroupId, names: Sequence[bytes]) -> bytes:
    """The 3.x regular-membership body: gid, ``num_vs`` and the receiver's vs set [Versions].

    Raises:
        LocalProtocolError: a name longer than 31 bytes.
    """
    head = MEMBERSHIP_V3_HEAD.pack(group_id.proc_id, group_id.time, group_id.index, len(names))
    return head + pack_groups(names)


def unpack_membership_body_v3(
    body: bytes | bytearray | memoryview, little_endian: bool
) -> tuple[GroupId, tuple[str, ...]]:
    """``(group_id, vs_set)`` from a 3.x membership body.

    Raises:
        RemoteProtocolError: the body is truncated or has bytes left over.
    """
    size = len(body)
    head = MEMBERSHIP_V3_HEAD if little_endian else _MEMBERSHIP_V3_HEAD_BE
    if size < head.size:
        raise RemoteProtocolError(f"a 3.x membership body is at least {head.size} bytes")
    proc_id, time, index, count = head.unpack_from(body, 0)
    if count < 0 or count * GROUP_NAME_SIZE != size - head.size:
        raise RemoteProtocolError(f"3.x membership body of {size} bytes cannot hold {count} names")
    names = unpack_groups(body, head.size, count, strict=False)
    return GroupId(proc_id, time, index), names


def pack_transitional_body(group_id: GroupId) -> bytes:
    """The transitional-membership body: the ending view's gid [Daemon → client]."""
    return GID.pack(group_id.proc_id, group_id.time, group_id.index)


def unpack_transitional_body(body: bytes | bytearray | memoryview, little_endian: bool) -> GroupId:
    """The gid in a transitional-membership body.

    Raises:
        RemoteProtocolError: the body is not 12 bytes.
    """
    if len(body) != GID.size:
        raise RemoteProtocolError(f"a transitional body is {GID.size} bytes, got {len(body)}")
    proc_id, time, index = (GID if little_endian else _GID_BE).unpack_from(body, 0)
    return GroupId(proc_id, time, index)


# --- reject message [Daemon → client] -------------------------------------------------------------


def pack_old_type(old_type: int) -> bytes:
    """The reject message's extra field: the refused type, LE with the marker."""
    return U32_LE.pack((old_type & _MARKER_MASK) | ENDIAN_MARKER)


def unpack_old_type(
    buffer: bytes | bytearray | memoryview, offset: int, little_endian: bool
) -> int:
    """The refused type from a reject message's extra field, marker removed.

    It is in the daemon's byte order, the same as the header's ``type``.

    Raises:
        RemoteProtocolError: fewer than 4 bytes at ``offset``.
    """
    if len(buffer) - offset < OLD_TYPE_SIZE:
        raise RemoteProtocolError("reject message ends inside its old_type field")
    (value,) = (U32_LE if little_endian else U32_BE).unpack_from(buffer, offset)
    return int(value) & _MARKER_MASK


# --- auth choice [The handshake] ------------------------------------------------------------------


def pack_auth_choice(methods: Sequence[bytes]) -> bytes:
    """The 90-byte auth choice: up to three NUL-padded 30-byte method names.

    Raises:
        LocalProtocolError: more than three methods or a name of 30 bytes or more.
    """
    if len(methods) > MAX_AUTH_METHODS:
        raise LocalProtocolError(f"at most {MAX_AUTH_METHODS} auth methods, got {len(methods)}")
    for method in methods:
        if not 0 < len(method) < AUTH_NAME_SIZE:
            raise LocalProtocolError(f"auth method name {method!r} must be 1..29 bytes")
    return b"".join(method.ljust(AUTH_NAME_SIZE, b"\0") for method in methods).ljust(
        AUTH_BLOCK_SIZE, b"\0"
    )


def unpack_auth_choice(block: bytes | bytearray | memoryview) -> tuple[str, ...]:
    """The non-empty method names in a 90-byte auth choice, in slot order.

    Raises:
        RemoteProtocolError: the block is not 90 bytes.
    """
    raw = bytes(block)
    if len(raw) != AUTH_BLOCK_SIZE:
        raise RemoteProtocolError(f"an auth choice is {AUTH_BLOCK_SIZE} bytes, got {len(raw)}")
    names = []
    for start in range(0, AUTH_BLOCK_SIZE, AUTH_NAME_SIZE):
        slot = raw[start : start + AUTH_NAME_SIZE]
        end = slot.find(b"\0")
        name = slot if end < 0 else slot[:end]
        if name:
            names.append(name.decode("latin-1"))
    return tuple(names)
