"""Settings: the documented defaults, range checks, environment overrides."""

from __future__ import annotations

import math
from typing import get_args

import pytest
from pydantic import ValidationError

from spreadq.errors import ConfigurationError
from spreadq.settings import _OPTIONAL_NUMBERS, Settings

DESIGN_DEFAULTS = {
    "ack_every": 200,
    "ack_interval": 0.05,
    "ack_position_interval": 0.25,
    "ack_max_rate": 500.0,  # None: ACK only by the cadence
    "outcome_notices": True,  # outcomes also go straight to their producer
    "notice_interval": 0.002,  # at most one NOTICE per 2 ms per consumer
    "standby_interval": 0.005,  # a worker the rule keeps waiting reads every 5 ms at most
    "busy_after": 0.02,  # jobs waiting 20 ms for a slot: the worker says it is busy
    "window": 600,
    "max_in_flight": 10_000,
    "max_backlog": 5_000,
    "concurrency": 16,
    "sync_threads": 8,
    "max_attempts": 3,
    "retry_backoff_base": 0.2,
    "retry_backoff_max": 30.0,
    "retry_jitter": 0.2,
    "handler_timeout": 600.0,  # None: no limit
    "running_warning": 60.0,  # None: never
    "max_failovers": 2,  # None: no limit
    "cancel_on_disconnect": True,
    "reconnect_backoff_initial": 0.1,
    "reconnect_backoff_max": 5.0,
    "reconnect_max_attempts": None,  # never give up
    "connect_timeout": None,  # never give up
    "batch_max_jobs": 256,
    "batch_max_delay": 0.0,  # batch only under load
    "batch_max_rate": 1000.0,  # messages a producer sends a second at most, under load
    "result_max_bytes": 65_536,
    "completed_history": 100_000,
    "dedupe_keys": 10_000,
    "secret": None,
    "accept_unsealed_raw": False,
    "stats_interval": 1.0,
    "metrics_port": None,  # no metrics endpoint
}


@pytest.fixture(autouse=True)
def _no_spreadq_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Settings()`` reads the environment: these tests start from none of its variables."""
    for field in Settings.model_fields:
        monkeypatch.delenv(f"SPREADQ_{field.upper()}", raising=False)


def test_defaults_are_the_design_numbers() -> None:
    assert Settings().model_dump() == DESIGN_DEFAULTS


def test_settings_read_the_environment_and_keywords_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPREADQ_CONCURRENCY", "3")
    monkeypatch.setenv("SPREADQ_CANCEL_ON_DISCONNECT", "off")
    monkeypatch.setenv("SPREADQ_CONNECT_TIMEOUT", "2.5")
    monkeypatch.setenv("SPREADQ_WINDOW", "")  # empty: unset
    monkeypatch.setenv("SPREADQ_SPREAD_DAEMON", "/nowhere/spread")  # not a field: ignored
    settings = Settings()
    assert (settings.concurrency, settings.cancel_on_disconnect) == (3, False)
    assert (settings.connect_timeout, settings.window) == (2.5, 600)
    assert Settings(concurrency=5).concurrency == 5
    # replace() keeps what the instance holds; it does not read the environment again
    monkeypatch.setenv("SPREADQ_CONCURRENCY", "9")
    assert settings.replace(window=10).concurrency == 3


def test_a_bad_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPREADQ_CONCURRENCY", "many")
    with pytest.raises(ValidationError, match="concurrency"):
        Settings()


def test_from_env_with_a_mapping_reads_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPREADQ_CONCURRENCY", "3")
    assert Settings.from_env(environ={}).concurrency == 16


def test_every_field_is_documented() -> None:
    undocumented = [name for name, f in Settings.model_fields.items() if not f.description]
    assert not undocumented


def test_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        setattr(settings, "window", 10)  # noqa: B010


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ack_every", 0),
        ("ack_interval", 0.0),
        ("window", 0),
        ("window", 1000),  # the daemon drops a session whose queue passes 1000 messages
        ("max_in_flight", 0),
        ("concurrency", 0),
        ("max_attempts", 0),
        ("retry_jitter", 1.5),
        ("retry_jitter", -0.1),
        ("retry_backoff_base", -1.0),
        ("batch_max_jobs", 0),
        ("batch_max_delay", -0.001),
        ("batch_max_rate", 0.0),
        ("batch_max_rate", 0.5),  # a message every two seconds is no bound a queue needs
        ("result_max_bytes", 1_000_000),
        ("reconnect_max_attempts", -1),
        ("ack_interval", math.nan),
        ("retry_backoff_max", math.inf),
        ("unknown_field", 1),
    ],
)
def test_out_of_range_is_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings.model_validate({field: value})


def test_pairs_are_ordered() -> None:
    with pytest.raises(ValidationError, match="retry_backoff_base"):
        Settings(retry_backoff_base=10.0, retry_backoff_max=1.0)
    with pytest.raises(ValidationError, match="reconnect_backoff_initial"):
        Settings(reconnect_backoff_initial=10.0, reconnect_backoff_max=1.0)


def test_from_env_reads_prefixed_fields_and_ignores_others() -> None:
    settings = Settings.from_env(
        environ={
            "SPREADQ_WINDOW": "400",
            "SPREADQ_ACK_INTERVAL": "0.01",
            "SPREADQ_CANCEL_ON_DISCONNECT": "no",
            "SPREADQ_DISABLE_PLUGINS": "msgpack",
            "WINDOW": "5",
        }
    )
    assert (settings.window, settings.ack_interval, settings.cancel_on_disconnect) == (
        400,
        0.01,
        False,
    )
    assert settings.concurrency == 16


def test_from_env_custom_prefix_and_overrides_win() -> None:
    settings = Settings.from_env("MYQ_", environ={"MYQ_CONCURRENCY": "4"}, concurrency=8)
    assert settings.concurrency == 8
    assert Settings.from_env("MYQ_", environ={"MYQ_CONCURRENCY": "4"}).concurrency == 4


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPREADQ_MAX_ATTEMPTS", "7")
    assert Settings.from_env().max_attempts == 7


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"SPREADQ_WINDOW": "4000"}, "SPREADQ_WINDOW"),
        ({"SPREADQ_CONCURRENCY": "many"}, "SPREADQ_CONCURRENCY"),
        ({"SPREADQ_CANCEL_ON_DISCONNECT": "perhaps"}, "SPREADQ_CANCEL_ON_DISCONNECT"),
    ],
)
def test_from_env_errors_name_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        Settings.from_env(environ=environ)


def test_replace_validates() -> None:
    settings = Settings().replace(window=100)
    assert settings.window == 100
    assert settings.ack_every == 200
    with pytest.raises(ConfigurationError, match="window"):
        settings.replace(window=-1)
    with pytest.raises(ConfigurationError, match="bogus"):
        settings.replace(bogus=1)


def test_the_secret_comes_from_the_environment_and_is_never_shown() -> None:
    settings = Settings.from_env(environ={"SPREADQ_SECRET": "hunter2"})
    assert settings.secret is not None
    assert settings.secret.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())
    copy = settings.replace(window=5)
    assert copy.secret is not None
    assert copy.secret.get_secret_value() == "hunter2"
    with pytest.raises(ConfigurationError, match="SPREADQ_SECRET") as info:
        Settings.from_env(environ={"SPREADQ_SECRET": ""})
    assert "hunter2" not in str(info.value)


def test_an_empty_secret_variable_is_refused_not_taken_for_no_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPREADQ_SECRET", " ")
    with pytest.raises(ConfigurationError, match="SPREADQ_SECRET is set but empty"):
        Settings()
    assert Settings(secret=None).secret is None  # a keyword wins, as for every field
    monkeypatch.delenv("SPREADQ_SECRET")
    assert Settings().secret is None


@pytest.mark.parametrize("word", ["none", "off", " None ", "OFF"])
def test_none_or_off_turns_an_optional_number_off_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, word: str
) -> None:
    monkeypatch.setenv("SPREADQ_HANDLER_TIMEOUT", word)
    monkeypatch.setenv("SPREADQ_BUSY_AFTER", word)
    assert (Settings().handler_timeout, Settings().busy_after) == (None, None)
    from_env = Settings.from_env(environ={"SPREADQ_MAX_FAILOVERS": word})
    assert from_env.max_failovers is None
    with pytest.raises(ConfigurationError, match="SPREADQ_WINDOW"):  # not optional
        Settings.from_env(environ={"SPREADQ_WINDOW": word})


def test_every_optional_number_takes_none_or_off() -> None:
    optional = {
        name
        for name, field in Settings.model_fields.items()
        if type(None) in get_args(field.annotation)
        and ({int, float} & set(get_args(field.annotation)))
    }
    assert optional == set(_OPTIONAL_NUMBERS)
