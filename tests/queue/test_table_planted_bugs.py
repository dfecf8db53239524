"""Named bugs planted in the replicated table, each caught by the seeded simulation.

Each bug is a small edit of ``spreadq/queue/table.py``'s source (or of
``spreadq/queue/dedupe.py``'s, the memory the table owns): the edited module is
compiled under another name and its ``OutstandingTable`` replaces the real one in the
simulator (``queue_sim.py``). The simulation must then break an invariant on one of the
listed seeds. The edit must apply exactly once, so a bug that no longer matches the
source fails here instead of passing unnoticed. The table of which targeted test in
``test_table.py`` also catches each bug is in ``docs/mutation.md``.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import queue_sim
from queue_sim import InvariantError, Simulation

import spreadq.queue.dedupe
import spreadq.queue.table

RULES = ("round_robin", "key_affinity", "least_loaded")

# name: (original text, planted text, seeds, steps)
BUGS: dict[str, tuple[str, str, tuple[int, ...], int]] = {
    "failover order reversed": (
        "            for entry in entries.values():\n                entry.counted = None",
        "            for entry in reversed(list(entries.values())):\n"
        "                entry.counted = None",
        (0, 1),
        300,
    ),
    "ACKs from non-members accepted": (
        '        if sender not in self._members:\n            self._counts["stale_acks"] += 1\n'
        "            return\n",
        "",
        (0, 1),
        300,
    ),
    "a newcomer holds a fragment it lacks": (
        "origin, held=done.held)",
        "origin, held=True)",
        (14, 16),
        300,
    ),
    "a re-sent job restarted by its owner": (
        "                    entry.run_sent, entry.started = True, old.started\n",
        "                    pass\n",
        (0, 3),
        300,
    ),
    "failover ignores draining members": (
        "m in holders and m not in self._draining",
        "m in holders",
        (0, 1, 2),
        300,
    ),
    "stale entries never forgotten": (
        "                        forget.append(entry.ref)  # nobody left who might hold it\n",
        "                        pass\n",
        (1002, 1003),
        2000,
    ),
}


def _compile(path: Path, source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


def planted_table(original: str, planted: str) -> type[spreadq.queue.table.OutstandingTable]:
    """The table with ``original`` replaced by ``planted`` in its source, or in the
    source of the dedupe memory it owns (``spreadq/queue/dedupe.py``)."""
    path = Path(spreadq.queue.table.__file__)
    source = path.read_text(encoding="utf-8")
    dedupe_path = Path(spreadq.queue.dedupe.__file__)
    dedupe_source = dedupe_path.read_text(encoding="utf-8")
    found = source.count(original) + dedupe_source.count(original)
    assert found == 1, "the bug no longer matches the table's source"
    if original in source:
        module = _compile(path, source.replace(original, planted), "spreadq.queue._planted_table")
    else:
        dedupe = _compile(
            dedupe_path,
            dedupe_source.replace(original, planted),
            "spreadq.queue._planted_dedupe",
        )
        module = _compile(path, source, "spreadq.queue._planted_table")
        module.__dict__["DedupeMemory"] = dedupe.DedupeMemory
    table: type[spreadq.queue.table.OutstandingTable] = module.OutstandingTable
    return table


def run(seed: int, steps: int) -> None:
    sim = Simulation(seed, rule=RULES[seed % 3])
    for _ in range(steps):
        sim.step()
    sim.quiesce()
    sim.check_liveness()


@pytest.mark.parametrize("name", list(BUGS))
def test_the_simulation_catches_a_planted_bug(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    original, planted, seeds, steps = BUGS[name]
    monkeypatch.setattr(queue_sim, "OutstandingTable", planted_table(original, planted))
    caught = []
    for seed in seeds:
        try:
            run(seed, steps)
        except InvariantError as error:
            caught.append(str(error).splitlines()[0])
    assert caught, f"{name}: no seed of {seeds} broke an invariant"


def test_the_unplanted_table_passes_the_same_seeds() -> None:
    # the edit is what the simulation catches, not the way the module is loaded
    seeds = sorted({(seed, steps) for _, _, ss, steps in BUGS.values() for seed in ss})
    table = planted_table("class OutstandingTable:", "class OutstandingTable:")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(queue_sim, "OutstandingTable", table)
        for seed, steps in seeds:
            if steps == 300:
                run(seed, steps)
