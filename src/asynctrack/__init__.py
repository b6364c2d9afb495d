"""
asynctrack: record what the users of an application do.

One log per request or job, across asyncio tasks, threads and trio; batched to
JSON-lines files and SQL databases by a background dispatcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._config import configure
from ._context import add_data, add_info, info, propagate
from ._counters import FlushResult, Stats
from ._exceptions import AsyncTrackError, ConfigError, PipelineClosedError
from ._levels import DEBUG, DEFAULT, INFO, NONE, Level
from ._pipeline import (
    flush,
    flush_sync,
    install_signal_handlers,
    shutdown,
    shutdown_sync,
    stats,
    tracking,
)
from ._records import Call, Log
from ._tracker import CallScope, Tracker, get_tracker
from ._values import represent
from .sinks import FileSink, LoggingSink, MemorySink, Sink, read_logs

if _TYPE_CHECKING:
    from .sinks._sql import SQLSink


__all__ = [
    "DEBUG",
    "DEFAULT",
    "INFO",
    "NONE",
    "AsyncTrackError",
    "Call",
    "CallScope",
    "ConfigError",
    "FileSink",
    "FlushResult",
    "Level",
    "Log",
    "LoggingSink",
    "MemorySink",
    "PipelineClosedError",
    "SQLSink",
    "Sink",
    "Stats",
    "Tracker",
    "__version__",
    "add_data",
    "add_info",
    "configure",
    "configure_from_file",
    "flush",
    "flush_sync",
    "get_tracker",
    "info",
    "install_signal_handlers",
    "propagate",
    "read_logs",
    "represent",
    "shutdown",
    "shutdown_sync",
    "stats",
    "tracking",
]


def __getattr__(name: str) -> _Any:
    # SQLAlchemy loads only when the SQL sink is first used (DESIGN: cheap import).
    if name == "SQLSink":
        from .sinks._sql import SQLSink

        return SQLSink
    if name == "__version__":
        # importlib.metadata costs tens of ms: only when asked (CLI start-up time).
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("asynctrack")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            return "0.0.0"
    if name == "configure_from_file":
        from ._config_file import configure_from_file

        return configure_from_file
    raise AttributeError(f"module 'asynctrack' has no attribute {name!r}")
