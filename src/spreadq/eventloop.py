"""Which event loop spreadq's programs run on: uvloop when installed, else asyncio's."""

from __future__ import annotations

from typing import Literal

from spreadq.errors import ConfigurationError

__all__ = ["Loop", "use_uvloop"]

Loop = Literal["auto", "asyncio", "uvloop"]
"""The event loop: ``auto`` is uvloop when it is installed (``pip install 'spreadq[uvloop]'``)."""


def use_uvloop(loop: Loop = "auto") -> bool:
    """Whether ``loop`` means uvloop here (the value for anyio's ``use_uvloop`` option).

    Raises:
        ConfigurationError: ``uvloop`` was asked for and is not installed.
    """
    if loop == "asyncio":
        return False
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if loop == "uvloop":
            raise ConfigurationError(
                "uvloop is not installed (pip install 'spreadq[uvloop]')"
            ) from None
        return False
    return True
