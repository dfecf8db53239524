"""The README's Python example runs (``scripts/check`` also type-checks it with mypy)."""

from __future__ import annotations

import re
from pathlib import Path

import spreadq

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_example_defines_a_working_app() -> None:
    blocks = readme_python_blocks()
    assert blocks, "README.md has no python example"
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    app = namespace["app"]
    assert isinstance(app, spreadq.App)
    assert set(app.handlers) == {"resize"}
    assert (app.work_group, app.feedback_group) == ("images", "images~fb")
    assert callable(namespace["produce"])
