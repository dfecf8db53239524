"""spreadq.session: what both sides of a queue do with a daemon session.

Shared by the worker and the producer, and importing neither: ``translate`` turns the
daemon's events on one group into the queue core's inputs (unsealing the data on the
way), ``reconnect`` is the one reconnect-with-backoff policy and loop.
"""

from __future__ import annotations

__all__: list[str] = []
