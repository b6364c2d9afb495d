"""
The process-wide state of asynctrack, in one object: :data:`RUNTIME`.

Everything that lives as long as the process and is shared by all threads is a slot
of :class:`Runtime`: the hooks a completed log goes through (postprocess, listeners,
hand-off), the registry of open logs, the limits the call tree applies, the levels and
the enabled count of the trackers, and the pipeline the delivery layer installed.
Context-local state (the current frame, the info of the current context) stays in
ContextVars in ``calltree``.

The core sits below the delivery and configuration layers and cannot import them:
they set their slots here (``handoff``, ``flush``, ``pipeline``…) when imported or
configured. ``RUNTIME.reset()`` puts every slot back to its default, for tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from asynctrack._core.layout import REC
from asynctrack._core.levels import DEFAULT

if TYPE_CHECKING:
    from asynctrack._core.records import Log

__all__ = ["RUNTIME", "Runtime"]


class _Closable(Protocol):
    def close(self, timeout: float | None, *, write_open_logs: bool) -> bool: ...


def _drop(log: Log) -> None:
    # The hand-off before any pipeline is installed: tracking is off then (the enabled
    # count is 0), so only a capture()'s listeners see logs.
    pass


async def _no_flush(timeout: float | None = None) -> Any:
    raise RuntimeError("asynctrack's delivery layer is not loaded: import asynctrack")


def _no_flush_sync(timeout: float | None = 5.0) -> Any:
    raise RuntimeError("asynctrack's delivery layer is not loaded: import asynctrack")


class Runtime:
    """
    The process-wide state, one slot per piece (see the module docstring).

    The path of a completed log is ``postprocess`` → ``listeners`` → ``handoff``
    (``calltree._try_complete``); ``handoff`` is the installed pipeline's
    ``Intake.put``.
    """

    # Each slot is described where __init__ sets it.
    __slots__ = (
        "dispatcher_thread",
        "enabled",
        "exit_hooked",
        "exit_spent",
        "flush",
        "flush_sync",
        "handoff",
        "listeners",
        "max_frames",
        "max_slots",
        "name_levels",
        "on_reset",
        "open_logs",
        "pipeline",
        "pipeline_enabled",
        "postprocess",
        "root_level",
        "settled",
        "slices",
        "tracker_class",
        "wall_offset",
    )

    def __init__(self) -> None:
        #: Receives every completed log: the installed pipeline's ``Intake.put``.
        self.handoff: Callable[[Log], None] = _drop
        #: Runs on each completed log before hand-off (hooks and processors), or None.
        self.postprocess: Callable[[Log], Log | None] | None = None
        #: Called with each completed log (``testing.capture()``); mutated in place.
        self.listeners: list[Callable[[Log], None]] = []
        #: Logs opened in this process and not yet complete, by number, in the order
        #: they opened: shutdown writes them as incomplete. Never replaced.
        self.open_logs: dict[int, Log] = {}
        #: Numbers of open logs already written incomplete (at shutdown) or orphaned
        #: by a fork: their late completion is not handed off again. Never replaced.
        self.settled: set[int] = set()
        #: ``max_calls_per_log`` as a number of slots of ``Log._raw``.
        self.max_slots = 10_000 * REC
        #: ``max_traceback_frames``: frames kept per traceback, innermost last.
        self.max_frames = 30
        #: The level of trackers no ``levels`` entry covers.
        self.root_level = int(DEFAULT)
        #: Levels per dotted tracker name.
        self.name_levels: dict[str, int] = {}
        #: How many reasons tracking is on: the pipeline (1) plus active captures.
        self.enabled = 0
        #: The class ``get_tracker`` instantiates (None: ``Tracker``).
        self.tracker_class: type[Any] | None = None
        self.flush: Callable[[float | None], Coroutine[Any, Any, Any]] = _no_flush
        self.flush_sync: Callable[[float | None], Any] = _no_flush_sync
        #: The installed pipeline (``_delivery.pipeline.Pipeline``), or None.
        self.pipeline: _Closable | None = None
        #: Whether the installed pipeline counts in ``enabled``.
        self.pipeline_enabled = False
        #: The dispatcher's thread: ``configure()`` refuses to run in it.
        self.dispatcher_thread: threading.Thread | None = None
        #: Whether the pipeline's early exit step is registered among threading's
        #: exit hooks. Not reset: a hook, once registered, stays for the interpreter's
        #: life, and registering it again would run it twice at exit.
        self.exit_hooked = False
        #: Seconds the early exit step used: the final step gets what is left of
        #: ``exit_timeout`` (see docs/guarantees.md).
        self.exit_spent = 0.0
        #: ``time.time_ns() - time.perf_counter_ns()``: turns a call's start into
        #: wall-clock time without a second clock read per log. Re-anchored by the
        #: dispatcher on every tick (``ids.reanchor_wall_clock``), not by :meth:`reset`.
        self.wall_offset = time.time_ns() - time.perf_counter_ns()
        #: The running dispatcher's ``slices.Slices`` (its GIL clock), set by that
        #: module when imported and by each new dispatcher; not reset.
        self.slices: Any = None
        #: Called in order by :meth:`reset` once the slots hold their defaults.
        self.on_reset: list[Callable[[], None]] = []

    def reset(self) -> None:
        """
        Shut the pipeline down (quickly, open logs not written) and put every slot
        back to its default, then run the ``on_reset`` hooks. For tests.
        """
        if self.pipeline is not None:
            try:
                self.pipeline.close(2.0, write_open_logs=False)
            except Exception:  # a test may leave a broken sink behind
                pass
            self.pipeline = None
        self.handoff = _drop
        self.postprocess = None
        self.listeners.clear()
        self.open_logs.clear()
        self.settled.clear()
        self.max_slots = 10_000 * REC
        self.max_frames = 30
        self.root_level = int(DEFAULT)
        self.name_levels.clear()
        self.enabled = 0
        self.tracker_class = None
        self.pipeline_enabled = False
        self.exit_spent = 0.0
        for hook in self.on_reset:
            hook()


#: The one instance.
RUNTIME = Runtime()
