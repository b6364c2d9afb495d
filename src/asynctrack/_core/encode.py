"""
JSON-lines encoding of logs (their decoding: ``_core/decode.py``).

Every line is strict JSON (no NaN: values were converted at call time) and one
line under both ``str.split("\\n")`` and ``str.splitlines()``: U+2028, U+2029 and
U+0085, which orjson writes raw, are escaped. Values orjson refuses (lone
surrogates, integers beyond 64 bits, keys that are not ``str``) fall back to the
stdlib encoder through :func:`jsonable`; lone surrogates are then replaced by U+FFFD.
No value costs its log: what no encoder takes becomes a placeholder string.

The dispatcher's path (issue #9): a completed log is encoded straight from its call
records, one ``orjson.dumps`` per line into one buffer per batch, without building
the dicts of ``Log.to_dict()`` (which cost four times the encoding itself). What is
the same for every call of a probe at a depth under a parent (parent, depth,
function, tracker, level) is encoded once and reused as an ``orjson.Fragment``, as
are ``"status":"ok","error":null,"traceback":null`` and the three null parent fields
of a log that continues nothing; the dicts handed to orjson are reused from line to
line, so a line allocates almost nothing and frees nothing the garbage collector has
to look at.
Logs built by hand, read back, or whose calls were materialised take the general
path (``to_dict``); both give the same bytes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

from asynctrack._core import ids
from asynctrack._core.calltree import FRAME, SILENT
from asynctrack._core.ids import trace_id_of
from asynctrack._core.jsonform import iso_second
from asynctrack._core.jsonsafe import has_nonfinite, jsonable
from asynctrack._core.jsonsafe import unencodable as _unencodable
from asynctrack._core.layout import REC
from asynctrack._core.records import Log

try:  # pragma: no branch - orjson is a dependency; the fallback is for odd platforms
    import orjson

    _dumps = orjson.dumps
    #: orjson.Fragment (orjson 3.9.0 and later): pre-encoded JSON inserted as a value.
    _Fragment: Any = getattr(orjson, "Fragment", None)
    _NEWLINE = orjson.OPT_APPEND_NEWLINE
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]
    _dumps = None  # type: ignore[assignment]
    _Fragment = None
    _NEWLINE = 0

__all__ = [
    "encode_log",
    "encode_logs",
    "encode_obj",
    "jsonable",
]

# Characters that str.splitlines() treats as line breaks and JSON allows raw.
_RAW_BREAKS = (
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)
_NEL = ("\u0085".encode(), b"\\u0085")


def _stdlib(obj: Any) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    # Lone surrogates (from surrogateescape-decoded OS data) are not UTF-8: replace
    # them by U+FFFD so every reader accepts the line.
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return _escape_breaks(text.encode("utf-8"))


def _escape_breaks(data: bytes) -> bytes:
    # ASCII (the common case) is checked at memory speed. Otherwise each sequence is
    # looked for only if its rarer byte occurs (one-byte searches are memchr; longer
    # ones run at ~1 byte/ns). "…" (e2 80 a6) shares two bytes with U+2028/U+2029,
    # so each sequence is tested exactly.
    if data.isascii():
        return data
    if b"\xe2" in data:
        for raw, escaped in _RAW_BREAKS:
            if raw in data:
                data = data.replace(raw, escaped)
    raw, escaped = _NEL
    if b"\x85" in data and raw in data:
        data = data.replace(raw, escaped)
    return data


def encode_obj(obj: Any) -> bytes:
    """
    Encode one JSON value as a single line (without the newline); never NaN; never raises.

    What orjson refuses goes through :func:`jsonable` first, so a value that no encoder
    takes (an int beyond CPython's digit limit, a tuple key a processor added) costs
    that value, never the line.
    """
    if _dumps is not None:
        try:
            return _escape_breaks(_dumps(obj))
        except Exception:  # orjson.JSONEncodeError: huge int, surrogate, key, type
            pass
    try:
        return _stdlib(jsonable(obj))
    except Exception:  # pragma: no cover - jsonable's output is always encodable
        return _stdlib(_unencodable(obj))


def encode_log(log: Log) -> bytes:
    """
    Encode one log as a JSON line, newline included: the bytes of ``encode_logs((log,))``.

    A log is encoded alone where it completes (docs/pipeline.md, "Logs encoded at
    completion"), so the usual log, every call ended well, takes a path of its own
    without the batch loop's set-up; any other goes through the batch path.
    """
    if _Fragment is None:  # pragma: no cover - an orjson without Fragment
        return encode_logs((log,))
    local = _LOCAL
    scratch: _Scratch | None = getattr(local, "scratch", None)
    if scratch is None:
        scratch = _Scratch()
    else:
        local.scratch = None  # in use: see encode_logs
    try:
        line = _encode_one(log, scratch)
    except (TypeError, ValueError, OverflowError):
        line = None  # the batch path says what (and may put a placeholder)
    if line is None:
        line = _encode((log,), scratch)
    local.scratch = scratch
    return line


# -- the dispatcher's path ------------------------------------------------------------------

_MASK48 = 0xFFFFFFFFFFFF
#: Only ever handed to orjson: the "data" of a call without add_data.
_EMPTY: dict[str, Any] = {}
#: (function, tracker, level) -> {depth: {parent's first slot: fragment for the value
#: of "parent" and the four keys after it}}. Bounded: cleared when it holds _META_MAX
#: fragments.
_META: dict[Any, dict[int, dict[int | None, Any]]] = {}
_META_MAX = 4096
_meta_count = 0

if _Fragment is not None:
    #: The value of "status" and the keys after it, for a call that ended well.
    _OK_NULL: Any = _Fragment(b'"ok","error":null,"traceback":null')
    #: The value of "parent_id" and the keys after it, for a log that continues nothing.
    _NULL3: Any = _Fragment(b'null,"parent_seq":null,"remote_parent":null')


def _status_fragment(status: Any, error: Any, tb: Any) -> Any:
    # The value of "status" and the keys after it, for a call that did not end well.
    assert _dumps is not None
    return _Fragment(
        _escape_breaks(
            b'%s,"error":%s,"traceback":%s' % (_dumps(status), _dumps(error), _dumps(tb))
        )
    )


def _meta_fragment(meta: tuple[Any, Any, Any], depth: int, parent: int | None) -> Any:
    # The value of "parent" and the four keys after it (depth, function, tracker,
    # level), for a probe at a depth under a parent (calls in start order).
    assert _dumps is not None
    global _meta_count
    by_depth = _META.get(meta)
    if by_depth is None or _meta_count >= _META_MAX:
        if _meta_count >= _META_MAX:
            _META.clear()
            _meta_count = 0
        by_depth = _META[meta] = {}
    by_parent = by_depth.get(depth)
    if by_parent is None:
        by_parent = by_depth[depth] = {}
    function, tracker, level = meta
    text = b'%s,"depth":%d,"function":%s,"tracker":%s,"level":%s' % (
        b"null" if parent is None else b"%d" % (parent // REC),
        depth,
        _dumps(function),
        _dumps(tracker),
        _dumps(level),
    )
    frag = by_parent[parent] = _Fragment(_escape_breaks(text))
    _meta_count += 1
    return frag


class _Scratch:
    """
    The dicts handed to orjson, reused from line to line and from call to call.

    Each line is encoded at once, so its dicts are reused from line to line: filling a
    dict that has its keys costs half of building one (and nothing to free). They are
    kept from one call to the next (a sink encodes its batch in chunks, a pipeline of
    line sinks each log on its own), one set per thread, so concurrent calls never
    share them; so is what the last line's time stamp and id had in common with the
    next one's (the second, its text, the millisecond and the id's prefix).
    """

    __slots__ = (
        "head",
        "id_prefix",
        "last_ms",
        "lists",
        "proc",
        "root_head",
        "second",
        "second_ns",
        "slots",
        "stamp",
    )

    def __init__(self) -> None:
        #: Reusable call dicts by seq, and lists of the first k of them (_calls_list).
        self.slots: list[dict[str, Any]] = []
        self.lists: list[list[dict[str, Any]]] = [[]]
        self.head: dict[str, Any] = dict.fromkeys(_HEAD_KEYS)
        #: The head of a log that continues nothing (the usual case): "parent_id"
        #: holds the three nulls.
        self.root_head: dict[str, Any] = dict.fromkeys(_ROOT_HEAD_KEYS)
        self.root_head["parent_id"] = _NULL3
        self.second = self.second_ns = self.last_ms = -(10**30)
        self.stamp = self.id_prefix = ""
        #: The process's id prefix when ``id_prefix`` was made (a forked child has its
        #: own: the cached prefix is then made again).
        self.proc = ""


_LOCAL = threading.local()


def encode_logs(logs: Iterable[Log | bytes]) -> bytes:
    """
    Encode logs as JSON lines into one buffer (the form of ``Log.to_dict()``).

    An item that is already a line (``bytes``: a log encoded when it completed, see
    docs/pipeline.md, "Logs encoded at completion") is copied as it is.
    """
    if _dumps is None:  # pragma: no cover - orjson missing
        return b"".join(
            log if isinstance(log, bytes) else encode_obj(log.to_dict()) + b"\n" for log in logs
        )
    if _Fragment is None:  # pragma: no cover - an orjson without Fragment
        return b"".join(
            log if isinstance(log, bytes) else _escape_breaks(_dump_dict(log, _dumps, _NEWLINE))
            for log in logs
        )
    local = _LOCAL
    scratch: _Scratch | None = getattr(local, "scratch", None)
    if scratch is None:
        scratch = _Scratch()
    else:
        # In use: a call made meanwhile in this thread (a value's conversion calling
        # back) gets its own.
        local.scratch = None
    data = _encode(logs, scratch)
    # Not put back if _encode raised: its dicts may hold values of the log it was on.
    local.scratch = scratch
    return data


def _encode(logs: Iterable[Log | bytes], scratch: _Scratch) -> bytes:
    dumps = _dumps
    newline = _NEWLINE
    ok_null = _OK_NULL
    empty = _EMPTY
    metas = _META
    slots = scratch.slots
    lists = scratch.lists
    parts: list[bytes] = []
    append_part = parts.append
    for log in logs:
        if isinstance(log, bytes):
            # Encoded when it completed (a pipeline of line sinks, _delivery/pipeline.py).
            append_part(log)
            continue
        raw = log._raw
        complete = log.complete
        if raw is None or log._calls is not None or not (complete is True or complete is False):
            # Built by hand, from JSON, or its calls were read (and maybe edited).
            append_part(_dump_dict(log, dumps, newline))
            continue
        t0 = log._t0
        end_max = previous = t0
        n = len(raw) // REC
        if len(raw) != n * REC:
            # Not whole calls: the general path says so.
            append_part(_dump_dict(log, dumps, newline))
            continue
        try:
            calls = lists[n]
        except IndexError:
            calls = _calls_list(slots, lists, n)
        # Set when a call has data or did not end well: the dicts then hold values
        # other than their defaults ({} and "ok", null), put back after the line.
        marked = False
        try:
            # layout.records() unrolled into this loop: one zip over the call dicts
            # and ten views of the flat list, so a call's slots come out as loop
            # variables without a nested unpacking (8 % of the encoder). Not strict
            # (its keyword costs 3 % of the encoder): the list was checked above.
            it = iter(raw)
            for call, meta, depth, params, data, start, end, status, error, parent, tb in zip(  # noqa: B905
                calls, it, it, it, it, it, it, it, it, it, it
            ):
                if start < previous or not end:
                    # Out of start order (threads raced) or still running: the
                    # general path handles both.
                    n = -1
                    break
                previous = start
                if end > end_max:
                    end_max = end
                try:
                    call["parent"] = metas[meta][depth][parent]
                except KeyError:
                    call["parent"] = _meta_fragment(meta, depth, parent)
                call["params"] = params
                call["offset_us"] = (start - t0) // 1000
                call["duration_us"] = (end - start) // 1000
                if data or error is not None or status != "ok":
                    marked = True
                    if data:
                        call["data"] = data
                    if error is not None or status != "ok":
                        call["status"] = _status_fragment(status, error, tb)
            if n < 0:
                append_part(_dump_dict(log, dumps, newline))
            else:
                append_part(_line(log, calls, scratch, t0, end_max))
        except (TypeError, ValueError, OverflowError):
            # A value orjson refuses (lone surrogate, huge int), a malformed record, a
            # log number past 48 bits.
            append_part(_dump_dict(log, dumps, newline))
        if marked:
            for call in calls:
                call["data"] = empty
                call["status"] = ok_null
    # One pass over the whole batch for the line breaks orjson leaves raw.
    return _escape_breaks(parts[0] if len(parts) == 1 else b"".join(parts))


def _encode_one(log: Log, scratch: _Scratch) -> bytes | None:
    # The batch loop of _encode for one usual log: whole calls in start order, all
    # ended, none with data or an error, no dropped calls. Anything else returns None
    # before a value other than its default is stored (the batch path then encodes it,
    # to the same bytes). The line's head is _line, as in _encode; tests compare the two.
    raw = log._raw
    complete = log.complete
    if (
        raw is None
        or log._calls is not None
        or log.dropped_calls
        or not (complete is True or complete is False)
    ):
        return None
    n = len(raw) // REC
    if len(raw) != n * REC:
        return None
    try:
        calls = scratch.lists[n]
    except IndexError:
        calls = _calls_list(scratch.slots, scratch.lists, n)
    metas = _META
    t0 = previous = end_max = log._t0
    it = iter(raw)
    for call, meta, depth, params, data, start, end, status, error, parent, _ in zip(  # noqa: B905
        calls, it, it, it, it, it, it, it, it, it, it
    ):
        if start < previous or not end or data or error is not None or status != "ok":
            return None
        previous = start
        if end > end_max:
            end_max = end
        try:
            call["parent"] = metas[meta][depth][parent]
        except KeyError:
            call["parent"] = _meta_fragment(meta, depth, parent)
        call["params"] = params
        call["offset_us"] = (start - t0) // 1000
        call["duration_us"] = (end - start) // 1000
    return _escape_breaks(_line(log, calls, scratch, t0, end_max))


def _line(log: Log, calls: list[dict[str, Any]], scratch: _Scratch, t0: int, end_max: int) -> bytes:
    # A log's line over its filled call dicts, newline included, line breaks not yet
    # escaped: its clock, id, trace id, parents and info, for both encoders. The
    # thread's clock and id prefix are kept in ``scratch`` from line to line. Raises
    # TypeError, ValueError or OverflowError for what orjson refuses and for a log
    # number past 48 bits (int.to_bytes).
    t1 = log._t1
    if t1 == t0:
        t1 = end_max
    wall = log._wall_ns
    # Offset into the current second: small ints from here on (CPython's arithmetic on
    # them is several times cheaper than on the stamp).
    sub = wall - scratch.second_ns
    if not 0 <= sub < 1_000_000_000:
        second = wall // 1_000_000_000
        stamp = iso_second(second)  # may raise (a year past 9999): nothing changed yet
        scratch.second, scratch.second_ns, scratch.stamp = second, second * 1_000_000_000, stamp
        sub = wall - scratch.second_ns
        scratch.last_ms = -1
    micros = sub // 1000
    ms = micros // 1000
    ident = log._id
    if ident is None:
        proc = ids._PREFIX  # a forked child has its own
        if ms != scratch.last_ms or scratch.proc is not proc:
            scratch.last_ms = ms
            scratch.proc = proc
            # int.to_bytes().hex() is a zero-padded hex string without a format spec
            # (3x cheaper).
            millis = (scratch.second * 1000 + ms) & _MASK48
            scratch.id_prefix = millis.to_bytes(6).hex() + proc
        ident = scratch.id_prefix + log._number.to_bytes(6).hex()
    if log.parent_id is None and log.parent_seq is None and log.remote_parent is None:
        line = scratch.root_head
    else:
        line = scratch.head
        line["parent_id"] = log.parent_id
        line["parent_seq"] = log.parent_seq
        line["remote_parent"] = log.remote_parent
    line["id"] = ident
    trace = log._trace
    if trace is None:
        trace = log._trace = trace_id_of(ident)
    line["trace_id"] = trace
    line["started_at"] = f"{scratch.stamp}.{_DIGITS3[ms]}{_DIGITS3[micros - ms * 1000]}+00:00"
    line["duration_us"] = (t1 - t0) // 1000
    line["complete"] = log.complete
    line["info"] = log.info
    line["calls"] = calls
    if log.dropped_calls:
        with_dropped = dict(line)
        with_dropped["dropped_calls"] = log.dropped_calls
        return _dumps(with_dropped, option=_NEWLINE)
    return _dumps(line, option=_NEWLINE)


#: The keys of a log's line before its optional "dropped_calls", in order.
_HEAD_KEYS = (
    "id",
    "trace_id",
    "parent_id",
    "parent_seq",
    "remote_parent",
    "started_at",
    "duration_us",
    "complete",
    "info",
    "calls",
)
_ROOT_HEAD_KEYS = tuple(k for k in _HEAD_KEYS if k not in ("parent_seq", "remote_parent"))
#: Three digits, zero-padded, by value: the milliseconds and microseconds of a stamp.
_DIGITS3 = tuple(f"{i:03d}" for i in range(1000))

_CALL_KEYS = (
    "seq",
    "parent",
    "params",
    "data",
    "offset_us",
    "duration_us",
    "status",
)


#: Lists of the first k reusable call dicts are kept for k up to this.
_LISTS_MAX = 64


def _calls_list(slots: list[dict[str, Any]], lists: list[list[dict[str, Any]]], n: int) -> Any:
    # Reusable call dicts for seq 0..n-1 ("parent" holds parent, depth, function,
    # tracker and level; "status" holds status, error and traceback), and the list of
    # the first n of them.
    # "data" and "status" hold their usual values unless encode_logs marks the log.
    while len(slots) < n:
        call = dict.fromkeys(_CALL_KEYS)
        call["seq"] = len(slots)
        call["data"] = _EMPTY
        call["status"] = _OK_NULL
        slots.append(call)
    if n > _LISTS_MAX:
        return slots[:n]
    while len(lists) <= n:
        lists.append(slots[: len(lists)])
    return lists[n]


def _dump_dict(log: Log, dumps: Any, newline: int) -> bytes:
    # The general path may convert values a hook put in, running their own code (a
    # repr, a __track__): since logs are encoded where they complete, that can be the
    # application's thread, and what that code calls is not tracked there either, as
    # in the dispatcher's (docs/pipeline.md, "Logs encoded at completion").
    token = FRAME.set(SILENT)
    try:
        return _general(log, dumps, newline)
    finally:
        FRAME.reset(token)


def _general(log: Log, dumps: Any, newline: int) -> bytes:
    d = log.to_dict()
    if has_nonfinite(d["info"]) or any(
        has_nonfinite(c["params"]) or has_nonfinite(c["data"]) for c in d["calls"]
    ):
        d = jsonable(d)
    try:
        return bytes(dumps(d, option=newline))
    except Exception:  # orjson.JSONEncodeError
        return encode_obj(d) + b"\n"
