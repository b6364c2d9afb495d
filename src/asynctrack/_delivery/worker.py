"""
One sink's worker in the dispatcher loop: delivery, retries, spill, replay, dead letters.

Each sink has its own worker task and in-memory queue, so a slow or failing sink
never holds back the others. A failed write is retried with capped, jittered
exponential backoff; when retries are exhausted (or a flush or shutdown is waiting)
the batch is split to tell a poison log from an outage: logs the sink rejects on
their own go to a dead-letter file, an outage spills everything to disk. While a
spill backlog exists, new batches go straight to disk behind it, so the replay
keeps their order and the application never waits on the outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asynctrack._core.encode import encode_logs
from asynctrack._core.records import Log
from asynctrack._core.selfwarn import report
from asynctrack._core.slices import in_slices
from asynctrack._delivery.counters import Counters
from asynctrack._delivery.failure import brief, cancelled_by_us, sink_label, sink_name
from asynctrack._delivery.intake import Barrier
from asynctrack._delivery.spill import SpillFile, open_regular, spill_name
from asynctrack.sinks._base import Sink
from asynctrack.sinks._file import make_private_dirs

__all__ = ["SinkWorker", "WorkerOptions"]


@dataclass(frozen=True)
class WorkerOptions:
    """
    Delivery settings shared by all sink workers.
    """

    retry_attempts: int = 3
    min_backoff: float = 0.05
    max_backoff: float = 5.0
    write_timeout: float = 30.0
    max_pending_batches: int = 16
    replay_batch: int = 512
    spill_dir: Path = Path(".")
    fsync_spill: bool = False


class _Stop:
    pass


STOP = _Stop()


class SinkWorker:
    """
    Delivers batches to one sink (runs as a task in the dispatcher's loop).
    """

    def __init__(self, sink: Sink, options: WorkerOptions, counters: Counters) -> None:
        self.sink = sink
        self.name = sink_name(sink)
        #: How warnings name the sink (an SQL sink by its masked URL).
        self.label = sink_label(sink, self.name)
        self.options = options
        self.counters = counters
        self.queue: deque[Any] = deque()
        self.queued_logs = 0
        self.spill = SpillFile(options.spill_dir, self.name, fsync=options.fsync_spill)
        self.healthy = True
        self.opened = False
        self._event: asyncio.Event | None = None
        self._urgent: asyncio.Event | None = None
        self._next_attempt = 0.0
        self._failures = 0
        self.stopping = False
        self.deadline: float | None = None
        self.task: asyncio.Task[None] | None = None
        #: The batch being delivered: spilled if the shutdown deadline cancels its write.
        self._inflight: list[Log] | None = None
        #: Logs of the in-flight batch already written by the split of a failed batch.
        self._inflight_done: set[int] = set()
        #: Called (in the loop) when the queue has room again after being full.
        self.on_room: Any = None

    # -- called from the dispatcher (same loop) ----------------------------------------------
    def start(self) -> None:
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            # Restarted after the dispatcher's loop ended mid-write: deliver it again.
            done = self._inflight_done
            rest = [log for log in inflight if id(log) not in done]
            done.clear()
            if rest:
                self.queue.appendleft(rest)
                self.queued_logs += len(rest)
        self._event = asyncio.Event()
        self._urgent = asyncio.Event()
        try:
            self.spill.open()
        except OSError as exc:
            report(f"spill-open:{self.name}", f"asynctrack: cannot open spill files: {exc}")
        self.task = asyncio.get_running_loop().create_task(self.run(), name=f"sink:{self.name}")
        self.task._asynctrack_worker = True  # type: ignore[attr-defined]

    def submit(self, batch: list[Log], *, when_full: str = "spill") -> None:
        full = len(self.queue) >= self.options.max_pending_batches
        if self.spill.has_backlog or (full and when_full == "spill"):
            self._spill(batch)
            return
        self.queue.append(batch)
        self.queued_logs += len(batch)
        self._poke()

    def has_room(self) -> bool:
        return len(self.queue) < self.options.max_pending_batches

    def submit_barrier(self, barrier: Barrier) -> None:
        self.queue.append(barrier)
        assert self._urgent is not None
        self._urgent.set()
        self._poke()

    def stop(self, deadline: float) -> None:
        self.stopping = True
        self.deadline = deadline
        self.queue.append(STOP)
        if self._urgent is not None:
            self._urgent.set()
        self._poke()

    def _poke(self) -> None:
        if self._event is not None:
            self._event.set()

    # -- the task --------------------------------------------------------------------------
    async def run(self) -> None:
        pause = False
        while True:
            try:
                if pause:
                    await self._sleep(self._backoff(self._failures))
                await self._run()
                return
            except BaseException as exc:
                if cancelled_by_us(exc):
                    # Cut short by the shutdown deadline: the batch whose write was cut
                    # and what is still queued go to disk, in order, to be replayed on
                    # the next start.
                    self._spill_remaining()
                    raise
                # Nothing may end a worker (#14): its batches would wait forever while
                # stats() calls them pending. The batch in hand goes to disk, and the
                # worker goes on after a backoff.
                report(
                    f"worker:{self.name}",
                    f"asynctrack: the worker of sink {self.label} hit {brief(exc)}; "
                    "its batch was spilled and delivery goes on",
                )
                self._spill_inflight()
                self._failed()
                pause = True

    def _spill_inflight(self) -> None:
        inflight, self._inflight = self._inflight, None
        if inflight:
            done = self._inflight_done
            self._spill([log for log in inflight if id(log) not in done] if done else inflight)
            done.clear()

    def _spill_remaining(self) -> None:
        self._spill_inflight()
        while self.queue:
            item = self.queue.popleft()
            if isinstance(item, Barrier):
                item.reached()
            elif isinstance(item, list):
                self.queued_logs -= len(item)
                self._spill(item)
        with contextlib.suppress(Exception):
            self.spill.close()

    async def _run(self) -> None:
        assert self._event is not None
        while True:
            if self.queue:
                # Only a queue that was full can have held the dispatcher back.
                was_full = len(self.queue) >= self.options.max_pending_batches
                item = self.queue.popleft()
                if isinstance(item, Barrier):
                    if item.close_sinks:
                        await self._close_sink()
                    item.reached()
                    continue
                if item is STOP:
                    await self._final_replay()
                    await self._close()
                    return
                self.queued_logs -= len(item)
                self._inflight = item
                await self._deliver(item)
                self._inflight = None
                self._inflight_done.clear()
                if was_full and self.on_room is not None:
                    self.on_room()  # the dispatcher may be holding logs back for room
                continue
            if self.spill.has_backlog:
                wait = self._next_attempt - time.monotonic()
                if self.healthy or wait <= 0:
                    await self._replay_chunk()
                    continue
                await self._wait(wait)
                continue
            self._urgent_clear()
            await self._wait(None)

    async def _wait(self, timeout: float | None) -> None:
        assert self._event is not None
        self._event.clear()
        if self.queue:
            return
        # asyncio.timeout, not wait_for: no extra task per wait (one per batch).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._event.wait()

    def _urgent_clear(self) -> None:
        if self._urgent is not None and not self.stopping:
            self._urgent.clear()

    def _is_urgent(self) -> bool:
        return self._urgent is not None and self._urgent.is_set()

    async def _open(self) -> bool:
        if self.opened:
            return True
        try:
            # asyncio.timeout, not wait_for: wait_for runs the call in a task of its
            # own, and a KeyboardInterrupt or SystemExit raised in a task escapes the
            # loop (it would stop the dispatcher) instead of reaching this handler.
            async with asyncio.timeout(self.options.write_timeout):
                await self.sink.open()
        except BaseException as exc:
            if cancelled_by_us(exc):
                raise
            self.counters.add("failed")
            report(
                f"open:{self.name}", f"asynctrack: sink {self.label} failed to open: {brief(exc)}"
            )
            return False
        self.opened = True
        return True

    async def _write(self, logs: Sequence[Log]) -> bool:
        if not await self._open():
            return False
        timeout = self.options.write_timeout
        if self.deadline is not None:
            timeout = max(0.01, min(timeout, self.deadline - time.monotonic()))
        try:
            async with asyncio.timeout(timeout):  # no extra task per batch, unlike wait_for
                await self.sink.write(logs)
        except BaseException as exc:
            # Any exception of the sink's, CancelledError, KeyboardInterrupt and
            # SystemExit included, is a failed write (#14); only the cancellation of
            # this task (the shutdown deadline) ends it. A write cut after its data
            # was handed over landed all the same: written, never spilled or retried.
            landed = self._landed(logs)
            if cancelled_by_us(exc):
                raise
            if landed:
                return True
            self.counters.add("failed")
            report(
                f"write:{self.name}",
                f"asynctrack: sink {self.label} failed to write {len(logs)} logs: {brief(exc)}",
            )
            return False
        self.counters.add_written(self.name, len(logs))
        if self._inflight is not None and logs is not self._inflight:
            self._inflight_done.update(map(id, logs))  # a part of a split batch
        return True

    def _landed(self, logs: Sequence[Log]) -> bool:
        sink = self.sink
        if getattr(sink, "_asynctrack_landed", None) is not logs:
            return False
        sink._asynctrack_landed = None  # type: ignore[attr-defined]
        self.counters.add_written(self.name, len(logs))
        if self._inflight is not None:
            self._inflight_done.update(map(id, logs))  # never spilled at the deadline
        return True

    async def _deliver(self, batch: list[Log]) -> None:
        attempt = 0
        while True:
            if await self._write(batch):
                self._recovered()
                return
            attempt += 1
            if attempt > self.options.retry_attempts or self._is_urgent() or self._late():
                break
            self.counters.add("retried")
            await self._sleep(self._backoff(attempt))
        await self._settle(batch)

    async def _settle(self, batch: list[Log]) -> None:
        # Retries are exhausted: split the batch to tell poison logs from an outage.
        if self._late():
            rejected: list[Log] = []
            unsent = list(batch)
        elif len(batch) > 1:
            rejected, unsent = await self._bisect(batch)
        else:
            # Cut short by a flush: one immediate retry (a split does as much for
            # longer batches), so a passing failure is not sent to disk.
            rejected, unsent = [], ([] if await self._write(batch) else list(batch))
        if rejected:
            self._dead_letter(rejected)
        if not unsent:
            # The halves went through (the failure did not repeat) or only some logs
            # are refused on their own: those are set aside, the sink is fine.
            self._recovered()
            return
        self._spill(unsent)
        self._failed()
        # An outage: what waits behind this batch goes to disk too, in order, so that
        # the replay delivers everything in the order it was produced.
        while self.queue:
            item = self.queue[0]
            if item is STOP:
                break
            self.queue.popleft()
            if isinstance(item, Barrier):
                item.reached()
            else:
                self.queued_logs -= len(item)
                self._spill(item)

    async def _bisect(self, logs: list[Log]) -> tuple[list[Log], list[Log]]:
        """
        Write ``logs`` in halves; return ``(refused, unsent)``: the logs the sink
        refuses on their own (poison), and those not written because it is down.

        Both halves of any part failing is an outage, at every depth of the split:
        the split stops there and what it has not written is unsent, not poison (an
        outage that began after the first half went through once condemned the
        whole second half).
        """
        if len(logs) == 1:
            # A poison suspect: give it its own retries before setting it aside, so
            # an outage that ends in the middle of the split condemns nothing.
            for attempt in range(1, self.options.retry_attempts + 1):
                if self._late():
                    return [], logs
                await self._sleep(self._backoff(attempt))
                if await self._write(logs):
                    return [], []
            return logs, []
        mid = len(logs) // 2
        left, right = logs[:mid], logs[mid:]
        left_ok = await self._write(left)
        right_ok = await self._write(right)
        if not left_ok and not right_ok:
            return [], logs  # both halves fail: an outage, not a poison log
        refused: list[Log] = []
        if not left_ok:
            refused, unsent = await self._bisect(left)
            if unsent:
                return refused, unsent
        if not right_ok:
            more, unsent = await self._bisect(right)
            return refused + more, unsent
        return refused, []

    def _spill(self, logs: Sequence[Log]) -> None:
        try:
            self.spill.append(logs)
        except Exception as exc:
            self.counters.add("dropped", len(logs))
            report(
                f"spill:{self.name}",
                f"asynctrack: cannot spill {len(logs)} logs of sink {self.label}; "
                f"dropped: {brief(exc)}",
            )
            return
        self.counters.add("spilled", len(logs))
        self._poke()

    def _dead_letter(self, logs: Sequence[Log]) -> None:
        base = f"asynctrack-{spill_name(self.name)}"
        path = self.options.spill_dir / f"{base}.dead.jsonl"
        try:
            # Opened by name at each use: a file or directory deleted meanwhile is
            # created again. Never through a symlink planted under our name: then a
            # file of this process's own is used instead.
            make_private_dirs(self.options.spill_dir)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            try:
                fd = open_regular(path, flags)
            except OSError:
                path = self.options.spill_dir / f"{base}.{os.getpid()}.dead.jsonl"
                fd = open_regular(path, flags)
            with os.fdopen(fd, "ab", buffering=0) as f:
                f.write(b"".join(in_slices(encode_logs, logs)))
        except Exception as exc:
            self.counters.add("dropped", len(logs))
            report(f"dead:{self.name}", f"asynctrack: cannot write dead letters: {brief(exc)}")
            return
        self.counters.add("dead_lettered", len(logs))
        report(
            f"poison:{self.name}",
            f"asynctrack: sink {self.label} rejected {len(logs)} logs on their own; "
            f"they were set aside in {path}",
        )

    async def _replay_chunk(self) -> None:
        try:
            logs, offset = self.spill.read_chunk(self.options.replay_batch)
        except OSError as exc:
            report(f"replay-read:{self.name}", f"asynctrack: cannot read spill file: {exc}")
            self._failed()
            return
        self._sync_corrupt()
        if not logs:
            if offset:
                self.spill.commit(offset)
            return
        if await self._write(logs):
            self.spill.commit(offset)
            self.counters.add("replayed", len(logs))
            self._recovered()
            return
        rejected, unsent = await self._bisect(logs) if len(logs) > 1 else ([], logs)
        if len(unsent) == len(logs):
            self._failed()  # nothing went through: replay this chunk again later
            return
        # Some logs went through: the chunk is done with. Those the outage kept from
        # the sink go back to the end of the spill, never replayed twice with the ones
        # written (they stay counted as spilled once, and replayed once when they are).
        if rejected:
            self._dead_letter(rejected)
        if unsent and not self._respill(unsent):
            return
        self.spill.commit(offset)
        self.counters.add("replayed", len(logs) - len(rejected) - len(unsent))
        if unsent:
            self._failed()
        else:
            self._recovered()

    def _respill(self, logs: Sequence[Log]) -> bool:
        try:
            self.spill.append(logs)
        except Exception as exc:
            # The chunk stays where it is: replayed again, its written logs twice.
            report(
                f"spill:{self.name}",
                f"asynctrack: cannot spill {len(logs)} logs of sink {self.label} again; "
                f"their chunk will be replayed again: {brief(exc)}",
            )
            self._failed()
            return False
        return True

    async def _final_replay(self) -> None:
        # At shutdown, finish a replay that is going well, within the deadline.
        while self.spill.has_backlog and self.healthy and not self._late():
            await self._replay_chunk()

    async def _close(self) -> None:
        await self._close_sink()
        self.spill.close()

    async def _close_sink(self) -> None:
        if self.opened:
            timeout = self.options.write_timeout
            if self.deadline is not None:
                timeout = max(0.05, min(timeout, self.deadline - time.monotonic()))
            try:
                async with asyncio.timeout(timeout):
                    await self.sink.close()
            except BaseException as exc:
                if cancelled_by_us(exc):
                    raise
                report(
                    f"close:{self.name}",
                    f"asynctrack: sink {self.label} failed to close: {brief(exc)}",
                )
            self.opened = False

    def reopened(self) -> int:
        """
        Files of this sink found deleted or moved and opened again (sink and spill).
        """
        try:
            own = int(getattr(self.sink, "reopened", 0) or 0)
        except Exception:
            own = 0
        return own + self.spill.reopened

    def _sync_corrupt(self) -> None:
        if self.spill.corrupt:
            self.counters.add("corrupt", self.spill.corrupt)
            report(
                f"corrupt:{self.name}",
                f"asynctrack: skipped {self.spill.corrupt} unreadable lines of a spill file "
                "(a torn line left by a crash, or a damaged file)",
            )
            self.spill.corrupt = 0

    def _recovered(self) -> None:
        if not self.healthy:
            report(f"recovered:{self.name}", f"asynctrack: sink {self.label} recovered")
        self.healthy = True
        self._failures = 0

    def _failed(self) -> None:
        self.healthy = False
        self._failures += 1
        self._next_attempt = time.monotonic() + self._backoff(self._failures)

    def _backoff(self, attempt: int) -> float:
        # The exponent is clamped: a float overflows past 2**1023, and an outage of a
        # few hours reaches that many failures.
        exponent = min(max(attempt - 1, 0), 60)
        base = min(self.options.max_backoff, self.options.min_backoff * (2.0**exponent))
        return float(base * (0.5 + random.random() / 2))  # "equal jitter": never 0, never > cap

    def _late(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    async def _sleep(self, seconds: float) -> None:
        # Interruptible: a flush or shutdown cuts a backoff short.
        assert self._urgent is not None
        if self.deadline is not None:
            seconds = min(seconds, max(0.0, self.deadline - time.monotonic()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._urgent.wait(), seconds)

    def pending(self) -> int:
        inflight = self._inflight
        return self.queued_logs + (len(inflight) if inflight else 0)

    def after_fork(self) -> None:
        self.spill.forget()
        try:
            self.sink.after_fork()
        except Exception as exc:  # pragma: no cover - user code
            name = type(exc).__name__
            report(f"fork:{self.name}", f"asynctrack: {self.name}.after_fork() failed: {name}")
