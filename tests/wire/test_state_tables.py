"""Random walks over both session APIs (h2's test_state_machines idea).

Any sequence of calls, with bytes that are sometimes right and sometimes not, may only
raise ``LocalProtocolError`` (and then change nothing) or ``RemoteProtocolError`` (and
then the session is ``CLOSED``); every state change is an edge of the transition table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from hypothesis import event as record_event
from hypothesis import given
from hypothesis import strategies as st

from spreadq.errors import LocalProtocolError, RemoteProtocolError
from spreadq.wire import (
    CLIENT_TRANSITIONS,
    CLOSED,
    SERVER_TRANSITIONS,
    ClientSession,
    ClientState,
    Disconnect,
    Join,
    Multicast,
    RejectCode,
    SelfLeave,
    ServerSession,
    ServerState,
    encode_daemon_message,
)

S = TypeVar("S", ClientState, ServerState)
ME = "#a#x"
JOIN_BYTES = (
    (0x80010080).to_bytes(4, "little")
    + ME.encode().ljust(32, b"\0")
    + bytes.fromhex("01000000 80000080 00000000")
    + b"g".ljust(32, b"\0")
)
DAEMON_PIECES = [
    b"\x05NULL ",
    b"\x01\x05\x00\x01\x04" + ME.encode(),
    b"\xf7",
    b"\x03IP ",
    encode_daemon_message(SelfLeave("g")),
    b"\x80\x00\x00",
    b"\x00" * 48,
]
CLIENT_PIECES = [
    b"\x05\x00\x01\x01\x01a",
    b"\x03\x00",
    b"NULL".ljust(90, b"\0"),
    JOIN_BYTES,
    JOIN_BYTES[:50],
    b"\xff" * 48,
]

CLIENT_SCRIPT: list[tuple[object, ...]] = [
    ("feed", DAEMON_PIECES[0]),
    ("next",),
    ("out",),
    ("feed", DAEMON_PIECES[1]),
    ("next",),
    ("send", Join("g")),
    ("feed", DAEMON_PIECES[4]),
    ("next",),
    ("send", Multicast(("g",), b"x")),
    ("send", Disconnect()),
    ("eof",),
    ("next",),
]
SERVER_SCRIPT: list[tuple[object, ...]] = [
    ("feed", CLIENT_PIECES[0]),
    ("next",),
    ("auth",),
    ("feed", CLIENT_PIECES[2]),
    ("next",),
    ("accept",),
    ("send",),
    ("feed", CLIENT_PIECES[3]),
    ("next",),
    ("eof",),
    ("next",),
]

client_noise = st.one_of(
    st.just(("start",)),
    st.just(("next",)),
    st.just(("out",)),
    st.just(("eof",)),
    st.tuples(st.just("feed"), st.sampled_from(DAEMON_PIECES) | st.binary(min_size=1, max_size=60)),
    st.tuples(st.just("send"), st.sampled_from([Join("g"), Disconnect(), Multicast(("g",), b"x")])),
)
server_noise = st.one_of(
    st.just(("next",)),
    st.just(("auth",)),
    st.just(("accept",)),
    st.just(("eof",)),
    st.tuples(st.just("reject"), st.sampled_from(list(RejectCode))),
    st.tuples(st.just("feed"), st.sampled_from(CLIENT_PIECES) | st.binary(min_size=1, max_size=60)),
    st.just(("send",)),
)


def walks(
    script: list[tuple[object, ...]], noise: st.SearchStrategy[tuple[object, ...]]
) -> st.SearchStrategy[list[tuple[object, ...]]]:
    """The happy-path ``script`` with up to two random operations before each step."""
    return st.lists(st.lists(noise, max_size=2), min_size=len(script), max_size=len(script)).map(
        lambda extra: [
            op for before, step in zip(extra, script, strict=True) for op in [*before, step]
        ]
    )


client_ops = walks(CLIENT_SCRIPT, client_noise)
server_ops = walks(SERVER_SCRIPT, server_noise)


@given(client_ops)
def test_client_random_walk(ops: list[tuple[object, ...]]) -> None:
    client = ClientSession("a")
    client.start()
    seen: set[str] = set()
    for op in ops:
        before = client.state
        try:
            if op[0] == "start":
                client.start()
            elif op[0] == "next":
                event = client.next_event()
                if before is ClientState.CLOSED:
                    assert event is CLOSED
            elif op[0] == "out":
                client.data_to_send()
            elif op[0] == "eof":
                client.receive_data(b"")
            elif op[0] == "feed":
                assert isinstance(op[1], bytes)
                client.receive_data(op[1])
            else:
                assert isinstance(op[1], Join | Disconnect | Multicast)
                client.send(op[1])
        except LocalProtocolError:
            assert client.state is before
            continue
        except RemoteProtocolError:
            assert client.state is ClientState.CLOSED
            continue
        # one call may take two steps (the auth list and the accept in one read)
        assert client.state in reachable(CLIENT_TRANSITIONS, before, steps=2)
        seen.add(client.state.name)
    record_event(f"client reached {'OPEN' if 'OPEN' in seen else 'no OPEN'}")


@given(server_ops)
def test_server_random_walk(ops: list[tuple[object, ...]]) -> None:
    server = ServerSession()
    seen: set[str] = set()
    for op in ops:
        before = server.state
        try:
            if op[0] == "next":
                server.next_event()
            elif op[0] == "auth":
                server.auth_list()
            elif op[0] == "accept":
                server.accept(ME)
            elif op[0] == "eof":
                server.receive_data(b"")
            elif op[0] == "reject":
                assert isinstance(op[1], RejectCode)
                server.reject(op[1])
            elif op[0] == "feed":
                assert isinstance(op[1], bytes)
                server.receive_data(op[1])
            else:
                server.send(SelfLeave("g"))
        except LocalProtocolError:
            assert server.state is before
            continue
        except RemoteProtocolError:
            assert server.state is ServerState.CLOSED
            continue
        assert server.state in reachable(SERVER_TRANSITIONS, before, steps=1)
        seen.add(server.state.name)
    record_event(f"server reached {'OPEN' if 'OPEN' in seen else 'no OPEN'}")


def reachable(table: Mapping[tuple[S, Any], S], start: S, *, steps: int) -> set[S]:
    """The states ``start`` can reach in at most ``steps`` edges of ``table``."""
    found = {start}
    for _ in range(steps):
        found |= {target for (state, _), target in table.items() if state in found}
    return found
