"""The checks the wire events make when they are built, each with its exact reason.

Written from the survivors of ``scripts/mutate src/spreadq/wire`` (docs/mutation.md).
"""

from __future__ import annotations

import re

import pytest

from spreadq.errors import InvalidName, LocalProtocolError
from spreadq.wire.constants import ServiceType
from spreadq.wire.events import CLOSED, NEED_DATA, Multicast, check_group_name


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


@pytest.mark.parametrize(
    ("name", "allow_private", "reason"),
    [
        ("gr\u00fcn", False, "group names are ASCII"),
        ("", False, "group names are 1 to 31 bytes"),
        ("g" * 32, False, "group names are 1 to 31 bytes"),
        (
            "#a#h",
            False,
            "a name starting with '#' is a private group; the daemon drops its traffic",
        ),
        ("#a", True, "a private group is '#<name>#<daemon>' of '$'..'~' bytes"),
        ("a b", False, "group names use only the bytes '$' (0x24) to '~' (0x7e)"),
    ],
)
def test_check_group_name_says_why(name: str, allow_private: bool, reason: str) -> None:
    with pytest.raises(InvalidName) as info:
        check_group_name(name, allow_private=allow_private)
    assert (info.value.name, info.value.reason) == (name, reason)


def test_check_group_name_returns_the_wire_bytes() -> None:
    assert check_group_name("g" * 31) == b"g" * 31
    assert check_group_name("#a#h", allow_private=True) == b"#a#h"
    assert check_group_name("$~") == b"$~"


@pytest.mark.parametrize(
    ("groups", "service", "message"),
    [
        ((), ServiceType.AGREED, "a multicast needs at least one destination group"),
        (("g",) * 101, ServiceType.AGREED, "a multicast names at most 100 groups, not 101"),
        (
            ("g",),
            ServiceType.SELF_DISCARD,
            f"a multicast needs exactly one delivery level, not {ServiceType.SELF_DISCARD!r}",
        ),
        (
            ("g",),
            ServiceType.FIFO | ServiceType.AGREED,
            "a multicast needs exactly one delivery level, "
            f"not {ServiceType.FIFO | ServiceType.AGREED!r}",
        ),
        (
            ("g",),
            ServiceType.SAFE | ServiceType.CAUSAL,
            "a multicast needs exactly one delivery level, "
            f"not {ServiceType.SAFE | ServiceType.CAUSAL!r}",
        ),
    ],
)
def test_a_multicast_needs_groups_and_one_level(
    groups: tuple[str, ...], service: ServiceType, message: str
) -> None:
    with pytest.raises(LocalProtocolError, match=exactly(message)):
        Multicast(groups, b"", service)


def test_a_multicast_with_a_bit_outside_the_levels() -> None:
    service = ServiceType(ServiceType.AGREED | 0x100)
    with pytest.raises(
        LocalProtocolError, match=exactly(f"service {service!r} has bits a client may not set")
    ):
        Multicast(("g",), b"", service)


@pytest.mark.parametrize("level", list(ServiceType)[:6])
def test_every_single_level_is_a_valid_multicast(level: ServiceType) -> None:
    assert Multicast(("g",), b"x", level).service is level
    both = level | ServiceType.SELF_DISCARD
    assert Multicast(("g",), b"x", both).service == both


def test_the_sentinels_print_their_names() -> None:
    assert (repr(NEED_DATA), repr(CLOSED)) == ("NEED_DATA", "CLOSED")


def test_unreliable_with_a_foreign_bit_is_a_foreign_bit() -> None:
    service = ServiceType(ServiceType.UNRELIABLE | 0x100)
    with pytest.raises(
        LocalProtocolError, match=exactly(f"service {service!r} has bits a client may not set")
    ):
        Multicast(("g",), b"", service)


@pytest.mark.parametrize("mess_type", [-32768, 32767])
def test_the_extreme_mess_types_are_valid(mess_type: int) -> None:
    assert Multicast(("g",), b"", ServiceType.AGREED, mess_type).mess_type == mess_type
