"""
MemorySink: keeps logs in a list, for tests and notebooks.
"""

from __future__ import annotations

from collections.abc import Sequence

from asynctrack._core.records import Log
from asynctrack.sinks._base import Sink

__all__ = ["MemorySink"]


class MemorySink(Sink):
    """
    Keep every log written in :attr:`logs` (in write order).

    .. versionadded:: 0.1
    """

    def __init__(self, name: str = "memory") -> None:
        if not isinstance(name, str) or not name:
            raise TypeError("MemorySink(): name must be a non-empty str")
        self._name = name
        self.logs: list[Log] = []

    @property
    def name(self) -> str:
        return self._name

    async def write(self, logs: Sequence[Log]) -> None:
        self.logs.extend(logs)

    def clear(self) -> None:
        """
        Forget the logs received so far.
        """
        self.logs.clear()


MemorySink.__module__ = "asynctrack"
