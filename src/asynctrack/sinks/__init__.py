"""
Sinks: where completed logs are written. One module per sink.

``SQLSink`` is imported on first use, so ``import asynctrack`` loads no SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Sink
from ._file import FileSink, read_logs
from ._logging import LoggingSink
from ._memory import MemorySink

if TYPE_CHECKING:
    from ._sql import SQLSink

__all__ = ["FileSink", "LoggingSink", "MemorySink", "SQLSink", "Sink", "read_logs"]


def __getattr__(name: str) -> Any:
    if name == "SQLSink":
        from ._sql import SQLSink

        return SQLSink
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
