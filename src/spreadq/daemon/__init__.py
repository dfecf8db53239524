"""An embedded Spread-compatible daemon: one node (or several virtual ones), loopback.

``serve()`` runs it for the duration of an ``async with`` block and yields a
:class:`Daemon` with the address to connect to and fault injection::

    async with spreadq.daemon.serve() as daemon:
        async with spreadq.connect(daemon.address) as conn:
            ...

Real Spread client libraries (libspread, the Java client) can use it too: it speaks the
Spread 4/5 client protocol byte for byte (see docs/design/spread-protocol.md).
"""

from __future__ import annotations

from spreadq.daemon.engine import Engine as Engine
from spreadq.daemon.faults import Faults as Faults
from spreadq.daemon.server import Daemon as Daemon
from spreadq.daemon.server import Listening as Listening
from spreadq.daemon.server import run_forever as run_forever
from spreadq.daemon.server import serve as serve

__all__ = ["Daemon", "Engine", "Faults", "Listening", "run_forever", "serve"]
