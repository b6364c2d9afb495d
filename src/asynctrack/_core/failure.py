"""
What a call that raised records: its status, the error's text and its traceback.

The traceback goes to the innermost probed call only: a call whose traceback shows
another probe's wrapper (generated, or one of the hand-written generator wrappers)
below it leaves it out.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import Any

from asynctrack._core.layout import ERROR, FRAME_SLOT, FRAME_SLOTS, STATUS, TRACEBACK
from asynctrack._core.runtime import RUNTIME
from asynctrack._core.values import clip, current_limits

__all__ = ["WRAPPER_CODES", "describe_error", "fail", "set_max_traceback_frames"]


def fail(frame: tuple[Any, ...], exc: BaseException) -> None:
    """
    Record that the call of ``frame`` raised ``exc`` (the exception itself is untouched).

    Called by the wrappers (in the ``except`` clause that caught ``exc``) and by
    ``CallScope.__exit__``. The traceback goes to the innermost probed call only: a
    call whose traceback shows another probe's wrapper below it leaves it out.
    """
    slots, i = frame[FRAME_SLOTS], frame[FRAME_SLOT]
    cancelled = _is_cancellation(exc)
    slots[i + STATUS] = "cancelled" if cancelled else "error"
    try:
        slots[i + ERROR] = describe_error(exc)
        if not cancelled and RUNTIME.max_frames:
            tb = exc.__traceback__
            frames = slots[i + TRACEBACK] = _frames(tb, RUNTIME.max_frames)
            if frames is not None and tb is not None:
                _mark_traced(tb)
    except Exception:  # pragma: no cover - never raise into the application
        pass


#: Code objects of the hand-written wrappers (generators, async generators); the
#: generated ones are recognised by their file name.
WRAPPER_CODES: set[Any] = set()
_GENERATED = "<asynctrack probe of "
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
#: The demo is an application that happens to ship inside the package: its frames are
#: the user's code of its logs, so its errors keep their tracebacks (see docs/cli.md).
_USER_FILES = frozenset({os.path.join(_OWN_DIR, "cli", "demo.py")})


def set_max_traceback_frames(n: int) -> None:
    RUNTIME.max_frames = n


def _frames(tb: Any, limit: int) -> list[tuple[str, int, str]] | None:
    # The first entry is the frame that caught the exception: a wrapper (skipped), or
    # the block of a ``with tracker.call(...)`` (kept unless it is our own code, as in
    # the ASGI middleware). A wrapper further down means an inner probed call has it.
    out: deque[tuple[str, int, str]] = deque(maxlen=limit)
    if tb is not None and _is_wrapper(tb.tb_frame.f_code):
        tb = tb.tb_next
    while tb is not None:
        if _TRACED.get(id(tb)) is tb:
            return None  # a ``tracker.call`` block further down recorded it already
        code = tb.tb_frame.f_code
        if _is_wrapper(code):
            if _tracking(tb.tb_frame):
                return None
            tb = tb.tb_next  # a probe that only passed the call through: not a frame of it
            continue
        filename = code.co_filename
        if not filename.startswith(_OWN_DIR) or filename in _USER_FILES:
            out.append((filename, tb.tb_lineno or 0, code.co_name))
        tb = tb.tb_next
    return list(out) or None


#: The traceback entries at which recent calls recorded their traceback. A wrapper
#: below is recognised by its code (above); a ``tracker.call`` block is not a wrapper,
#: so the entry where it caught the exception is remembered instead: the same entry
#: object stays in the chain as the exception rises, and a call above that meets it
#: leaves the traceback to the block. The entries are held (so their ids cannot be
#: reused while listed), at most ``_TRACED_MAX`` of them, and touched only on errors.
_TRACED: dict[int, Any] = {}
_TRACED_MAX = 64


def _mark_traced(tb: Any) -> None:
    _TRACED[id(tb)] = tb
    while len(_TRACED) > _TRACED_MAX:
        try:
            del _TRACED[next(iter(_TRACED))]
        except (StopIteration, KeyError, RuntimeError):  # another thread got there first
            break


def _is_wrapper(code: Any) -> bool:
    return code in WRAPPER_CODES or code.co_filename.startswith(_GENERATED)


def _tracking(frame: Any) -> bool:
    # Whether a wrapper's frame tracked its call (a call below the threshold only
    # passes through, and records nothing): the generated wrappers bind their call's
    # frame to a local ``<prefix>fr`` on the tracked path only; the hand-written ones
    # keep a ``tracked`` flag. Read only when an exception passes.
    local = frame.f_locals
    if frame.f_code in WRAPPER_CODES:
        return bool(local.get("tracked"))
    return any(name.endswith("at_fr") for name in local)


def describe_error(exc: BaseException) -> str:
    """
    Return ``"TypeName: message"`` for an exception, never raising.

    A cause given with ``raise … from`` is appended as ``"; caused by TypeName:
    message"`` (its own cause too, a few levels down).
    """
    text = _describe_one(exc)
    cause = exc.__cause__
    seen = {id(exc)}
    while cause is not None and id(cause) not in seen and len(seen) <= 3:
        seen.add(id(cause))
        text = f"{text}; caused by {_describe_one(cause)}"
        cause = cause.__cause__
    return text


def _describe_one(exc: BaseException) -> str:
    name = type(exc).__name__
    try:
        message = str(exc)
    except Exception:
        message = "<str() failed>"
    # A DSN with its password in an error message: redacted before the cut, so no
    # prefix of a password survives it.
    message = clip(message, current_limits().max_string)
    return f"{name}: {message}" if message else name


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.CancelledError):
        return True
    cls = type(exc)
    return cls.__name__ == "Cancelled" and cls.__module__.startswith("trio")
