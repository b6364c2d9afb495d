"""
One definition of a percentile, computed exactly or from a log-histogram.

**Definition (every backend).** The p-th percentile of ``n`` durations is the
*nearest-rank* value: the duration at rank ``r = max(1, ceil(p/100 * n))`` (1-based,
ascending), with ``p/100 * n`` computed in IEEE double precision. It is always a
duration that was recorded, and it is what PostgreSQL's ``percentile_disc`` returns.

**Approximation (the default).** Durations fall into log-linear buckets: values
below 32 µs have a bucket each; above, each power of two is split into 16 equal
buckets (five significant bits are kept). A bucket's lower bound is computed with
integer arithmetic only (``v - v % 2**(bit_length(v) - 5)``), in Python and in SQL
alike, and each bucket keeps its count, minimum and maximum. The estimate of the
value at rank ``r`` is found in the bucket holding that rank: its minimum if ``r`` is
the bucket's first rank, its maximum if it is the last, else the midpoint
``(min + max) // 2``. The estimate is never more than half a bucket from the exact
value: within 1/32 (3.125 %) of it, and exact below 32 µs, for the maximum, and
whenever a bucket holds a single distinct value. The same logs therefore give the
same numbers on every backend, exact or approximate.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections.abc import Sequence

__all__ = [
    "EXACT_BELOW",
    "PERCENTILES",
    "DurationAccumulator",
    "Histogram",
    "bucket_of",
    "bucket_sql",
    "bucket_sql_float",
    "nearest_rank",
    "rank_of",
]

#: The percentiles reported by ``asynctrack stats``.
PERCENTILES: tuple[int, ...] = (50, 95, 99)
#: Significant bits kept by a bucket: 16 buckets per power of two.
SIGNIFICANT_BITS = 5
#: Durations below this have a bucket of their own (exact).
EXACT_BELOW = 1 << SIGNIFICANT_BITS
#: From 2**40 µs (12.7 days) up, buckets keep a fixed width of 2**36 µs (at most 1/16 of
#: the value): a shorter SQL expression, and no duration is that long anyway.
_LAST_BIT = 39
_TOP = 1 << (_LAST_BIT + 1)
_TOP_WIDTH = 1 << (_LAST_BIT + 2 - SIGNIFICANT_BITS)
#: Durations buffered per function before they are folded into the histogram.
CHUNK = 1 << 16


def rank_of(percentile: float, n: int) -> int:
    """
    Return the 1-based nearest rank of ``percentile`` among ``n`` values.

    Args:
        percentile: between 0 and 100.
        n: number of values, at least 1.

    Returns:
        ``max(1, ceil(percentile / 100 * n))`` computed in double precision, as
        PostgreSQL's ``percentile_disc`` does.
    """
    return min(n, max(1, math.ceil((percentile / 100) * n)))


def nearest_rank(sorted_values: Sequence[int], percentile: float) -> int:
    """
    Return the exact nearest-rank percentile of ascending, non-empty values.
    """
    return sorted_values[rank_of(percentile, len(sorted_values)) - 1]


def bucket_of(value: int) -> int:
    """
    Return the lower bound of the histogram bucket holding ``value``.
    """
    if value < EXACT_BELOW:
        return value
    if value >= _TOP:
        return value - value % _TOP_WIDTH
    shift = value.bit_length() - SIGNIFICANT_BITS
    return (value >> shift) << shift


def bucket_sql(column: str) -> str:
    """
    Return a SQL expression computing :func:`bucket_of` of an integer ``column``.

    It uses only comparisons, ``-`` and ``%`` on integers, so SQLite, PostgreSQL and
    MariaDB compute the same buckets as Python. The ``CASE`` is a balanced tree over
    the powers of two: about six comparisons per row.
    """

    def tree(lo: int, hi: int) -> str:
        # Values in [2**lo, 2**(hi + 1)).
        if lo == hi:
            return f"{column} - {column} % {1 << (lo + 1 - SIGNIFICANT_BITS)}"
        mid = (lo + hi + 1) // 2
        return f"CASE WHEN {column} < {1 << mid} THEN {tree(lo, mid - 1)} ELSE {tree(mid, hi)} END"

    inner = tree(SIGNIFICANT_BITS, _LAST_BIT)
    top = f"{column} - {column} % {_TOP_WIDTH}"
    return (
        f"CASE WHEN {column} < {EXACT_BELOW} THEN {column} "
        f"WHEN {column} >= {_TOP} THEN {top} ELSE {inner} END"
    )


def bucket_sql_float(column: str) -> str:
    """
    Return a PostgreSQL expression computing :func:`bucket_of` of a ``bigint`` column.

    The bucket width comes from ``floor(ln(v) / ln(2))``, the bit length less one,
    which measured cheaper than :func:`bucket_sql`'s comparison tree. It is exact:
    below 2**40 a value just under a power of two is at least 1.3e-12 below it in
    ``log2``, far above the double's rounding error, so the floor is never too high;
    it can be one too low only for an exact power of two, whose bucket is the value
    itself whatever the width.
    """
    log2 = f"floor(ln({column}::float8) / ln(2::float8))::int"
    width = f"(1::bigint << ({log2} - {SIGNIFICANT_BITS - 1}))"
    return (
        f"CASE WHEN {column} < {EXACT_BELOW} THEN {column} "
        f"WHEN {column} >= {_TOP} THEN {column} - {column} % {_TOP_WIDTH} "
        f"ELSE {column} - {column} % {width} END"
    )


class Histogram:
    """
    Buckets of durations, each with its count, minimum and maximum.
    """

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def add_bucket(self, lower: int, count: int, minimum: int, maximum: int) -> None:
        """
        Merge a bucket's figures (as computed in SQL) into the histogram.
        """
        entry = self._buckets.get(lower)
        if entry is None:
            self._buckets[lower] = [count, minimum, maximum]
            return
        entry[0] += count
        if minimum < entry[1]:
            entry[1] = minimum
        if maximum > entry[2]:
            entry[2] = maximum

    def merge(self, other: Histogram) -> None:
        """
        Add the buckets of ``other`` (histograms of disjoint parts of the data).
        """
        for lower, (count, minimum, maximum) in other._buckets.items():
            self.add_bucket(lower, count, minimum, maximum)

    def add_sorted(self, values: Sequence[int]) -> None:
        """
        Add ascending values: a few bisections per bucket, no per-value Python work.
        """
        i = 0
        n = len(values)
        while i < n:
            lower = bucket_of(values[i])
            if lower < EXACT_BELOW:
                upper = lower + 1
            elif lower >= _TOP:
                upper = lower + _TOP_WIDTH
            else:
                upper = lower + (1 << (lower.bit_length() - SIGNIFICANT_BITS))
            j = bisect_left(values, upper, i)
            self.add_bucket(lower, j - i, values[i], values[j - 1])
            i = j

    def percentiles(self, percentiles: Sequence[float]) -> list[int]:
        """
        Return the estimate of each percentile (see the module docstring).

        Raises:
            ValueError: the histogram is empty.
        """
        items = sorted(self._buckets.items())
        total = sum(entry[0] for _, entry in items)
        if total == 0:
            raise ValueError("no values")
        out: list[int] = []
        for p in percentiles:
            r = rank_of(p, total)
            seen = 0
            for _, (count, minimum, maximum) in items:
                if seen + count >= r:
                    within = r - seen
                    if within == 1:
                        out.append(minimum)
                    elif within == count:
                        out.append(maximum)
                    else:
                        out.append((minimum + maximum) // 2)
                    break
                seen += count
        return out


class DurationAccumulator:
    """
    Durations of one function, streamed in: exact (kept) or folded into a histogram.

    Hot loops append to :attr:`buf` directly (it is never replaced, so its bound
    ``append`` may be cached) and count errors in :attr:`errors`; :meth:`maybe_fold`
    keeps memory bounded in approximate mode.
    """

    __slots__ = ("buf", "calls", "errors", "exact", "hist", "maximum", "total")

    def __init__(self, exact: bool) -> None:
        self.buf: array[int] = array("q")
        self.exact = exact
        self.hist = Histogram()
        self.calls = 0
        self.errors = 0
        self.total = 0
        self.maximum = 0

    def maybe_fold(self) -> None:
        """
        Fold the buffer into the histogram when it is large (approximate mode only).
        """
        if not self.exact and len(self.buf) >= CHUNK:
            self._fold()

    def fold(self) -> None:
        """
        Fold the buffer into the histogram now (approximate mode; no-op when exact).
        """
        if not self.exact:
            self._fold()

    def merge(self, other: DurationAccumulator) -> None:
        """
        Add the durations and errors of ``other``, computed over other logs.
        """
        self.errors += other.errors
        if self.exact:
            self.buf.extend(other.buf)
            return
        other._fold()
        self.hist.merge(other.hist)
        self.calls += other.calls
        self.total += other.total
        self.maximum = max(self.maximum, other.maximum)

    def _fold(self) -> None:
        buf = self.buf
        if not buf:
            return
        values = sorted(buf)
        del buf[:]
        self.hist.add_sorted(values)
        self.calls += len(values)
        self.total += sum(values)
        self.maximum = max(self.maximum, values[-1])

    def finish(self, percentiles: Sequence[float]) -> tuple[int, int, int, list[int]]:
        """
        Return ``(calls, total_us, max_us, [percentile values])``; the accumulator is spent.
        """
        if self.exact:
            values = sorted(self.buf)
            del self.buf[:]
            if not values:
                return 0, 0, 0, [0 for _ in percentiles]
            return (
                len(values),
                sum(values),
                values[-1],
                [nearest_rank(values, p) for p in percentiles],
            )
        self._fold()
        if not self.calls:
            return 0, 0, 0, [0 for _ in percentiles]
        return self.calls, self.total, self.maximum, self.hist.percentiles(percentiles)
