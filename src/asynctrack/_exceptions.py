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

__all__ = ["AsyncTrackError", "ConfigError", "PipelineClosedError"]


class AsyncTrackError(Exception):
    """
    Base class of every exception raised by asynctrack.
    """


class ConfigError(AsyncTrackError, ValueError):
    """
    Raised when a configuration option, a sink argument or a configuration file is invalid.

    The message names the option (``batch_size``, ``asynctrack.sinks[1].url``) and what
    was expected.
    """


class PipelineClosedError(AsyncTrackError, RuntimeError):
    """
    Raised when an operation needs a pipeline that was already shut down.
    """


for _cls in (AsyncTrackError, ConfigError, PipelineClosedError):
    _cls.__module__ = "asynctrack"
