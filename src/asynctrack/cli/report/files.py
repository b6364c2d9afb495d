"""
The report's figures from JSON-lines files: one streaming pass, one process per CPU.

It reads like ``asynctrack stats`` (same byte ranges, same per-function
accumulators, same malformed-line rules) and adds, per log, its time bucket, its
weekday x hour cell and, for the few it keeps whole, its line.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import itertools
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from asynctrack.cli.report.model import Picks, ReportQuery, Series, weekday_hour
from asynctrack.cli.stats.files import (
    _bound,
    _canonical,
    _fromisoformat,
    _lines,
    _Part,
    _parts,
    expand_paths,
    info_key_text,
    rollback,
)
from asynctrack.cli.stats.parallel import run_parts
from asynctrack.cli.stats.percentiles import DurationAccumulator

__all__ = ["Found", "scan_files"]

Warn = Callable[[str], None]
_FOLD_EVERY = 4096
_SECONDS_CACHE = 100_000
_BUCKET_CHUNK = 4096
#: Bytes of continuation logs a part keeps (they are attached to the selected requests).
CONTINUATION_BYTES = 8 << 20


@dataclass
class Found:
    """
    What a part of the input adds up to; parts merge in input order.
    """

    lines: int = 0
    bad: int = 0
    first_bad: int = 0
    logs: int = 0
    #: Logs that continue no other, and those of them whose root call failed.
    requests: int = 0
    failed: int = 0
    first: str | None = None
    last: str | None = None
    durations: DurationAccumulator = field(default_factory=lambda: DurationAccumulator(False))
    series: Series = field(default_factory=Series)
    heat: list[int] = field(default_factory=lambda: [0] * 168)
    accs: dict[str, DurationAccumulator] = field(default_factory=dict)
    #: ``--by`` value -> ``[requests, failed requests, last start]``.
    groups: dict[str | None, list[Any]] = field(default_factory=dict)
    picks: Picks = field(default_factory=Picks)
    continuation_bytes: int = 0

    def merge(self, part: Found) -> None:
        """
        Add the figures of ``part``.
        """
        self.logs += part.logs
        self.requests += part.requests
        if part.first is not None and (self.first is None or part.first < self.first):
            self.first = part.first
        if part.last is not None and (self.last is None or part.last > self.last):
            self.last = part.last
        self.durations.merge(part.durations)
        self.failed += part.failed
        self.series.merge(part.series)
        self.heat = [a + b for a, b in zip(self.heat, part.heat, strict=True)]
        for function, acc in part.accs.items():
            mine = self.accs.get(function)
            if mine is None:
                self.accs[function] = acc
            else:
                mine.merge(acc)
        for value, group in part.groups.items():
            mine_g = self.groups.get(value)
            if mine_g is None:
                self.groups[value] = group
            else:
                mine_g[0] += group[0]
                mine_g[1] += group[1]
                if group[2] > mine_g[2]:
                    mine_g[2] = group[2]
        self.picks.merge(part.picks)
        self.continuation_bytes += part.continuation_bytes


@dataclass(frozen=True)
class _ReportPart:
    part: _Part
    query: ReportQuery


def scan_files(source: str, query: ReportQuery, warn: Warn) -> Found:
    """
    Aggregate the logs of JSON-lines files (a large file by one process per CPU).

    Raises:
        SourceError: the source names no readable file.
    """
    paths = expand_paths(source)
    parts = [_ReportPart(p, query) for p in _parts(paths, query.stats)]
    results = run_parts(_scan, parts)
    total = Found(picks=Picks(query.selected))
    for path, group in itertools.groupby(
        zip(parts, results, strict=True), lambda p: p[0].part.path
    ):
        lines = bad = first_bad = 0
        for _, found in group:
            if found.bad and not first_bad:
                first_bad = lines + found.first_bad
            lines += found.lines
            bad += found.bad
            total.bad += found.bad
            total.merge(found)
        if bad:
            plural = "s" if bad > 1 else ""
            warn(f"{path}: skipped {bad} malformed line{plural} (first at line {first_bad})")
    return total


def _second(key: str) -> tuple[int, int]:
    """
    Return ``(epoch seconds, heatmap cell)`` of a canonical ``YYYY-MM-DDTHH:MM:SS`` (UTC).
    """
    moment = _dt.datetime.fromisoformat(key).replace(tzinfo=_dt.UTC)
    return int(moment.timestamp()), weekday_hour(moment)


def _scan(rpart: _ReportPart) -> Found:
    """
    Aggregate one part of a file (runs in a worker process).
    """
    part, query = rpart.part, rpart.query
    sq = query.stats
    out = Found(picks=Picks(query.selected))
    since, until = _bound(sq.since), _bound(sq.until)
    matcher = sq.function_matcher()
    accs = out.accs
    appends: dict[str, Callable[[int], None]] = {}
    scratch: array[int] = array("q")
    by = sq.by
    groups = out.groups
    series = out.series
    heat = out.heat
    picks = out.picks
    limit = picks.limit
    slowest, failed_heap, continuations = picks.slowest, picks.failed, picks.continuations
    all_durations = out.durations.buf.append
    seconds: dict[str, tuple[int, int]] = {}
    loads = orjson.loads
    logs = requests = failed_logs = lineno = 0
    first: str | None = None
    last: str | None = None
    for line in _lines(part):
        lineno += 1
        if lineno % _FOLD_EVERY == 0:
            for acc in accs.values():
                acc.maybe_fold()
            del scratch[:]
            out.durations.maybe_fold()
            # Many buckets: fold theirs early, so they hold little (stats' CHUNK each
            # would be 45 MB for 87 buckets).
            for bucket in series.buckets.values():
                if len(bucket.durations.buf) >= _BUCKET_CHUNK:
                    bucket.durations.fold()
        done = 0
        try:
            obj = loads(line)
            started = obj["started_at"]
            if len(started) != 32 or not started.endswith("+00:00"):
                started = _canonical(started)
            else:
                _fromisoformat(started)  # the canonical shape alone is not a timestamp
            calls = obj["calls"]
            if (since is not None and started < since) or (until is not None and started >= until):
                if type(calls) is not list:
                    raise TypeError("calls must be a list")
                continue
            duration = obj["duration_us"]
            if type(duration) is not int:
                raise TypeError("duration_us must be an integer")
            # A request is a log that continues no other (#17); it failed when its root
            # call did. Continuations count in the function figures only.
            raw_parent = obj.get("parent_id")
            request = raw_parent is None
            failed = request and bool(calls) and calls[0]["status"] == "error"
            for call in calls:
                function = call["function"]
                append = appends.get(function)
                if append is None:
                    if type(function) is not str:
                        raise TypeError("function must be a string")
                    if matcher is None or matcher(function):
                        acc = accs[function] = DurationAccumulator(False)
                        append = appends[function] = acc.buf.append
                    else:
                        append = appends[function] = scratch.append
                append(call["duration_us"])
                done += 1
                if call["status"] == "error" and function in accs:
                    accs[function].errors += 1
            info = obj.get("info")
            key = started[:19]
            second = seconds.get(key)
            if second is None:
                if len(seconds) >= _SECONDS_CACHE:
                    seconds.clear()
                second = seconds[key] = _second(key)
            ident = str(obj.get("id"))
            parent = raw_parent if type(raw_parent) is str else None
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            rollback(obj if done else None, done, accs, scratch)
            if line.strip():
                out.bad += 1
                if not out.first_bad:
                    out.first_bad = lineno
            continue
        logs += 1
        if first is None or started < first:
            first = started
        if last is None or started > last:
            last = started
        bucket = series.bucket(second[0])
        if request:
            requests += 1
            bucket.durations.buf.append(duration)
            all_durations(duration)
            heat[second[1]] += 1
        if failed:
            bucket.failed += 1
            failed_logs += 1
        figures = bucket.functions
        for call in calls:
            function = call["function"]
            entry = figures.get(function)
            took = call["duration_us"]
            if entry is None:
                if function in accs:
                    figures[function] = [1, int(call["status"] == "error"), took, took]
                continue
            entry[0] += 1
            if call["status"] == "error":
                entry[1] += 1
            entry[2] += took
            if took > entry[3]:
                entry[3] = took
        if by is not None:
            value = info_key_text(line, info, by)
            group = groups.get(value)
            if group is None:
                groups[value] = [int(request), int(failed), started]
            else:
                group[0] += request
                group[1] += failed
                if started > group[2]:
                    group[2] = started
        if not request:
            if parent is not None and out.continuation_bytes < CONTINUATION_BYTES:
                continuations.setdefault(parent, []).append(line)
                out.continuation_bytes += len(line)
            continue
        # Ties are broken by start, then id, the same order as the SQL reader's.
        if len(slowest) < limit:
            heapq.heappush(slowest, (duration, started, ident, line))
        elif duration >= slowest[0][0]:
            slow = (duration, started, ident, line)
            if slow > slowest[0]:
                heapq.heapreplace(slowest, slow)
        if failed:
            if len(failed_heap) < limit:
                heapq.heappush(failed_heap, (started, ident, line))
            elif started >= failed_heap[0][0]:
                recent = (started, ident, line)
                if recent > failed_heap[0]:
                    heapq.heapreplace(failed_heap, recent)
    for acc in accs.values():
        acc.fold()
    out.durations.fold()
    series.fold()
    out.lines, out.logs, out.first, out.last = lineno, logs, first, last
    out.requests, out.failed = requests, failed_logs
    return out
