"""The queue protocol's names and rules, both sides use: queue groups, priorities,
observer names, each refusal with its reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spreadq.errors import ConfigurationError, InvalidName
from spreadq.queue.protocol import (
    MAX_PRIORITY,
    MAX_QUEUE_NAME,
    MIN_PRIORITY,
    PRIORITY_HEADER,
    check_priority,
    observer_name,
    queue_groups,
    read_priority,
)


@given(st.integers(MIN_PRIORITY, MAX_PRIORITY))
def test_every_priority_in_range_is_taken_and_read_back(priority: int) -> None:
    assert check_priority(priority) == priority
    assert read_priority({PRIORITY_HEADER: str(priority)}) == priority


@pytest.mark.parametrize(
    ("priority", "message"),
    [
        (MIN_PRIORITY - 1, r"^priority must be in -100\.\.100, not -101$"),
        (MAX_PRIORITY + 1, r"^priority must be in -100\.\.100, not 101$"),
        (True, r"^priority must be an int, not True$"),
        (1.0, r"^priority must be an int, not 1\.0$"),
        ("1", r"^priority must be an int, not '1'$"),
    ],
)
def test_a_priority_out_of_range_or_not_an_int_is_refused(priority: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_priority(priority)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "headers",
    [{}, {"other": "5"}, {PRIORITY_HEADER: "high"}, {PRIORITY_HEADER: "101"}],
)
def test_a_job_without_a_readable_priority_runs_at_zero(headers: dict[str, str]) -> None:
    assert read_priority(headers) == 0


def test_queue_groups_name_the_work_and_feedback_groups() -> None:
    assert queue_groups("q") == ("q", "q~fb")
    longest = "q" * MAX_QUEUE_NAME
    assert queue_groups(longest) == (longest, longest + "~fb")


@pytest.mark.parametrize(
    ("queue", "message"),
    [
        (7, r"^a queue name is a str, got 7$"),
        (
            "",
            r"^invalid queue name '': queue names are 1 to 28 bytes \(the feedback group "
            r"adds '~fb' and Spread allows 31\)$",
        ),
        ("q" * (MAX_QUEUE_NAME + 1), r"queue names are 1 to 28 bytes"),
        ("a~b", r"^invalid queue name 'a~b': '~' is reserved"),
        ("a b", r"^invalid queue name 'a b': "),
        ("#q", r"^invalid queue name '#q': "),
    ],
)
def test_a_bad_queue_name_is_refused_with_its_reason(queue: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        queue_groups(queue)  # type: ignore[arg-type]


def test_an_observer_needs_a_tag() -> None:
    assert observer_name("top") == "~top"
    with pytest.raises(
        ConfigurationError,
        match=r"^invalid observer name '~': an observer's name needs a tag after the prefix$",
    ) as refused:
        observer_name("")
    cause = refused.value.__cause__
    assert isinstance(cause, InvalidName)
    assert cause.name == "~"
