"""Which virtual daemons reach each other: components and their ring ids, sans-IO.

Theory of operation
-------------------
A :class:`Topology` is an immutable value: the daemons in configuration order, the
component each one is in, and each component's ring id ``(proc_id of its first daemon,
formation time)`` (docs/design/spread-protocol.md#group-ids). :meth:`Topology.reconfigure` returns
the topology after a partition, a merge, or both at once: a component whose daemons are
exactly those of an old one keeps that ring id, every other one gets a new ring formed at
``now`` (kept strictly increasing, so two changes in one second still differ). The engine
uses it to decide which views change; nothing here knows about sessions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from spreadq.errors import ConfigurationError

__all__ = ["RingId", "Topology", "daemon_proc_id"]


def daemon_proc_id(name: str) -> int:
    """Return Spread 5's default VirtualID of a daemon named ``name``, as a signed int32.

    It is Bob Jenkins' one-at-a-time hash of the name plus its NUL, seeded with that
    length (docs/design/spread-protocol.md#group-ids): ``daemon_proc_id("localhost") == 482711334``.
    """
    data = name.encode("latin-1") + b"\0"
    value = len(data)
    for byte in data:
        value = (value + byte) & 0xFFFFFFFF
        value = (value + (value << 10)) & 0xFFFFFFFF
        value ^= value >> 6
    value = (value + (value << 3)) & 0xFFFFFFFF
    value ^= value >> 11
    value = (value + (value << 15)) & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


@dataclass(frozen=True, slots=True, order=True)
class RingId:
    """A daemon membership (ring): the proc_id of its first daemon and its formation time."""

    proc_id: int
    time: int


@dataclass(frozen=True, slots=True)
class Topology:
    """The daemons, the component of each, and the ring id of each component.

    Components are numbered 0.. in the configuration order of their first daemons.
    """

    daemons: tuple[str, ...]
    component_of: Mapping[str, int]
    rings: Mapping[int, RingId]
    last_time: int

    @classmethod
    def initial(cls, daemons: Sequence[str], start_time: int) -> Topology:
        """All ``daemons`` in one component, its ring formed at ``start_time``."""
        return cls(
            tuple(daemons),
            MappingProxyType(dict.fromkeys(daemons, 0)),
            MappingProxyType({0: RingId(daemon_proc_id(daemons[0]), start_time)}),
            start_time,
        )

    def components(self) -> tuple[tuple[str, ...], ...]:
        """The daemons of each component, in configuration order."""
        layout: dict[int, list[str]] = {}
        for name in self.daemons:
            layout.setdefault(self.component_of[name], []).append(name)
        return tuple(tuple(names) for _, names in sorted(layout.items()))

    def ring(self, daemon: str) -> RingId:
        """The ring id of ``daemon``'s component.

        Raises:
            KeyError: no such daemon.
        """
        return self.rings[self.component_of[daemon]]

    def reconfigure(self, layout: Sequence[Sequence[str]], now: int) -> Topology:
        """The topology after the daemons regroup as ``layout`` (each daemon named once).

        Raises:
            ConfigurationError: a daemon is missing, unknown or named twice.
        """
        named = [name for component in layout for name in component]
        if sorted(named) != sorted(self.daemons) or any(not c for c in layout):
            raise ConfigurationError(
                f"a layout must name each of {self.daemons!r} exactly once, not {layout!r}"
            )
        order = {name: index for index, name in enumerate(self.daemons)}
        ordered = sorted(
            (sorted(component, key=order.__getitem__) for component in layout),
            key=lambda component: order[component[0]],
        )
        old_sets = {frozenset(component): index for index, component in self._indexed()}
        time = max(now, self.last_time + 1)
        last_time = self.last_time
        component_of: dict[str, int] = {}
        rings: dict[int, RingId] = {}
        for index, component in enumerate(ordered):
            component_of.update(dict.fromkeys(component, index))
            same = old_sets.get(frozenset(component))
            if same is not None:
                rings[index] = self.rings[same]
            else:
                rings[index] = RingId(daemon_proc_id(component[0]), time)
                last_time = time
        return Topology(
            self.daemons, MappingProxyType(component_of), MappingProxyType(rings), last_time
        )

    def _indexed(self) -> list[tuple[int, list[str]]]:
        groups: dict[int, list[str]] = {}
        for name, index in self.component_of.items():
            groups.setdefault(index, []).append(name)
        return list(groups.items())
