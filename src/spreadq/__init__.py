"""spreadq: a brokerless distributed work queue for asyncio, built on Spread.

Only the names in ``__all__`` are public; everything else may change without notice.
"""

from __future__ import annotations

from spreadq.__about__ import __version__ as __version__
from spreadq.client import Connection as Connection
from spreadq.client import connect as connect
from spreadq.codecs import Codec as Codec
from spreadq.context import Context as Context
from spreadq.errors import CloseReason as CloseReason
from spreadq.errors import ConfigurationError as ConfigurationError
from spreadq.errors import ConnectError as ConnectError
from spreadq.errors import ConnectionLost as ConnectionLost
from spreadq.errors import ConnectRejected as ConnectRejected
from spreadq.errors import CouldNotConnect as CouldNotConnect
from spreadq.errors import EnvelopeError as EnvelopeError
from spreadq.errors import InvalidName as InvalidName
from spreadq.errors import JobCancelled as JobCancelled
from spreadq.errors import JobFailed as JobFailed
from spreadq.errors import LifespanError as LifespanError
from spreadq.errors import LocalProtocolError as LocalProtocolError
from spreadq.errors import MessageTooLarge as MessageTooLarge
from spreadq.errors import OutcomeUnknown as OutcomeUnknown
from spreadq.errors import PayloadError as PayloadError
from spreadq.errors import PluginError as PluginError
from spreadq.errors import ProtocolError as ProtocolError
from spreadq.errors import RemoteProtocolError as RemoteProtocolError
from spreadq.errors import Retry as Retry
from spreadq.errors import SpreadqError as SpreadqError
from spreadq.handlers import Handler as Handler
from spreadq.handlers import HandlerSpec as HandlerSpec
from spreadq.plugins import Plugin as Plugin
from spreadq.producer import Producer as Producer
from spreadq.producer import Receipt as Receipt
from spreadq.settings import Settings as Settings
from spreadq.wire.constants import Cause as Cause
from spreadq.wire.constants import RejectCode as RejectCode
from spreadq.wire.constants import ServiceType as ServiceType
from spreadq.worker.app import App as App

__all__ = [
    "App",
    "Cause",
    "CloseReason",
    "Codec",
    "ConfigurationError",
    "ConnectError",
    "ConnectRejected",
    "ConnectionLost",
    "Connection",
    "Context",
    "CouldNotConnect",
    "EnvelopeError",
    "Handler",
    "HandlerSpec",
    "InvalidName",
    "JobCancelled",
    "JobFailed",
    "LifespanError",
    "LocalProtocolError",
    "MessageTooLarge",
    "OutcomeUnknown",
    "PayloadError",
    "Plugin",
    "PluginError",
    "Producer",
    "ProtocolError",
    "Receipt",
    "RejectCode",
    "RemoteProtocolError",
    "Retry",
    "ServiceType",
    "Settings",
    "SpreadqError",
    "__version__",
    "connect",
]
