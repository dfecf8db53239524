"""Objects in ``wire/`` and ``actors/`` touch only their own private attributes.

A handle talks to its actor, and a session to its buffer, through their public methods;
an AST walk finds every ``x._name`` whose ``x`` is not ``self``, ``cls`` or a class of
the same module (its own method tables, such as ``ClientSession._read_message``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "spreadq"
CHECKED = sorted([*(SRC / "wire").rglob("*.py"), *(SRC / "actors").rglob("*.py")])


def foreign_private_reads(source: str) -> list[str]:
    tree = ast.parse(source)
    own = {"self", "cls"} | {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in own)
            and not (isinstance(node.value, ast.Call) and ast.unparse(node.value) == "super()")
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_walk_finds_a_foreign_private_read() -> None:
    source = "class A:\n    def f(self, b):\n        return self._x, A._y, b._z, self._h._w\n"
    assert foreign_private_reads(source) == ["line 3: b._z", "line 3: self._h._w"]


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: str(p.relative_to(SRC)))
def test_no_reads_of_another_objects_private_attributes(path: Path) -> None:
    assert foreign_private_reads(path.read_text()) == []
