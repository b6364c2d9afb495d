"""
The process-wide state is one object, ``RUNTIME``, and ``reset()`` restores it.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack._core import calltree, tracker
from asynctrack._core.layout import PARAMS
from asynctrack._core.runtime import RUNTIME, Runtime
from asynctrack.testing import capture

# Slots whose value reset() leaves alone: hooks the layers above install once.
# exit_hooked: the exit hook, once registered, stays registered for the interpreter;
# wall_offset: a clock anchor, re-read by the dispatcher; slices: the last dispatcher's.
_KEPT = {
    "flush",
    "flush_sync",
    "dispatcher_thread",
    "on_reset",
    "exit_hooked",
    "wall_offset",
    "slices",
}


def _state(rt: Runtime) -> dict[str, Any]:
    """
    The resettable slots of ``rt``, containers copied so later mutation shows.
    """
    out: dict[str, Any] = {}
    for name in Runtime.__slots__:
        if name in _KEPT:
            continue
        value = getattr(rt, name)
        if isinstance(value, (list, set, dict)):
            value = type(value)(value)
        out[name] = value
    return out


_CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "max_slots": st.integers(0, 10_000),
        "max_frames": st.integers(0, 100),
        "root_level": st.integers(0, 100),
        "enabled": st.integers(0, 5),
        "pipeline_enabled": st.booleans(),
        "exit_spent": st.floats(0, 10),
        "name_levels": st.dictionaries(st.text(max_size=5), st.integers(0, 100), max_size=3),
        "settled": st.sets(st.integers(0, 100), max_size=3),
    },
)


class TestRuntime:
    @given(_CHANGES, st.booleans())
    def test_reset_restores_every_slot(self, changes: dict[str, Any], hooks: bool) -> None:
        """
        Whatever slots were changed, ``RUNTIME.reset()`` leaves every resettable slot
        equal to a fresh ``Runtime``'s, and keeps the identity of the open-log registry
        and the settled set (the generated wrappers hold their methods).
        """
        open_logs, settled = RUNTIME.open_logs, RUNTIME.settled
        for name, value in changes.items():
            if name in {"name_levels", "settled"}:
                getattr(RUNTIME, name).update(value)
            else:
                setattr(RUNTIME, name, value)
        if hooks:
            RUNTIME.listeners.append(lambda log: None)
            RUNTIME.postprocess = lambda log: log
        RUNTIME.reset()
        assert _state(RUNTIME) == _state(Runtime())
        assert RUNTIME.open_logs is open_logs
        assert RUNTIME.settled is settled

    def test_completed_log_goes_to_the_handoff(self) -> None:
        """
        A completed log is handed to ``RUNTIME.handoff`` after the listeners: the
        whole path from the probe to the intake goes through that one slot.
        """
        handed: list[asynctrack.Log] = []
        tr = asynctrack.get_tracker("runtime.handoff")

        @tr.probe
        def work() -> int:
            return 1

        with capture() as logs:
            calltree.set_handoff(handed.append)
            work()
        assert [log.id for log in handed] == [log.id for log in logs]
        assert len(handed) == 1

    def test_reset_turns_tracking_off(self) -> None:
        """
        After a configuration, ``RUNTIME.reset()`` forgets the pipeline and turns
        tracking off: probes record nothing until configured again.
        """
        asynctrack.configure(sinks=[asynctrack.MemorySink()])
        assert RUNTIME.pipeline is not None
        RUNTIME.reset()
        assert RUNTIME.pipeline is None
        assert not asynctrack.get_tracker("runtime.off").enabled

    def test_exit_hook_is_registered_once_across_resets(self) -> None:
        """
        The pipeline's early exit step is registered among threading's exit hooks once
        per interpreter: ``RUNTIME.reset()`` keeps ``exit_hooked``, so configuring
        again after a reset does not register it a second time (it would run twice).
        """
        registered = RUNTIME.exit_hooked
        RUNTIME.exit_hooked = False
        try:
            with mock.patch("threading._register_atexit") as register:
                asynctrack.configure(sinks=[asynctrack.MemorySink()])
                RUNTIME.reset()
                asynctrack.configure(sinks=[asynctrack.MemorySink()])
            assert register.call_count == 1
            assert RUNTIME.exit_hooked
        finally:
            RUNTIME.exit_hooked = registered


_reg = asynctrack.get_tracker("runtime.registry")


@_reg.probe
async def _task(n: int, gate: asyncio.Event) -> int:
    await gate.wait()
    return n


@_reg.probe
def _blocking(n: int, gate: threading.Event, started: threading.Event) -> int:
    started.set()
    gate.wait(10)
    return n


@_reg.probe
def _plain(n: int) -> int:
    return n


def _opened(log: Any) -> int:
    n: int = log._raw[PARAMS]["n"]
    return n


class TestOpenLogRegistry:
    @settings(max_examples=25)
    @given(
        st.lists(
            st.tuples(st.sampled_from(["task", "thread", "plain"]), st.booleans()), max_size=24
        )
    )
    def test_it_holds_exactly_the_logs_still_running(self, plan: list[tuple[str, bool]]) -> None:
        """
        Property: whatever mix of tasks, threads and plain calls runs, and whichever of
        them finish, the registry holds exactly the logs still running, in the order
        they opened; a finished log is not kept alive by it (nor by anything else once
        handed off).
        """
        RUNTIME.reset()
        handed: list[weakref.ref[Any]] = []
        tracker.enable(+1)
        calltree.set_handoff(lambda log: handed.append(weakref.ref(log)))

        async def main() -> None:
            tasks: list[tuple[asyncio.Task[int], asyncio.Event, bool]] = []
            threads: list[tuple[threading.Thread, threading.Event, bool]] = []
            for i, (kind, finish) in enumerate(plan):
                if kind == "plain":
                    _plain(i)
                elif kind == "task":
                    gate = asyncio.Event()
                    tasks.append((asyncio.create_task(_task(i, gate)), gate, finish))
                    await asyncio.sleep(0)  # the task opens its log now, in plan order
                else:
                    tgate, started = threading.Event(), threading.Event()
                    t = threading.Thread(target=_blocking, args=(i, tgate, started))
                    t.start()
                    assert started.wait(10)
                    threads.append((t, tgate, finish))
            for _, gate, finish in tasks:
                if finish:
                    gate.set()
            for t, tgate, finish in threads:
                if finish:
                    tgate.set()
                    t.join(10)
            for _ in range(3):
                await asyncio.sleep(0)
            running = [i for i, (kind, finish) in enumerate(plan) if kind != "plain" and not finish]
            assert [_opened(log) for log in RUNTIME.open_logs.values()] == running
            assert [_opened(log) for log in calltree.open_logs()] == running
            gc.collect()
            assert [r for r in handed if r() is not None] == []
            assert len(handed) == len(plan) - len(running)
            for _, gate, _ in tasks:
                gate.set()
            for t, tgate, _ in threads:
                tgate.set()
                t.join(10)
            await asyncio.gather(*(task for task, _, _ in tasks))

        try:
            asyncio.run(main())
            assert RUNTIME.open_logs == {}
            assert len(handed) == len(plan)
        finally:
            RUNTIME.reset()


class TestLateJoiner:
    def test_backs_out_of_the_list_it_joined(self) -> None:
        """
        A call joining a log at the moment it completes appended to the log's list of
        running calls as it was; backing out pops that list, not the shared one every
        completed log now holds (which may be empty or hold another joiner's entry).
        """
        RUNTIME.reset()
        handed: list[Any] = []
        tracker.enable(+1)
        calltree.set_handoff(handed.append)
        try:
            meta = ("late.joiner", "runtime.registry", "DEFAULT")
            frame = calltree.enter(_reg, meta, None, None)
            log = frame[0]
            joined = log._active  # read by the joiner before the log completes
            calltree.leave(frame)  # the log completes: its list is replaced
            assert handed == [log] and log._done and log._active is not joined
            done_active = log._active
            joined.append(0)  # the joiner appends to what it read
            new = calltree.rejoin(log, joined, _reg, meta, frame, None, time.perf_counter_ns())
            assert len(joined) == 0 and len(done_active) == 0
            assert new[0] is not log and new[0].parent_id == log.id
            calltree.leave(new)
            assert len(handed) == 2
        finally:
            RUNTIME.reset()
