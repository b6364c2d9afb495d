"""
Running the parts of a large scan in worker processes, one per CPU.

A JSON-lines file (split by byte ranges) and a SQLite table (split by rowid ranges)
are read by up to one process per CPU; each part aggregates mergeable figures
(histograms, counters) that the parent merges. Processes are started with ``fork``
where the platform has it and no other thread runs (nothing to import again), else
``spawn``.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

__all__ = ["cpu_count", "run_parts", "start_parts"]

T = TypeVar("T")
R = TypeVar("R")

#: Environment variable capping the worker processes (``1``: no worker process).
WORKERS_ENV = "ASYNCTRACK_STATS_WORKERS"


def cpu_count() -> int:
    """
    Return how many processes a scan may use: the CPUs this process may run on.

    ``ASYNCTRACK_STATS_WORKERS`` lowers it (``1`` reads everything in this process).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    limit = os.environ.get(WORKERS_ENV, "")
    if limit.isdigit() and int(limit) > 0:
        cpus = min(cpus, int(limit))
    return max(1, cpus)


def run_parts(func: Callable[[T], R], parts: Sequence[T]) -> list[R]:
    """
    Return ``[func(part) for part in parts]``, computed in worker processes.

    With a single part, or a single CPU, everything runs in this process. An exception
    raised by ``func`` is raised here.
    """
    return start_parts(func, parts)()


def start_parts(func: Callable[[T], R], parts: Sequence[T]) -> Callable[[], list[R]]:
    """
    Start computing ``[func(part) for part in parts]`` in worker processes.

    Returns:
        A function that waits for the results and returns them, in order (with a
        single part or a single CPU, it computes them in this process). This process
        may do other work in the meantime.
    """
    workers = min(cpu_count(), len(parts))
    if workers <= 1:
        return lambda: [func(part) for part in parts]
    # Forking a process that runs threads may copy a lock held by one of them.
    fork = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
    context = multiprocessing.get_context("fork" if fork else "spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        futures = [pool.submit(func, part) for part in parts]
    except BaseException:
        pool.shutdown(cancel_futures=True)
        raise

    def collect() -> list[R]:
        try:
            return [future.result() for future in futures]
        finally:
            pool.shutdown(cancel_futures=True)

    return collect
