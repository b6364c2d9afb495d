"""
What ``asynctrack report`` aggregates, independent of where the logs come from.

Both readers (JSON-lines files, SQL tables) fill the same mergeable figures:

* a :class:`Series` of time buckets, each with its request count, failed requests,
  a histogram of request durations and per-function call figures; buckets are
  aligned on the Unix epoch and their width comes from :data:`STEPS`, each step a
  multiple of the one before, so a series can always be coarsened exactly;
* 7 x 24 request counts by weekday and hour (UTC);
* the :data:`SELECTED` slowest requests and the most recent failed ones, whole.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from asynctrack.cli.stats.model import StatsQuery
from asynctrack.cli.stats.percentiles import DurationAccumulator

__all__ = [
    "MAX_POINTS",
    "SELECTED",
    "STEPS",
    "Bucket",
    "Picks",
    "ReportQuery",
    "Series",
    "step_for",
]

#: Bucket widths in seconds; each divides the next, so buckets merge exactly.
#: The widest are 4, 52, 520 and 5,200 weeks: a log dated in year 1 beside one of today
#: (a clock gone wrong, a hand-edited file) still gives a short time axis.
STEPS: tuple[int, ...] = (
    1, 2, 10, 30, 60, 300, 900, 1800, 3600, 10800, 21600, 43200, 86400, 604800,
    2419200, 31449600, 314496000, 3144960000,
)  # fmt: skip
#: Time buckets on the page, at most.
MAX_POINTS = 150
#: Buckets a reader keeps before it widens them (bounded memory on any time span).
HELD_POINTS = 2 * MAX_POINTS
#: Slowest requests and most recent failed requests embedded in the page.
SELECTED = 50


def step_for(span_seconds: float, points: int = MAX_POINTS) -> int:
    """
    Return the narrowest step of :data:`STEPS` that covers ``span_seconds`` in ``points``.
    """
    for step in STEPS:
        if span_seconds / step < points:
            return step
    return STEPS[-1]


@dataclass(frozen=True)
class ReportQuery:
    """
    What ``asynctrack report`` computes.

    Attributes:
        stats: the filters shared with ``asynctrack stats`` (``by`` defaults to ``user``).
        title: the page's title.
        selected: how many slowest and failed requests the page embeds.
    """

    stats: StatsQuery = field(default_factory=lambda: StatsQuery(by="user"))
    title: str = "asynctrack report"
    selected: int = SELECTED


class Bucket:
    """
    The requests that started within one time bucket.

    Attributes:
        durations: request durations (µs).
        failed: requests whose first call ended in an error.
        functions: function -> ``[calls, errors, total µs, max µs]``.
    """

    __slots__ = ("durations", "failed", "functions")

    def __init__(self) -> None:
        self.durations = DurationAccumulator(False)
        self.failed = 0
        self.functions: dict[str, list[int]] = {}

    def merge(self, other: Bucket) -> None:
        """
        Add the figures of ``other`` (requests of other logs).
        """
        self.durations.merge(other.durations)
        self.failed += other.failed
        mine = self.functions
        for function, figures in other.functions.items():
            entry = mine.get(function)
            if entry is None:
                mine[function] = figures
            else:
                entry[0] += figures[0]
                entry[1] += figures[1]
                entry[2] += figures[2]
                if figures[3] > entry[3]:
                    entry[3] = figures[3]

    def requests(self) -> int:
        """
        Return the number of requests (folding the buffered durations).
        """
        self.durations.fold()
        return self.durations.calls


class Series:
    """
    Time buckets keyed by ``epoch seconds // step``.
    """

    __slots__ = ("buckets", "step")

    def __init__(self, step: int = STEPS[0]) -> None:
        self.step = step
        self.buckets: dict[int, Bucket] = {}

    def bucket(self, second: int) -> Bucket:
        """
        Return the bucket of ``second`` (epoch seconds), widening the buckets first
        if there are too many.
        """
        key = second // self.step
        found = self.buckets.get(key)
        if found is None:
            if len(self.buckets) >= HELD_POINTS and self.step < STEPS[-1]:
                self.coarsen(STEPS[STEPS.index(self.step) + 1])
                return self.bucket(second)
            found = self.buckets[key] = Bucket()
        return found

    def coarsen(self, step: int) -> None:
        """
        Widen the buckets to ``step`` seconds, a multiple of the current step (a
        narrower or equal step changes nothing).
        """
        if step <= self.step:
            return
        ratio = step // self.step
        merged: dict[int, Bucket] = {}
        for key, bucket in self.buckets.items():
            target = merged.get(key // ratio)
            if target is None:
                merged[key // ratio] = bucket
            else:
                target.merge(bucket)
        self.buckets = merged
        self.step = step

    def merge(self, other: Series) -> None:
        """
        Add the buckets of ``other``, widened to the wider step of the two.
        """
        step = max(self.step, other.step)
        self.coarsen(step)
        other.coarsen(step)
        for key, bucket in other.buckets.items():
            mine = self.buckets.get(key)
            if mine is None:
                self.buckets[key] = bucket
            else:
                mine.merge(bucket)

    def fold(self) -> None:
        """
        Fold the buffered durations of every bucket into their histograms.
        """
        for bucket in self.buckets.values():
            bucket.durations.fold()


@dataclass
class Picks:
    """
    The requests a page shows whole, as ``(sort key, tiebreak, payload)`` min-heaps.

    Attributes:
        slowest: ``(duration, started_at, id, payload)`` of the slowest requests.
        failed: ``(started_at, id, payload)`` of the most recent failed requests.
        continuations: parent id -> payloads of logs continuing it.
    """

    limit: int = SELECTED
    slowest: list[tuple[Any, ...]] = field(default_factory=list)
    failed: list[tuple[Any, ...]] = field(default_factory=list)
    continuations: dict[str, list[Any]] = field(default_factory=dict)

    def merge(self, other: Picks) -> None:
        """
        Keep the best of both (``other`` covers other logs).
        """
        import heapq

        for mine, theirs in ((self.slowest, other.slowest), (self.failed, other.failed)):
            for item in theirs:
                if len(mine) < self.limit:
                    heapq.heappush(mine, item)
                elif item > mine[0]:
                    heapq.heapreplace(mine, item)
        for parent, items in other.continuations.items():
            self.continuations.setdefault(parent, []).extend(items)


def weekday_hour(moment: _dt.datetime) -> int:
    """
    Return the heatmap cell of an aware UTC datetime: ``weekday * 24 + hour`` (Monday 0).
    """
    return moment.weekday() * 24 + moment.hour
