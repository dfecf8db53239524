"""Observer names: the reserved private-name prefix that keeps ``spreadq top`` out of the
producers' window split."""

from __future__ import annotations

import pytest

from spreadq.errors import ConfigurationError
from spreadq.queue.protocol import OBSERVER_PREFIX, is_observer, observer_name


def test_an_observer_name_carries_the_prefix() -> None:
    assert observer_name("top1a2b") == OBSERVER_PREFIX + "top1a2b" == "~top1a2b"
    assert is_observer("#~top1a2b#daemon")
    assert not is_observer("#worker1#daemon")
    assert not is_observer("#w~x#daemon")  # only a leading ~ marks an observer


@pytest.mark.parametrize(
    ("tag", "reason"),
    [("", "needs a tag"), ("x" * 10, "at most 10 bytes"), ("a b", "only the bytes")],
)
def test_a_bad_tag_is_refused(tag: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        observer_name(tag)
