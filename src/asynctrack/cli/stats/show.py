"""
Rendering of logs as call trees (``asynctrack show``).

A log is drawn as the tree its ``parent`` links describe (records of 0.1, which have
none, fall back to their depths), children in start order, with a waterfall column:
one bar per call showing when it ran within the request, scaled to the terminal.
Continuations (logs spawned by a call of the request and running after it ended) are
drawn under the call that spawned them. An error is printed once, where it arose,
with its traceback; the calls it only passed through show ``error ↑``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from asynctrack._core.records import Call, Log
from asynctrack.cli.stats.format import human_us

__all__ = ["render_logs"]

_MAX_VALUE = 80
#: Eighths of a block, for the fractional end of a waterfall bar.
_EIGHTHS = " ▏▎▍▌▋▊▉"
_FULL = "█"


def _value(value: Any) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 1] + "…"


def _pairs(mapping: Mapping[str, Any], ordered: bool = False) -> str:
    # Info and data are bags of keys: sorted, since PostgreSQL's JSONB does not keep
    # their order (params keep theirs, the signature's, where the store kept it).
    items = mapping.items() if ordered else sorted(mapping.items())
    return ", ".join(f"{key}={_value(value)}" for key, value in items)


def bar(start_us: int, duration_us: int, total_us: int, width: int) -> str:
    """
    Return a ``width``-character bar showing ``[start, start + duration)`` of ``total``:
    it starts on a whole cell and ends to the eighth of a cell.
    """
    if width <= 0:
        return ""
    total = max(total_us, 1)
    first = min(width - 1, max(0, start_us * width // total))
    end = min(width * 8, max(first * 8 + 1, (start_us + duration_us) * width * 8 // total))
    full, rest = divmod(end - first * 8, 8)
    drawn = " " * first + _FULL * full + (_EIGHTHS[rest] if rest else "")
    return drawn.ljust(width)


def _children(log: Log) -> dict[int | None, list[Call]]:
    # Children by parent seq; a log of 0.1 (no parent links) by its depths.
    calls = log.calls
    linked = any(c.parent is not None for c in calls)
    out: dict[int | None, list[Call]] = {}
    stack: list[Call] = []
    for call in calls:
        if linked or call.seq == 0:
            parent = call.parent
        else:
            while stack and stack[-1].depth >= call.depth:
                stack.pop()
            parent = stack[-1].seq if stack else None
        stack.append(call)
        out.setdefault(parent, []).append(call)
    return out


class _Tree:
    """
    The rows of one request: its calls and its continuations' calls, in tree order.
    """

    def __init__(self, root: Log, by_parent: Mapping[str, Sequence[Log]]) -> None:
        self.root = root
        self.by_parent = by_parent
        # (log, call, indent, offset from the request's start, first call of a continuation)
        self.rows: list[tuple[Log, Call, int, int, bool]] = []
        self.end_us = root.duration_us
        self._walk_log(root, 0, 0, set())

    def _walk_log(self, log: Log, indent: int, base_us: int, seen: set[str]) -> None:
        if log.id in seen:
            return
        seen.add(log.id)
        self.end_us = max(self.end_us, base_us + log.duration_us)
        children = _children(log)
        spawned: dict[int | None, list[Log]] = {}
        for cont in self.by_parent.get(log.id, ()):
            spawned.setdefault(cont.parent_seq, []).append(cont)
        for call in children.get(None, []):
            self._walk_call(log, call, children, spawned, indent, base_us, seen, first=True)
        for cont in spawned.get(None, []):  # spawned from a call we do not know
            self._walk_log(cont, indent, base_us + _after(log, cont), seen)

    def _walk_call(
        self,
        log: Log,
        call: Call,
        children: dict[int | None, list[Call]],
        spawned: dict[int | None, list[Log]],
        indent: int,
        base_us: int,
        seen: set[str],
        first: bool = False,
    ) -> None:
        continuation = first and log is not self.root
        self.rows.append((log, call, indent, base_us + call.offset_us, continuation))
        for child in children.get(call.seq, []):
            self._walk_call(log, child, children, spawned, indent + 1, base_us, seen)
        for cont in spawned.get(call.seq, []):
            self._walk_log(cont, indent + 1, base_us + _after(log, cont), seen)


def _after(log: Log, cont: Log) -> int:
    # Microseconds from ``log``'s start to ``cont``'s start.
    delta = cont.started_at - log.started_at
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _passed_through(call: Call, kids: Sequence[Call]) -> bool:
    # An error a child raised that only propagated through this call.
    return call.traceback is None and any(
        k.status == call.status and k.error == call.error for k in kids
    )


def render_log(
    log: Log, continuations: Mapping[str, Sequence[Log]] | None = None, width: int | None = None
) -> str:
    """
    Render one request: a header, then one line per call in tree order.

    Each call line shows its start offset in the request, its duration, its status,
    a waterfall bar and ``function(params)``; ``data``, the error and its traceback
    follow on their own lines. Continuations appear under the call that spawned them.
    """
    columns = width if width is not None else shutil.get_terminal_size((120, 24)).columns
    tree = _Tree(log, continuations or {})
    started = log.started_at.strftime("%Y-%m-%d %H:%M:%S.%f")
    head = [f"log {log.id}", f"{started} UTC", human_us(log.duration_us)]
    head.append(f"{len(log.calls)} call" + ("" if len(log.calls) == 1 else "s"))
    if not log.complete:
        head.append("INCOMPLETE")
    lines = ["  ".join(head)]
    if log.trace_id:
        lines.append(f"  trace {log.trace_id}")
    if log.parent_id:
        at = f" (call {log.parent_seq})" if log.parent_seq is not None else ""
        lines.append(f"  continues log {log.parent_id}{at}")
    if log.info:
        lines.append(f"  info: {_pairs(log.info)}")
    if log.dropped_calls:
        lines.append(f"  {log.dropped_calls} calls not recorded (max_calls_per_log)")
    rows = []
    for row_log, call, _, offset, _ in tree.rows:
        status = call.status if call.status == "ok" else call.status.upper()
        below = _children(row_log).get(call.seq, []) if call.error else []
        through = call.error is not None and _passed_through(call, below)
        if through:
            status = f"{call.status} ↑"
        rows.append((f"+{human_us(offset)}", human_us(call.duration_us), status, through))
    w_off = max((len(r[0]) for r in rows), default=0)
    w_dur = max((len(r[1]) for r in rows), default=0)
    w_st = max((len(r[2]) for r in rows), default=0)
    bar_width = max(10, min(40, columns - (w_off + w_dur + w_st + 50)))
    for (row_log, call, indent, offset, continuation), (off, dur, status, through) in zip(
        tree.rows, rows, strict=True
    ):
        waterfall = bar(offset, call.duration_us, tree.end_us, bar_width)
        prefix = f"  {off:>{w_off}}  {dur:>{w_dur}}  {status:<{w_st}}  │{waterfall}│ "
        pad_indent = "  " * indent
        if continuation:
            lines.append(
                f"{' ' * len(prefix)}{pad_indent}↳ continuation {row_log.id}, "
                f"after the request ended"
                + (f", info: {_pairs(row_log.info)}" if row_log.info != log.info else "")
            )
        lines.append(f"{prefix}{pad_indent}{call.function}({_pairs(call.params, True)})")
        pad = " " * len(prefix) + pad_indent + "    "
        if call.data:
            lines.append(f"{pad}data: {_pairs(call.data)}")
        if call.error and not through:
            lines.append(f"{pad}{call.error}")
            for file, line, function in call.traceback or ():
                lines.append(f'{pad}  File "{file}", line {line}, in {function}')
    return "\n".join(lines)


def render_logs(logs: Sequence[Log], width: int | None = None) -> str:
    """
    Render requests separated by blank lines (ending with a newline), or a note if none.

    Logs that continue another log of ``logs`` are drawn inside it.
    """
    if not logs:
        return "no matching logs\n"
    ids = {log.id for log in logs}
    by_parent: dict[str, list[Log]] = {}
    for log in logs:
        if log.parent_id in ids:
            by_parent.setdefault(log.parent_id, []).append(log)
    roots = [log for log in logs if log.parent_id not in ids]
    return "\n\n".join(render_log(log, by_parent, width) for log in roots) + "\n"
