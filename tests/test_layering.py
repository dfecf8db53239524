"""The import graph of ``spreadq``, built by AST, and the rules it must keep.

Every module of ``src/spreadq`` is parsed; an edge is any ``import`` or ``from ... import``
in it, at module level or inside a function, under ``TYPE_CHECKING`` too (an import a
reader has to follow is an edge, whether or not Python runs it). Importing a package
itself (``from spreadq.queue import X``) is an edge to its ``__init__``; importing a
submodule by name (``from spreadq.wire import events``) is an edge to that submodule.

The rules:

* no cycles;
* the sans-IO cores (``wire/``, ``queue/``, the daemon's engine, the session's
  translation, the worker's feedback rule, scheduler and recovery, the producer's core)
  import nothing that does I/O, reads a clock or draws randomness; the producer's core
  reaches nothing of ours but itself, ``queue``, ``wire`` and ``errors``;
* ``wire/`` imports only itself and ``errors``; ``queue/`` adds ``wire`` (never the
  reverse); the daemon imports only itself, ``wire``, ``errors`` and ``logs``; the
  worker's scheduler only the job types;
* nothing on the producer side reaches the worker side (``spreadq.worker``), even
  indirectly, nor the other way round; ``spreadq.session`` is shared by both and reaches
  neither;
* ``actors/`` never reaches the facades (``app``, ``producer``, ``client``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "spreadq"

FORBIDDEN_IN_CORES = {
    "asyncio",
    "anyio",
    "socket",
    "select",
    "selectors",
    "time",
    "random",
    "structlog",
    "threading",
    "subprocess",
}

PRODUCER_SIDE = ("spreadq.producer",)  # the package and every module in it
WORKER_SIDE = ("spreadq.worker",)
SHARED = ("spreadq.session",)  # both sides may import it; it imports neither
FACADES = ("spreadq.worker.app", "spreadq.producer.facade", "spreadq.producer", "spreadq.client")

# the producer's sans-IO core: its state machine and the values it takes and gives
PRODUCER_CORE = ("core.py", "inputs.py", "effects.py", "jobs.py")

# package -> the spreadq modules and packages it may import besides its own
ALLOWED_BELOW: dict[str, tuple[str, ...]] = {
    "spreadq.wire": ("spreadq.errors",),
    "spreadq.queue": ("spreadq.errors", "spreadq.wire"),
    "spreadq.daemon": ("spreadq.errors", "spreadq.logs", "spreadq.wire"),
    "spreadq.worker.scheduler": ("spreadq.queue.jobs",),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> Mapping[str, Path]:
    return {module_name(path): path for path in sorted(SRC.rglob("*.py"))}


def _owner(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name inside one) lives in."""
    known = modules()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The spreadq modules ``module`` imports, anywhere in its source."""
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(filter(None, (_owner(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                target = f"{base}.{alias.name}"
                owner = target if target in modules() else _owner(base)
                if owner is not None:
                    found.add(owner)
    found.discard(module)
    return found


@cache
def graph() -> Mapping[str, frozenset[str]]:
    return {module: frozenset(imports_of(module)) for module in modules()}


def reachable(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    edges = graph()
    while todo:
        for target in edges[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def cycles(edges: Mapping[str, frozenset[str]]) -> list[list[str]]:
    """The strongly connected components of ``edges`` with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(edges[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def _edges_from(prefix: str) -> Iterator[tuple[str, str]]:
    for module, targets in sorted(graph().items()):
        if _within(module, (prefix,)):
            for target in sorted(targets):
                yield module, target


def test_the_graph_sees_every_kind_of_import() -> None:
    edges = graph()
    assert len(edges) == len(list(SRC.rglob("*.py")))
    assert "spreadq.wire.session" in edges["spreadq.actors.connection"]  # from a module
    assert "spreadq.queue" in edges["spreadq.worker.dispatcher"]  # from a package
    assert "spreadq.wire.events" in edges["spreadq.wire"]  # a package's re-exports


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {
        "a": frozenset({"b"}),
        "b": frozenset({"c"}),
        "c": frozenset({"a"}),
        "d": frozenset({"a", "e"}),
        "e": frozenset({"d"}),
        "f": frozenset(),
    }
    assert sorted(cycles(edges)) == [["a", "b", "c"], ["d", "e"]]
    assert cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def core_modules() -> list[Path]:
    paths = [*(SRC / "wire").rglob("*.py"), *(SRC / "queue").rglob("*.py")]
    paths += [SRC / "daemon" / "engine.py", SRC / "daemon" / "network.py"]
    paths += [SRC / "session" / "translate.py", SRC / "worker" / "feedback.py"]
    paths += [SRC / "worker" / "scheduler.py", SRC / "worker" / "recovery.py"]
    paths += [SRC / "producer" / name for name in PRODUCER_CORE]
    missing = [path for path in paths if not path.exists()]
    assert not missing, f"sans-IO modules named here are gone: {missing}"
    return sorted(paths)


def _roots(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_sans_io_cores_import_no_io(path: Path) -> None:
    roots = _roots(path)
    assert not roots & FORBIDDEN_IN_CORES, f"{path.name} imports {roots & FORBIDDEN_IN_CORES}"


@pytest.mark.parametrize("package", sorted(ALLOWED_BELOW))
def test_lower_layers_import_only_what_is_below_them(package: str) -> None:
    allowed = (package, *ALLOWED_BELOW[package])
    bad = [f"{m} -> {t}" for m, t in _edges_from(package) if not _within(t, allowed)]
    assert not bad, "\n".join(bad)


def _reaching(sources: tuple[str, ...], targets: tuple[str, ...]) -> list[str]:
    """Each module within ``sources`` that reaches one within ``targets``, and which."""
    found = []
    for module in sorted(graph()):
        if _within(module, sources):
            hits = sorted(t for t in reachable(module) if _within(t, targets))
            if hits:
                found.append(f"{module} reaches {hits}")
    return found


def test_the_producer_core_reaches_only_sans_io_modules() -> None:
    core = {f"spreadq.producer.{name.removesuffix('.py')}" for name in PRODUCER_CORE}
    allowed = (*core, "spreadq.errors", "spreadq.queue", "spreadq.wire")
    bad = [
        f"{m} reaches {sorted(t for t in reachable(m) if not _within(t, allowed))}"
        for m in sorted(core)
        if any(not _within(t, allowed) for t in reachable(m))
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("side", "other"),
    [(PRODUCER_SIDE, WORKER_SIDE), (WORKER_SIDE, PRODUCER_SIDE)],
    ids=["producer-never-reaches-worker", "worker-never-reaches-producer"],
)
def test_producer_and_worker_sides_stay_apart(
    side: tuple[str, ...], other: tuple[str, ...]
) -> None:
    assert any(_within(module, side) for module in graph()), f"no module of {side}"
    bad = _reaching(side, other)
    assert not bad, "\n".join(bad)


def test_the_shared_session_layer_reaches_neither_side() -> None:
    assert "spreadq.session.translate" in graph()
    bad = _reaching(SHARED, (*PRODUCER_SIDE, *WORKER_SIDE))
    assert not bad, "\n".join(bad)


def test_actors_never_reach_the_facades() -> None:
    bad = _reaching(("spreadq.actors",), FACADES)
    assert not bad, "\n".join(bad)
