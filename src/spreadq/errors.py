"""Every exception spreadq raises, in one small tree.

::

    SpreadqError
    ├── ProtocolError
    │   ├── LocalProtocolError        we were asked to break the Spread protocol
    │   │   ├── InvalidName           a private, group or queue name Spread cannot carry
    │   │   └── MessageTooLarge       a message over the safe size cap
    │   ├── RemoteProtocolError       the peer sent bytes we refuse
    │   └── EnvelopeError             a spreadq envelope we cannot read (one job fails)
    ├── ConnectError
    │   ├── CouldNotConnect           no socket to the daemon could be opened
    │   └── ConnectRejected           the daemon refused the session (with its code)
    ├── ConnectionLost                the session ended; every pending call fails with it
    ├── AddressInUse                  the embedded daemon's port or Unix socket is taken
    ├── ConfigurationError            bad settings, names, handlers or annotations
    │   └── PluginError               a plugin that cannot be loaded or validated
    ├── PayloadError                  a payload that fails validation or decoding
    ├── JobFailed                     what awaiting a receipt raises when the job failed
    ├── JobCancelled                  what awaiting a receipt raises when the job was cancelled
    ├── OutcomeUnknown                no consumer remembers a job's outcome (Producer.result)
    ├── WorkerLost                    a job's owners left it more than max_failovers times
    ├── ForcedStop                    a worker stopped at once by a second signal
    └── LifespanError                 an app's lifespan failed to start or to shut down

``Retry`` is not an error: a handler raises it to ask for another attempt.

Local errors are raised inside the codecs; the one place where peer bytes enter a
connection converts them to :class:`RemoteProtocolError`.
"""

from __future__ import annotations

import enum
import errno
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spreadq.wire.constants import RejectCode

__all__ = [
    "AddressInUse",
    "CloseReason",
    "ConfigurationError",
    "ConnectError",
    "ConnectRejected",
    "ConnectionLost",
    "CouldNotConnect",
    "EnvelopeError",
    "ForcedStop",
    "InvalidName",
    "JobCancelled",
    "JobFailed",
    "LifespanError",
    "LocalProtocolError",
    "MessageTooLarge",
    "OutcomeUnknown",
    "PayloadError",
    "PluginError",
    "ProtocolError",
    "RemoteProtocolError",
    "Retry",
    "SpreadqError",
    "WorkerLost",
]


class SpreadqError(Exception):
    """The root of every error spreadq raises on purpose."""


class ProtocolError(SpreadqError):
    """A violation of the Spread wire protocol or of spreadq's envelope format."""


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol does not allow; nothing was sent."""


class InvalidName(LocalProtocolError, ValueError):
    """A private name, group name or queue name that Spread cannot carry.

    Attributes:
        name: the offending name, as given.
        reason: why it was refused, in words.
    """

    def __init__(self, name: str | bytes, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"invalid name {name!r}: {reason}")


class MessageTooLarge(LocalProtocolError):
    """A message whose size passes the safe cap; it was refused before any byte was sent.

    Attributes:
        size: the size of the message that was refused, in bytes.
        limit: the cap it passed.
    """

    def __init__(self, size: int, limit: int, what: str = "message") -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"{what} of {size} bytes exceeds the limit of {limit} bytes")


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol; the connection cannot go on."""


class EnvelopeError(ProtocolError):
    """A message on a queue group that claims to be a spreadq envelope but cannot be read.

    It fails the one job it carried, never the worker.
    """


class ConnectError(SpreadqError):
    """Opening a session with a daemon failed."""


class CouldNotConnect(ConnectError, OSError):
    """No connection to the daemon could be opened (refused, unreachable, timed out)."""


class ConnectRejected(ConnectError):
    """The daemon answered the handshake with a reject code.

    Attributes:
        code: the daemon's reject code.
    """

    def __init__(self, code: RejectCode, detail: str = "") -> None:
        self.code = code
        message = f"the daemon rejected the session: {code.name} ({int(code)})"
        super().__init__(f"{message}: {detail}" if detail else message)


class CloseReason(enum.Enum):
    """Why a session ended."""

    CLOSED_LOCALLY = "closed locally"
    EOF = "the daemon closed the connection"
    RESET = "the connection was reset"
    PROTOCOL_ERROR = "the daemon sent bytes the codec refuses"
    TIMEOUT = "the daemon did not answer in time"


class ConnectionLost(SpreadqError):
    """The session with the daemon ended; every pending call on it fails with this.

    Attributes:
        reason: why the session ended.
    """

    def __init__(self, reason: CloseReason, detail: str = "") -> None:
        self.reason = reason
        message = f"connection lost: {reason.value}"
        super().__init__(f"{message} ({detail})" if detail else message)


class AddressInUse(SpreadqError, OSError):
    """The embedded daemon cannot listen: its TCP port or Unix socket is already taken.

    A Unix socket counts as taken when something accepts connections on it; a stale
    socket file that nobody listens on is replaced instead.

    Attributes:
        address: ``PORT@HOST`` of the TCP listener, or the Unix socket's path.
    """

    def __init__(self, address: str, why: str) -> None:
        self.address = address
        super().__init__(errno.EADDRINUSE, f"cannot listen on {address}: {why}")

    def __str__(self) -> str:
        return str(self.strerror)


class ConfigurationError(SpreadqError, ValueError):
    """Settings, names, handlers or annotations that cannot work; raised before anything runs."""


class PluginError(ConfigurationError):
    """A plugin that cannot be loaded, or whose contributions fail validation.

    Attributes:
        plugin: the plugin's entry-point name.
        distribution: the distribution that provides it, when known.
    """

    def __init__(self, plugin: str, message: str, *, distribution: str | None = None) -> None:
        self.plugin = plugin
        self.distribution = distribution
        where = f"plugin {plugin!r}" + (f" from {distribution!r}" if distribution else "")
        super().__init__(f"{where}: {message}")


class PayloadError(SpreadqError):
    """A job payload that could not be decoded or validated.

    Attributes:
        job: a printable reference to the job, when there is one.
    """

    def __init__(self, message: str, *, job: object = None) -> None:
        self.job = job
        super().__init__(f"{message} (job {job})" if job is not None else message)


class JobFailed(SpreadqError):
    """The job ran and failed on every attempt; raised by awaiting its receipt.

    Attributes:
        error_type: the qualified name of the exception the handler raised.
        error_message: its message.
        attempts: how many attempts were made.
    """

    def __init__(self, error_type: str, error_message: str, attempts: int) -> None:
        self.error_type = error_type
        self.error_message = error_message
        self.attempts = attempts
        super().__init__(f"{error_type}: {error_message} (after {attempts} attempt(s))")


class JobCancelled(SpreadqError):
    """The job was cancelled (``receipt.cancel()``) before its outcome was reported;
    raised by awaiting its receipt and by ``Producer.result``.

    Attributes:
        job_id: the job's printable id (``JobRef.id``).
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} was cancelled before its outcome was reported")


class OutcomeUnknown(SpreadqError):
    """No consumer answered with the job's outcome within the bound
    (``Producer.result``): none remembers it, none is present, or it is still running.

    Attributes:
        job_id: the job's printable id.
        reason: why, in words.
    """

    def __init__(self, job_id: str, reason: str) -> None:
        self.job_id = job_id
        self.reason = reason
        super().__init__(f"the outcome of job {job_id} is unknown: {reason}")


class WorkerLost(SpreadqError):
    """A job was given up without running it again: the members that owned it left the
    queue (crashed, were killed, lost their daemon) while it was outstanding more times
    than ``Settings.max_failovers`` allows, so it may be what kills them.

    It is the remote error of the job's failure: ``await receipt`` raises
    :class:`JobFailed` with ``error_type`` ``"spreadq.errors.WorkerLost"``, and the
    ``on_failure`` hooks receive this exception.

    Attributes:
        kind: the job's handler kind.
        failovers: how many times the job's owner left it.
        limit: the ``max_failovers`` setting that was passed.
    """

    def __init__(self, kind: str, failovers: int, limit: int) -> None:
        self.kind = kind
        self.failovers = failovers
        self.limit = limit
        super().__init__(
            f"job {kind!r} was given up: the worker running it left {failovers} time(s), "
            f"more than max_failovers ({limit}); it is not run again"
        )


class ForcedStop(SpreadqError):
    """A worker was stopped at once by a second SIGINT or SIGTERM during its drain;
    ``App.run()`` raises it after cancelling the running handlers.

    Attributes:
        signal_name: ``"SIGINT"`` or ``"SIGTERM"``.
        exit_code: the conventional exit status for it: 128 plus the signal number
            (130 for SIGINT, 143 for SIGTERM); ``spreadq worker`` exits with it.
    """

    def __init__(self, signal_name: str, signal_number: int) -> None:
        self.signal_name = signal_name
        self.exit_code = 128 + signal_number
        super().__init__(f"worker stopped at once by a second {signal_name} while draining")


class LifespanError(SpreadqError):
    """An :class:`~spreadq.App`'s ``lifespan`` failed; ``__cause__`` is what it raised.

    ``App.run()`` raises it when the startup part fails (the worker then never joins
    its queue), or after the drain when the shutdown part fails.

    Attributes:
        queue: the app's queue.
        phase: ``"startup"`` or ``"shutdown"``.
    """

    def __init__(self, queue: str, phase: str, problem: str) -> None:
        self.queue = queue
        self.phase = phase
        super().__init__(
            f"the lifespan of the app for queue {queue!r} failed at {phase}: {problem}"
        )


class Retry(Exception):
    """Raised by a handler to ask for another attempt, after ``delay`` seconds if given."""

    def __init__(self, delay: float | None = None) -> None:
        self.delay = delay
        super().__init__(f"retry requested (delay={delay})")
