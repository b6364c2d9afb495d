"""
The exiting thread's rescue: when the dispatcher cannot finish before the exit deadline,
the batches waiting in a worker's queue are spilled from the exiting thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from asynctrack._core.records import Log
from asynctrack._core.selfwarn import report
from asynctrack._delivery.failure import brief
from asynctrack._delivery.intake import Barrier
from asynctrack._delivery.spill import SpillFile
from asynctrack._delivery.worker import STOP, SinkWorker

__all__ = ["spill_now", "take_queued"]

#: Logs per write when the exiting thread spills (bounded steps, so it stops on time).
_RESCUE_CHUNK = 4096


def take_queued(worker: SinkWorker) -> list[Log]:
    """
    Take the batches waiting in ``worker``'s queue (not the one being written).

    Called by the exiting thread when the dispatcher cannot finish in time; each
    item is popped once, by this thread or by the worker, never by both.
    """
    out: list[Log] = []
    queue = worker.queue
    while True:
        try:
            item = queue.popleft()
        except IndexError:
            break
        if item is STOP:
            queue.appendleft(item)
            break
        if isinstance(item, Barrier):
            item.release()
            continue
        worker.queued_logs -= len(item)
        out += item
    return out


def spill_now(worker: SinkWorker, logs: Sequence[Log | bytes], until: float) -> int:
    """
    Append ``logs`` to a spill file of ``worker``'s sink from the calling thread, in
    chunks, until the monotonic time ``until``; count the rest as dropped.

    The dispatcher's own spill file may be in use: a separate one (same sink name,
    so the next start adopts and replays it) is opened, written and released.

    Returns:
        The number of logs spilled.
    """
    spill = SpillFile(worker.options.spill_dir, worker.name, fsync=worker.options.fsync_spill)
    done = 0
    try:
        while done < len(logs) and time.monotonic() < until:
            chunk = logs[done : done + _RESCUE_CHUNK]
            spill.append(chunk)
            done += len(chunk)
            worker.counters.add("spilled", len(chunk))
    except Exception as exc:
        report(
            f"spill:{worker.name}",
            f"asynctrack: cannot spill the logs of sink {worker.label} at exit: {brief(exc)}",
        )
    finally:
        spill.close()
    if done < len(logs):
        worker.counters.add("dropped", len(logs) - done)
        report(
            f"rescue-dropped:{worker.name}",
            f"asynctrack: {len(logs) - done} logs of sink {worker.label} could be neither "
            "written nor spilled before the exit deadline; dropped",
        )
    return done
