"""
Source of the generated wrappers: one template per kind, compiled at decoration time.

A generated wrapper has the parameter list the wrapped callable itself accepts, so
CPython binds each call (no ``inspect.Signature.bind``, 1.9 µs a call), and it
forwards every argument unchanged. Its source is registered with ``linecache`` under
a unique ``<asynctrack probe of module.qualname>`` file name, as attrs does, so a
traceback through a probe shows the wrapper's source lines.

Names (#14): the generated code shares its local namespace with the wrapped
function's parameters, so every name it uses, builtins included, is one it owns.
They all start with a prefix ``P`` (``_at_``, lengthened with leading underscores
until no parameter starts with it) and are globals of the wrapper's own namespace:

====================  =======================================================
name                  what it is
====================  =======================================================
``Pwrapper``          the wrapper (its code is renamed to the function's name)
``Pd0``, ``Pd1``, …   the defaults of the wrapped callable, by parameter index
``Pf``                the wrapped callable
``Plvl``, ``Ptr``     the probe's level and its tracker
``Pmeta``, ``Pplan``  (function, tracker, level name) and the parameter plan
``Pget``, ``Pset``,   ``FRAME.get`` / ``.set`` / ``.reset`` and ``SILENT``
``Preset``, ``PS``
``Pns``               ``time.perf_counter_ns``
``Prejoin``,          calltree helpers: join a log completed concurrently,
``Pslot``, ``Pfail``, find a call's slot, record an error, complete a log,
``Pcont``,            open a continuation,
``Pcomplete``,        the open-log registry, its sweep and threshold, the
``POPEN``, ``Preg``,  wall-clock offset (``PRT``, the runtime state), warn
``PRT`` (runtime),    that a log is full
``Psweep``, ``Pfull``
``Pnew``, ``PLog``,   ``object.__new__``, ``Log``, ``next``, the log counter
``Pnext``,            and ``INFO.get``
``Pcounter``,
``Pinfo``
``Plen``, ``Ptype``,  the builtins ``len``, ``type``, ``str``,
``Pstr``, ``PBE``,    ``BaseException`` and ``ValueError``
``PVE``
``PA``, ``Pc``,       the parameter recorder's atom types, ``convert``, its
``Pcs``, ``Pck``,     ``*args`` and ``**kwargs`` converters and ``REDACTED``
``PR``
``Pcur``, ``Ptok``,   locals: the current frame, the reset token, the params,
``Pp``, ``Pt``,       start time, log, active list, raw slots, index, depth,
``Plog``, ``Pa``,     frame, exception and the type of a parameter value
``Praw``, ``Pi``,
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

__all__ = [
    "ASYNC",
    "SYNC",
    "accepted_signature",
    "builtin_names",
    "compile_function",
    "forget_with",
    "prefix_for",
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


# The tracked path of the generated wrappers inlines joining an open log and leaving
# the call (see calltree.enter/leave for the commented general versions): two Python
# calls fewer per probed call.
_TRACKED = """
    {P}cur = {P}get()
    if {P}cur is {P}S:
        return {AWAIT}{P}f({call})
    {P}p = {PARAMS}
    {P}t = {P}ns()
    if {P}cur is not None and not ({P}log := {P}cur[0])._done:
        {P}a = {P}log._active
        {P}a.append(None)
        if {P}log._done:
            {P}fr = {P}rejoin({P}log, {P}tr, {P}meta, {P}cur, {P}p, {P}t)
            {P}log = {P}fr[0]
            {P}a = {P}log._active
            {P}raw = {P}fr[4]
            {P}i = {P}fr[1] + 5
        else:
            {P}d = {P}cur[2] + 1
            {P}raw = {P}log._raw
            if ({P}i := {P}len({P}raw)) < {MAX}:
                {P}raw += ({P}meta, {P}d, {P}p, None, {P}t, 0, "ok", None, {P}cur[1], None)
                if {P}raw[{P}i + 4] is not {P}t:  # another thread appended first
                    {P}i = {P}slot({P}raw, {P}t)
                {P}fr = ({P}log, {P}i, {P}d, {P}cur, {P}raw)
                {P}i += 5
            else:
                {P}log.dropped_calls += 1
                if {P}log.dropped_calls == 1:
                    {P}full({P}log)
                {P}raw = [{P}meta, {P}d, {P}p, None, {P}t, 0, "ok", None, None, None]
                {P}fr = ({P}log, 0, {P}d, {P}cur, {P}raw)
                {P}i = 5
    else:
        # calltree.open_root, inlined: once per log.
        {P}raw = [{P}meta, 0, {P}p, None, {P}t, 0, "ok", None, None, None]
        {P}log = {P}new({P}Log)
        {P}log._id = None
        {P}log._number = {P}next({P}counter)
        {P}log._wall_ns = {P}RT.wall_offset + {P}t
        {P}log._t0 = {P}log._t1 = {P}t
        if {P}cur is None:
            {P}log._trace = {P}log.parent_id = {P}log.parent_seq = None
            {P}log.remote_parent = None
            {P}log.info = {P}info() or {}
        else:  # a continuation of the completed log of frame cur
            {P}cont({P}log, {P}cur)
        {P}log._raw = {P}raw
        {P}log._calls = None
        {P}log.complete = True
        {P}log.dropped_calls = 0
        {P}log._active = {P}a = [None]
        {P}log._claim = [None]
        {P}log._done = False
        {P}log._tracker = {P}tr
        {P}reg({P}log)
        if {P}len({P}OPEN) > {P}RT.sweep_at:
            {P}sweep()
        {P}fr = ({P}log, 0, 0, None, {P}raw)
        {P}i = 5
    {P}tok = {P}set({P}fr)
    try:
        return {AWAIT}{P}f({call})
    except {P}BE as {P}e:
        {P}fail({P}fr, {P}e)
        raise
    finally:
        {RESET}
        {P}raw[{P}i] = {P}ns()
        {P}a.pop()
        if not {P}a:
            {P}complete({P}log)
"""

#: The template of plain functions' wrappers.
SYNC = """
def {P}wrapper({params}):
    if {P}lvl < {P}tr._th:
        if {P}tr._off:
            return {P}f({call})
        if {P}get() is {P}S:
            return {P}f({call})
        {P}tok = {P}set({P}S)
        try:
            return {P}f({call})
        finally:
            {P}reset({P}tok)
""" + _TRACKED.replace("{AWAIT}", "").replace("{RESET}", "{P}reset({P}tok)")

#: The template of coroutine functions' wrappers.
ASYNC = """
async def {P}wrapper({params}):
    if {P}lvl < {P}tr._th:
        if {P}tr._off:
            return await {P}f({call})
        if {P}get() is {P}S:
            return await {P}f({call})
        {P}tok = {P}set({P}S)
        try:
            return await {P}f({call})
        finally:
            try:
                {P}reset({P}tok)
            except {P}VE:
                pass
""" + _TRACKED.replace("{AWAIT}", "await ").replace(
    "{RESET}",
    """try:
            {P}reset({P}tok)
        except {P}VE:  # resumed in another context: leave that context alone
            pass""",
)
