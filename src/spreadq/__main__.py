"""``python -m spreadq``: the same commands as the ``spreadq`` script."""

from __future__ import annotations

from spreadq.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
