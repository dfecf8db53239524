"""``__all__`` is honest in every module: each name exists, and public names are listed."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import spreadq


def all_modules() -> list[str]:
    names = ["spreadq"]
    for info in pkgutil.walk_packages(spreadq.__path__, prefix="spreadq."):
        if info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", all_modules())
def test_all_names_exist(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    missing = [item for item in exported if not hasattr(module, item)]
    assert not missing, f"{name}.__all__ names missing attributes: {missing}"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
