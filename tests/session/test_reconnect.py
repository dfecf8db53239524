"""The reconnect policy (pure) and loop: delays, giving up, refusals, stopping."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint
from structlog.testing import capture_logs

from spreadq.errors import (
    CloseReason,
    ConnectError,
    ConnectionLost,
    ConnectRejected,
    CouldNotConnect,
)
from spreadq.logs import get_logger
from spreadq.session.reconnect import (
    RETRIED_REJECTS,
    Backoff,
    Reconnect,
    describe_address,
    is_retried,
)
from spreadq.settings import Settings
from spreadq.wire.constants import RejectCode

LOST = ConnectionLost(CloseReason.EOF)
REFUSED = CouldNotConnect("connection refused")


def test_delays_double_up_to_the_maximum_and_count_attempts() -> None:
    backoff = Backoff(initial=0.1, maximum=0.4)
    backoff.start(0.0)
    assert [backoff.next_delay(float(t)) for t in range(5)] == [0.1, 0.2, 0.4, 0.4, 0.4]
    assert backoff.attempts == 5


def test_max_attempts_gives_up_after_that_many_tries_in_a_row() -> None:
    backoff = Backoff(initial=1.0, maximum=1.0, max_attempts=2)
    backoff.start(0.0)
    assert backoff.next_delay(0.0) == 1.0
    assert backoff.next_delay(1.0) == 1.0
    assert backoff.next_delay(2.0) is None
    assert backoff.attempts == 2
    assert Backoff(initial=1.0, maximum=1.0, max_attempts=0).next_delay(0.0) is None


def test_the_timeout_caps_the_delay_and_then_gives_up() -> None:
    backoff = Backoff(initial=0.1, maximum=5.0, timeout=0.25)
    backoff.start(10.0)
    assert backoff.next_delay(10.0) == pytest.approx(0.1)
    assert backoff.next_delay(10.1) == pytest.approx(0.15)  # only what is left
    assert backoff.next_delay(10.25) is None
    assert backoff.unreachable_for(10.25) == pytest.approx(0.25)


def test_joining_starts_everything_over_from_the_next_loss() -> None:
    backoff = Backoff(initial=0.1, maximum=5.0, timeout=1.0)
    backoff.start(0.0)
    backoff.next_delay(0.5)
    backoff.next_delay(0.9)
    backoff.joined()
    assert backoff.attempts == 0
    assert backoff.next_delay(100.0) == 0.1  # unreachable since this loss, not since 0
    assert backoff.unreachable_for(100.5) == pytest.approx(0.5)


def test_from_settings() -> None:
    settings = Settings(
        reconnect_backoff_initial=0.5,
        reconnect_backoff_max=2.0,
        reconnect_max_attempts=1,
        connect_timeout=9.0,
    )
    backoff = Backoff.from_settings(settings)
    backoff.start(0.0)
    assert backoff.next_delay(8.0) == 0.5
    assert backoff.next_delay(8.0) is None  # one attempt only


def test_which_errors_are_retried() -> None:
    assert is_retried(LOST)
    assert is_retried(REFUSED)
    for code in RETRIED_REJECTS:
        assert is_retried(ConnectRejected(code))
    assert not is_retried(ConnectRejected(RejectCode.REJECT_AUTH))
    assert describe_address(None) == "4803 (the default)"
    assert describe_address("4804@h") == "4804@h"


def make(stop: anyio.Event, **policy: float | int | None) -> Reconnect:
    backoff = Backoff(initial=0.001, maximum=0.001, **policy)  # type: ignore[arg-type]
    return Reconnect(
        backoff, address="4804", log=get_logger("spreadq.test"), event_prefix="role", stop=stop
    )


async def test_the_loop_tries_again_after_a_failure_and_ends_after_a_good_session() -> None:
    stop = anyio.Event()
    reconnect = make(stop)
    tries: list[int] = []
    with capture_logs() as logs, anyio.fail_after(5):
        async for attempt in reconnect:
            tries.append(attempt)
            if attempt < 2:
                reconnect.failed(LOST if attempt == 0 else REFUSED)
    assert tries == [0, 1, 2]
    warnings = [entry for entry in logs if entry["event"] == "role_reconnecting"]
    assert [(w["attempt"], w["address"], w["error"]) for w in warnings] == [
        (1, "4804", str(LOST)),
        (2, "4804", str(REFUSED)),
    ]


async def fail_every_try(
    reconnect: Reconnect, error: Callable[[int], ConnectionLost | ConnectError]
) -> None:
    with anyio.fail_after(5):
        async for attempt in reconnect:
            reconnect.failed(error(attempt))


async def test_giving_up_raises_the_last_lost_session_from_the_connect_error() -> None:
    reconnect = make(anyio.Event(), max_attempts=1)
    with capture_logs() as logs, pytest.raises(ConnectionLost) as caught:
        await fail_every_try(reconnect, lambda attempt: LOST if attempt == 0 else REFUSED)
    assert caught.value is LOST
    assert caught.value.__cause__ is REFUSED
    gave_up = [entry for entry in logs if entry["event"] == "role_gave_up"]
    assert len(gave_up) == 1
    assert (gave_up[0]["attempts"], gave_up[0]["error"]) == (1, str(REFUSED))


async def test_giving_up_without_a_lost_session_raises_the_connect_error() -> None:
    reconnect = make(anyio.Event(), max_attempts=0)
    with pytest.raises(CouldNotConnect) as caught:
        await fail_every_try(reconnect, lambda _: REFUSED)
    assert caught.value is REFUSED


async def test_a_refusal_retrying_cannot_mend_is_raised_at_once() -> None:
    reconnect = make(anyio.Event())
    refused = ConnectRejected(RejectCode.REJECT_AUTH)
    with pytest.raises(ConnectRejected) as caught:
        await fail_every_try(reconnect, lambda _: refused)
    assert caught.value is refused


async def test_stop_ends_the_wait_for_the_next_try_at_once() -> None:
    stop = anyio.Event()
    backoff = Backoff(initial=60.0, maximum=60.0)
    reconnect = Reconnect(
        backoff, address=None, log=get_logger("spreadq.test"), event_prefix="role", stop=stop
    )
    tries: list[int] = []

    async def loop() -> None:
        async for attempt in reconnect:
            tries.append(attempt)
            reconnect.failed(LOST)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(loop)
            await wait_all_tasks_blocked()  # waiting out the 60 s delay
            stop.set()
    assert tries == [0]


async def test_a_failure_after_stop_ends_the_loop_without_waiting() -> None:
    stop = anyio.Event()
    reconnect = make(stop, max_attempts=0)  # would give up, but stopping wins
    async for _ in reconnect:
        stop.set()
        reconnect.failed(LOST)
        await checkpoint()
