"""
The call hierarchy: ContextVars, frames, opening, joining and completing logs.

A *frame* is an immutable tuple ``(log, slot, depth, up, slots)`` (its items named
``FRAME_*`` in ``_core/layout.py``; ``up`` is the caller's frame): the call's fields
are ``slots[slot:slot + REC]``, where ``slots`` is the log's flat
``_raw`` list (or a list of its own for a call the log had no room for); the
ContextVar ``asynctrack.frame`` holds the frame of the innermost tracked call,
``SILENT`` inside an untracked call's subtree, or ``None`` outside any probe.
Because frames are immutable, a task that copied its parent's context never
sees frames its parent pushes later.

Joining and completing a log is lock-free: a log counts its running calls in
``_active``, one byte per call in a ``bytearray`` (``append``/``pop`` are atomic C
operations, and a bytearray, holding no objects, is nothing the garbage collector
counts or visits: see docs/performance.md, "The garbage collector"), and is completed
by whoever takes the single ``_claim`` token while no call is running. The token is
the log's ``_claim`` slot itself: ``del log._claim`` is one C operation under the GIL
that either empties the slot or raises ``AttributeError`` (already taken), so a live
log holds no list for it — one container object less per request in flight (see
docs/performance.md, "The garbage collector"). That relies on the GIL: the slot's
check and its emptying run with no bytecode boundary between them, and the value
released is ``True``, which has no finalizer to run other threads. A free-threaded
build (3.13t) checks the slot outside the object's critical section, so two threads
could both take it there; ``bytearray.pop`` is atomic on both builds. A call that
starts after its log was completed opens a *continuation*: a new log whose
``parent_id`` and ``parent_seq`` name the log and the call it was spawned from, with
the same ``trace_id`` and a copy of that log's info.

A call records the first slot of its parent's fields (``FRAME_SLOT`` of the current
frame), so its log is an exact tree whatever ran concurrently. A call the log had no
room for has slots of its own; every call after it has too (the log only grows), so a
recorded call never names an unrecorded parent.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Callable
from typing import Any

from asynctrack._core import selfwarn
from asynctrack._core.ids import COUNTER, reset_ids_after_fork
from asynctrack._core.layout import (
    FRAME_LOG,
    FRAME_SLOT,
    FRAME_SLOTS,
    FRAME_UP,
    META,
    PARAMS,
    REC,
    START,
    STARTED,
    seq_map,
    slot_of,
)
from asynctrack._core.records import Log, fill
from asynctrack._core.runtime import RUNTIME
from asynctrack._core.wrapsrc import (
    ENTER,
    LEAVE_FRAME,
    builtin_names,
    compile_function,
    render,
    unique_filename,
)

__all__ = [
    "FRAME",
    "INFO",
    "SILENT",
    "begin",
    "claim_open",
    "enter",
    "leave",
    "open_logs",
    "open_root",
    "rejoin",
    "set_handoff",
    "set_postprocess",
    "within",
]

FRAME: contextvars.ContextVar[Any] = contextvars.ContextVar("asynctrack.frame", default=None)
INFO: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "asynctrack.info", default=None
)


class _Silent:
    """
    Marker stored in ``asynctrack.frame`` inside the subtree of an untracked call.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<asynctrack: silenced subtree>"


SILENT: Any = _Silent()

_ns = time.perf_counter_ns
_new_log = object.__new__
_get = FRAME.get


def set_handoff(func: Callable[[Log], None]) -> None:
    """
    Install the function that receives every completed log (the pipeline's intake).
    """
    RUNTIME.handoff = func


def set_postprocess(func: Callable[[Log], Log | None] | None) -> None:
    """
    Install the hook run on each completed log before hand-off (config layer).
    """
    RUNTIME.postprocess = func


def set_max_calls(n: int) -> None:
    RUNTIME.max_slots = n * REC


def add_listener(func: Callable[[Log], None]) -> None:
    RUNTIME.listeners.append(func)


def remove_listener(func: Callable[[Log], None]) -> None:
    try:
        RUNTIME.listeners.remove(func)
    except ValueError:
        pass


def open_logs() -> list[Log]:
    """
    Return the logs opened and not yet complete in this process.
    """
    # copy(): one atomic step on every build (a free-threaded one included), while
    # other threads add and remove logs.
    return [log for log in RUNTIME.open_logs.copy().values() if not log._done]


def settle(log: Log) -> None:
    """
    Mark an open log as already written, so its later completion is not handed off.
    """
    RUNTIME.settled.add(log._number)


def claim_open(log: Log) -> bool:
    """
    Take the completion of an open log away from the threads still running its calls.

    Returns True when the caller now owns the log (write it as an incomplete snapshot:
    its completion will never be handed off), False when a thread is completing it
    right now (it hands the complete log off itself). The single claim token decides,
    so a log is never written both complete and as a snapshot (#14).
    """
    for _ in range(1000):
        try:
            del log._claim  # the token: atomic, see the module's docstring
        except AttributeError:
            if log._done:
                return False  # completed, or being completed: its completer hands it off
            # A completer holds the token for an instant and gives it back when a call
            # joined meanwhile: ask again.
            time.sleep(0)
            continue
        log._done = True  # calls starting from now open a continuation
        RUNTIME.open_logs.pop(log._number, None)
        return True
    return False


# -- the per-call path ------------------------------------------------------------


def overflowed(log: Log) -> None:
    """
    Count a call that ``log`` had no room for; warn, once per root function, that a
    log reached ``max_calls_per_log``.

    A probe on a long-running function (a ``main()``, a worker loop) makes one log of
    the whole run; without this the calls beyond the limit vanish into a counter.
    """
    log.dropped_calls += 1
    if log.dropped_calls != 1:
        return
    raw = log._raw
    root = str(raw[META][0]) if raw else "?"
    if len(root) > 200:  # a raw request path can be long
        root = root[:200] + "…"
    selfwarn.once(
        f"max_calls_per_log:{root}",
        f"asynctrack: a log of {root} reached max_calls_per_log "
        f"({RUNTIME.max_slots // REC} calls); later calls in it are only counted "
        f"(Log.dropped_calls). Probe a function that runs once per request or job "
        f"rather than a long-running one, or raise max_calls_per_log",
    )


def begin(tracker: Any, level: int, start: Callable[[Any], tuple[Any, ...]]) -> Any:
    """
    Decide how a call starts, for the generators' wrappers and ``Tracker.call``.

    ``level`` is the call's effective level (-1 for ``NONE``, which only silences).
    Returns None when it passes straight through (tracking off, or inside a silenced
    subtree), ``SILENT`` when it is not tracked and silences its subtree, else
    ``start(cur)``: the frame of the new tracked call below the current frame ``cur``
    (which is when the parameters are recorded). The generated wrappers make the
    same decision in their first lines (``wrapsrc.WRAPPER``).
    """
    cur = _get()
    if level < tracker._th:
        return None if tracker._off or cur is SILENT else SILENT
    if cur is SILENT:
        return None
    return start(cur)


def within(frame: tuple[Any, ...]) -> bool:
    """
    Whether the context's current frame is a call below ``frame`` (or ``SILENT``): a
    call inside ``frame`` that did not give the context back its caller's frame (a
    ``tracker.call`` block left open across an async generator's ``yield``, a coroutine
    finished in another context). The context is still the one ``frame`` was entered
    in (or a copy of it), so ``frame``'s caller must restore it, as ``ContextVar.reset``
    would.
    """
    cur = _get()
    if cur is SILENT:
        # A silenced block below ``frame`` left open: ``frame``'s caller was not
        # silenced (a silenced caller makes no tracked call), so in the context
        # ``frame`` entered only a call below it can have set ``SILENT``.
        return True
    while type(cur) is tuple:
        cur = cur[FRAME_UP]
        if cur is frame:
            return True
    return False


def open_root(
    tracker: Any, meta: tuple[str, str, str], cur: Any, params: Any, t: int
) -> tuple[Any, ...]:
    """
    Open a new log whose first call starts at ``t`` and return that call's frame.

    ``cur`` is the frame of a completed log (the new log's parent) or None. Every log
    is opened here: by the generated wrappers and by :func:`enter` (``wrapsrc.JOIN``),
    so also by ``Tracker.call``.
    """
    raw = STARTED.copy()  # a root call: depth 0, no parent
    raw[META] = meta
    raw[PARAMS] = params
    raw[START] = t
    if cur is None:
        # Info dicts are copy-on-write, so the bound one can be shared (copied before
        # any hook could mutate it in place, see _try_complete).
        info = INFO.get() or {}
        trace = parent_id = parent_seq = None
    else:
        trace, parent_id, parent_seq, info = continuation_of(cur)
    # Positional arguments: this runs once per log.
    number = next(COUNTER)
    log = fill(
        _new_log(Log),
        None,
        number,
        RUNTIME.wall_offset + t,
        t,
        t,
        trace,
        parent_id,
        parent_seq,
        None,
        info,
        raw,
        None,
        True,
        0,
        tracker,
        True,
    )
    # Registered until it completes (shutdown writes the logs still open), and not a
    # moment longer: a completed log must be freed as soon as it is handed off (see
    # docs/performance.md, "The garbage collector").
    RUNTIME.open_logs[number] = log
    return (log, 0, 0, None, raw)  # log, slot, depth, up, slots


def continuation_of(cur: tuple[Any, ...]) -> tuple[str | None, str | None, int | None, Any]:
    """
    Return ``(trace_id, parent_id, parent_seq, info)`` of a log continuing the
    completed log of frame ``cur``.

    It gets the parent's ``trace_id``, its ``id`` as ``parent_id``, as ``parent_seq``
    the call ``cur`` belongs to (or its nearest recorded ancestor), and a copy of the
    parent's info: values bound in this context since, if any, under the parent's
    (which are newer than what the context held when the task spawned). Its
    ``remote_parent`` is None: its parent span is a call of the parent log, not a
    caller in another service.
    """
    parent = cur[FRAME_LOG]
    raw = parent._raw
    frame: Any = cur
    while frame is not None and frame[FRAME_SLOTS] is not raw:
        frame = frame[FRAME_UP]  # a call the parent log had no room for
    if frame is None or raw is None:
        parent_seq = None
    else:
        seqs = seq_map(raw)
        slot = frame[FRAME_SLOT]
        parent_seq = slot // REC if seqs is None else seqs[slot]
    bound = INFO.get()
    info = {**bound, **parent.info} if bound else parent.info
    return parent.trace_id, parent.id, parent_seq, info


def rejoin(
    log: Log,
    active: bytearray,
    tracker: Any,
    meta: tuple[str, str, str],
    cur: Any,
    params: Any,
    t: int,
) -> tuple[Any, ...]:
    """
    Back out of a log that completed while we joined it, and open a new one.

    ``active`` is the list of running calls the joiner appended to: the log's own, or,
    when the log completed in between, the one it had until then (its ``_active`` is
    ``_DONE_ACTIVE`` now, which other late joiners share).
    """
    active.pop()
    _try_complete(log)
    return open_root(tracker, meta, cur, params, t)


#: Given to completed logs in place of their list of running calls: a late joiner
#: may append to it and pop again (see wrapsrc.JOIN). A completed log's claim token is
#: gone for good (its ``_claim`` slot stays empty).
_DONE_ACTIVE = bytearray()


def _try_complete(log: Log) -> None:
    # Whoever pops the single claim token while no call runs completes the log. A call
    # joining at that moment sees ``_done`` and backs out (see enter); if it appended
    # before the claimant re-checked, the claimant gives the token back and retries.
    active = log._active
    while not active:
        try:
            del log._claim  # the token: atomic, see the module's docstring
        except AttributeError:
            return
        log._done = True
        if not active:
            break
        log._done = False
        log._claim = True
    else:
        return
    # Complete the log (inlined: this runs once per log). Its calls stay where they
    # are, in one flat list of plain values: no cycles, and two objects per log for
    # the garbage collector, however many calls it has.
    log._active = _DONE_ACTIVE
    rt = RUNTIME
    rt.open_logs.pop(log._number, None)
    if rt.settled and log._number in rt.settled:
        rt.settled.discard(log._number)
        return
    post = rt.postprocess
    if post is not None:
        log.info = dict(log.info)  # hooks may mutate it in place: give it its own
        result = post(log)
        if result is None:
            return
        log = result
    if rt.listeners:
        for listener in list(rt.listeners):
            try:
                listener(log)
            except Exception:  # pragma: no cover - listeners are our own
                pass
    # The hand-off: the installed pipeline's Intake.put (_delivery/intake.py).
    rt.handoff(log)


def hot_names(prefix: str) -> dict[str, Any]:
    """
    Return the names ``wrapsrc.JOIN`` and ``wrapsrc.LEAVE`` use besides their locals,
    under ``prefix``: for :func:`enter` and :func:`leave` here and for the generated
    wrappers (``_core/probe.py``), so all of them run the same code.
    """
    return {
        **builtin_names(prefix),
        f"{prefix}ns": _ns,
        f"{prefix}open": open_root,
        f"{prefix}rejoin": rejoin,
        f"{prefix}slot": slot_of,
        f"{prefix}full": overflowed,
        f"{prefix}complete": _try_complete,
        f"{prefix}within": within,
    }


def _compile_hot(template: str, name: str) -> Any:
    # The general versions of the wrappers' join and leave; generated once, at import,
    # from the same fragments (the slot limit read from the runtime state each call).
    ns = hot_names(_PREFIX)
    ns[f"{_PREFIX}RT"] = RUNTIME
    source = render(template, _PREFIX, f"{_PREFIX}RT.max_slots")
    filename = unique_filename("call tree", name)
    return compile_function(source, filename, ns, f"{_PREFIX}{name}", rename=(name, name))


_PREFIX = "_at_"

#: Start a tracked call below frame ``cur`` (or open a log) and return its frame:
#: ``enter(tracker, meta, cur, params)``. Used by generators, ``Tracker.call`` and
#: ``begin``; the generated wrappers run the same source (``wrapsrc.JOIN``) inline.
enter: Callable[[Any, tuple[str, str, str], Any, Any], tuple[Any, ...]] = _compile_hot(
    ENTER, "enter"
)
#: End the tracked call of a frame, completing its log when it was the last one
#: running: ``leave(frame)`` (``wrapsrc.LEAVE``, which the wrappers run inline).
leave: Callable[[tuple[Any, ...]], None] = _compile_hot(LEAVE_FRAME, "leave")


def _after_fork_in_child() -> None:
    # Logs open at fork time belong to the parent, which writes them; the child never
    # hands them off.
    RUNTIME.settled.update(log._number for log in open_logs())
    RUNTIME.open_logs.clear()
    reset_ids_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _reset_context() -> None:
    # RUNTIME.reset() (tests): the resetting context starts outside any log.
    FRAME.set(None)
    INFO.set(None)


RUNTIME.on_reset.append(_reset_context)
