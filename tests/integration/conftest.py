"""Fixtures of the end-to-end tests: which daemon the scenario runs on.

``spread_address`` is parametrized: ``embedded`` (None: the test starts an embedded
daemon on its own event loop) and ``real`` (the address of a real Spread daemon
started from the binary named by ``SPREADQ_SPREAD_DAEMON``, one per module; marked
``interop`` and skipped with the reason when the variable is not set).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from real_daemon import ENV_VAR, RealDaemon, daemon_binary, start_real_daemon


@pytest.fixture(scope="module")
def real_spread_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealDaemon]:
    """A real Spread daemon for the module, or a visible skip."""
    binary = daemon_binary()
    if binary is None:
        pytest.skip(f"{ENV_VAR} is not set: no real Spread daemon to run against")
    with start_real_daemon(binary, tmp_path_factory.mktemp("spread")) as daemon:
        yield daemon


@pytest.fixture(params=[pytest.param("embedded"), pytest.param("real", marks=pytest.mark.interop)])
def spread_address(request: pytest.FixtureRequest) -> str | None:
    """None for the embedded daemon, else the real daemon's TCP address."""
    if request.param == "embedded":
        return None
    daemon: RealDaemon = request.getfixturevalue("real_spread_daemon")
    return daemon.tcp_address
