"""
The process-wide state is one object, ``RUNTIME``, and ``reset()`` restores it.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

import asynctrack
from asynctrack._core import calltree
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
        elif name == "open_logs":
            value = list(value)
        out[name] = value
    return out


_CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "sweep_at": st.integers(0, 10_000),
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
