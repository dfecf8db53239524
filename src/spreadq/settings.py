"""Settings: every tunable number of a worker or producer, with its default.

A :class:`Settings` is a frozen ``pydantic-settings`` model: build one, pass it to
``App`` or ``Producer``, and derive validated copies with :meth:`Settings.replace`.

Environment. ``Settings()`` reads each field from the variable ``SPREADQ_<FIELD>``
(the field's name in upper case: ``SPREADQ_CONCURRENCY``, ``SPREADQ_ACK_EVERY``,
``SPREADQ_RECONNECT_MAX_ATTEMPTS``, ``SPREADQ_CONNECT_TIMEOUT``); every field is flat,
so there are no nested names. Keyword arguments win over the environment, and an empty
variable counts as unset. So an ``App`` or ``Producer`` built without ``settings``
takes the environment's values, and ``spreadq worker`` applies its options (which
read the same variables) on top of the app's settings. :meth:`Settings.from_env`
reads a given mapping or prefix and names the variable in its errors.

Units: counts are jobs or messages as each field says, times are seconds (floats),
sizes are bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from spreadq.errors import ConfigurationError
from spreadq.wire.constants import DEFAULT_MAX_SESSION_MESSAGES, SAFE_MESSAGE_LIMIT

__all__ = ["ENV_PREFIX", "Settings"]

ENV_PREFIX = "SPREADQ_"
"""The prefix of the environment variables ``Settings()`` and :meth:`Settings.from_env` read."""

KIB = 1024


_OPTIONAL_NUMBERS = (
    "ack_max_rate",
    "batch_max_rate",
    "busy_after",
    "handler_timeout",
    "running_warning",
    "max_failovers",
    "reconnect_max_attempts",
    "connect_timeout",
    "metrics_port",
)
"""The numeric settings that may be None (off, no limit): an environment variable turns
them so with ``none`` or ``off``."""
_NONE_WORDS = frozenset({"none", "off"})


def _none_for_word(value: object) -> object:
    """None for ``none`` or ``off`` (any case, spaces around), else ``value``: how a
    variable or an option turns off a setting that may be None."""
    if isinstance(value, str) and value.strip().lower() in _NONE_WORDS:
        return None
    return value


class Settings(BaseSettings):
    """Tunables for flow control, concurrency, retries, reconnection and batching.

    Every field has a default, unless its ``SPREADQ_<FIELD>``
    environment variable is set; out-of-range values are refused.

    Raises:
        pydantic.ValidationError: a field (given or from the environment) out of range,
            of the wrong type, or unknown (it is a :class:`ValueError`). :meth:`from_env`
            raises :class:`~spreadq.errors.ConfigurationError` instead, naming the variable.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        use_attribute_docstrings=True,
    )

    # -- flow control (docs/design/flow-control.md) -------------------------------------
    ack_every: int = Field(default=200, ge=1, le=10_000)
    """A consumer sends an ACK once it has read this many messages and finished this
    many jobs, together, since its last one (a message packing many jobs counts once)."""
    ack_interval: float = Field(default=0.05, gt=0.0, le=60.0)
    """...and at least this often (seconds) while it has anything to report."""
    ack_position_interval: float = Field(default=0.25, gt=0.0, le=60.0)
    """...but only this often (seconds) when all it would report is how far it has
    read: no outcome waits and it holds no job of its own (a consumer that follows the
    queue, or stands by). Every consumer and producer reads every ACK, and such reports
    were about half of a light load's ACKs; ``ack_every`` (and a third of the window's share,
    with several producers) still bounds the messages read between two."""
    ack_max_rate: float | None = Field(default=500.0, gt=0.0, le=100_000.0)
    """A consumer with nothing ready to run ACKs a finished job at once; the queue's
    consumers together do so at most this many times a second (each waits
    ``n / ack_max_rate`` seconds between two, for ``n`` consumers); busy, it ACKs by
    ``ack_every`` and ``ack_interval`` only. Every consumer and producer of the queue
    reads every ACK, so the bound keeps ACKs from crowding out jobs. None: never ACK
    early, only by the cadence."""
    outcome_notices: bool = True
    """A consumer also sends the outcomes it reaches of the jobs that ask for it straight
    to their producer (a NOTICE to its private group), so a receipt resolves without
    waiting for the next ACK; no other consumer reads a NOTICE. The ACK still settles the
    job everywhere."""
    notice_interval: float = Field(default=0.002, ge=0.0, le=1.0)
    """A consumer sends NOTICEs at most once per this many seconds on average, with one
    to spare (a NOTICE a little sooner than that goes at once, the next waits); the
    outcomes that end while one waits go with it. 0: at the end of every turn of the
    worker's loop that ended such jobs."""
    standby_interval: float = Field(default=0.005, ge=0.0, le=1.0)
    """A consumer whose rule says the next jobs go to other members first
    (``fill_first``), and that has nothing of its own to run, leaves its socket unread
    between two reads for at most this many seconds (and at most half the time the
    queue's recent job rate needs to reach it), then reads all that came meanwhile at
    once, instead of waking for each message (``docs/deployment.md#standby``). A job
    that spills to it may wait up to this long, and it sees a view change up to this
    late. 0: always read at once. Shorter rests are shorter bursts of reading, which the
    worker running the jobs waits behind less: 5 ms gave a tail about a tenth shorter
    than 20 ms at about the same CPU (``docs/deployment.md#standby``); 2 ms cost as
    much CPU as none."""
    busy_after: float | None = Field(default=0.02, gt=0.0, le=60.0)
    """A consumer whose own jobs have been waiting for a free one of its
    ``concurrency`` slots this many seconds without a break announces that it is busy
    (capacity 0 in a HELLO), and its capacity again once none waits: rules that fill
    members in order (``fill_first``) give new jobs to others meanwhile
    (``docs/concepts.md#ownership``). As it becomes busy, under such a rule, it gives
    back the jobs its slots would reach late, when they are slow for its handlers
    (``docs/design/replicated-table.md#release``). None: never."""
    window: int = Field(default=600, ge=1, lt=DEFAULT_MAX_SESSION_MESSAGES)
    """A producer's ``put()`` waits while a live consumer has not read up to the
    producer's last message minus this many messages. It must stay below the daemon's
    per-session queue limit (1000 messages), past which the daemon drops the consumer."""
    max_in_flight: int = Field(default=10_000, ge=1)
    """A producer's ``put()`` waits while it has this many unconfirmed jobs."""
    max_backlog: int = Field(default=5_000, ge=1)
    """A producer's ``put()`` waits while the owner backlog (outstanding jobs assigned
    but not finished) passes this bound."""

    # -- running handlers ---------------------------------------------------------------
    concurrency: int = Field(default=16, ge=1, le=100_000)
    """How many handlers a worker runs at once."""
    sync_threads: int = Field(default=8, ge=1, le=1_024)
    """How many threads a worker runs plain ``def`` handlers in at once, threads it
    abandoned (their attempt timed out or was cancelled; a thread cannot be stopped)
    included: a sync handler waits for one of them to return."""
    max_attempts: int = Field(default=3, ge=1, le=1_000)
    """How many times a job is tried before it fails for good (a handler may override)."""
    retry_backoff_base: float = Field(default=0.2, ge=0.0)
    """Delay before the second attempt (seconds); it doubles on each later attempt."""
    retry_backoff_max: float = Field(default=30.0, ge=0.0)
    """The longest delay between two attempts (seconds)."""
    retry_jitter: float = Field(default=0.2, ge=0.0, le=1.0)
    """Each retry delay is spread at random by up to this fraction of itself."""
    handler_timeout: float | None = Field(default=600.0, gt=0.0)
    """Seconds one attempt of a handler may run before it is cancelled and fails with a
    ``TimeoutError`` naming the handler and the timeout (retried like any failure); a
    handler's own ``timeout=`` option overrides it, and None means no limit. A handler
    that never returns would otherwise hold one of ``concurrency`` slots for good, and
    its producer's receipt would never resolve: ten minutes is far beyond what the jobs
    of a work queue usually take (handlers that run longer say so with ``timeout=``),
    and short enough that a wedged handler frees its slot and reports its failure."""
    running_warning: float | None = Field(default=60.0, gt=0.0)
    """A worker logs ``job_still_running`` (a warning with the job's ref and kind) once
    for each job it has been running for this many seconds (all attempts counted), so a
    slow or hung handler is visible long before its timeout; None: never."""
    max_failovers: int | None = Field(default=2, ge=0, le=1_000)
    """How many times a job is taken over because its owner left (crashed, was killed,
    lost its daemon) while the job was outstanding, before it is given up instead of
    run again: a job that kills the process running it (``os._exit``, a crash in an
    extension, the OOM killer) would otherwise take every worker down in turn. Each
    reassignment counts, whether or not the owner had started the job (no other worker
    can know), so with the default a job runs at most three times through failovers,
    as often as ``max_attempts`` tries a failing one. The member that would have taken
    it over reports it failed with :class:`~spreadq.errors.WorkerLost` (after the
    ``on_failure`` hooks). None: no limit. Every worker of a queue must use the same
    value."""
    cancel_on_disconnect: bool = True
    """A worker that loses its daemon cancels its running handlers (their jobs are
    reassigned by the survivors, docs/design/membership.md#disconnect)."""

    # -- reconnection ---------------------------------------------------------------------
    reconnect_backoff_initial: float = Field(default=0.1, gt=0.0)
    """First delay before reconnecting to a lost daemon (seconds); it doubles each try."""
    reconnect_backoff_max: float = Field(default=5.0, gt=0.0)
    """The longest delay between two reconnection tries (seconds)."""
    reconnect_max_attempts: int | None = Field(default=None, ge=0)
    """How many times in a row a worker or a producer tries to reconnect after
    losing its daemon before it gives up (None: it never does; 0: it never tries). A
    session that comes back (for a worker: joins its WORK group) starts the count over.
    Giving up, a producer fails its pending receipts and waiting puts with the last
    :class:`~spreadq.errors.ConnectionLost`, and ``App.run()`` raises it."""
    connect_timeout: float | None = Field(default=None, gt=0.0)
    """How long (seconds) a worker keeps trying to reach its daemon, from its start or
    from the loss of a session, before it gives up (None: it never does). Giving up,
    ``App.run()`` raises the last connect error (``spreadq worker`` exits with status 3)."""

    # -- batching (docs/design/flow-control.md) --------------------------------------
    batch_max_jobs: int = Field(default=256, ge=1, le=65_535)
    """A producer packs at most this many jobs into one Spread message."""
    batch_max_delay: float = Field(default=0.0, ge=0.0, le=1.0)
    """...and may hold a job this long (seconds) waiting for others to pack with. The
    default 0 holds none: a producer batches only under load, packing the jobs put while
    its previous message was being written (see ``docs/design/flow-control.md``). On
    uvloop, whose timers count whole milliseconds, the hold is rounded up to one."""
    batch_max_rate: float | None = Field(default=1000.0, ge=1.0, le=1_000_000.0)
    """...and sends at most this many messages a second on average (four may go back to
    back after a quiet spell): jobs put faster than that, one at a time, wait for the next
    message and go together. Every consumer reads every message, and a message costs
    each of them far more than a job in it, so a producer that puts its jobs one per
    turn of its loop (a server putting one per request) would otherwise send a message
    per job or two. A producer under the rate never waits; a full batch never does.
    None: no bound (only the write packs jobs, as above)."""

    # -- results and history --------------------------------------------------------------
    result_max_bytes: int = Field(default=64 * KIB, ge=0, le=SAFE_MESSAGE_LIMIT // 2)
    """A handler's encoded result larger than this fails the job with a
    :class:`~spreadq.errors.PayloadError` saying so (the issue asks for a clear error
    past the cap). Results travel inside ACK messages, so the bound stays well under
    the message size cap."""
    completed_history: int = Field(default=100_000, ge=0)
    """How many finished jobs' outcomes a worker remembers at least (up to twice as
    many, and at most 16 MiB of results), to recognise re-sent jobs and answer
    ``Producer.result`` for them."""
    dedupe_keys: int = Field(default=10_000, ge=0)
    """How many dedupe keys (``put(..., dedupe_key=)``) the workers of a queue remember,
    the most recent first (docs/design/dedupe.md). Every worker of a queue must use the
    same value: the memory is replicated, and members with different bounds would
    disagree about which keys are remembered. 0 turns deduplication off (periodic ticks
    do not use this memory, docs/design/periodic.md)."""

    # -- trust (docs/security.md) ---------------------------------------------------------
    secret: SecretStr | None = Field(default=None, min_length=1)
    """The queue's shared secret (``SPREADQ_SECRET``); never logged or shown. When set,
    every spreadq message is sealed with an HMAC tag over the whole message and its
    sender, and workers and producers drop spreadq messages without a good seal: a
    client without the secret can neither put a job that runs nor settle a receipt.
    Every worker and producer of a queue needs the same secret. It does not encrypt."""
    accept_unsealed_raw: bool = False
    """With a ``secret``, whether workers still take RAW jobs (messages from plain
    Spread programs, which cannot seal them). Off by default: with a secret set, RAW
    messages are dropped unless this is on, at every worker of the queue alike."""

    # -- observability (docs/operations.md) -------------------------------------------
    stats_interval: float = Field(default=1.0, gt=0.0, le=3600.0)
    """How often (seconds) a worker sends its STATS report to the FEEDBACK group, for
    ``spreadq top`` and other observers."""
    metrics_port: int | None = Field(default=None, ge=0, le=65_535)
    """The TCP port a metrics observer (``spreadq-prometheus``) serves ``/metrics`` on
    (``SPREADQ_METRICS_PORT``, ``spreadq worker --metrics-port``); None: no endpoint.
    0 picks a free port."""

    def __init__(self, **values: object) -> None:
        if "secret" not in values:
            _refuse_an_empty_secret(os.environ, ENV_PREFIX)
        super().__init__(**values)  # type: ignore[arg-type]  # pydantic-settings' keywords

    @field_validator(*_OPTIONAL_NUMBERS, mode="before")
    @classmethod
    def _none_by_name(cls, value: object) -> object:
        """``none`` or ``off`` (any case) for a field that may be None, as an environment
        variable can only say it: ``SPREADQ_HANDLER_TIMEOUT=none``."""
        return _none_for_word(value)

    @model_validator(mode="after")
    def _check_pairs(self) -> Self:
        if self.retry_backoff_base > self.retry_backoff_max:
            raise ValueError(
                f"retry_backoff_base ({self.retry_backoff_base}) exceeds "
                f"retry_backoff_max ({self.retry_backoff_max})"
            )
        if self.reconnect_backoff_initial > self.reconnect_backoff_max:
            raise ValueError(
                f"reconnect_backoff_initial ({self.reconnect_backoff_initial}) exceeds "
                f"reconnect_backoff_max ({self.reconnect_backoff_max})"
            )
        return self

    @classmethod
    def from_env(
        cls,
        prefix: str = ENV_PREFIX,
        *,
        environ: Mapping[str, str] | None = None,
        **overrides: object,
    ) -> Settings:
        """Build settings from ``<prefix><FIELD>`` environment variables, then ``overrides``.

        ``SPREADQ_WINDOW=400`` sets ``window``; booleans accept ``1/0``, ``true/false``,
        ``yes/no``, ``on/off``; a number that may be None (``handler_timeout``,
        ``busy_after``, ...) is None with ``none`` or ``off``. Variables that name no
        field are ignored (other parts of spreadq read ``SPREADQ_DISABLE_PLUGINS`` and
        others), and so are empty ones.
        Keyword ``overrides`` win over the environment. Only ``environ`` is read (no
        other variable), so a test can pass exactly the variables it means.

        Args:
            prefix: the variable prefix, ``SPREADQ_`` by default.
            environ: the variables to read; ``os.environ`` when ``None``.
            overrides: field values that take precedence.

        Raises:
            ConfigurationError: a value out of range or unparsable, or an unknown
                keyword override; the message names the variable or field.
        """
        env = os.environ if environ is None else environ
        if "secret" not in overrides:
            _refuse_an_empty_secret(env, prefix)
        values: dict[str, object] = {}
        sources: dict[str, str] = {}
        for field in cls.model_fields:
            variable = f"{prefix}{field.upper()}"
            if env.get(variable):
                values[field] = env[variable]
                sources[field] = variable
        values.update(overrides)
        return _validated(values, sources)

    def replace(self, **changes: object) -> Settings:
        """Return a copy with ``changes`` applied, validated like a new instance.

        Raises:
            ConfigurationError: a changed value out of range, or an unknown field.
        """
        return _validated({**self.model_dump(), **changes}, {})


def _refuse_an_empty_secret(env: Mapping[str, str], prefix: str) -> None:
    """An empty secret variable is a mistake (``SPREADQ_SECRET=$UNSET``), not "no secret":
    unlike other variables, it is refused rather than ignored, so that a deployment that
    means to seal its messages never runs unsealed by accident."""
    variable = f"{prefix}SECRET"
    if variable in env and not env[variable].strip():
        raise ConfigurationError(
            f"invalid settings: {variable} is set but empty; unset it to run without a "
            "secret, or give every worker and producer the same non-empty secret"
        )


def _validated(values: dict[str, object], sources: Mapping[str, str]) -> Settings:
    # Every field is given, so pydantic-settings reads nothing from os.environ here.
    given = {name: field.default for name, field in Settings.model_fields.items()}
    given.update(values)
    try:
        return Settings.model_validate(given)
    except ValidationError as error:
        problems = "; ".join(
            f"{_source(sources, problem['loc'])}: {problem['msg']}" for problem in error.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from error


def _source(sources: Mapping[str, str], loc: tuple[int | str, ...]) -> str:
    if not loc:
        return "settings"
    return sources.get(str(loc[0]), str(loc[0]))
