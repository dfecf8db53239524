"""Shared type aliases: what a name or an address is, for readers and for mypy."""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["Address", "GroupName", "MemberName"]

Address: TypeAlias = str
"""A daemon address in Spread's syntax: ``"4803"``, ``"4803@host"``; or ``"unix:/path"``."""

GroupName: TypeAlias = str
"""A Spread group name: 1..31 bytes of ``$``..``~``."""

MemberName: TypeAlias = str
"""A member's private group name, ``#<private name>#<daemon name>``."""
