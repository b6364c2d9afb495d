"""
Timing for the benchmark groups, on pyperf.

A group describes what to time as :class:`Variant` objects (a workload that times
itself, per-operation count, hooks that switch global state on and off) and hands them
to :func:`measure`, which registers each with one ``pyperf.Runner``: pyperf calibrates
the loop count, runs warm-ups, spawns worker processes (each with its own hash seed)
and takes the values. The manager process gets every variant's values back and the
group prints its report from them; worker processes stop right after their variant.

Modes: full (6 worker processes × 3 values per variant), ``--quick`` (3 × 2) and
``--smoke`` (one value, in the group's own process: proves it runs, measures nothing).
pyperf's own options (``-p``, ``-n``, ``-o result.json``, ``--rigorous``...) pass through.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyperf

__all__ = [
    "Measured",
    "Option",
    "Settings",
    "Variant",
    "clock_name",
    "measure",
    "now",
    "parse_args",
    "ratio",
    "set_clock",
]

_CLOCKS: dict[str, Callable[[], int]] = {
    "wall": time.perf_counter_ns,
    "cpu": time.process_time_ns,
    "thread": time.thread_time_ns,
}
#: The clock workloads time themselves with. ``cpu`` (the process's CPU time, all
#: threads) is blind to time lost to other processes on a shared machine; ``wall`` is not.
_CLOCK: list[Callable[[], int]] = [time.perf_counter_ns]
_CLOCK_NAME = ["wall"]


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
    if name not in _CLOCKS:
        raise ValueError(f"clock must be one of {sorted(_CLOCKS)}, got {name!r}")
    _CLOCK[0] = _CLOCKS[name]
    _CLOCK_NAME[0] = name


def clock_name() -> str:
    """
    Return the name of the clock in use: ``"wall"``, ``"cpu"`` or ``"thread"``.
    """
    return _CLOCK_NAME[0]


#: pyperf settings per mode: worker processes, values per process, warm-ups, and the
#: shortest duration of one value in seconds (pyperf raises the loop count to reach it).
_MODES: dict[str, dict[str, float]] = {
    "full": {"processes": 6, "values": 3, "warmups": 1, "min_time": 0.05},
    "quick": {"processes": 3, "values": 2, "warmups": 1, "min_time": 0.02},
    "smoke": {"processes": 1, "values": 1, "warmups": 0, "min_time": 1e-9},
}


@dataclass(frozen=True)
class Settings:
    """
    The mode of a run and the pyperf runner that measures it.

    Attributes:
        mode: ``"full"``, ``"quick"`` or ``"smoke"`` (smoke: just prove it runs).
        runner: the process's one ``pyperf.Runner``.
    """

    mode: str
    runner: pyperf.Runner

    @property
    def smoke(self) -> bool:
        return self.mode == "smoke"

    @property
    def quick(self) -> bool:
        return self.mode in ("quick", "smoke")

    def describe(self) -> str:
        """
        Say how the figures were taken, for the report.
        """
        if self.smoke:
            return "smoke run: one value per variant, in process (not a measurement)"
        args = self.runner.args
        return (
            f"pyperf: {args.processes} worker processes × {args.values} values per variant "
            f"after {args.warmups} warm-up, median of the values"
        )


@dataclass
class Variant:
    """
    One thing to measure.

    Attributes:
        name: the row label (and the pyperf benchmark name: unique in a group).
        run: runs the workload ``n`` times and returns the elapsed nanoseconds on the
            benchmark clock (the callable times itself, so a driver such as
            ``run_until_complete`` can keep its own start-up out of the figure).
        per_iter: operations per iteration (3 for a 3-deep call chain): the figure is
            nanoseconds per operation.
        enter: called before each timed run (switch global state on).
        leave: called after it (switch it off; flush what was produced).
        clock: the clock this variant is timed with (default: the group's ``--clock``).
    """

    name: str
    run: Callable[[int], int]
    per_iter: int = 1
    enter: Callable[[], None] | None = None
    leave: Callable[[], None] | None = None
    clock: str | None = None


@dataclass(frozen=True)
class Measured:
    """
    The result for one variant, in ns per operation.

    Attributes:
        median: median of all values.
        runs: the median of each worker process's values.
        low: smallest of ``runs``.
        high: largest of ``runs``.
        n: loops per value (pyperf's calibration).
    """

    median: float
    runs: tuple[float, ...]
    low: float
    high: float
    n: int


#: A group's own option: its flag and ``add_argument`` keywords (``dest`` is derived).
Option = tuple[str, dict[str, Any]]


def parse_args(
    description: str,
    argv: Sequence[str] | None,
    *,
    module: str,
    clock: str = "cpu",
    options: Sequence[Option] = (),
    modes: dict[str, dict[str, float]] | None = None,
) -> argparse.Namespace:
    """
    Parse a group's options and create the process's pyperf runner.

    ``--quick``, ``--smoke`` and ``--clock`` (``clock`` is the group's default) are
    the group's, and so are ``options`` (``("--logs", {"type": int, "default": 20})``),
    which worker processes receive too; everything else is pyperf's. ``modes``
    overrides pyperf's settings of a mode for this group (``{"full": {"processes": 3}}``
    for a group whose every value takes a second). ``module``
    (``"benchmarks.bench_calls"``) is what pyperf runs in its worker processes. Returns
    the namespace with ``settings`` (a :class:`Settings`).
    """
    pre = argparse.ArgumentParser(add_help=False)
    mode = pre.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--smoke", action="store_true")
    pre.add_argument("--mode", choices=sorted(_MODES), default=None)
    own, rest = pre.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    name = own.mode or ("smoke" if own.smoke else "quick" if own.quick else "full")
    if name == "smoke" and "--worker" not in rest:
        rest += ["--in-process", "--debug-single-value"]

    def forward(cmd: list[str], args: argparse.Namespace) -> None:
        # Worker processes need the group's own options: pyperf forwards only its own.
        cmd.extend(["--mode", args.mode, "--clock", args.clock])
        for flag, spec in options:
            value = getattr(args, flag.lstrip("-").replace("-", "_"))
            if spec.get("action") == "store_true":
                cmd.extend([flag] if value else [])
            else:
                cmd.extend([flag, str(value)])

    opts = {**_MODES[name], **(modes or {}).get(name, {})}
    runner = pyperf.Runner(
        processes=int(opts["processes"]),
        values=int(opts["values"]),
        warmups=int(opts["warmups"]),
        min_time=opts["min_time"],
        program_args=("-m", module),
        add_cmdline_args=forward,
    )
    parser = runner.argparser
    parser.description = description
    parser.add_argument("--mode", choices=sorted(_MODES), default=name, help=argparse.SUPPRESS)
    parser.add_argument(
        "--clock",
        choices=sorted(_CLOCKS),
        default=clock,
        help=f"time samples by wall clock, process CPU or thread CPU (default: {clock})",
    )
    for flag, spec in options:
        parser.add_argument(flag, **spec)
    args = runner.parse_args(rest)
    set_clock(args.clock)
    args.settings = Settings(name, runner)
    return args


def _time_func(variant: Variant, clock: str) -> Callable[[int], float]:
    def time_func(loops: int) -> float:
        set_clock(variant.clock or clock)
        gc.collect()
        if variant.enter is not None:
            variant.enter()
        try:
            return variant.run(loops) / 1e9
        finally:
            if variant.leave is not None:
                variant.leave()

    return time_func


def measure(variants: Sequence[Variant], settings: Settings) -> dict[str, Measured]:
    """
    Measure every variant with pyperf; call it once per group.

    In a worker process pyperf runs the one variant it was started for and sends the
    values to the manager; the worker then exits here, so the rest of the group (its
    report) runs only in the manager.

    Returns:
        The figures by variant name, in ns per operation.
    """
    runner = settings.runner
    clock = clock_name()
    results: dict[str, Measured] = {}
    # pyperf prints a line per benchmark on stdout, which carries the group's report.
    with contextlib.redirect_stdout(sys.stderr):
        for variant in variants:
            bench = runner.bench_time_func(
                variant.name, _time_func(variant, clock), inner_loops=variant.per_iter
            )
            if bench is not None and not runner.args.worker:
                results[variant.name] = _measured(bench)
    set_clock(clock)
    if runner.args.worker:
        sys.exit(0)
    return results


def _measured(bench: pyperf.Benchmark) -> Measured:
    runs = tuple(statistics.median(run.values) * 1e9 for run in bench.get_runs() if run.values)
    return Measured(
        median=bench.median() * 1e9,
        runs=runs,
        low=min(runs),
        high=max(runs),
        n=bench.get_loops(),
    )


def ratio(results: dict[str, Measured], a: str, b: str) -> float:
    """
    Return ``a / b`` of two variants' medians (measured in the same run).
    """
    return results[a].median / results[b].median
