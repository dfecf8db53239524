"""The embedded daemon's core: sessions, groups, views and one total order, sans-IO.

Theory of operation
-------------------
One :class:`Engine` plays one Spread daemon, or several *virtual* daemons that share a
process (for fault injection). The server feeds it what clients do, one call at a time:
:meth:`Engine.open_session`, :meth:`Engine.join`, :meth:`Engine.leave`,
:meth:`Engine.multicast`, :meth:`Engine.close_session`. Each call appends the messages it
causes to the queues of the receiving sessions, so the order in which calls are made *is*
the one global order of Spread's AGREED service: data and membership changes, across all
groups and all virtual daemons (docs/design/replicated-table.md#why-the-members-agree). Nothing here
reads a clock, draws a random number or touches a socket; the start time and the time of a
network change arrive as arguments.

Outputs are :class:`Output` values: the typed message (a
:class:`~spreadq.wire.events.DaemonMessage`) and its wire bytes, made once by the injected
encoder and shared by every receiver (a large message's body is not even copied: the
encoder may pass it on as a part of its own). The server takes a session's queue with
:meth:`Engine.take` when the session's socket can be written. A session with more than
``max_session_messages`` messages still queued is dropped exactly as if it had
disconnected [membership: DISCONNECT]; :meth:`Engine.pop_dropped` tells the server which
sockets to close,
and :meth:`Engine.pop_ready` which queues became non-empty or reached ``high_water``
messages (so that a server decoding a large batch of input can write in between, and
only a session whose socket is really full ever comes near the limit).

Membership (docs/design/membership.md): members are ordered by their daemon's position in the
configuration, then byte-wise by private group name. Join, leave and disconnect send the
lightweight regular membership (one vs set holding the member that changed, offset 0) to
every member that asked for membership messages; the leaver gets only a self-leave. A
group's id is ``(ring proc_id, ring time, index)``: the index starts at 1, grows by one per
change, and the group is deleted when it empties, so ids repeat [Group ids].

Virtual daemons and network changes [Daemon → client; membership: TRANSITIONAL, then
NETWORK]: each virtual daemon belongs to
one *component* (the daemons that can reach each other), and every component has a ring
id ``(proc_id of its first daemon, formation time)``. Traffic and views stay inside the
sender's component. :meth:`Engine.reconfigure` installs a new layout of components: every
group whose view changes gets, first, a transitional membership (the old gid) at the
members whose old view lost members, then a regular membership ``CAUSED_BY_NETWORK`` with
gid ``(new ring, 1)`` and one vs set per old view the members came from, ordered by the
old view's ring id (proc_id, then time) and then by daemon order; ``local_vs_set`` points
at the receiver's own set. A pure merge therefore sends no transitional message. A group
whose view in a component is unchanged keeps its gid.

Names in brackets, such as [Byte order], are sections of ``docs/design/spread-protocol.md``
(or, prefixed ``membership:``, of ``docs/design/membership.md``).
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from spreadq.daemon.network import RingId, Topology, daemon_proc_id
from spreadq.errors import ConfigurationError
from spreadq.wire.constants import (
    DEFAULT_MAX_SESSION_MESSAGES,
    LEGAL_NAME_BYTES,
    MAX_DAEMON_NAME,
    MAX_GROUP_NAME,
    MAX_PRIVATE_NAME,
    MAX_SESSIONS,
    Cause,
    RejectCode,
    ServiceType,
)
from spreadq.wire.events import (
    DaemonMessage,
    DataMessage,
    GroupId,
    RegularMembership,
    SelfLeave,
    TransitionalMembership,
)

__all__ = [
    "MINIMUM_CLIENT_VERSION",
    "Encoder",
    "Engine",
    "Output",
    "RingId",
    "SessionId",
    "SessionInfo",
    "Wire",
    "daemon_proc_id",
    "no_encoding",
]

SessionId = int
"""The engine's handle for one client session."""

MINIMUM_CLIENT_VERSION = (3, 1, 0)
"""Older client libraries get ``REJECT_VERSION`` (docs/design/spread-protocol.md#reject-codes)."""

_SELF_DISCARD = int(ServiceType.SELF_DISCARD)
# daemon-chosen names are r<0..9998>-<k> (docs/design/spread-protocol.md#names)
_MAX_GENERATED = 9999

Wire = tuple[bytes, ...]
"""A message's wire bytes in one or more parts, written one after the other."""

Encoder = Callable[[DaemonMessage, bytes | None], Wire]
"""Turns a message into wire bytes; the second argument is a data message's raw hint.

An encoder may return a large data message's body as its own part, the very ``bytes``
object the message carries, so that the daemon never holds a second copy of it.
"""


def no_encoding(message: DaemonMessage, hint: bytes | None) -> Wire:
    """An :data:`Encoder` that produces no bytes (for tests of the engine alone)."""
    return ()


@dataclass(frozen=True, slots=True)
class Output:
    """One message queued for a session: the typed value and its wire bytes.

    The same object is queued at every receiver, so a message is encoded once and held
    once, however many sessions it waits for.
    """

    message: DaemonMessage
    wire: Wire = field(repr=False)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """An accepted session, as :meth:`Engine.open_session` reports it."""

    id: SessionId
    daemon: str
    name: str
    private_group: str
    membership: bool


@dataclass(slots=True, eq=False)
class _Session:
    info: SessionInfo
    order: int  # position of the session's daemon in the configuration
    groups: set[str] = field(default_factory=set)
    queue: list[Output] = field(default_factory=list)
    open: bool = True


def _member_key(session: _Session) -> tuple[int, str]:
    return (session.order, session.info.private_group)


@dataclass(slots=True, eq=False)
class _View:
    gid: GroupId
    members: list[_Session]


@dataclass(slots=True, eq=False)
class _Group:
    name: str
    views: dict[int, _View] = field(default_factory=dict)  # component index -> view


class Engine:
    """One Spread daemon (or several virtual ones) without any I/O.

    Args:
        daemons: names of the virtual daemons, in configuration order (the member order).
        start_time: the daemons' start time in Unix seconds: the first ring's time.
        max_session_messages: a session with more messages queued is dropped.
        max_sessions: sessions per daemon; the next one gets ``REJECT_QUOTA``.
        encode: makes each message's wire bytes (see :data:`Encoder`).
        high_water: a queue this long is reported by :meth:`pop_ready` again (default:
            a quarter of ``max_session_messages``, at most 64).

    Raises:
        ConfigurationError: no daemons, a repeated daemon name, or a name Spread cannot use.
    """

    def __init__(
        self,
        *,
        daemons: Sequence[str] = ("localhost",),
        start_time: int = 0,
        max_session_messages: int = DEFAULT_MAX_SESSION_MESSAGES,
        max_sessions: int = MAX_SESSIONS,
        encode: Encoder = no_encoding,
        high_water: int | None = None,
    ) -> None:
        daemons = tuple(daemons)
        if not daemons:
            raise ConfigurationError("an engine needs at least one daemon")
        if len(set(daemons)) != len(daemons):
            raise ConfigurationError(f"daemon names repeat: {daemons!r}")
        for name in daemons:
            raw = name.encode("latin-1", "replace")
            if not 1 <= len(raw) <= MAX_DAEMON_NAME or not LEGAL_NAME_BYTES.match(raw):
                raise ConfigurationError(
                    f"daemon name {name!r} must be 1 to {MAX_DAEMON_NAME} bytes of '$'..'~'"
                )
        if max_session_messages < 1:
            raise ConfigurationError("max_session_messages must be at least 1")
        self._daemons = daemons
        self._order = {name: index for index, name in enumerate(daemons)}
        self._max_messages = max_session_messages
        if high_water is None:
            high_water = min(64, max(2, max_session_messages // 4))
        self._high_water = high_water
        self._max_sessions = max_sessions
        self._encode = encode
        self._topology = Topology.initial(daemons, start_time)
        self._sessions: dict[SessionId, _Session] = {}
        self._by_private_group: dict[str, _Session] = {}
        self._count_by_daemon = dict.fromkeys(daemons, 0)
        self._groups: dict[str, _Group] = {}
        self._next_id = 1
        self._generated = 0
        self._ready: list[SessionId] = []
        self._pressing = False
        self._overflowed: list[_Session] = []
        self._dropped: list[SessionId] = []

    # --- introspection -----------------------------------------------------------------

    @property
    def daemons(self) -> tuple[str, ...]:
        """The virtual daemons, in configuration order."""
        return self._daemons

    @property
    def max_session_messages(self) -> int:
        """How many queued messages a session may have before it is dropped."""
        return self._max_messages

    def components(self) -> tuple[tuple[str, ...], ...]:
        """The current layout: which daemons reach each other, in configuration order."""
        return self._topology.components()

    def ring(self, daemon: str) -> RingId:
        """The ring id of the component ``daemon`` is in.

        Raises:
            KeyError: no such daemon.
        """
        return self._topology.ring(daemon)

    def sessions(self) -> tuple[SessionInfo, ...]:
        """Every open session, oldest first."""
        return tuple(session.info for session in self._sessions.values())

    def session(self, session_id: SessionId) -> SessionInfo:
        """The session ``session_id``.

        Raises:
            KeyError: no open session has that id.
        """
        return self._sessions[session_id].info

    def find_session(self, who: str) -> SessionInfo:
        """Look a session up by private group (``#name#daemon``) or by private name.

        Raises:
            KeyError: no open session matches, or a bare name matches on several daemons.
        """
        found = self._by_private_group.get(who)
        if found is not None:
            return found.info
        matches = [s.info for s in self._sessions.values() if s.info.name == who]
        if len(matches) != 1:
            raise KeyError(who)
        return matches[0]

    def view(self, group: str, daemon: str | None = None) -> tuple[GroupId, tuple[str, ...]]:
        """The current view of ``group`` as seen on ``daemon``: its gid and members.

        Raises:
            KeyError: the group has no members in that daemon's component.
        """
        component = self._topology.component_of[daemon or self._daemons[0]]
        current = self._groups[group].views[component]
        return current.gid, tuple(m.info.private_group for m in current.members)

    def groups_of(self, session_id: SessionId) -> frozenset[str]:
        """The groups a session has joined.

        Raises:
            KeyError: no open session has that id.
        """
        return frozenset(self._sessions[session_id].groups)

    def is_open(self, session_id: SessionId) -> bool:
        """Whether ``session_id`` is an open session (not closed, not dropped)."""
        return session_id in self._sessions

    def queued(self, session_id: SessionId) -> int:
        """How many messages wait for the session (not yet taken by :meth:`take`).

        Raises:
            KeyError: no open session has that id.
        """
        return len(self._sessions[session_id].queue)

    # --- server interface --------------------------------------------------------------

    def has_room(self, daemon: str | None = None) -> bool:
        """Whether ``daemon`` may take another session (else ``REJECT_QUOTA``)."""
        return self._count_by_daemon[daemon or self._daemons[0]] < self._max_sessions

    def take(self, session_id: SessionId) -> list[Output]:
        """Remove and return everything queued for a session, in delivery order.

        A closed or unknown session has nothing queued.
        """
        session = self._sessions.get(session_id)
        if session is None or not session.queue:
            return []
        queue = session.queue
        session.queue = []
        return queue

    @property
    def pressing(self) -> bool:
        """Whether to flush before feeding more input.

        True once a queue reached ``high_water`` or a session was dropped, since the last
        :meth:`pop_ready`.
        """
        return self._pressing

    def pop_ready(self) -> list[SessionId]:
        """Sessions whose queue became non-empty or reached ``high_water`` since the last call.

        A session can be listed twice; a listed session may have been taken or closed
        since.
        """
        ready = self._ready
        self._ready = []
        self._pressing = False
        return ready

    def pop_dropped(self) -> list[SessionId]:
        """Sessions the engine dropped (queue overflow) since the last call: close them."""
        dropped = self._dropped
        self._dropped = []
        return dropped

    # --- sessions ----------------------------------------------------------------------

    def open_session(
        self,
        name: str,
        *,
        daemon: str | None = None,
        membership: bool = True,
        version: tuple[int, int, int] = (5, 0, 1),
    ) -> SessionInfo | RejectCode:
        """Admit a client that sent a hello, or say why not
        (docs/design/spread-protocol.md#reject-codes).

        An empty ``name`` asks the daemon to choose one (``r<n>-<k>``).

        Raises:
            KeyError: no such daemon.
        """
        daemon = daemon or self._daemons[0]
        order = self._order[daemon]
        if not self.has_room(daemon):
            return RejectCode.REJECT_QUOTA
        if version < MINIMUM_CLIENT_VERSION:
            return RejectCode.REJECT_VERSION
        raw = name.encode("latin-1", "replace")
        if len(raw) > MAX_PRIVATE_NAME or not LEGAL_NAME_BYTES.match(raw):
            return RejectCode.REJECT_ILLEGAL_NAME
        session_id = self._next_id
        if not name:
            name = self._generate_name(daemon, session_id)
        private_group = f"#{name}#{daemon}"
        if len(private_group) > MAX_GROUP_NAME:
            return RejectCode.REJECT_ILLEGAL_NAME
        if private_group in self._by_private_group:
            return RejectCode.REJECT_NOT_UNIQUE
        self._next_id += 1
        info = SessionInfo(session_id, daemon, name, private_group, membership)
        session = _Session(info, order)
        self._sessions[session_id] = session
        self._by_private_group[private_group] = session
        self._count_by_daemon[daemon] += 1
        return info

    def _generate_name(self, daemon: str, session_id: SessionId) -> str:
        while True:
            number = self._generated % _MAX_GENERATED
            self._generated += 1
            name = f"r{number}-{session_id}"[:9]
            if f"#{name}#{daemon}" not in self._by_private_group:
                return name

    def close_session(self, session_id: SessionId) -> None:
        """The session is gone (disconnect, EOF, error, kill): tell its groups.

        Unknown or already closed sessions are ignored.
        """
        session = self._sessions.get(session_id)
        if session is None:
            return
        self._remove(session)
        self._settle()

    def _remove(self, session: _Session) -> None:
        session.open = False
        session.queue = []
        component = self._topology.component_of[session.info.daemon]
        for name in sorted(session.groups):
            self._depart(self._groups[name], component, session, Cause.DISCONNECT)
        session.groups.clear()
        del self._sessions[session.info.id]
        del self._by_private_group[session.info.private_group]
        self._count_by_daemon[session.info.daemon] -= 1

    # --- commands ----------------------------------------------------------------------

    def join(self, session_id: SessionId, group: str) -> None:
        """``session_id`` joins ``group``; joining twice does nothing.

        Raises:
            KeyError: no open session has that id.
        """
        session = self._sessions[session_id]
        if group in session.groups:
            return
        session.groups.add(group)
        component = self._topology.component_of[session.info.daemon]
        entry = self._groups.get(group)
        if entry is None:
            entry = self._groups[group] = _Group(group)
        current = entry.views.get(component)
        if current is None:
            ring = self._topology.rings[component]
            current = entry.views[component] = _View(GroupId(ring.proc_id, ring.time, 1), [])
        else:
            gid = current.gid
            current.gid = GroupId(gid.proc_id, gid.time, gid.index + 1)
        insort(current.members, session, key=_member_key)
        self._announce(group, current, Cause.JOIN, session)
        self._settle()

    def leave(self, session_id: SessionId, group: str) -> None:
        """``session_id`` leaves ``group``; leaving a group it is not in does nothing.

        Raises:
            KeyError: no open session has that id.
        """
        session = self._sessions[session_id]
        if group not in session.groups:
            return
        session.groups.discard(group)
        if session.info.membership:
            message = SelfLeave(group)
            self._push(session, Output(message, self._encode(message, None)))
        component = self._topology.component_of[session.info.daemon]
        self._depart(self._groups[group], component, session, Cause.LEAVE)
        self._settle()

    def _depart(self, entry: _Group, component: int, session: _Session, cause: Cause) -> None:
        current = entry.views[component]
        current.members.remove(session)
        if not current.members:
            del entry.views[component]
            if not entry.views:
                del self._groups[entry.name]
            return
        gid = current.gid
        current.gid = GroupId(gid.proc_id, gid.time, gid.index + 1)
        self._announce(entry.name, current, cause, session)

    def _announce(self, group: str, current: _View, cause: Cause, changed: _Session) -> None:
        message = RegularMembership(
            group,
            current.gid,
            tuple(m.info.private_group for m in current.members),
            cause,
            ((changed.info.private_group,),),
            0,
        )
        output = Output(message, self._encode(message, None))
        for member in current.members:
            if member.info.membership:
                self._push(member, output)

    def multicast(
        self,
        session_id: SessionId,
        groups: Sequence[str],
        data: bytes,
        *,
        service: int = int(ServiceType.AGREED),
        mess_type: int = 0,
        hint: bytes | None = None,
    ) -> int:
        """Deliver a message from ``session_id`` once to every receiving session.

        The receivers are the members of the named groups in the sender's component plus
        the named private groups there; the sender is skipped if ``service`` has
        ``SELF_DISCARD``. ``hint`` is the sender's raw hint field, passed through to the
        encoder unchanged. Returns how many sessions received it.

        Raises:
            KeyError: no open session has that id.
        """
        sender = self._sessions[session_id]
        component = self._topology.component_of[sender.info.daemon]
        receivers: Iterable[_Session]
        if len(groups) == 1:
            receivers = self._receivers_of(groups[0], component)
        else:
            merged: dict[SessionId, _Session] = {}
            for group in groups:
                for member in self._receivers_of(group, component):
                    merged[member.info.id] = member
            receivers = merged.values()
        if service & _SELF_DISCARD:
            receivers = [m for m in receivers if m is not sender]
        if not receivers:
            return 0
        endian_mismatch = hint is not None and not hint[0] & 0x80
        message = DataMessage(
            sender.info.private_group,
            tuple(groups),
            ServiceType(service),
            mess_type,
            data,
            endian_mismatch,
        )
        output = Output(message, self._encode(message, hint))
        count = 0
        for member in receivers:
            self._push(member, output)
            count += 1
        self._settle()
        return count

    def _receivers_of(self, group: str, component: int) -> Sequence[_Session]:
        if group.startswith("#"):
            target = self._by_private_group.get(group)
            if target is None or self._topology.component_of[target.info.daemon] != component:
                return ()
            return (target,)
        entry = self._groups.get(group)
        if entry is None:
            return ()
        current = entry.views.get(component)
        return current.members if current is not None else ()

    # --- queues and the session limit --------------------------------------------------

    def _push(self, session: _Session, output: Output) -> None:
        if not session.open:
            return
        queue = session.queue
        queue.append(output)
        size = len(queue)
        if size > self._max_messages:
            session.open = False
            session.queue = []
            self._overflowed.append(session)
        elif size == 1:
            self._ready.append(session.info.id)
        elif size == self._high_water:
            self._ready.append(session.info.id)
            self._pressing = True

    def _settle(self) -> None:
        # A drop is a disconnect ordered after the event that overflowed the queue; its
        # membership messages may overflow other queues in turn.
        while self._overflowed:
            session = self._overflowed.pop(0)
            if session.info.id in self._sessions:
                self._remove(session)
                self._dropped.append(session.info.id)
                self._pressing = True

    # --- network changes ---------------------------------------------------------------

    def reconfigure(self, layout: Sequence[Sequence[str]], now: int) -> None:
        """Install a new layout of components (partition, merge, or both at once).

        ``layout`` must name every daemon exactly once. ``now`` (Unix seconds) becomes the
        formation time of each new ring, kept strictly increasing.

        Raises:
            ConfigurationError: a daemon is missing, unknown or named twice.
        """
        old, new = self._topology, self._topology.reconfigure(layout, now)
        transitions: list[tuple[_Session, Output]] = []
        regulars: list[tuple[_Session, Output]] = []
        for name in sorted(self._groups):
            entry = self._groups[name]
            entry.views = self._regroup(entry, old, new, transitions, regulars)
        self._topology = new
        for session, output in (*transitions, *regulars):
            self._push(session, output)
        self._settle()

    def _regroup(
        self,
        entry: _Group,
        old: Topology,
        new: Topology,
        transitions: list[tuple[_Session, Output]],
        regulars: list[tuple[_Session, Output]],
    ) -> dict[int, _View]:
        arriving: dict[int, dict[int, list[_Session]]] = {}  # new -> old -> members
        for old_index, old_view in entry.views.items():
            for member in old_view.members:
                new_index = new.component_of[member.info.daemon]
                arriving.setdefault(new_index, {}).setdefault(old_index, []).append(member)
        views: dict[int, _View] = {}
        for new_index, sources in arriving.items():
            if len(sources) == 1:
                ((old_index, members),) = sources.items()
                old_view = entry.views[old_index]
                if len(members) == len(old_view.members):
                    views[new_index] = old_view  # nothing lost, nothing gained
                    continue
            keyed: list[tuple[int, int, int, list[_Session]]] = []
            for old_index, members in sources.items():
                old_view = entry.views[old_index]
                if len(members) != len(old_view.members):
                    # The old view lost members: a transitional configuration first.
                    trans = TransitionalMembership(entry.name, old_view.gid)
                    output = Output(trans, self._encode(trans, None))
                    transitions.extend((m, output) for m in members if m.info.membership)
                    key = RingId(daemon_proc_id(members[0].info.daemon), new.last_time)
                else:
                    key = RingId(old_view.gid.proc_id, old_view.gid.time)
                keyed.append((key.proc_id, key.time, members[0].order, members))
            keyed.sort(key=lambda item: item[:3])
            vs_sets = tuple(tuple(m.info.private_group for m in item[3]) for item in keyed)
            ring = new.rings[new_index]
            gid = GroupId(ring.proc_id, ring.time, 1)
            members_all = sorted((m for item in keyed for m in item[3]), key=_member_key)
            names = tuple(m.info.private_group for m in members_all)
            for position, item in enumerate(keyed):
                message = RegularMembership(
                    entry.name, gid, names, Cause.NETWORK, vs_sets, position
                )
                output = Output(message, self._encode(message, None))
                regulars.extend((m, output) for m in item[3] if m.info.membership)
            views[new_index] = _View(gid, members_all)
        return views
