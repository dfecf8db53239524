"""The sans-IO cores import nothing that does I/O, reads a clock or draws randomness.

An AST walk over every module of ``spreadq.wire``, ``spreadq.queue``,
``spreadq.daemon.engine`` and ``spreadq.daemon.network``; and the layer order: nothing
below imports anything above.
"""

from __future__ import annotations

import ast
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

# package -> spreadq packages it may not import (the layers above it)
LAYERS: dict[str, set[str]] = {
    "wire": {"queue", "actors", "daemon", "cli", "app", "producer", "client", "testing"},
    "queue": {"wire", "actors", "daemon", "cli", "app", "producer", "client", "testing"},
    "actors": {"cli", "app", "producer", "testing", "daemon"},
    "daemon": {"queue", "actors", "cli", "app", "producer", "client"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def core_modules() -> list[Path]:
    paths = [*(SRC / "wire").rglob("*.py"), *(SRC / "queue").rglob("*.py")]
    paths += [SRC / "daemon" / "engine.py", SRC / "daemon" / "network.py"]
    missing = [path for path in paths if not path.exists()]
    assert not missing, f"sans-IO modules named here are gone: {missing}"
    return sorted(paths)


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_sans_io_cores_import_no_io(path: Path) -> None:
    roots = {name.split(".")[0] for name in imported_modules(path)}
    assert not roots & FORBIDDEN_IN_CORES, f"{path.name} imports {roots & FORBIDDEN_IN_CORES}"


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_layers_import_only_downwards(package: str) -> None:
    for path in (SRC / package).rglob("*.py"):
        for name in imported_modules(path):
            parts = name.split(".")
            if parts[0] != "spreadq" or len(parts) < 2:
                continue
            assert parts[1] not in LAYERS[package], f"{path} imports {name}"
