"""
asynctrack: record what the users of an application do.

One log per request or job, across asyncio tasks, threads and trio.
"""

from __future__ import annotations

from ._context import add_data, add_info, info, propagate
from ._exceptions import AsyncTrackError, ConfigError, PipelineClosedError
from ._levels import DEBUG, DEFAULT, INFO, NONE, Level
from ._records import Call, Log
from ._tracker import Tracker, get_tracker
from ._values import represent

__all__ = [
    "DEBUG",
    "DEFAULT",
    "INFO",
    "NONE",
    "AsyncTrackError",
    "Call",
    "ConfigError",
    "Level",
    "Log",
    "PipelineClosedError",
    "Tracker",
    "add_data",
    "add_info",
    "get_tracker",
    "info",
    "propagate",
    "represent",
]
