"""OpenTelemetry traces for spreadq (being written)."""

from __future__ import annotations

from spreadq.plugins import Plugin

__all__ = ["plugin"]

plugin = Plugin(name="otel")
