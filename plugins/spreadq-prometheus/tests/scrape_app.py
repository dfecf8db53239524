"""The App a worker process of ``test_worker_scrape.py`` runs, with the prometheus plugin.

``python -m spreadq worker scrape_app:app --metrics-port 0`` (this directory on the
path); ``SPREADQ_TEST_QUEUE`` names the queue.
"""

from __future__ import annotations

import os

from spreadq.worker.app import App

__all__ = ["app"]

app = App(os.environ.get("SPREADQ_TEST_QUEUE", "scraped"), plugins=["prometheus"])


@app.handler("double")
async def double(n: int) -> int:
    """Twice ``n``."""
    return 2 * n
