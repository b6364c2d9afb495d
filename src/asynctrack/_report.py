"""
Rate-limited reporting of asynctrack's own problems on the stdlib logger ``asynctrack``.

A problem is reported the first time, then at most once per ``interval`` seconds per
key, with the number of repeats suppressed in between. Reporting never raises.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["logger", "report"]

logger = logging.getLogger("asynctrack")

_INTERVAL = 20.0
_state: dict[str, tuple[float, int]] = {}
_lock = threading.Lock()


def report(key: str, message: str, *, level: int = logging.WARNING) -> bool:
    """
    Log ``message`` unless ``key`` was reported less than 20 s ago; return True if logged.
    """
    now = time.monotonic()
    with _lock:
        last, suppressed = _state.get(key, (-1e18, 0))
        if now - last < _INTERVAL:
            _state[key] = (last, suppressed + 1)
            return False
        _state[key] = (now, 0)
    if suppressed:
        message = f"{message} ({suppressed} similar messages suppressed)"
    try:
        logger.log(level, message)
    except Exception:  # pragma: no cover - a broken handler must not break tracking
        pass
    return True


def reset() -> None:
    with _lock:
        _state.clear()
