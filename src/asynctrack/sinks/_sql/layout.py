"""
The layout of the SQL sink's tables: their names and fixed columns, and the key of
exact values kept in JSON. Plain data, without SQLAlchemy, so that the statistics
reader (``asynctrack stats`` / ``show``) uses the same names without importing it.
"""

from __future__ import annotations

__all__ = [
    "CALL_FIELDS",
    "CALL_OPTIONAL",
    "LOG_FIELDS",
    "LOG_OPTIONAL",
    "MIN_LENGTH",
    "RESERVED_KEY",
    "table_names",
]

#: Key under which the sink keeps, inside the ``info`` / ``data`` JSON, exact values that
#: did not fit their column (a 300-character function name, a NUL byte on PostgreSQL).
RESERVED_KEY = "__asynctrack__"

#: Fixed columns of the logs table and their kinds.
LOG_FIELDS: dict[str, str] = {
    "id": "string",
    "parent_id": "string",
    "started_at": "datetime",
    "duration_us": "bigint",
    "complete": "boolean",
    "dropped_calls": "integer",
    "info": "json",
}
#: Fixed columns of the calls table and their kinds.
CALL_FIELDS: dict[str, str] = {
    "log_id": "string",
    "seq": "integer",
    "depth": "integer",
    "function": "string",
    "tracker": "string",
    "level": "string",
    "params": "json",
    "data": "json",
    "offset_us": "bigint",
    "duration_us": "bigint",
    "status": "string",
    "error": "text",
}
#: Columns of the logs table added in 0.2 (#17), optional in tables that exist already.
LOG_OPTIONAL: dict[str, str] = {
    "trace_id": "string",
    "parent_seq": "integer",
    "remote_parent": "string",
}
#: Columns of the calls table added in 0.2 (#17): ``parent_seq`` is ``Call.parent``.
CALL_OPTIONAL: dict[str, str] = {
    "parent_seq": "integer",
    "traceback": "json",
}
#: Columns that hold an id must hold all of its hex characters.
MIN_LENGTH = {"id": 32, "parent_id": 32, "log_id": 32, "trace_id": 32, "remote_parent": 16}


def table_names(prefix: str) -> tuple[str, str]:
    """
    The names of the logs and calls tables for ``prefix``: ``(prefix + "logs",
    prefix + "calls")``.
    """
    return f"{prefix}logs", f"{prefix}calls"
