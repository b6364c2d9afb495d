"""
Source of the generated code: the probe wrappers, and the call tree's ``enter`` and
``leave``, compiled from the same fragments.

A generated wrapper has the parameter list the wrapped callable itself accepts, so
CPython binds each call (no ``inspect.Signature.bind``, 1.9 µs a call), and it
forwards every argument unchanged. Its source is registered with ``linecache`` under
a unique ``<asynctrack probe of module.qualname>`` file name, as attrs does, so a
traceback through a probe shows the wrapper's source lines.

One template, :data:`WRAPPER`, serves plain and coroutine functions. Its tracked path
is two fragments: :data:`JOIN` (start a call: join the current log or open one) and
:data:`LEAVE` (end it). ``calltree.enter`` and ``calltree.leave`` are compiled from the
same two fragments (:data:`ENTER`, :data:`LEAVE_FRAME`), with the same names bound
(``calltree.hot_names``), so the inlined path and the general one cannot drift. The
fields a call appends come from ``layout.fields_source`` and its offsets are the
names of ``_core/layout.py``: no template holds a bare offset.

Names (#14): the generated code shares its local namespace with the wrapped
function's parameters, so every name it uses, builtins included, is one it owns.
They all start with a prefix ``P`` (``_at_``, lengthened with leading underscores
until no parameter starts with it) and are globals of the generated code's own
namespace or its locals (``tests/core/test_probe_wrappers.py`` checks this table
against the code):

====================  =======================================================
name                  what it is
====================  =======================================================
``Pwrapper``          the wrapper (its code is renamed to the function's name)
``Penter``,           ``calltree.enter`` and ``calltree.leave`` (renamed
``Pleave``            ``enter``, ``leave``)
``Ppb``, ``Pbind``    a parameter plan's builders (``_core/params.py``)
``Pd0``, ``Pd1``, …   the defaults of the wrapped callable, by parameter index
``Pf``                the wrapped callable
``Plvl``, ``Ptr``     the probe's level and its tracker
``Pmeta``, ``Pplan``  (function, tracker, level name) and the parameter plan
``Pget``, ``Pset``,   ``FRAME.get`` / ``.set`` / ``.reset`` and ``SILENT``
``Preset``, ``PS``
``Pfail``             record that the call raised (``failure.fail``)
``Pns``               ``time.perf_counter_ns``
``Popen``,            calltree helpers (``hot_names``): open a log, join a new
``Prejoin``,          log when the current one completed concurrently, find a
``Pslot``, ``Pfull``, call's slot, count a call a full log has no room for,
``Pcomplete``,        complete a log, whether the current frame is below a
``Pwithin``           given one (``within``)
``PRT``               the runtime state (``enter`` reads the slot limit there)
``Plen``, ``Ptype``,  the builtins ``len``, ``type``, ``str``,
``Pstr``, ``PBE``,    ``BaseException`` and ``ValueError``
``PVE``
``PA``, ``Pc``,       the parameter recorder's atom types, ``convert``, its
``Pcs``, ``Pck``,     ``*args`` and ``**kwargs`` converters and ``REDACTED``
``PR``
``Pcur``, ``Ptok``,   locals: the current frame, the reset token, the params,
``Pp``, ``Pt``,       start time, log, list of running calls, slots, first
``Plog``, ``Pa``,     slot, depth, frame, exception and the type of a
``Praw``, ``Pi``,     parameter value
``Pd``, ``Pfr``,
``Pe``, ``Pty``
``Pargs``, ``Pkw``    ``*args``/``**kwargs`` when the callable has no signature
====================  =======================================================
"""

from __future__ import annotations

import functools
import inspect
import itertools
import linecache
import os
import threading
import types
import weakref
from collections.abc import Iterable
from typing import Any

from asynctrack._core.layout import (
    END,
    FRAME_DEPTH,
    FRAME_LOG,
    FRAME_SLOT,
    FRAME_SLOTS,
    START,
    fields_source,
)

__all__ = [
    "ENTER",
    "JOIN",
    "LEAVE",
    "LEAVE_FRAME",
    "WRAPPER",
    "accepted_signature",
    "builtin_names",
    "compile_function",
    "forget_with",
    "prefix_for",
    "render",
    "signature_source",
    "unique_filename",
]

_P = inspect.Parameter


def builtin_names(prefix: str) -> dict[str, Any]:
    """
    Return the builtins the generated code uses, under names it owns.
    """
    return {
        f"{prefix}len": len,
        f"{prefix}type": type,
        f"{prefix}str": str,
        f"{prefix}BE": BaseException,
        f"{prefix}VE": ValueError,
    }


def prefix_for(names: Iterable[str]) -> str:
    """
    Return a prefix that no name in ``names`` starts with (``_at_``, ``__at_``, …).
    """
    prefix = "_at_"
    names = list(names)
    while any(n.startswith(prefix) for n in names):
        prefix = "_" + prefix
    return prefix


def accepted_signature(func: Any) -> inspect.Signature | None:
    """
    Return the parameters ``func`` itself accepts, or None when they are unknown.

    Never those of ``__wrapped__`` (a ``functools.wraps`` decorator may inject, drop
    or rename arguments) nor an advertised ``__signature__``: for a plain function the
    code object is the truth; another callable that advertises a signature is taken
    as accepting anything (``*args, **kwargs``).
    """
    target = func
    try:
        inner = func
        while isinstance(inner, functools.partial):
            inner = inner.func
        if inner is not func and _advertises(inner):
            return None  # the partial's signature would be computed from the advert
        if isinstance(func, types.FunctionType):
            if "__signature__" in vars(func):
                target = types.FunctionType(
                    func.__code__,
                    func.__globals__,
                    func.__name__,
                    func.__defaults__,
                    func.__closure__,
                )
                target.__kwdefaults__ = func.__kwdefaults__
        elif getattr(func, "__signature__", None) is not None:
            return None
        sig = inspect.signature(target, follow_wrapped=False)
    except Exception:  # any failure to introspect: forward *args, **kwargs
        return None
    if any(not p.name.isidentifier() for p in sig.parameters.values()):
        return None  # pragma: no cover - exotic callables
    return sig


def _advertises(func: Any) -> bool:
    if isinstance(func, types.FunctionType):
        return "__signature__" in vars(func)
    return getattr(func, "__signature__", None) is not None


def signature_source(sig: inspect.Signature, prefix: str, ns: dict[str, Any]) -> tuple[str, str]:
    """
    Return the source of the parameter list and of a call forwarding every argument.

    Defaults are bound as ``{prefix}d{index}`` in ``ns``.
    """
    params: list[str] = []
    call: list[str] = []
    params_list = list(sig.parameters.values())
    has_posonly = any(q.kind is _P.POSITIONAL_ONLY for q in params_list)
    slash_done = not has_posonly
    star_done = False
    for i, p in enumerate(params_list):
        name = p.name
        if not slash_done and p.kind is not _P.POSITIONAL_ONLY:
            params.append("/")
            slash_done = True
        if p.kind is _P.VAR_POSITIONAL:
            piece = f"*{name}"
            star_done = True
        elif p.kind is _P.VAR_KEYWORD:
            piece = f"**{name}"
        elif p.kind is _P.KEYWORD_ONLY and not star_done:
            params.append("*")
            star_done = True
            piece = name
        else:
            piece = name
        if p.default is not _P.empty:
            dname = f"{prefix}d{i}"
            ns[dname] = p.default
            piece = f"{piece}={dname}"
        params.append(piece)
        if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD):
            call.append(name)
        elif p.kind is _P.VAR_POSITIONAL:
            call.append(f"*{name}")
        elif p.kind is _P.KEYWORD_ONLY:
            call.append(f"{name}={name}")
        else:
            call.append(f"**{name}")
    if not slash_done:
        params.append("/")
    return ", ".join(params), ", ".join(call)


_FILENAMES: set[str] = set()
_FILENAMES_LOCK = threading.Lock()
_serial = itertools.count(2)


def _after_fork_in_child() -> None:
    # Another thread of the parent may have held the lock at the fork.
    global _FILENAMES_LOCK
    _FILENAMES_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def unique_filename(what: str, qualname: str) -> str:
    """
    Return a file name for generated code that no other generated code has used.
    """
    if len(qualname) > 200:
        qualname = qualname[:200] + "…"
    base = f"<asynctrack {what} of {qualname}>"
    with _FILENAMES_LOCK:
        name = base
        while name in _FILENAMES:
            name = f"<asynctrack {what} of {qualname} #{next(_serial)}>"
        _FILENAMES.add(name)
    return name


def _forget(filename: str) -> None:
    linecache.cache.pop(filename, None)
    with _FILENAMES_LOCK:
        _FILENAMES.discard(filename)


def compile_function(
    source: str,
    filename: str,
    ns: dict[str, Any],
    name: str,
    *,
    rename: tuple[str, str] | None = None,
) -> types.FunctionType:
    """
    Execute ``source`` in ``ns`` and return its function ``name``, its source lines
    registered with ``linecache`` under ``filename`` (replacing earlier ones).

    ``rename`` is the (name, qualname) the code takes, which tracebacks show.
    """
    code = compile(source, filename, "exec")
    exec(code, ns)
    func: types.FunctionType = ns[name]
    if rename is not None:
        func.__code__ = func.__code__.replace(co_name=rename[0], co_qualname=rename[1])
    # mtime None: linecache.checkcache leaves the entry alone (no file to stat).
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return func


def forget_with(owner: object, filename: str) -> None:
    """
    Drop ``filename``'s source lines from ``linecache`` when ``owner`` is collected.
    """
    weakref.finalize(owner, _forget, filename)


#: Starting a tracked call below the frame ``{P}cur``: joining its log, or opening a
#: log (``{P}open``, ``calltree.open_root``). The body of ``calltree.enter`` and of
#: every generated wrapper's tracked path, so the two cannot differ. Given ``{P}tr``,
#: ``{P}meta``, ``{P}cur`` and ``{P}p`` (the params), it leaves the call's frame in
#: ``{P}fr``, and for :data:`LEAVE` its log, the log's list of running calls, the
#: call's slots and first slot in ``{P}log``, ``{P}a``, ``{P}raw`` and ``{P}i``. ``{MAX}``
#: is the slot limit: a literal in a wrapper (wrappers are generated again when it
#: changes), read from the runtime state in ``enter``. The fields a call appends are
#: written in slot order by ``layout.fields_source``.
JOIN = """
{P}t = {P}ns()
if {P}cur is not None and not ({P}log := {P}cur[{LOG}])._done:
    {P}a = {P}log._active
    {P}a.append(0)
    if {P}log._done:  # lost a race with the log's completion: open a new log
        {P}fr = {P}rejoin({P}log, {P}a, {P}tr, {P}meta, {P}cur, {P}p, {P}t)
        {P}log = {P}fr[{LOG}]
        {P}a = {P}log._active
        {P}raw = {P}fr[{SLOTS}]
        {P}i = {P}fr[{SLOT}]
    else:
        {P}d = {P}cur[{DEPTH}] + 1
        {P}raw = {P}log._raw
        if ({P}i := {P}len({P}raw)) < {MAX}:
            {P}raw += ({JOINED})
            if {P}raw[{P}i + {START}] is not {P}t:  # another thread appended first
                {P}i = {P}slot({P}raw, {P}t)
        else:  # the log is full: the call gets slots of its own
            {P}full({P}log)
            {P}raw = [{UNRECORDED}]
            {P}i = 0
        {P}fr = ({P}log, {P}i, {P}d, {P}cur, {P}raw)  # log, slot, depth, up, slots
else:
    {P}fr = {P}open({P}tr, {P}meta, {P}cur, {P}p, {P}t)
    {P}log = {P}fr[{LOG}]
    {P}a = {P}log._active
    {P}raw = {P}fr[{SLOTS}]
    {P}i = 0
"""

#: Ending the tracked call :data:`JOIN` started: its end time, and the log completes
#: when it was the last call running. The end of every generated wrapper's tracked
#: path and the body of ``calltree.leave``.
LEAVE = """
{P}raw[{P}i + {END}] = {P}ns()
{P}a.pop()
if not {P}a:
    {P}complete({P}log)
"""

#: ``calltree.enter``: start a tracked call below the frame ``cur``.
ENTER = """
def {P}enter({P}tr, {P}meta, {P}cur, {P}p):
    {JOIN}
    return {P}fr
"""

#: ``calltree.leave``: end the tracked call of a frame.
LEAVE_FRAME = """
def {P}leave({P}fr):
    {P}log = {P}fr[{LOG}]
    {P}a = {P}log._active
    {P}raw = {P}fr[{SLOTS}]
    {P}i = {P}fr[{SLOT}]
    {LEAVE}
"""

#: The wrapper of a plain (``{ASYNC}`` and ``{AWAIT}`` empty) or coroutine function.
#: Below the threshold the call passes through, silencing its subtree; else it is
#: tracked, between :data:`JOIN` and :data:`LEAVE`.
WRAPPER = """
{ASYNC}def {P}wrapper({params}):
    if {P}lvl < {P}tr._th:
        if {P}tr._off:
            return {AWAIT}{P}f({call})
        if {P}get() is {P}S:
            return {AWAIT}{P}f({call})
        {P}tok = {P}set({P}S)
        try:
            return {AWAIT}{P}f({call})
        finally:
            {RESET}
    {P}cur = {P}get()
    if {P}cur is {P}S:
        return {AWAIT}{P}f({call})
    {P}p = {PARAMS}
    {JOIN}
    {ENTERED}
    try:
        return {AWAIT}{P}f({call})
    except {P}BE as {P}e:
        {P}fail({P}fr, {P}e)
        raise
    finally:
        {RESTORE}
        {LEAVE}
"""

#: A tracked coroutine gives the context back its caller's frame ``{P}cur`` rather
#: than keeping a ``ContextVar`` token across its awaits: one object less held per
#: call in flight (see docs/performance.md, "The garbage collector"). It restores it
#: only in the context it started in (its frame, or a call below it that left the
#: context without restoring it, is still there: ``calltree.within``); resumed
#: elsewhere it leaves that context alone. A plain function is never suspended: it keeps the
#: token, whose reset is cheaper than a second ``set``.
_ENTERED_SYNC = "{P}tok = {P}set({P}fr)"
_ENTERED_ASYNC = "{P}set({P}fr)"
_RESTORE_SYNC = "{P}reset({P}tok)"
_RESTORE_ASYNC = """if {P}get() is {P}fr or {P}within({P}fr):
    {P}set({P}cur)"""

_RESET_SYNC = "{P}reset({P}tok)"
_RESET_ASYNC = """try:
    {P}reset({P}tok)
except {P}VE:  # resumed in another context: leave that context alone
    pass"""


def render(template: str, prefix: str, max_slots: str, **parts: str) -> str:
    """
    Return ``template`` with its placeholders filled, ready to compile.

    A line holding only ``{JOIN}``, ``{LEAVE}``, ``{RESET}``, ``{ENTERED}`` or
    ``{RESTORE}`` takes that fragment,
    indented like the line; ``{MAX}`` becomes ``max_slots``; ``{START}`` and ``{END}``
    the offsets of those fields of a call, ``{LOG}``, ``{SLOT}``, ``{DEPTH}`` and
    ``{SLOTS}`` those of a frame's items (``_core/layout.py``); other ``{NAME}``
    placeholders take ``parts[NAME]`` (``params``, ``call``, ``PARAMS``, ``ASYNC``,
    ``AWAIT``); ``{P}`` becomes ``prefix`` last.
    """
    blocks = {
        "{JOIN}": JOIN,
        "{LEAVE}": LEAVE,
        "{RESET}": _RESET_ASYNC if parts.get("ASYNC") else _RESET_SYNC,
        "{ENTERED}": _ENTERED_ASYNC if parts.get("ASYNC") else _ENTERED_SYNC,
        "{RESTORE}": _RESTORE_ASYNC if parts.get("ASYNC") else _RESTORE_SYNC,
    }
    lines: list[str] = []
    for line in template.splitlines(keepends=True):
        block = blocks.get(line.strip())
        if block is None:
            lines.append(line)
            continue
        pad = line[: len(line) - len(line.lstrip())]
        lines.extend(pad + piece if piece.strip() else piece for piece in _lines(block))
    out = "".join(lines)
    inline = {
        "{JOINED}": fields_source(
            meta="{P}meta", depth="{P}d", params="{P}p", start="{P}t", parent="{P}cur[{SLOT}]"
        ),
        "{UNRECORDED}": fields_source(meta="{P}meta", depth="{P}d", params="{P}p", start="{P}t"),
        "{MAX}": max_slots,
        "{START}": str(START),
        "{END}": str(END),
        "{LOG}": str(FRAME_LOG),
        "{SLOT}": str(FRAME_SLOT),
        "{DEPTH}": str(FRAME_DEPTH),
        "{SLOTS}": str(FRAME_SLOTS),
        **{"{" + name + "}": value for name, value in parts.items()},
    }
    for name, value in inline.items():
        out = out.replace(name, value)
    return out.replace("{P}", prefix)


def _lines(block: str) -> list[str]:
    return [piece + "\n" for piece in block.strip("\n").split("\n")]
