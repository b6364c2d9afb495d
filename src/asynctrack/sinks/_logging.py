"""
LoggingSink: forwards each completed log to a stdlib :mod:`logging` logger.
"""

from __future__ import annotations

import asyncio
import logging
import string
from collections.abc import Sequence
from typing import Any

from asynctrack._core.records import Log
from asynctrack._core.selfwarn import report
from asynctrack._exceptions import ConfigError, quote
from asynctrack.sinks._base import Sink

__all__ = ["LoggingSink"]

#: Fields a ``message`` template may use.
FIELDS = (
    "id",
    "trace_id",
    "parent_id",
    "parent_seq",
    "function",
    "status",
    "error",
    "duration_ms",
    "duration_us",
    "calls",
    "user",
    "complete",
    "started_at",
    "info",
)
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_SAMPLE: dict[str, Any] = {
    "id": "0" * 32,
    "trace_id": "0" * 32,
    "parent_id": None,
    "parent_seq": None,
    "function": "f",
    "status": "ok",
    "error": None,
    "duration_ms": 1.0,
    "duration_us": 1000,
    "calls": 1,
    "user": "",
    "complete": True,
    "started_at": "2026-01-01T00:00:00+00:00",
    "info": {},
}


class LoggingSink(Sink):
    """
    Emit one :class:`logging.LogRecord` per completed log, so existing handlers,
    formatters and log shippers receive them.

    The record's message is readable (``"shop.views.checkout ok in 1.8 ms, 3 calls,
    user=alice"``); the whole log, in its JSON form (``Log.to_dict()``), is the
    record attribute named by ``extra_key`` (``record.asynctrack``), which JSON
    formatters and ``logging.Filter`` objects can use. The record's time is the time
    the log completed, not the time the batch was forwarded. Records are emitted in a
    worker thread, so a slow handler never blocks the other sinks; a handler's own
    errors are left to it (``Handler.handleError``) and never retried.

    Args:
        logger: a logger or a logger name (default ``"asynctrack.logs"``, a child of
            the ``asynctrack`` logger: its level follows that logger's unless set).
        level: the records' level (default ``logging.INFO``); an int or a name.
        error_level: the level of logs whose root call failed or was cancelled
            (default: ``level``).
        message: a :meth:`str.format` template using the fields ``id``,
            ``trace_id``, ``parent_id``, ``parent_seq``,
            ``function`` (the root call), ``status``, ``error``, ``duration_ms``,
            ``duration_us``, ``calls``, ``user`` (``info["user"]`` or ``""``),
            ``complete``, ``started_at`` and ``info`` (``{info[tenant]}``); default:
            the readable form above.
        extra_key: the record attribute holding the log dict (default ``"asynctrack"``).
        name: the sink's name (spill files, counters); default ``"logging-<logger>"``.

    Raises:
        ConfigError: a bad argument (unknown level name, a template with an unknown
            field, an ``extra_key`` that is a ``LogRecord`` attribute).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        logger: str | logging.Logger = "asynctrack.logs",
        *,
        level: int | str = logging.INFO,
        error_level: int | str | None = None,
        message: str | None = None,
        extra_key: str = "asynctrack",
        name: str | None = None,
    ) -> None:
        if isinstance(logger, str):
            self.logger = logging.getLogger(logger)
        elif isinstance(logger, logging.Logger):
            self.logger = logger
        else:
            raise ConfigError(
                "LoggingSink: logger must be a logger name or a logging.Logger, "
                f"got {quote(logger)}"
            )
        self.level = _level("level", level)
        self.error_level = self.level if error_level is None else _level("error_level", error_level)
        if message is not None:
            _check_template(message)
        self.message = message
        if not isinstance(extra_key, str) or not extra_key.isidentifier():
            raise ConfigError(
                f"LoggingSink: extra_key must be an identifier, got {quote(extra_key)}"
            )
        if extra_key in _RESERVED:
            raise ConfigError(
                f"LoggingSink: extra_key {quote(extra_key)} is a LogRecord attribute; "
                "choose another"
            )
        self.extra_key = extra_key
        if name is not None and (not isinstance(name, str) or not name):
            raise ConfigError(f"LoggingSink: name must be a non-empty str, got {quote(name)}")
        self._name = name or f"logging-{self.logger.name}"

    @property
    def name(self) -> str:
        return self._name

    async def open(self) -> None:
        if not self.logger.isEnabledFor(min(self.level, self.error_level)):
            report(
                f"logging-sink:{self.logger.name}",
                f"asynctrack: LoggingSink: logger {self.logger.name!r} discards "
                f"{logging.getLevelName(self.level)} records (its effective level is "
                f"{logging.getLevelName(self.logger.getEffectiveLevel())}); configure "
                "logging, e.g. logging.basicConfig(level=logging.INFO)",
            )

    async def write(self, logs: Sequence[Log]) -> None:
        try:
            await asyncio.to_thread(self.emit, logs)
        except RuntimeError:
            # The executor is gone (late in interpreter exit): emit here instead.
            self.emit(logs)

    def emit(self, logs: Sequence[Log]) -> None:
        """
        Emit one record per log, in this thread; never raises.
        """
        logger = self.logger
        for log in logs:
            try:
                self._emit_one(logger, log)
            except Exception as exc:
                report(
                    f"logging-sink-emit:{logger.name}",
                    f"asynctrack: LoggingSink could not emit a log: {type(exc).__name__}: {exc}",
                )

    def _emit_one(self, logger: logging.Logger, log: Log) -> None:
        calls = log.calls
        root = calls[0] if calls else None
        failed = root is not None and root.status in ("error", "cancelled")
        level = self.error_level if failed else self.level
        if not logger.isEnabledFor(level):
            return
        data = log.to_dict()
        fields = _fields(log, data)
        text = self._format(fields)
        record = logger.makeRecord(
            logger.name,
            level,
            "(asynctrack)",
            0,
            text,
            (),
            None,
            func=fields["function"],
            extra={self.extra_key: data},
        )
        # The time the log completed: batching (and a replay after an outage) delays
        # the forwarding, and shippers index records by this time.
        ended = (log.started_at_ns + log.duration_us * 1000) / 1e9
        record.created = ended
        record.msecs = (ended - int(ended)) * 1000
        logger.handle(record)

    def _format(self, fields: dict[str, Any]) -> str:
        if self.message is None:
            return _default_message(fields)
        try:
            return self.message.format(**fields)
        except Exception as exc:  # e.g. {info[tenant]} on a log without that key
            report(
                f"logging-sink-format:{id(self)}",
                f"asynctrack: LoggingSink message template failed ({type(exc).__name__}: "
                f"{exc}); the default message is used for such logs",
            )
            return _default_message(fields)


def _level(what: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"LoggingSink: {what} must be a logging level, got {quote(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        mapping = logging.getLevelNamesMapping()
        if value.upper() in mapping:
            return mapping[value.upper()]
    raise ConfigError(
        f"LoggingSink: {what} must be a logging level (an int or one of "
        f"{', '.join(logging.getLevelNamesMapping())}), got {quote(value)}"
    )


def _check_template(message: Any) -> None:
    if not isinstance(message, str):
        raise ConfigError(f"LoggingSink: message must be a str template, got {quote(message)}")
    try:
        parsed = list(string.Formatter().parse(message))
    except ValueError as exc:
        raise ConfigError(f"LoggingSink: message is not a valid template: {exc}") from None
    for _, field, _, _ in parsed:
        if field is None:
            continue
        base = field.split(".", 1)[0].split("[", 1)[0]
        if base not in FIELDS:
            raise ConfigError(
                f"LoggingSink: message uses unknown field {{{field}}}; fields: {', '.join(FIELDS)}"
            )
    try:
        message.format(**_SAMPLE)
    except (KeyError, IndexError, AttributeError):
        pass  # depends on the log's info (``{info[tenant]}``): checked per log
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"LoggingSink: message is not a valid template: {exc}") from None


def _fields(log: Log, data: dict[str, Any]) -> dict[str, Any]:
    calls = data["calls"]
    root = calls[0] if calls else {}
    user = log.info.get("user")
    return {
        "id": data["id"],
        "trace_id": data.get("trace_id"),
        "parent_id": data["parent_id"],
        "parent_seq": data.get("parent_seq"),
        "function": root.get("function", "-"),
        "status": root.get("status", "-"),
        "error": root.get("error"),
        "duration_ms": data["duration_us"] / 1000,
        "duration_us": data["duration_us"],
        "calls": len(calls),
        "user": "" if user is None else str(user),
        "complete": data["complete"],
        "started_at": data["started_at"],
        "info": log.info,
    }


def _default_message(f: dict[str, Any]) -> str:
    parts = [f"{f['function']} {f['status']} in {_human(f['duration_us'])}"]
    n = f["calls"]
    parts.append(f"{n} call{'s' if n != 1 else ''}")
    if f["user"]:
        parts.append(f"user={f['user']}")
    if f["error"]:
        parts.append(f"error={f['error']}")
    if not f["complete"]:
        parts.append("incomplete")
    return ", ".join(parts)


def _human(us: int) -> str:
    if us < 1000:
        return f"{us} µs"
    if us < 1_000_000:
        return f"{us / 1000:.1f} ms"
    return f"{us / 1_000_000:.2f} s"


LoggingSink.__module__ = "asynctrack"
