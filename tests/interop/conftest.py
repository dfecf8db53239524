"""Fixtures of the interop suite: a real Spread daemon, or a visible skip."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from real_daemon import ENV_VAR, RealDaemon, daemon_binary, start_real_daemon


@pytest.fixture(scope="module")
def real_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealDaemon]:
    """One real Spread daemon per test module, on a free loopback port."""
    binary = daemon_binary()
    if binary is None:
        pytest.skip(f"{ENV_VAR} is not set")
    with start_real_daemon(binary, tmp_path_factory.mktemp("spread")) as daemon:
        yield daemon
