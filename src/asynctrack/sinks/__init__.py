"""
Sinks: where completed logs are written. One module per sink.

``SQLSink`` and ``OTLPSink`` are imported on first use, so ``import asynctrack`` loads
no SQLAlchemy, httpx or protobuf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asynctrack.sinks._base import Sink
from asynctrack.sinks._file import FileSink, read_logs
from asynctrack.sinks._logging import LoggingSink
from asynctrack.sinks._memory import MemorySink

if TYPE_CHECKING:
    from asynctrack.sinks._otlp.sink import OTLPSink
    from asynctrack.sinks._sql.sink import SQLSink

__all__ = [
    "FileSink",
    "LoggingSink",
    "MemorySink",
    "OTLPSink",
    "SQLSink",
    "Sink",
    "read_logs",
]


def __getattr__(name: str) -> Any:
    if name == "SQLSink":
        from asynctrack.sinks._sql.sink import SQLSink

        return SQLSink
    if name == "OTLPSink":
        from asynctrack.sinks._otlp.sink import OTLPSink

        return OTLPSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
