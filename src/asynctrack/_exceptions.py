"""
The exceptions asynctrack raises.

    AsyncTrackError
     ├── ConfigError        bad configuration: raised by configure(), sinks' constructors
     │                      and SQLSink.open() when the user's tables do not fit
     └── PipelineClosedError  an operation needs a pipeline that was shut down

Tracking itself never raises into the application: failures of sinks and of
value conversion are counted in ``asynctrack.stats()`` and reported once on the
stdlib logger ``asynctrack``.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["AsyncTrackError", "ConfigError", "PipelineClosedError", "quote"]

#: A configuration error message is cut to this many characters (head and tail kept):
#: a value read from a file or the environment can be megabytes long (#15).
MAX_MESSAGE = 1_000
#: How much of a bad value an error message quotes.
QUOTE_CHARS = 60

_repr = reprlib.Repr()
_repr.maxlevel = 3
_repr.maxstring = _repr.maxother = QUOTE_CHARS
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 6


class AsyncTrackError(Exception):
    """
    Base class of every exception raised by asynctrack.
    """


class ConfigError(AsyncTrackError, ValueError):
    """
    Raised when a configuration option, a sink argument or a configuration file is invalid.

    The message names the option (``batch_size``, ``asynctrack.sinks[1].url``) and what
    was expected. It is at most about a thousand characters long, whatever the value.
    """

    def __init__(self, message: Any = "", *args: Any) -> None:
        if isinstance(message, str) and len(message) > MAX_MESSAGE:
            # The label and the expectation come first, the value last: keep both ends.
            head, tail = MAX_MESSAGE * 2 // 3, MAX_MESSAGE // 4
            cut = len(message) - head - tail
            message = f"{message[:head]} …[{cut} characters cut]… {message[-tail:]}"
        super().__init__(message, *args)


class PipelineClosedError(AsyncTrackError, RuntimeError):
    """
    Raised when an operation needs a pipeline that was already shut down.
    """


def quote(value: Any) -> str:
    """
    Return a short ``repr`` of a bad value for an error message.

    Strings and bytes are quoted by a prefix of at most 60 characters followed by their
    length; containers are shown at most three levels deep and six items wide, so a
    deeply nested value cannot raise ``RecursionError``; a ``__repr__`` that raises
    shows the type.
    """
    try:
        if isinstance(value, (str, bytes)):
            text = repr(value[:QUOTE_CHARS])
            if len(text) > QUOTE_CHARS + 3:  # escapes: one character can take four
                text = text[:QUOTE_CHARS] + "…"
            if len(value) <= QUOTE_CHARS:
                return text
            unit = "characters" if isinstance(value, str) else "bytes"
            return f"{text}… ({len(value)} {unit})"
        return _repr.repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"


for _cls in (AsyncTrackError, ConfigError, PipelineClosedError):
    _cls.__module__ = "asynctrack"
