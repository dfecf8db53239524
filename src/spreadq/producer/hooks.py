"""Put hooks: the headers the loaded plugins add to every job a producer puts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from structlog.stdlib import BoundLogger

from spreadq.plugins import PutHook

__all__ = ["hooked_headers"]


def hooked_headers(
    hooks: Sequence[PutHook],
    queue: str,
    kind: str,
    headers: Mapping[str, str] | None,
    log: BoundLogger,
) -> Mapping[str, str] | None:
    """``headers`` over what ``hooks`` return for a job of ``kind`` on ``queue``.

    A hook that raises, or returns something other than a mapping of str to str, is
    logged (``put_hook_failed``) and skipped: a plugin's bug must not fail the put.
    Raises nothing.
    """
    merged: dict[str, str] = {}
    for hook in hooks:
        try:
            added = hook(queue, kind)
            if added is None:
                continue
            if not isinstance(added, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in added.items()
            ):
                raise TypeError(f"returned {added!r}, not a mapping of str to str")
        except Exception as error:  # a plugin's bug must not fail the put
            log.warning(
                "put_hook_failed", hook=repr(hook), error=f"{type(error).__name__}: {error}"
            )
            continue
        merged.update(added)
    if not merged:
        return headers
    if headers:
        merged.update(headers)
    return merged
