"""spreadq.worker: the consumer side of a queue.

``app`` (the :class:`~spreadq.worker.app.App` facade, re-exported as ``spreadq.App``)
builds a frozen :class:`~spreadq.worker.spec.WorkerSpec`; ``runtime`` serves it session
after session; ``dispatcher`` runs one session (the table, its effects, drain and loss);
``scheduler`` decides which owned job starts when; ``runner`` runs one job.
"""

from __future__ import annotations

__all__: list[str] = []
