"""
Timing utilities shared by the benchmark groups.

The method (issue #9): one process per group; the variants of a group are measured
*interleaved* — round-robin over the variants, several rounds, a warm-up before each
block — and every figure is a median of repeats. Ratios are computed per round from
figures taken side by side, then the median of those per-round ratios is reported,
so slow drift of a shared machine (other processes, CPU frequency) cancels out.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata

__all__ = [
    "Measured",
    "Settings",
    "Variant",
    "clock_name",
    "fmt_ns",
    "fmt_num",
    "fmt_ratio",
    "machine_info",
    "measure",
    "now",
    "paired_ratio",
    "parse_args",
    "progress",
    "set_clock",
    "table",
    "verdict",
]

#: The clock samples are timed with. ``cpu`` (the process's CPU time, all threads) is
#: blind to time lost to other processes on a shared machine; ``wall`` is not.
_CLOCK: list[Callable[[], int]] = [time.perf_counter_ns]


def now() -> int:
    """
    Read the benchmark clock, in nanoseconds (see ``--clock``).
    """
    return _CLOCK[0]()


def set_clock(name: str) -> None:
    """
    Choose the benchmark clock: ``"wall"`` (``perf_counter_ns``), ``"cpu"`` (the CPU time
    of every thread of the process) or ``"thread"`` (the calling thread's CPU time).

    Raises:
        ValueError: an unknown clock name.
    """
    clocks = {
        "wall": time.perf_counter_ns,
        "cpu": time.process_time_ns,
        "thread": time.thread_time_ns,
    }
    if name not in clocks:
        raise ValueError(f"clock must be one of {sorted(clocks)}, got {name!r}")
    _CLOCK[0] = clocks[name]
    _CLOCK_NAME[0] = name


_CLOCK_NAME = ["wall"]


def clock_name() -> str:
    """
    Return the name of the clock in use: ``"wall"``, ``"cpu"`` or ``"thread"``.
    """
    return _CLOCK_NAME[0]


@dataclass(frozen=True)
class Settings:
    """
    How long and how often to measure.

    Attributes:
        rounds: passes over all variants (interleaved).
        repeats: samples per variant per round (their median is the round's figure).
        sample_s: target duration of one sample, in seconds (sets the iteration count).
        mode: ``"full"``, ``"quick"`` or ``"smoke"`` (smoke: just prove it runs).
    """

    rounds: int = 7
    repeats: int = 3
    sample_s: float = 0.02
    mode: str = "full"

    @property
    def smoke(self) -> bool:
        return self.mode == "smoke"

    @property
    def quick(self) -> bool:
        return self.mode in ("quick", "smoke")


FULL = Settings()
QUICK = Settings(rounds=5, repeats=3, sample_s=0.01, mode="quick")
SMOKE = Settings(rounds=2, repeats=1, sample_s=0.001, mode="smoke")


@dataclass
class Variant:
    """
    One thing to measure.

    Attributes:
        name: the row label.
        run: runs the workload ``n`` times and returns the elapsed nanoseconds (the
            callable times itself, so a driver such as ``run_until_complete`` can keep
            its own start-up out of the figure).
        per_iter: operations per iteration (3 for a 3-deep call chain): the figure is
            nanoseconds per operation.
        enter: called before each block of samples (switch global state on).
        leave: called after each block (switch it off; flush what was produced).
    """

    name: str
    run: Callable[[int], int]
    per_iter: int = 1
    enter: Callable[[], None] | None = None
    leave: Callable[[], None] | None = None
    n: int = 0
    rounds: list[float] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Measured:
    """
    The result for one variant: ns per operation.

    Attributes:
        median: median over all samples.
        rounds: the per-round medians (paired with the other variants' rounds).
        low: smallest per-round median.
        high: largest per-round median.
        n: iterations per sample.
    """

    median: float
    rounds: tuple[float, ...]
    low: float
    high: float
    n: int


def progress(message: str) -> None:
    """
    Print a progress note on stderr (stdout carries only the Markdown report).
    """
    print(message, file=sys.stderr, flush=True)


def _calibrate(variant: Variant, sample_s: float) -> None:
    # Doubling until a run is long enough to time, then scale to the target duration.
    n = 1
    while True:
        elapsed = variant.run(n)
        if elapsed >= sample_s * 1e9 / 8 or n >= 1 << 24:
            break
        n *= 2
    per = max(elapsed, 1) / n
    variant.n = max(1, math.ceil(sample_s * 1e9 / per))


def measure(variants: Sequence[Variant], settings: Settings) -> dict[str, Measured]:
    """
    Measure every variant interleaved: ``rounds`` passes, rotating the start each round.

    Args:
        variants: what to measure; their ``enter``/``leave`` hooks bracket each block.
        settings: rounds, repeats and sample duration.

    Returns:
        The figures by variant name, in ns per operation.
    """
    count = len(variants)
    for r in range(settings.rounds):
        # Rotate every two rounds and reverse every other round, so no variant always
        # runs first or always follows the same other one.
        order = [variants[(i + r // 2) % count] for i in range(count)]
        if r % 2:
            order.reverse()
        for variant in order:
            gc.collect()
            if variant.enter is not None:
                variant.enter()
            try:
                if variant.n == 0:
                    _calibrate(variant, settings.sample_s)  # doubles as the warm-up
                else:
                    variant.run(max(1, variant.n // 5))  # warm-up
                block = []
                for _ in range(settings.repeats):
                    elapsed = variant.run(variant.n)
                    block.append(elapsed / (variant.n * variant.per_iter))
            finally:
                if variant.leave is not None:
                    variant.leave()
            variant.samples.extend(block)
            variant.rounds.append(statistics.median(block))
        progress(f"  round {r + 1}/{settings.rounds} done")
    return {
        v.name: Measured(
            median=statistics.median(v.samples),
            rounds=tuple(v.rounds),
            low=min(v.rounds),
            high=max(v.rounds),
            n=v.n,
        )
        for v in variants
    }


def paired_ratio(results: dict[str, Measured], a: str, b: str) -> float:
    """
    Return the median over rounds of ``a / b`` (each round's figures were side by side).
    """
    ra, rb = results[a].rounds, results[b].rounds
    return statistics.median(x / y for x, y in zip(ra, rb, strict=True) if y > 0)


# -- formatting ------------------------------------------------------------------------------


def fmt_ns(ns: float) -> str:
    """
    Format nanoseconds for a table: ``"83.4"``, ``"1,234"``.
    """
    if ns < 100:
        return f"{ns:.1f}"
    return f"{ns:,.0f}"


def fmt_num(x: float) -> str:
    """
    Format a throughput or count with thousands separators.
    """
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}"


def fmt_ratio(x: float) -> str:
    """
    Format a ratio: ``"0.93×"``, ``"27.5×"``.
    """
    return f"{x:.2f}×" if x < 10 else f"{x:.1f}×"


def verdict(ok: bool | None) -> str:
    """
    Return the table mark for a target: met, missed, or not measured.
    """
    if ok is None:
        return "n/a"
    return "met" if ok else "**MISSED**"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, right: bool = True) -> str:
    """
    Render a Markdown table; the first column left-aligned, the others right-aligned
    (left-aligned too with ``right=False``).
    """
    rows = [list(r) for r in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.rjust(widths[i]) if i and right else cell.ljust(widths[i]))
        return "| " + " | ".join(out) + " |"

    sep = ["-" * widths[0]] + ["-" * (w - 1) + (":" if right else "-") for w in widths[1:]]
    return "\n".join([line(headers), "| " + " | ".join(sep) + " |", *(line(r) for r in rows)])


# -- machine and versions ------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


_PACKAGES = (
    "asynctrack",
    "orjson",
    "aiofiles",
    "SQLAlchemy",
    "aiosqlite",
    "opentelemetry-sdk",
    "eliot",
    "structlog",
    "psutil",
    "fastapi",
    "uvicorn",
)


def machine_info() -> list[tuple[str, str]]:
    """
    Return ``(what, value)`` pairs describing this machine and the package versions.
    """
    versions = []
    for name in _PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on Linux
        load = "n/a"
    return [
        ("date", _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("cpu", f"{_cpu_model()} — {os.cpu_count()} logical cores (nproc)"),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("os", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("load average at start", load),
        ("packages", ", ".join(versions)),
    ]


def parse_args(
    description: str, argv: Sequence[str] | None = None, *, clock: str = "cpu"
) -> argparse.Namespace:
    """
    Parse the options common to every group: ``--quick``, ``--smoke``, ``--rounds``,
    ``--clock`` (``clock`` is the group's default).
    """
    parser = argparse.ArgumentParser(description=description)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="fewer rounds, shorter samples")
    mode.add_argument("--smoke", action="store_true", help="tiny run: proves it works")
    parser.add_argument("--rounds", type=int, default=None, help="override the round count")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu", "thread"),
        default=clock,
        help=f"time samples by wall clock, process CPU or thread CPU (default: {clock})",
    )
    args = parser.parse_args(argv)
    set_clock(args.clock)
    settings = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be >= 1")
        settings = Settings(args.rounds, settings.repeats, settings.sample_s, settings.mode)
    args.settings = settings
    return args
