"""
How a sink worker names its sink and tells a failure of the sink's from its own end.
"""

from __future__ import annotations

import asyncio

from asynctrack.sinks._base import Sink

__all__ = ["brief", "cancelled_by_us", "sink_label", "sink_name"]


def sink_name(sink: Sink) -> str:
    try:
        name = sink.name
    except Exception:
        name = type(sink).__name__
    return str(name)


def sink_label(sink: Sink, name: str) -> str:
    try:
        label = str(sink)
    except Exception:
        return name
    return label if len(label) <= 200 else label[:200] + "…"


def cancelled_by_us(exc: BaseException) -> bool:
    """
    Whether ``exc`` ends the running task itself (not an exception a sink raised).

    That is the cancellation of the task — a sink that raises ``CancelledError`` by
    itself leaves the task's cancellation count at zero, and ``asyncio.timeout`` turns
    its own cancellation into ``TimeoutError`` — or ``GeneratorExit`` thrown into a
    coroutine that is being closed (its loop is gone: it runs in no task).
    """
    if isinstance(exc, GeneratorExit):
        try:
            current = asyncio.current_task()
        except RuntimeError:  # no running loop: being closed, not run
            return True
        return current is None or getattr(current, "_asynctrack_worker", False) is False
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def brief(exc: BaseException) -> str:
    try:
        text = f"{type(exc).__name__}: {exc}"
    except BaseException:  # an exception whose __str__ raises must not end the worker
        text = f"{type(exc).__name__} (its message cannot be shown)"
    return text if len(text) <= 300 else text[:300] + "…"
