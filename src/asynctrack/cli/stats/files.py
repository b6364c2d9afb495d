"""
Statistics and log selection over JSON-lines files, streamed line by line.

Memory stays bounded: one line at a time, per function a buffer of at most
:data:`~._percentiles.CHUNK` durations folded into a histogram (approximate mode),
or every duration as 8 bytes in an ``array('q')`` (``--exact``). A large file is
read by one process per CPU (see ``_parallel``), each taking a byte range.
"""

from __future__ import annotations

import datetime as _dt
import glob
import heapq
import itertools
import os
import re
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from asynctrack._core.decode import decode_line
from asynctrack._core.records import Log
from asynctrack.cli.stats.model import (
    FunctionRow,
    GroupRow,
    LogSelection,
    Report,
    SourceError,
    StatsQuery,
    decode_json,
    key_text,
    utc,
)
from asynctrack.cli.stats.parallel import cpu_count, run_parts
from asynctrack.cli.stats.percentiles import PERCENTILES, DurationAccumulator
from asynctrack.sinks._rotation import rotations

__all__ = ["expand_paths", "file_stats", "select_file_logs"]

Warn = Callable[[str], None]
_GLOB_CHARS = frozenset("*?[")
#: 19 digits or more: maybe an int beyond 64 bits, which orjson reads as a float.
_LONG_DIGITS = re.compile(rb"\d{19}")
_fromisoformat = _dt.datetime.fromisoformat
_FOLD_EVERY = 4096  # lines between checks of the per-function buffers
#: A file is split into byte ranges (one per CPU) of at least this size.
PART_BYTES = 32 << 20


def expand_paths(source: str) -> list[str]:
    """
    Return the files a SOURCE names: a glob's matches, or a file and its rotations.

    ``track.jsonl`` also reads ``track.jsonl.1``, ``track.jsonl.2``, … (oldest last).

    Raises:
        SourceError: nothing matches, or the path is not a readable file.
    """
    if _GLOB_CHARS & set(source) and not os.path.isfile(source):
        paths = sorted(p for p in glob.glob(source) if os.path.isfile(p))
        if not paths:
            raise SourceError(f"no file matches {source!r}")
        return paths
    if not os.path.exists(source):
        raise SourceError(f"no such file: {source}")
    if not os.path.isfile(source):
        raise SourceError(f"not a file: {source}")
    # Newest first: the file, then its rotations path.1, path.2, … (the FileSink's names).
    return [source, *(str(path) for path in rotations(source))]


class _Skipped:
    """
    Counts malformed lines per file and reports each file's count once, on stderr.
    """

    def __init__(self, warn: Warn) -> None:
        self.warn = warn
        self.total = 0
        self._count = 0
        self._first = 0

    def files(self, paths: list[str]) -> Iterator[tuple[str, IO[bytes]]]:
        """
        Yield ``(path, binary file)`` for each path, reporting its bad lines after it.
        """
        for path in paths:
            self._count = self._first = 0
            try:
                handle = open(path, "rb", buffering=1 << 20)
            except OSError as exc:
                raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
            with handle:
                yield path, handle
            if self._count:
                self.total += self._count
                plural = "s" if self._count > 1 else ""
                self.warn(
                    f"{path}: skipped {self._count} malformed line{plural} "
                    f"(first at line {self._first})"
                )

    def bad(self, line: bytes, lineno: int) -> None:
        """
        Record line ``lineno`` as malformed, unless it is blank.
        """
        if line.strip():
            self._count += 1
            if not self._first:
                self._first = lineno


def _canonical(stamp: Any) -> str:
    """
    Return ``started_at`` in the canonical UTC form, comparable as a string.
    """
    if type(stamp) is str and len(stamp) == 32 and stamp.endswith("+00:00"):
        _fromisoformat(stamp)  # the shape alone is not a timestamp
        return stamp
    if not isinstance(stamp, str):
        raise TypeError("started_at must be a string")
    parsed = utc(stamp)
    assert parsed is not None
    return parsed.isoformat(timespec="microseconds")


def _bound(moment: _dt.datetime | None) -> str | None:
    if moment is None:
        return None
    stamp = utc(moment)
    assert stamp is not None
    return stamp.isoformat(timespec="microseconds")


@dataclass(frozen=True)
class _Part:
    """
    The lines of ``path`` that start at a byte offset in ``[start, end)`` (``end``
    None: to the end of the file).
    """

    path: str
    start: int
    end: int | None
    query: StatsQuery


@dataclass
class _Figures:
    """
    What one part of the input adds up to; parts merge in input order.
    """

    lines: int = 0
    bad: int = 0
    first_bad: int = 0  # line number within the part, 1-based; 0 if none
    logs: int = 0
    requests: int = 0
    failed: int = 0
    first: str | None = None
    last: str | None = None
    accs: dict[str, DurationAccumulator] = field(default_factory=dict)
    #: value -> [logs, calls, errors, last started, requests, failed requests]
    groups: dict[str | None, list[Any]] = field(default_factory=dict)


def _parts(paths: list[str], query: StatsQuery) -> list[_Part]:
    """
    Split the files into byte ranges, one per CPU for a large file.
    """
    cpus = cpu_count()
    parts = []
    for path in paths:
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
        pieces = min(cpus, size // PART_BYTES) if cpus > 1 else 1
        if pieces <= 1:
            parts.append(_Part(path, 0, None, query))
            continue
        starts = [size * i // pieces for i in range(pieces)]
        ends: list[int | None] = [*starts[1:], None]
        parts.extend(_Part(path, a, b, query) for a, b in zip(starts, ends, strict=True))
    return parts


def file_stats(source: str, query: StatsQuery, warn: Warn) -> Report:
    """
    Compute the statistics of the logs in JSON-lines files.

    A large file is read by one process per CPU, each taking a byte range (a line
    belongs to the range it starts in); the parts' figures are merged here.

    Raises:
        SourceError: the source names no readable file.
    """
    paths = expand_paths(source)
    parts = _parts(paths, query)
    results = run_parts(_scan, parts)
    total = _Figures()
    skipped = 0
    # Malformed lines are reported once per file, with their line number in the file.
    for path, group in itertools.groupby(zip(parts, results, strict=True), lambda p: p[0].path):
        lines = bad = first_bad = 0
        for _, figures in group:
            if figures.bad and not first_bad:
                first_bad = lines + figures.first_bad
            lines += figures.lines
            bad += figures.bad
            _merge(total, figures)
        if bad:
            skipped += bad
            plural = "s" if bad > 1 else ""
            warn(f"{path}: skipped {bad} malformed line{plural} (first at line {first_bad})")
    report = Report(
        source=source,
        logs=total.logs,
        requests=total.requests,
        failed=total.failed,
        first=utc(total.first),
        last=utc(total.last),
        exact=query.exact,
        percentiles=PERCENTILES,
        by=query.by,
        skipped_lines=skipped,
    )
    for function, acc in total.accs.items():
        calls_n, sum_us, maximum, values = acc.finish(PERCENTILES)
        if calls_n:
            report.functions.append(
                FunctionRow(function, calls_n, acc.errors, sum_us, maximum, values)
            )
    report.groups = [
        GroupRow(v, g[0], g[1], g[2], utc(g[3]), g[4], g[5]) for v, g in total.groups.items()
    ]
    return report


def _merge(total: _Figures, part: _Figures) -> None:
    total.logs += part.logs
    total.requests += part.requests
    total.failed += part.failed
    if part.first is not None and (total.first is None or part.first < total.first):
        total.first = part.first
    if part.last is not None and (total.last is None or part.last > total.last):
        total.last = part.last
    for function, acc in part.accs.items():
        mine = total.accs.get(function)
        if mine is None:
            total.accs[function] = acc
        else:
            mine.merge(acc)
    for value, group in part.groups.items():
        mine_g = total.groups.get(value)
        if mine_g is None:
            total.groups[value] = group
        else:
            mine_g[0] += group[0]
            mine_g[1] += group[1]
            mine_g[2] += group[2]
            if group[3] > mine_g[3]:
                mine_g[3] = group[3]
            mine_g[4] += group[4]
            mine_g[5] += group[5]


def _lines(part: _Part) -> Iterator[bytes]:
    """
    Yield the lines of ``part``: those starting in its byte range.
    """
    try:
        handle = open(part.path, "rb", buffering=1 << 20)
    except OSError as exc:
        raise SourceError(f"cannot read {part.path}: {exc.strerror or exc}") from None
    with handle:
        if part.start:
            # The line that holds byte start - 1 belongs to the previous part.
            handle.seek(part.start - 1)
            handle.readline()
        if part.end is None:
            yield from handle
            return
        position = handle.tell()
        end = part.end
        for line in handle:
            if position >= end:
                return
            position += len(line)
            yield line


def _scan(part: _Part) -> _Figures:
    """
    Aggregate the logs of one part of a file (runs in a worker process).
    """
    query = part.query
    out = _Figures()
    since, until = _bound(query.since), _bound(query.until)
    exact = query.exact
    matcher = query.function_matcher()
    accs = out.accs
    # function -> the bound ``append`` of its buffer; functions excluded by --function
    # share one scratch buffer, so a bad duration is caught whatever the filter.
    appends: dict[str, Callable[[int], None]] = {}
    scratch: array[int] = array("q")
    by = query.by
    groups = out.groups
    loads = orjson.loads
    logs = requests = failed_requests = 0
    first: str | None = None
    last: str | None = None
    lineno = 0
    for line in _lines(part):
        lineno += 1
        if lineno % _FOLD_EVERY == 0:
            for acc in accs.values():
                acc.maybe_fold()
            del scratch[:]
        done = 0
        try:
            obj = loads(line)
            started = obj["started_at"]
            if len(started) != 32 or not started.endswith("+00:00"):
                started = _canonical(started)
            else:
                # The canonical shape alone is not a timestamp (" 026-12-07T…" has
                # it): check it here, where a bad one skips the line, rather than
                # when the report parses the first and last ones (#14).
                _fromisoformat(started)
            calls = obj["calls"]
            if (since is not None and started < since) or (until is not None and started >= until):
                if type(calls) is not list:
                    raise TypeError("calls must be a list")
                continue
            n_errors = 0
            for call in calls:
                function = call["function"]
                duration = call["duration_us"]
                failed = call["status"] == "error"
                append = appends.get(function)
                if append is None:
                    if type(function) is not str:
                        raise TypeError("function must be a string")
                    if matcher is None or matcher(function):
                        acc = accs[function] = DurationAccumulator(exact)
                        append = appends[function] = acc.buf.append
                    else:
                        append = appends[function] = scratch.append
                append(duration)
                done += 1
                if failed and function in accs:
                    accs[function].errors += 1
                    n_errors += 1
            info = obj.get("info") if by is not None else None
            # A request is a log that continues no other; it failed when its root did.
            request = obj.get("parent_id") is None
            failed = request and bool(calls) and calls[0]["status"] == "error"
        except Exception:
            # Any failure to read one line (OverflowError for a duration of 2**63,
            # RecursionError, a field of the wrong type) skips and counts it (#14).
            rollback(obj if done else None, done, accs, scratch)
            if line.strip():
                out.bad += 1
                if not out.first_bad:
                    out.first_bad = lineno
            continue
        logs += 1
        requests += request
        failed_requests += failed
        if first is None or started < first:
            first = started
        if last is None or started > last:
            last = started
        if by is not None:
            if matcher is None:
                n_calls = len(calls)
            else:
                n_calls = sum(1 for call in calls if call["function"] in accs)
            value = info_key_text(line, info, by)
            group = groups.get(value)
            if group is None:
                groups[value] = [1, n_calls, n_errors, started, int(request), int(failed)]
            else:
                group[0] += 1
                group[1] += n_calls
                group[2] += n_errors
                if started > group[3]:
                    group[3] = started
                group[4] += request
                group[5] += failed
    for acc in accs.values():
        acc.fold()  # what goes back to the parent is the histogram, not the durations
    out.lines, out.logs, out.first, out.last = lineno, logs, first, last
    out.requests, out.failed = requests, failed_requests
    return out


def rollback(
    obj: Any, done: int, accs: dict[str, DurationAccumulator], scratch: array[int]
) -> None:
    """
    Undo the first ``done`` calls of a log that turned out malformed further on.
    """
    if not done:
        return
    for call in obj["calls"][:done]:
        acc = accs.get(call["function"])
        (acc.buf if acc is not None else scratch).pop()
        if acc is not None and call["status"] == "error":
            acc.errors -= 1


def info_key_text(line: bytes, info: Any, key: str) -> str | None:
    """
    Return the canonical text of ``info[key]`` from a line orjson parsed into ``info``.

    orjson reads ints beyond 64 bits as floats, which would merge distinct values
    (#15): when the value holds a float and the line has a long run of digits, the
    line is parsed again exactly.
    """
    if not isinstance(info, dict):
        return None
    value = info.get(key)
    if value is not None and not isinstance(value, (str, bool, int)) and _LONG_DIGITS.search(line):
        try:
            exact = decode_json(line)["info"]
            value = exact.get(key) if isinstance(exact, dict) else value
        except (ValueError, KeyError, TypeError):
            pass
    return key_text(value)


def select_file_logs(source: str, selection: LogSelection, warn: Warn) -> list[Log]:
    """
    Return the selected logs from JSON-lines files, oldest first, each followed by
    the continuations spawned from it (and theirs).

    Raises:
        SourceError: the source names no readable file.
    """
    paths = expand_paths(source)
    skipped = _Skipped(warn)
    # Continuations by the id of the log they continue, to attach under their request.
    children: dict[str, list[Log]] = {}
    if selection.id is not None:
        needle = selection.id.encode()
        found: list[Log] = []
        for _, handle in skipped.files(paths):
            for lineno, line in enumerate(handle, 1):
                if needle not in line and b'"parent_id":null' in line:
                    continue  # neither the log nor a continuation
                log = _decode(line)
                if log is None:
                    skipped.bad(line, lineno)
                elif log.id == selection.id:
                    found.append(log)
                elif log.parent_id is not None:
                    children.setdefault(log.parent_id, []).append(log)
        return with_continuations(found[:1], children)
    deep = selection.filtered()
    heap: list[tuple[str, str, bytes]] = []
    for _, handle in skipped.files(paths):
        for lineno, line in enumerate(handle, 1):
            try:
                obj = orjson.loads(line)
                started = _canonical(obj["started_at"])
                ident = str(obj["id"])
                info = obj.get("info")
                parent = obj.get("parent_id")
            except Exception:  # any failure skips and counts the line (#14)
                skipped.bad(line, lineno)
                continue
            if parent is not None:
                log = _decode(line)
                if log is not None:
                    children.setdefault(str(parent), []).append(log)
                if selection.trace is None or obj.get("trace_id") != selection.trace:
                    continue  # shown under its request
            if selection.user is not None:
                if info_key_text(line, info, selection.user_key) != selection.user:
                    continue
            if deep:
                log = _decode(line)
                if log is None or not selection.matches(log):
                    continue
            entry = (started, ident, line)
            if len(heap) < selection.last:
                heapq.heappush(heap, entry)
            elif entry > heap[0]:
                heapq.heapreplace(heap, entry)
    out = []
    for _, ident, line in sorted(heap):
        log = _decode(line)
        if log is None:
            warn(f"skipped log {ident}: malformed record")
        else:
            out.append(log)
    if selection.trace is not None:
        # A continuation whose request was selected too is shown under it.
        ids = {log.id for log in out}
        out = [log for log in out if log.parent_id not in ids]
    return with_continuations(out, children)


def with_continuations(logs: list[Log], children: dict[str, list[Log]]) -> list[Log]:
    """
    Return ``logs`` each followed by its continuations (depth first, oldest first).
    """
    out: list[Log] = []
    seen: set[str] = set()

    def add(log: Log) -> None:
        if log.id in seen:
            return
        seen.add(log.id)
        out.append(log)
        for child in sorted(children.get(log.id, ()), key=lambda c: (c.started_at, c.id)):
            add(child)

    for log in logs:
        add(log)
    return out


def _decode(line: bytes) -> Log | None:
    # decode_line keeps ints beyond 64 bits exact and raises only ValueError.
    try:
        return decode_line(line)
    except Exception:
        return None
