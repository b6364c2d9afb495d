"""
Rendering of logs as indented call trees (``asynctrack show``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from asynctrack._core.records import Log
from asynctrack.cli.stats.format import human_us

__all__ = ["render_logs"]

_MAX_VALUE = 80


def _value(value: Any) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def _pairs(mapping: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={_value(value)}" for key, value in mapping.items())


def render_log(log: Log) -> str:
    """
    Render one log: a header line, then one line per call, indented by depth.

    Each call line shows its start offset in the log, its duration, its status and
    ``function(params)``; ``data`` and the error follow on their own lines.
    """
    started = log.started_at.strftime("%Y-%m-%d %H:%M:%S.%f")
    head = [f"log {log.id}", f"{started} UTC", human_us(log.duration_us)]
    head.append(f"{len(log.calls)} call" + ("" if len(log.calls) == 1 else "s"))
    if not log.complete:
        head.append("INCOMPLETE")
    lines = ["  ".join(head)]
    if log.parent_id:
        lines.append(f"  continues log {log.parent_id}")
    if log.info:
        lines.append(f"  info: {_pairs(log.info)}")
    if log.dropped_calls:
        lines.append(f"  {log.dropped_calls} calls not recorded (max_calls_per_log)")
    rows = []
    for call in log.calls:
        status = call.status if call.status == "ok" else call.status.upper()
        rows.append((f"+{human_us(call.offset_us)}", human_us(call.duration_us), status, call))
    w_off = max((len(r[0]) for r in rows), default=0)
    w_dur = max((len(r[1]) for r in rows), default=0)
    w_st = max((len(r[2]) for r in rows), default=0)
    for offset, duration, status, call in rows:
        prefix = f"  {offset:>{w_off}}  {duration:>{w_dur}}  {status:<{w_st}}  "
        indent = "  " * call.depth
        lines.append(f"{prefix}{indent}{call.function}({_pairs(call.params)})")
        pad = " " * len(prefix) + indent + "    "
        if call.data:
            lines.append(f"{pad}data: {_pairs(call.data)}")
        if call.error:
            lines.append(f"{pad}{call.error}")
    return "\n".join(lines)


def render_logs(logs: Sequence[Log]) -> str:
    """
    Render logs separated by blank lines (ending with a newline), or a note if none.
    """
    if not logs:
        return "no matching logs\n"
    return "\n\n".join(render_log(log) for log in logs) + "\n"
