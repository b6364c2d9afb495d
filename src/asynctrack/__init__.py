"""
asynctrack: record what the users of an application do.

One log per request or job, across asyncio tasks, threads and trio; batched to
JSON-lines files and SQL databases by a background dispatcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from asynctrack._config.configure import configure, configure_from_file, tracking
from asynctrack._core.activity import add_data, add_info, info, propagate
from asynctrack._core.levels import DEBUG, DEFAULT, INFO, NONE, Level
from asynctrack._core.records import Call, Log
from asynctrack._core.tracecontext import SpanContext, current_span
from asynctrack._core.tracker import CallScope, Tracker, get_tracker
from asynctrack._core.values import is_redacted, represent
from asynctrack._delivery.counters import FlushResult, Stats
from asynctrack._delivery.pipeline import (
    flush,
    flush_sync,
    install_signal_handlers,
    shutdown,
    shutdown_sync,
    stats,
)
from asynctrack._exceptions import AsyncTrackError, ConfigError, PipelineClosedError
from asynctrack.sinks import FileSink, LoggingSink, MemorySink, Sink, read_logs

if _TYPE_CHECKING:
    from asynctrack.sinks._otlp.sink import OTLPSink
    from asynctrack.sinks._sql.sink import SQLSink


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
    "OTLPSink",
    "PipelineClosedError",
    "SQLSink",
    "Sink",
    "SpanContext",
    "Stats",
    "Tracker",
    "__version__",
    "add_data",
    "add_info",
    "configure",
    "configure_from_file",
    "current_span",
    "flush",
    "flush_sync",
    "get_tracker",
    "info",
    "install_signal_handlers",
    "is_redacted",
    "propagate",
    "read_logs",
    "represent",
    "shutdown",
    "shutdown_sync",
    "stats",
    "tracking",
]


def __getattr__(name: str) -> _Any:
    # SQLAlchemy loads only when the SQL sink is first used (import cost: see docs/design.md).
    if name == "SQLSink":
        from asynctrack.sinks._sql.sink import SQLSink

        return SQLSink
    if name == "OTLPSink":
        # httpx and protobuf load only when an OTLPSink is made (the [otlp] extra).
        from asynctrack.sinks._otlp.sink import OTLPSink

        return OTLPSink
    if name == "__version__":
        # importlib.metadata costs tens of ms: only when asked (CLI start-up time).
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("asynctrack")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            return "0.0.0"
    raise AttributeError(f"module 'asynctrack' has no attribute {name!r}")
