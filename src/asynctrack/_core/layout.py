"""
The layout of a live log's calls: ten fields per call in one flat list.

Each call appends its fields ``meta, depth, params, data, start_ns, end_ns, status,
error, parent, traceback`` to its log's ``_raw`` list (a C-level, atomic ``+=`` of a
tuple). A call is known by its *first slot*, the index of its ``meta`` in ``_raw``;
field ``F`` of the call at slot ``i`` is ``raw[i + F]``. Every reader and writer of
the list (the call tree, the generated wrappers, the records, the encoder) uses the
names below, never a bare offset.

``parent`` is the first slot of the parent call's fields; its ``seq`` is worked out
later, off the hot path (:func:`seq_map`).

A *frame* (``_core/calltree.py``) is the immutable tuple a tracked call keeps in the
context: its log, its first slot, its depth, its caller's frame and the list holding
its fields; its items are read by the names ``FRAME_*`` below.
"""

from __future__ import annotations

from collections.abc import Iterator
from operator import itemgetter
from typing import Any

__all__ = [
    "DATA",
    "DEPTH",
    "END",
    "ERROR",
    "FIELDS",
    "FRAME_DEPTH",
    "FRAME_LOG",
    "FRAME_SLOT",
    "FRAME_SLOTS",
    "FRAME_UP",
    "META",
    "NO_PARAMS",
    "PARAMS",
    "PARENT",
    "REC",
    "START",
    "STARTED",
    "STATUS",
    "TRACEBACK",
    "fields_source",
    "records",
    "seq_map",
    "slot_of",
    "start_of",
]

#: The fields of a call in slot order, with the value each holds when the call starts
#: unless its opener sets it (``end`` stays 0 while the call runs).
_INITIAL: dict[str, Any] = {
    "meta": None,
    "depth": 0,
    "params": None,
    "data": None,
    "start": 0,
    "end": 0,
    "status": "ok",
    "error": None,
    "parent": None,
    "traceback": None,
}
FIELDS = tuple(_INITIAL)
#: Slots per call.
REC = len(FIELDS)
# Offsets of a call's fields from its first slot in ``Log._raw`` (each mutated only
# by the call's own wrapper).
META = FIELDS.index("meta")
DEPTH = FIELDS.index("depth")
PARAMS = FIELDS.index("params")
DATA = FIELDS.index("data")
START = FIELDS.index("start")
END = FIELDS.index("end")
STATUS = FIELDS.index("status")
ERROR = FIELDS.index("error")
PARENT = FIELDS.index("parent")
TRACEBACK = FIELDS.index("traceback")

#: The fields of a root call before its opener sets ``meta``, ``params`` and ``start``:
#: ``STARTED.copy()`` is a root call's list (depth 0, no parent).
STARTED: list[Any] = list(_INITIAL.values())


def fields_source(**given: str) -> str:
    """
    Return the source of a starting call's fields in slot order, comma-separated.

    ``given`` maps field names to the source of their values (the generated code's
    ``meta``, ``depth``, ``params``, ``start``, ``parent``); the others start with their
    initial value.

    Raises:
        KeyError: a name that is not a field.
    """
    unknown = set(given) - set(FIELDS)
    if unknown:
        raise KeyError(f"not call fields: {sorted(unknown)}")
    return ", ".join(given[n] if n in given else repr(v) for n, v in _INITIAL.items())


#: The params of a ``tracker.call`` block given none (a request without a query string):
#: one shared dict rather than one per call, which each buffered log would keep (see
#: docs/performance.md, "The garbage collector"). Never mutated: the records hand out
#: a fresh dict for it.
NO_PARAMS: dict[str, Any] = {}

#: A frame's items: ``(log, slot, depth, caller's frame, slots)``, where ``slots`` is
#: the log's ``_raw`` or, for a call the log had no room for, a list of its own.
FRAME_LOG, FRAME_SLOT, FRAME_DEPTH, FRAME_UP, FRAME_SLOTS = range(5)

#: The start of a call given as a tuple of its fields.
start_of = itemgetter(START)


def records(raw: list[Any]) -> Iterator[tuple[Any, ...]]:
    """
    Iterate over the calls of a flat ``_raw`` list as tuples of their fields (C-level).
    """
    return zip(*[iter(raw)] * REC, strict=True)


def seq_map(raw: list[Any]) -> dict[int, int] | None:
    """
    Return ``{first slot: seq}`` when the calls of ``raw`` are not in start order.

    None when they are (the usual case): a call's ``seq`` is then its slot // REC.
    """
    if not _unsorted(raw):
        return None
    order = sorted(range(0, len(raw) - len(raw) % REC, REC), key=lambda i: raw[i + START])
    return {slot: seq for seq, slot in enumerate(order)}


def _unsorted(raw: list[Any]) -> bool:
    # Calls are appended at call start, so they are in start order unless threads
    # raced between reading the clock and appending; sorting is then needed.
    prev = -1
    for start in raw[START::REC]:
        if start < prev:
            return True
        prev = start
    return False


def slot_of(raw: list[Any], t: int) -> int:
    """
    Return the first slot of the call that started at ``t`` (the very int object).

    A call reads ``len(raw)`` and then appends its fields: another thread may have
    appended in between, so the call checks its start and, should it differ, finds
    its fields here (nothing is ever removed, so they do not move afterwards).
    """
    for i in range(len(raw) - REC, -1, -REC):
        if raw[i + START] is t:
            return i
    raise LookupError("asynctrack: a call's record is missing from its log")  # pragma: no cover
