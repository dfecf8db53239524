"""One conformance suite, two daemons: the embedded one always, a real Spread when given.

``SPREADQ_SPREAD_DAEMON`` names a Spread 4.x/5.x ``spread`` binary. When it is set, the
``spread_daemon`` fixture also runs every scenario against that daemon, started once per
test session on a free loopback port with a generated configuration, by the same
launcher the interop suite uses (``tests/interop/real_daemon.py``). When it is not
set, the ``real`` half is skipped with a visible reason.

Both daemons are named ``localhost`` and drop a client once ``SESSION_LIMIT`` messages
are queued for it, so every scenario expects the same bytes from both.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from spread_targets import DAEMON_NAME, ENV, SESSION_LIMIT, Target

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from real_daemon import daemon_binary, start_real_daemon

from spreadq.testing.fixtures import daemon_in_background

_names = itertools.count()


@pytest.fixture
def unique() -> Iterator[str]:
    """Short names no other test uses (the real daemon lives for the whole session)."""
    return (f"c{next(_names)}" for _ in itertools.count())


@pytest.fixture(scope="session")
def real_spread(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A real Spread daemon for the whole session (skipped unless ``SPREADQ_SPREAD_DAEMON``)."""
    binary = daemon_binary()
    if not binary:
        pytest.skip(f"{ENV} is not set")
    workdir = tmp_path_factory.mktemp("spread")
    with start_real_daemon(binary, workdir, max_session_messages=SESSION_LIMIT) as daemon:
        yield Target("real", "127.0.0.1", daemon.port)


@pytest.fixture(params=["embedded", "real"])
async def spread_daemon(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    """The daemon a scenario runs against: the embedded one, then the real one."""
    if request.param == "real":
        yield request.getfixturevalue("real_spread")
        return
    async with daemon_in_background(name=DAEMON_NAME, max_session_messages=SESSION_LIMIT) as daemon:
        yield Target("embedded", daemon.host, daemon.port, daemon)
