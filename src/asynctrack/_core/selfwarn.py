"""
Rate-limited reporting of asynctrack's own problems on the stdlib logger ``asynctrack``.

A problem is reported the first time, then at most once per ``interval`` seconds per
key, with the number of repeats suppressed in between. Reporting never raises.
"""

from __future__ import annotations

import logging
import threading
import time

from asynctrack._core.runtime import RUNTIME

__all__ = ["logger", "once", "report"]

logger = logging.getLogger("asynctrack")

_INTERVAL = 20.0
#: When each key was last logged, and how many repeats were suppressed since.
_last: dict[str, float] = {}
_suppressed: dict[str, int] = {}
# Re-entrant, and taken only when a message is about to be logged (once per interval
# and key): application threads report each dropped log, and a signal handler that
# shuts down must never wait for the code it interrupted.
_lock = threading.RLock()


def report(key: str, message: str, *, level: int = logging.WARNING) -> bool:
    """
    Log ``message`` unless ``key`` was reported less than 20 s ago; return True if logged.
    """
    now = time.monotonic()
    last = _last.get(key)
    if last is not None and now - last < _INTERVAL:
        # The frequent case, without a lock (two racing threads may lose one count).
        _suppressed[key] = _suppressed.get(key, 0) + 1
        return False
    with _lock:
        last = _last.get(key)
        if last is not None and now - last < _INTERVAL:
            _suppressed[key] = _suppressed.get(key, 0) + 1
            return False
        _last[key] = now
        suppressed = _suppressed.pop(key, 0)
    if suppressed:
        message = f"{message} ({suppressed} similar messages suppressed)"
    try:
        logger.log(level, message)
    except Exception:  # pragma: no cover - a broken handler must not break tracking
        pass
    return True


#: Keys already reported by once(), up to _ONCE_MAX (keys may come from user input,
#: such as a request path naming a root call: the set must stay bounded).
_once: set[str] = set()
_ONCE_MAX = 256


def once(key: str, message: str, *, level: int = logging.WARNING) -> bool:
    """
    Log ``message`` the first time ``key`` is reported in this process; return True if
    logged. Reporting never raises.
    """
    if key in _once:
        return False
    with _lock:
        if key in _once:
            return False
        if len(_once) >= _ONCE_MAX:
            full = True
        else:
            full = False
            _once.add(key)
    if full:
        return report("once-overflow", message, level=level)
    try:
        logger.log(level, message)
    except Exception:  # pragma: no cover - a broken handler must not break tracking
        pass
    return True


def after_fork_in_child() -> None:
    """
    Replace the lock, which another thread of the parent may have held at the fork.
    """
    global _lock
    _lock = threading.RLock()


def reset() -> None:
    with _lock:
        _last.clear()
        _suppressed.clear()
        _once.clear()


# RUNTIME.reset() (tests): every warning may be given again.
RUNTIME.on_reset.append(reset)
