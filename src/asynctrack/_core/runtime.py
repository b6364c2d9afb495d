"""
The hooks through which the core reaches the delivery layer without importing it.

The core (records, call tree, probe, trackers) sits below the delivery layer, so it
cannot import it; the delivery layer sets these hooks when it is imported (which
``import asynctrack`` always does). Until then they fail loudly rather than drop data.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["RUNTIME", "Runtime"]


async def _no_flush(timeout: float | None = None) -> Any:
    raise RuntimeError("asynctrack's delivery layer is not loaded: import asynctrack")


def _no_flush_sync(timeout: float | None = 5.0) -> Any:
    raise RuntimeError("asynctrack's delivery layer is not loaded: import asynctrack")


class Runtime:
    """
    Process-wide hooks the core calls into the layers above it.

    ``flush`` / ``flush_sync`` are :func:`asynctrack.flush` and
    :func:`asynctrack.flush_sync`, used by ``Tracker.flush()`` and ``Tracker.flush_sync()``.
    """

    __slots__ = ("flush", "flush_sync")

    def __init__(self) -> None:
        self.flush: Callable[[float | None], Coroutine[Any, Any, Any]] = _no_flush
        self.flush_sync: Callable[[float | None], Any] = _no_flush_sync


#: The one instance: the delivery layer sets its hooks when imported.
RUNTIME = Runtime()
