"""Properties of the codecs (hypothesis).

* Every message kind round-trips, written little-endian by us or big-endian by a
  Java-style writer (``to_big_endian`` rewrites our bytes the way
  docs/design/spread-protocol.md#byte-order says a BE writer lays them out).
* Feeding the same bytes in any chunking yields the same events.
* Arbitrary, truncated or corrupted bytes only ever produce events or
  ``RemoteProtocolError``: never ``IndexError``, ``struct.error``, ``UnicodeError``,
  ``MemoryError`` or any other exception, and never a wait for a body over the cap.
* Names and sizes are validated when commands are built.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_helpers import drain, name32, open_client, open_server, to_big_endian

from spreadq.errors import InvalidName, LocalProtocolError, MessageTooLarge, RemoteProtocolError
from spreadq.wire import (
    CLOSED,
    NEED_DATA,
    Cause,
    ClientCommand,
    ClientSession,
    DaemonMessage,
    DataMessage,
    Disconnect,
    GroupId,
    IncomingMulticast,
    Join,
    Leave,
    Multicast,
    RegularMembership,
    RejectedMessage,
    SelfLeave,
    ServerSession,
    ServiceType,
    TransitionalMembership,
    encode_daemon_message,
)
from spreadq.wire.buffer import ReceiveBuffer

ME = "#alice#localhost"
LEVELS = [ServiceType(1 << bit) for bit in range(6)]

# --- strategies ------------------------------------------------------------------------

wire_names = (
    st.binary(max_size=31)
    .filter(lambda raw: b"\0" not in raw)
    .map(lambda raw: raw.decode("latin-1"))
)
"""Anything a daemon can send as a name: 0..31 bytes without NUL."""
legal_bytes = "".join(chr(c) for c in range(0x24, 0x7F))
group_names = st.text(legal_bytes, min_size=1, max_size=31)
private_names = st.text(legal_bytes, max_size=10)
int16 = st.integers(-32768, 32767)
int32 = st.integers(-(2**31), 2**31 - 1)
services = st.builds(
    lambda level, discard: level | ServiceType.SELF_DISCARD if discard else level,
    st.sampled_from(LEVELS),
    st.booleans(),
)
group_ids = st.builds(GroupId, int32, int32, int32)
name_tuples = st.lists(wire_names, max_size=5).map(tuple)


@st.composite
def memberships(draw: st.DrawFn) -> RegularMembership:
    sets = tuple(draw(st.lists(name_tuples, max_size=3)))
    local = draw(st.integers(0, len(sets) - 1)) if sets else 0
    return RegularMembership(
        draw(wire_names),
        draw(group_ids),
        draw(name_tuples),
        draw(st.sampled_from(Cause)),
        sets,
        local,
    )


daemon_messages: st.SearchStrategy[DaemonMessage] = st.one_of(
    st.builds(
        DataMessage,
        wire_names,
        name_tuples,
        services,
        int16,
        st.binary(max_size=300),
        st.booleans(),
    ),
    memberships(),
    st.builds(TransitionalMembership, wire_names, group_ids),
    st.builds(SelfLeave, wire_names),
    st.builds(
        RejectedMessage,
        wire_names,
        name_tuples,
        st.integers(0, 2**32 - 1).map(lambda value: value & ~0x80000080),
        int16,
        st.binary(max_size=100),
    ),
)

client_commands: st.SearchStrategy[ClientCommand] = st.one_of(
    st.builds(Join, group_names),
    st.builds(Leave, group_names),
    st.just(Disconnect()),
    st.builds(
        Multicast,
        st.lists(group_names, min_size=1, max_size=5).map(tuple),
        st.binary(max_size=300),
        services,
        int16,
    ),
)


def body_offsets(message: DaemonMessage) -> list[int]:
    """Offsets of the 4-byte integers inside the data of ``message`` (daemon order)."""
    if isinstance(message, TransitionalMembership):
        return [0, 4, 8]
    if isinstance(message, RegularMembership):
        offsets, at = [0, 4, 8, 12, 16], 20
        for names in message.vs_sets:
            offsets.append(at)
            at += 4 + 32 * len(names)
        return offsets
    return []


def expected_server_event(command: ClientCommand, hint: bytes) -> object:
    if isinstance(command, Multicast):
        return IncomingMulticast(
            command.groups, command.data, command.service, command.mess_type, hint, ME
        )
    return command


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    return [piece for piece in pieces if piece]  # b"" would mean EOF


def events_or_remote_error(session: ClientSession | ServerSession, chunks: list[bytes]) -> None:
    """Feed ``chunks`` then EOF; only events or RemoteProtocolError may come out."""
    try:
        for chunk in filter(None, chunks):  # b"" would mean EOF
            session.receive_data(chunk)
            drain(session)
        session.receive_data(b"")
        assert drain(session)[-1:] in ([CLOSED], [])
        assert session.next_event() is CLOSED
    except RemoteProtocolError:
        assert session.next_event() is CLOSED


# --- round trips -------------------------------------------------------------------------


@given(daemon_messages)
def test_daemon_message_round_trip_little_endian(message: DaemonMessage) -> None:
    client = open_client()
    client.receive_data(encode_daemon_message(message))
    assert drain(client) == [message]


@given(daemon_messages)
def test_daemon_message_round_trip_big_endian(message: DaemonMessage) -> None:
    wire = to_big_endian(
        encode_daemon_message(message), swap_hint=False, body_ints=body_offsets(message)
    )
    assert wire[0] & 0x80 == 0
    client = open_client()
    client.receive_data(wire)
    assert drain(client) == [message]


@given(client_commands, st.booleans())
def test_client_command_round_trip_both_orders(command: ClientCommand, big: bool) -> None:
    wire = open_client(ME).send(command)
    if big:
        wire = to_big_endian(wire, swap_hint=True)
    server = open_server(ME)
    server.receive_data(wire)
    events = drain(server)
    assert events[0] == expected_server_event(command, wire[40:44])
    assert events[1:] == ([CLOSED] if isinstance(command, Disconnect) else [])


@given(st.lists(daemon_messages, min_size=1, max_size=6), st.lists(st.integers(0, 10**6)))
def test_any_chunking_gives_the_same_client_events(
    messages: list[DaemonMessage], cuts: list[int]
) -> None:
    wire = b"".join(encode_daemon_message(message) for message in messages)
    client = open_client()
    events = []
    for chunk in split(wire, cuts):
        client.receive_data(chunk)
        events += drain(client)
    assert events == messages


@given(
    st.lists(client_commands.filter(lambda c: not isinstance(c, Disconnect)), max_size=6),
    st.lists(st.integers(0, 10**6)),
)
def test_any_chunking_gives_the_same_server_events(
    commands: list[ClientCommand], cuts: list[int]
) -> None:
    wire = open_client(ME).send_many(commands)
    server = open_server(ME)
    events = []
    for chunk in split(wire, cuts):
        server.receive_data(chunk)
        events += drain(server)
    assert len(events) == len(commands)
    for event, command in zip(events, commands, strict=True):
        if isinstance(command, Multicast):
            assert isinstance(event, IncomingMulticast)
            assert (event.groups, event.data, event.service, event.mess_type) == (
                command.groups,
                command.data,
                command.service,
                command.mess_type,
            )
        else:
            assert event == command


@given(st.lists(st.integers(0, 10**6), max_size=8))
def test_any_chunking_of_a_whole_connection(cuts: list[int]) -> None:
    client = ClientSession("alice")
    hello = client.start()
    server = ServerSession()
    server.receive_data(hello)
    drain(server)
    reply = server.auth_list()
    daemon_stream = reply
    client.receive_data(reply)
    drain(client)
    server.receive_data(client.data_to_send())
    drain(server)
    accept = server.accept(ME)
    messages: list[DaemonMessage] = [
        RegularMembership("g", GroupId(1, 2, 3), (ME,), Cause.JOIN, ((ME,),), 0),
        DataMessage(ME, ("g",), ServiceType.AGREED, 5, b"x" * 70),
    ]
    daemon_stream += accept + b"".join(server.send(message) for message in messages)
    fresh = ClientSession("alice")
    fresh.start()
    events = []
    for chunk in split(daemon_stream, cuts):
        fresh.receive_data(chunk)
        events += drain(fresh)
    assert events[1:] == messages
    assert fresh.private_group == ME


# --- hostile bytes -----------------------------------------------------------------------


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=200), max_size=6))
def test_arbitrary_bytes_at_an_open_client(chunks: list[bytes]) -> None:
    events_or_remote_error(open_client(), chunks)


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=200), max_size=6))
def test_arbitrary_bytes_at_an_open_server(chunks: list[bytes]) -> None:
    events_or_remote_error(open_server(), chunks)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_during_the_handshake(data: bytes) -> None:
    client = ClientSession("a")
    client.start()
    events_or_remote_error(client, [data])
    events_or_remote_error(ServerSession(), [data])


@given(
    st.lists(daemon_messages, min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_corrupted_daemon_bytes(
    messages: list[DaemonMessage], flips: list[tuple[int, int]]
) -> None:
    wire = bytearray(b"".join(encode_daemon_message(message) for message in messages))
    for position, value in flips:
        wire[position % len(wire)] = value
    events_or_remote_error(open_client(), [bytes(wire)])


@given(
    st.lists(client_commands, min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_corrupted_client_bytes(
    commands: list[ClientCommand], flips: list[tuple[int, int]]
) -> None:
    wire = bytearray(b"".join(open_client(ME).send(command) for command in commands))
    for position, value in flips:
        wire[position % len(wire)] = value
    events_or_remote_error(open_server(ME), [bytes(wire)])


@given(st.lists(daemon_messages, min_size=1, max_size=3), st.integers(0, 10**6))
def test_truncated_daemon_bytes(messages: list[DaemonMessage], cut: int) -> None:
    wire = b"".join(encode_daemon_message(message) for message in messages)
    events_or_remote_error(open_client(), [wire[: cut % len(wire)]])


@given(
    st.sampled_from([0x10, 0x1100, 0x2000, 0x200, 0x400000]),
    st.integers(0, 2**31 - 1),
    st.integers(0, 2**31 - 1),
)
def test_huge_announced_sizes_fail_on_the_header_alone(type_: int, count: int, size: int) -> None:
    cap = 1 << 20
    extra = 4 if type_ & 0x400000 else 0
    client = open_client(max_message_size=cap)
    header = (type_ | 0x80000080).to_bytes(4, "little") + name32("#s#x")
    header += count.to_bytes(4, "little") + b"\x80\0\0\x80" + size.to_bytes(4, "little")
    client.receive_data(header + bytes(extra))
    total = 48 + extra + 32 * count + size
    if total > cap:
        with pytest.raises(RemoteProtocolError, match="over the limit"):
            client.next_event()
    elif total > len(header) + extra:
        assert client.next_event() is NEED_DATA


def test_receive_buffer_refuses_before_buffering() -> None:
    buffer = ReceiveBuffer(100)
    buffer.feed(b"x" * 10)
    assert not buffer.ensure(100, "unit")
    with pytest.raises(RemoteProtocolError, match="over the limit of 100"):
        buffer.ensure(101, "unit")
    assert buffer.consume(4) == b"xxxx"
    buffer.feed(b"yz")
    assert buffer.take_all() == b"xxxxxxyz"
    assert len(buffer) == 0


# --- names and sizes ---------------------------------------------------------------------


@given(private_names)
def test_legal_private_names_are_sent_as_is(name: str) -> None:
    assert ClientSession(name).start()[5:] == name.encode()


@given(st.text(min_size=11, max_size=20) | st.text(string.whitespace + '#!"\x00\xe9', min_size=1))
def test_illegal_private_names(name: str) -> None:
    with pytest.raises(InvalidName):
        ClientSession(name)


@given(group_names)
def test_legal_group_names(name: str) -> None:
    assert Join(name).group == name
    assert Multicast((name,), b"").groups == (name,)


@pytest.mark.parametrize("name", ["", "x" * 32, "a b", "tab\t", "#private", "caf\xe9", "a\0"])
def test_illegal_group_names(name: str) -> None:
    with pytest.raises(InvalidName):
        Join(name)
    with pytest.raises(InvalidName):
        Leave(name)


@pytest.mark.parametrize("group", ["#alice#localhost", "#r1439-9#localhost", "#a#b"])
def test_private_groups_are_legal_destinations_only(group: str) -> None:
    assert Multicast((group,), b"").groups == (group,)
    with pytest.raises(InvalidName):
        Join(group)


@pytest.mark.parametrize("group", ["#", "##", "#a", "#a#", "#a b#x", "#abcdefghijk#x"])
def test_malformed_private_groups(group: str) -> None:
    with pytest.raises(InvalidName):
        Multicast((group,), b"")


def test_group_count_limits() -> None:
    groups = tuple(f"g{index}" for index in range(101))
    assert len(Multicast(groups[:100], b"").groups) == 100
    with pytest.raises(LocalProtocolError):
        Multicast(groups, b"")
    with pytest.raises(LocalProtocolError):
        Multicast((), b"")


@pytest.mark.parametrize("groups", [1, 10, 100])
def test_the_140000_cap(groups: int) -> None:
    names = tuple(f"g{index}" for index in range(groups))
    room = 140000 - 48 - 32 * groups
    assert len(Multicast(names, bytes(room)).data) == room
    with pytest.raises(MessageTooLarge) as caught:
        Multicast(names, bytes(room + 1))
    assert (caught.value.size, caught.value.limit) == (140001, 140000)


@pytest.mark.parametrize(
    "service",
    [
        ServiceType.AGREED | ServiceType.SAFE,
        ServiceType.SELF_DISCARD,
        ServiceType(0),
        ServiceType(0x1010),
    ],
)
def test_multicast_needs_exactly_one_level(service: ServiceType) -> None:
    with pytest.raises(LocalProtocolError):
        Multicast(("g",), b"", service)


@pytest.mark.parametrize("mess_type", [32768, -32769])
def test_multicast_mess_type_is_int16(mess_type: int) -> None:
    with pytest.raises(LocalProtocolError):
        Multicast(("g",), b"", ServiceType.AGREED, mess_type)
