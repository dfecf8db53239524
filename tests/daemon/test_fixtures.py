"""The public pytest fixtures of spreadq.testing, and the network topology values."""

from __future__ import annotations

import pytest

from spreadq.daemon import Daemon
from spreadq.daemon.network import RingId, Topology, daemon_proc_id
from spreadq.errors import ConfigurationError
from spreadq.testing import WireClient, parse_address
from spreadq.testing.fixtures import DaemonFactory

pytest_plugins = ["pytester"]


async def test_spreadq_daemon_fixture_defaults(spreadq_daemon: Daemon) -> None:
    assert spreadq_daemon.name == "localhost"
    assert spreadq_daemon.engine.max_session_messages == 1000
    async with await WireClient.connect(spreadq_daemon.address, "x") as client:
        assert spreadq_daemon.faults.sessions() == (client.private_group,)


@pytest.mark.spreadq_daemon(name="pd1", max_session_messages=7)
async def test_spreadq_daemon_marker_sets_options(spreadq_daemon: Daemon) -> None:
    assert spreadq_daemon.name == "pd1"
    assert spreadq_daemon.engine.max_session_messages == 7


async def test_factory_starts_several_daemons(spreadq_daemon_factory: DaemonFactory) -> None:
    first = await spreadq_daemon_factory(name="one")
    second = await spreadq_daemon_factory(daemons=("d1", "d2"))
    assert first.port != second.port
    assert second.daemons == ("d1", "d2")
    async with await WireClient.connect(second.addresses["d2"], "x") as client:
        assert client.private_group == "#x#d2"


def test_the_plugin_works_in_a_fresh_pytest_run(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "addopts = --strict-markers\n"
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.spreadq_daemon(name="abc")
        async def test_it(spreadq_daemon):
            assert spreadq_daemon.address.endswith("@127.0.0.1")
            assert spreadq_daemon.name == "abc"
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


USER_TESTS = """
import pytest
import spreadq
from spreadq.wire import RegularMembership

{preamble}

{mark}
async def test_daemon(spreadq_daemon):
    async with spreadq.connect(spreadq_daemon.address) as conn:
        await conn.join("g")
        view = await conn.receive()
        assert isinstance(view, RegularMembership)
        assert spreadq_daemon.faults.sessions() == (conn.private_group,)

{mark}
@pytest.mark.spreadq_daemon(name="named")
async def test_marker(spreadq_daemon):
    assert spreadq_daemon.name == "named"

{mark}
async def test_factory(spreadq_daemon_factory):
    first = await spreadq_daemon_factory(name="one")
    second = await spreadq_daemon_factory(name="two")
    for daemon in (first, second):
        async with spreadq.connect(daemon.address) as conn:
            assert conn.private_group.endswith("#" + daemon.name)
"""

ANYIO_BACKEND = """
@pytest.fixture
def anyio_backend():
    return "asyncio"
"""


@pytest.mark.parametrize(
    ("ini", "preamble", "mark"),
    [
        pytest.param("asyncio_mode = strict", "", "@pytest.mark.asyncio", id="asyncio-strict"),
        pytest.param("asyncio_mode = auto", "", "", id="asyncio-auto"),
        pytest.param(
            "asyncio_mode = strict", ANYIO_BACKEND, "@pytest.mark.anyio", id="anyio-marked"
        ),
        pytest.param(
            "asyncio_mode = strict\nanyio_mode = auto", ANYIO_BACKEND, "", id="anyio-auto"
        ),
    ],
)
def test_the_fixtures_work_under_each_async_plugin_mode(
    pytester: pytest.Pytester, ini: str, preamble: str, mark: str
) -> None:
    pytester.makeini(
        f"[pytest]\n{ini}\nasyncio_default_fixture_loop_scope = function\n"
        "addopts = --strict-markers\nfilterwarnings = error\n"
    )
    pytester.makepyfile(USER_TESTS.format(preamble=preamble, mark=mark))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_the_fixtures_work_without_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\naddopts = --strict-markers\nfilterwarnings = error\n")
    pytester.makepyfile(USER_TESTS.format(preamble=ANYIO_BACKEND, mark="@pytest.mark.anyio"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=3)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("", (None, None, "/tmp/4803")),
        ("4904", (None, None, "/tmp/4904")),
        ("4803@::1", ("::1", 4803, None)),
        ("unix:/run/s", (None, None, "/run/s")),
    ],
)
def test_parse_address(address: str, expected: tuple[object, ...]) -> None:
    parsed = parse_address(address)
    assert (parsed.host, parsed.port, parsed.path) == expected


def test_topology_keeps_the_ring_of_an_unchanged_component() -> None:
    start = Topology.initial(("d1", "d2", "d3"), 100)
    assert start.components() == (("d1", "d2", "d3"),)
    split = start.reconfigure([["d3"], ["d2", "d1"]], now=50)
    assert split.components() == (("d1", "d2"), ("d3",))
    assert split.ring("d1") == RingId(daemon_proc_id("d1"), 101)  # strictly after 100
    assert split.ring("d3") == RingId(daemon_proc_id("d3"), 101)
    again = split.reconfigure([["d1", "d2"], ["d3"]], now=500)
    assert again.rings == split.rings
    assert again.last_time == 101
    with pytest.raises(ConfigurationError):
        split.reconfigure([["d1", "d2"]], now=500)
