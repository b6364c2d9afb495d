"""
Sinks: where completed logs are written. One module per sink.
"""

from __future__ import annotations

from ._base import Sink
from ._memory import MemorySink

__all__ = ["MemorySink", "Sink"]
