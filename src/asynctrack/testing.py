"""
Test helpers: :func:`capture` collects completed logs in-process.

.. versionadded:: 0.1
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from asynctrack._core import calltree, tracker
from asynctrack._core.records import Log

__all__ = ["Captured", "capture"]


class Captured(list[Log]):
    """
    The logs completed while a :func:`capture` block was active, in completion order.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._active = False

    def _receive(self, log: Log) -> None:
        with self._lock:
            self.append(log)

    def __enter__(self) -> Captured:
        if self._active:
            raise RuntimeError("capture() is already active")
        self._active = True
        calltree.add_listener(self._receive)
        tracker.enable(+1)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        calltree.remove_listener(self._receive)
        tracker.enable(-1)
        self._active = False

    async def __aenter__(self) -> Captured:
        return self.__enter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        self.__exit__(*exc_info)

    def dicts(self) -> list[dict[str, Any]]:
        """
        Return the captured logs in their JSON form.
        """
        return [log.to_dict() for log in self]


def capture() -> Captured:
    """
    Collect the logs completed inside a ``with`` (or ``async with``) block.

    Probes record while the block is active even if ``configure`` was never called
    (at the configured levels, else at ``DEFAULT``); the logs also go to the configured
    pipeline, if any::

        with asynctrack.testing.capture() as logs:
            checkout(cart_id=42)
        assert logs[0].calls[0].function == "shop.checkout"
    """
    return Captured()
