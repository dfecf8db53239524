"""``spreadq.testing.run_app``: a user's App run in the test's loop on the embedded daemon,
every job through codecs, middleware, retries, timeouts and ``on_failure``."""

from __future__ import annotations

import anyio
import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs

import spreadq
from spreadq import App, Context, JobFailed, Settings
from spreadq.daemon import Daemon
from spreadq.middleware import CallNext
from spreadq.testing import run_app

WAIT = 10
FAST = Settings(retry_backoff_base=0.0, retry_jitter=0.0, ack_interval=0.005)


class Order(BaseModel):
    item: str
    quantity: int


class Receipt(BaseModel):
    item: str
    total: int
    attempt: int
    tagged: bool


def make_app() -> tuple[App, list[str]]:
    """An app whose middleware tags every result and whose on_failure hook records."""
    failures: list[str] = []
    app = App("orders", plugins=False, settings=FAST)

    async def tagging(ctx: Context, payload: object, call_next: CallNext) -> object:
        result = await call_next(ctx, payload)
        return result.model_copy(update={"tagged": True}) if isinstance(result, Receipt) else result

    app.middleware(tagging)

    @app.on_failure
    async def record(ctx: Context, error: BaseException) -> None:
        failures.append(f"{ctx.kind}:{type(error).__name__}:{ctx.attempt}")

    @app.handler("order", max_attempts=3)
    async def order(job: Order, ctx: Context) -> Receipt:
        if job.item == "flaky" and ctx.attempt < 3:
            raise ConnectionError("the stock service blinked")
        if job.quantity <= 0:
            raise ValueError(f"quantity must be positive, got {job.quantity}")
        ctx.log.info("ordered", item=job.item)
        return Receipt(item=job.item, total=job.quantity * 3, attempt=ctx.attempt, tagged=False)

    @app.handler("slow", max_attempts=1, timeout=0.05)
    async def slow(job: Order) -> None:
        await anyio.sleep_forever()

    return app, failures


async def test_a_job_goes_through_the_codecs_and_the_middleware() -> None:
    app, failures = make_app()
    with capture_logs() as logs, anyio.fail_after(WAIT):
        async with run_app(app) as producer:
            assert producer.queue == "orders"
            result = await (await producer.put("order", Order(item="tea", quantity=2)))
    assert result == {"item": "tea", "total": 6, "attempt": 1, "tagged": True}
    assert failures == []
    assert any(entry["event"] == "ordered" and entry["item"] == "tea" for entry in logs)


async def test_a_typed_handler_gives_a_typed_result() -> None:
    app = App("typed", plugins=False)

    @app.handler("double")
    async def double(n: int) -> int:
        return 2 * n

    with anyio.fail_after(WAIT):
        async with run_app(app) as producer:
            assert await (await producer.put(double, 21)) == 42


async def test_retries_run_until_an_attempt_succeeds() -> None:
    app, failures = make_app()
    with anyio.fail_after(WAIT):
        async with run_app(app) as producer:
            result = await (await producer.put("order", {"item": "flaky", "quantity": 1}))
    assert result["attempt"] == 3
    assert failures == []


async def test_a_failing_job_raises_job_failed_and_reaches_on_failure() -> None:
    app, failures = make_app()
    with anyio.fail_after(WAIT):
        async with run_app(app) as producer:
            receipt = await producer.put("order", {"item": "tea", "quantity": 0})
            with pytest.raises(JobFailed) as failed:
                await receipt
    assert failed.value.error_type == "ValueError"
    assert failed.value.attempts == 3
    assert failures == ["order:ValueError:3"]


async def test_a_handler_timeout_fails_the_job() -> None:
    app, failures = make_app()
    with anyio.fail_after(WAIT):
        async with run_app(app) as producer:
            with pytest.raises(JobFailed) as failed:
                await (await producer.put("slow", {"item": "tea", "quantity": 1}))
    assert failed.value.error_type == "TimeoutError"
    assert failures == ["slow:TimeoutError:1"]


async def test_a_payload_the_handler_refuses_fails_with_a_payload_error() -> None:
    app, _ = make_app()
    with anyio.fail_after(WAIT):
        async with run_app(app) as producer:
            with pytest.raises(JobFailed) as failed:
                await (await producer.put("order", {"item": "tea"}))
    assert failed.value.error_type == "spreadq.errors.PayloadError"
    assert "quantity" in failed.value.error_message


async def test_run_app_uses_a_given_daemon_and_the_app_runs_again(
    spreadq_daemon: Daemon,
) -> None:
    app, _ = make_app()
    with anyio.fail_after(WAIT):
        for quantity in (1, 2):
            async with run_app(app, daemon=spreadq_daemon) as producer:
                result = await (await producer.put("order", {"item": "x", "quantity": quantity}))
                assert result["total"] == 3 * quantity
                assert len(spreadq_daemon.faults.sessions()) == 2  # the worker and the producer


async def test_an_app_without_handlers_is_refused() -> None:
    with anyio.fail_after(WAIT), pytest.raises(spreadq.ConfigurationError, match="no handlers"):
        async with run_app(App("empty", plugins=False)):
            pass


async def test_an_exception_in_the_block_comes_out_as_it_is() -> None:
    app, _ = make_app()
    with anyio.fail_after(WAIT), pytest.raises(KeyError, match="not-there"):
        async with run_app(app):
            raise KeyError("not-there")
