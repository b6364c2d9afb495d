"""
Log numbers and ids, the trace and span ids derived from them, and the wall clock.

A live log gets a per-process number when it opens (a C-level ``next``) and the
wall-clock time of its first call from ``perf_counter_ns`` plus an offset
(``RUNTIME.wall_offset``), so opening a log reads one clock. Its 32-hex id is formatted
only when someone asks (:func:`format_id`), off the probe's path; the trace and span
ids are hashes of it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time

from asynctrack._core.runtime import RUNTIME

__all__ = [
    "COUNTER",
    "format_id",
    "id_prefix",
    "new_log_number",
    "reanchor_wall_clock",
    "reset_ids_after_fork",
    "span_id_of",
    "trace_id_of",
]

_blake2b = hashlib.blake2b

#: The per-process log numbers.
COUNTER = itertools.count(1)


def reanchor_wall_clock() -> None:
    """
    Re-read the offset between the wall clock and the monotonic clock
    (``RUNTIME.wall_offset``).
    """
    RUNTIME.wall_offset = time.time_ns() - time.perf_counter_ns()


_PREFIX = os.urandom(4).hex()


def id_prefix() -> str:
    """
    Return the 8 random hex characters of this process's log ids.
    """
    return _PREFIX


def new_log_number() -> int:
    """
    Return the next per-process log number (atomic under the GIL: a C-level ``next``).
    """
    return next(COUNTER)


def reset_ids_after_fork() -> None:
    """
    Give a forked child its own id prefix, so its ids never collide with the parent's.
    """
    global _PREFIX
    _PREFIX = os.urandom(4).hex()


def format_id(wall_ns: int, number: int) -> str:
    """
    Return the id of log ``number`` opened at ``wall_ns``.
    """
    # 48 bits of milliseconds (sortable by creation time), 32 random bits per process,
    # 48 bits of per-process counter: 32 hex characters.
    return f"{(wall_ns // 1_000_000) & 0xFFFFFFFFFFFF:012x}{_PREFIX}{number & 0xFFFFFFFFFFFF:012x}"


# Hashers set up once (digest size and personalisation) and copied for each id: a copy
# costs a third of building one with keyword arguments; the digests are the same.
_SPAN_HASH = _blake2b(digest_size=8, person=b"asynctrack.span")
_TRACE_HASH = _blake2b(digest_size=16, person=b"asynctrack.trace")


def span_id_of(log_id: str, seq: int) -> str:
    """
    Return the 16-hex span id of call ``seq`` of log ``log_id`` (never all zeros).
    """
    h = _SPAN_HASH.copy()
    h.update(f"{log_id}/{seq}".encode())
    span = h.hexdigest()
    return span if span != "0" * 16 else "0" * 15 + "1"


def trace_id_of(log_id: str) -> str:
    """
    Return the 32-hex trace id a request's log derives from its id (never all zeros).

    Log ids are unique (time, 32 random bits per process, a counter); their hash is
    as good as random for W3C trace context, and costs nothing on the probe's path.
    """
    h = _TRACE_HASH.copy()
    h.update(log_id.encode())
    trace = h.hexdigest()
    return trace if trace != "0" * 32 else "0" * 31 + "1"
