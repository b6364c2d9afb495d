"""
The probe: wrappers built at decoration time, one kind per function kind.

For plain and coroutine functions the wrapper is generated with the wrapped
function's own parameter list, so the call is bound by CPython itself (no
``inspect.Signature.bind``: 1.9 µs a call) and the parameters are recorded by a
generated *builder* with one dict display and inline checks for primitive values.
Generators and async generators get hand-written wrappers that set the call's
frame around each resumption, never holding a ContextVar token across a ``yield``.
"""

from __future__ import annotations

import functools
import inspect
import keyword
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from asynctrack._core import calltree, records
from asynctrack._core.calltree import FRAME, SILENT, begin, fail, leave
from asynctrack._core.levels import NONE, level_name, parse_level
from asynctrack._core.records import Log
from asynctrack._core.values import REDACTED, convert, current_limits, is_redacted

__all__ = ["make_probe", "refresh_plans"]

_ATOMS = frozenset({int, bool, type(None)})
_P = inspect.Parameter

#: Every plan, so that new limits or a new redaction list rebuild the builders.
_PLANS: weakref.WeakSet[_Plan] = weakref.WeakSet()


def refresh_plans() -> None:
    """
    Make every probe rebuild its parameter builder on its next tracked call.
    """
    for plan in list(_PLANS):
        plan.pb = plan.rebuild_and_call
        if plan.regenerate is not None:
            plan.regenerate()


def _convert_seq(value: Any) -> Any:
    return convert(list(value))


class _Plan:
    """
    How one probe records its parameters: rebuilt when limits or redaction change.
    """

    __slots__ = ("__weakref__", "extra", "func", "kept", "pb", "regenerate", "signature")

    def __init__(
        self,
        func: Callable[..., Any],
        signature: inspect.Signature | None,
        kept: frozenset[str] | None,
        extra: tuple[frozenset[str] | None, frozenset[str]],
    ) -> None:
        self.func = func
        self.signature = signature
        self.kept = kept
        # (inc, exc) applied to the keys of **kwargs
        self.extra = extra
        self.pb: Callable[..., dict[str, Any]] = self.rebuild_and_call
        #: Recompiles the generated wrapper (which inlines the parameter dict).
        self.regenerate: Callable[[], None] | None = None
        _PLANS.add(self)

    def rebuild_and_call(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.pb = self._build()
        try:
            return self.pb(*args, **kwargs)
        except TypeError:
            return {}

    def _build(self) -> Callable[..., dict[str, Any]]:
        sig = self.signature
        if sig is None:
            return self._generic
        names = [p.name for p in sig.parameters.values()]
        prefix = _prefix_for(names)
        ns: dict[str, Any] = {}
        params_src, _call_src = _signature_source(sig, prefix, ns)
        src = f"def {prefix}pb({params_src}):\n    return {self.items_src(prefix, ns)}\n"
        exec(compile(src, f"<asynctrack params of {_qualname(self.func)}>", "exec"), ns)
        built: Callable[..., dict[str, Any]] = ns[f"{prefix}pb"]
        return built

    def items_src(self, prefix: str, ns: dict[str, Any]) -> str:
        """
        Return a dict display recording the parameters under the current limits.
        """
        sig = self.signature
        assert sig is not None
        limit = current_limits().max_string
        ns.update(
            {
                f"{prefix}A": _ATOMS,
                f"{prefix}c": convert,
                f"{prefix}cs": _convert_seq,
                f"{prefix}ck": self._convert_kwargs,
                f"{prefix}R": REDACTED,
            }
        )
        items = []
        for p in sig.parameters.values():
            name = p.name
            if p.kind is _P.VAR_KEYWORD:
                if self.kept is None or name in self.kept:
                    items.append(f"{name!r}: {prefix}ck({name})")
                continue
            if self.kept is not None and name not in self.kept:
                continue
            if is_redacted(name):
                items.append(f"{name!r}: {prefix}R")
            elif p.kind is _P.VAR_POSITIONAL:
                items.append(f"{name!r}: {prefix}cs({name})")
            else:
                # Primitives and short plain strings are kept without a function call.
                items.append(
                    f"{name!r}: ({name} if ({prefix}ty := type({name})) in {prefix}A or "
                    f"({prefix}ty is str and len({name}) <= {limit} and '://' not in {name})"
                    f" else {prefix}c({name}))"
                )
        return "{" + ", ".join(items) + "}"

    def _convert_kwargs(self, kwargs: dict[str, Any]) -> Any:
        inc, exc = self.extra
        if inc is not None or exc:
            kwargs = {k: v for k, v in kwargs.items() if (inc is None or k in inc) and k not in exc}
        return convert(kwargs)

    def _generic(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"args": convert(list(args)), "kwargs": self._convert_kwargs(kwargs)}


def _qualname(func: Any) -> str:
    return f"{getattr(func, '__module__', None) or '?'}.{getattr(func, '__qualname__', repr(func))}"


def _prefix_for(names: Iterable[str]) -> str:
    prefix = "_at_"
    names = list(names)
    while any(n.startswith(prefix) for n in names):
        prefix = "_" + prefix
    return prefix


def _signature_source(sig: inspect.Signature, prefix: str, ns: dict[str, Any]) -> tuple[str, str]:
    """
    Return the source of the parameter list and of a call forwarding every argument.
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
            if ({P}i := len({P}raw)) < {MAX}:
                {P}raw += ({P}meta, {P}d, {P}p, None, {P}t, 0, "ok", None)
                if {P}raw[{P}i + 4] is not {P}t:  # another thread appended first
                    {P}i = {P}slot({P}raw, {P}t)
                {P}fr = ({P}log, {P}i, {P}d, {P}cur, {P}raw)
                {P}i += 5
            else:
                {P}log.dropped_calls += 1
                {P}raw = [{P}meta, {P}d, {P}p, None, {P}t, 0, "ok", None]
                {P}fr = ({P}log, 0, {P}d, {P}cur, {P}raw)
                {P}i = 5
    else:
        # calltree.open_root, inlined: once per log.
        {P}raw = [{P}meta, 0, {P}p, None, {P}t, 0, "ok", None]
        {P}log = {P}new({P}Log)
        {P}log._id = None
        {P}log._number = {P}next({P}counter)
        {P}log._wall_ns = {P}wall[0] + {P}t
        {P}log._t0 = {P}log._t1 = {P}t
        {P}log.parent_id = None if {P}cur is None else {P}cur[0].id
        {P}log.info = {P}info() or {}
        {P}log._raw = {P}raw
        {P}log._calls = None
        {P}log.complete = True
        {P}log.dropped_calls = 0
        {P}log._active = {P}a = [None]
        {P}log._claim = [None]
        {P}log._done = False
        {P}log._tracker = {P}tr
        {P}reg({P}log)
        if len({P}OPEN) > {P}sweep_at[0]:
            {P}sweep()
        {P}fr = ({P}log, 0, 0, None, {P}raw)
        {P}i = 5
    {P}tok = {P}set({P}fr)
    try:
        return {AWAIT}{P}f({call})
    except BaseException as {P}e:
        {P}fail({P}fr, {P}e)
        raise
    finally:
        {RESET}
        {P}raw[{P}i] = {P}ns()
        {P}a.pop()
        if not {P}a:
            {P}complete({P}log)
"""

_SYNC = """
def {name}({params}):
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

_ASYNC = """
async def {name}({params}):
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
            except ValueError:
                pass
""" + _TRACKED.replace("{AWAIT}", "await ").replace(
    "{RESET}",
    """try:
            {P}reset({P}tok)
        except ValueError:  # resumed in another context: leave that context alone
            pass""",
)


def _generate(
    template: str,
    func: Callable[..., Any],
    sig: inspect.Signature | None,
    tracker: Any,
    meta: tuple[str, str, str],
    level: int,
    plan: _Plan,
) -> Callable[..., Any]:
    if sig is not None:
        names = [p.name for p in sig.parameters.values()]
        prefix = _prefix_for(names)
        ns: dict[str, Any] = {}
        params, call = _signature_source(sig, prefix, ns)
    else:
        prefix = "_at_"
        ns = {}
        params, call = "*args, **kwargs", "*args, **kwargs"
    name = getattr(func, "__name__", "wrapper")
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith(prefix):
        name = f"{prefix}wrapper"
    ns.update(
        {
            f"{prefix}lvl": level,
            f"{prefix}tr": tracker,
            f"{prefix}f": func,
            f"{prefix}get": FRAME.get,
            f"{prefix}set": FRAME.set,
            f"{prefix}reset": FRAME.reset,
            f"{prefix}S": SILENT,
            f"{prefix}ns": time.perf_counter_ns,
            f"{prefix}rejoin": calltree.rejoin,
            f"{prefix}new": object.__new__,
            f"{prefix}Log": Log,
            f"{prefix}next": next,
            f"{prefix}counter": records._counter,
            f"{prefix}wall": records._WALL_OFFSET,
            f"{prefix}info": calltree.INFO.get,
            f"{prefix}OPEN": calltree._OPEN,
            f"{prefix}reg": calltree._OPEN.append,
            f"{prefix}sweep_at": calltree._sweep_at,
            f"{prefix}sweep": calltree._sweep,
            f"{prefix}complete": calltree._try_complete,
            f"{prefix}slot": calltree.slot_of,
            f"{prefix}fail": fail,
            f"{prefix}meta": meta,
            f"{prefix}plan": plan,
        }
    )

    def source() -> str:
        if sig is not None:
            params_expr = plan.items_src(prefix, ns)
        else:
            params_expr = f"{prefix}plan.pb({call})"
        return (
            template.replace("{PARAMS}", params_expr)
            .replace("{MAX}", str(calltree._max_slots[0]))
            .replace("{name}", name)
            .replace("{params}", params)
            .replace("{call}", call)
            .replace("{P}", prefix)
        )

    filename = f"<asynctrack probe of {_qualname(func)}>"
    exec(compile(source(), filename, "exec"), ns)
    wrapper: Callable[..., Any] = ns[name]
    ref = weakref.ref(wrapper)

    def regenerate() -> None:
        # New limits or redaction list: swap in freshly generated code. The function
        # object (which users and frameworks hold) stays the same.
        target = ref()
        if target is None:
            return
        scratch = dict(ns)
        exec(compile(source(), filename, "exec"), scratch)
        ns.update({k: v for k, v in scratch.items() if k != name and k != "__builtins__"})
        target.__code__ = scratch[name].__code__

    plan.regenerate = regenerate
    return wrapper


def _gen_wrapper(
    func: Callable[..., Any], tracker: Any, meta: tuple[str, str, str], level: int, plan: _Plan
) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        gen = func(*args, **kwargs)
        # The body runs at the first resumption: that is when the call starts.
        frame = begin(tracker, level, meta, lambda: plan.pb(*args, **kwargs))
        if frame is None:
            return (yield from gen)
        return (yield from _drive_gen(gen, frame))

    return wrapper


def _drive_gen(gen: Any, frame: Any) -> Any:
    # A manual ``yield from`` that sets the call's frame around each resumption.
    tracked = frame is not SILENT
    value: Any = None
    pending: BaseException | None = None
    try:
        while True:
            token = FRAME.set(frame)
            try:
                if pending is None:
                    item = gen.send(value)
                else:
                    exc, pending = pending, None
                    item = gen.throw(exc)
            except StopIteration as stop:
                return stop.value
            finally:
                try:
                    FRAME.reset(token)
                except ValueError:
                    pass
            try:
                value = yield item
            except GeneratorExit:
                token = FRAME.set(frame)
                try:
                    gen.close()
                finally:
                    try:
                        FRAME.reset(token)
                    except ValueError:
                        pass
                raise
            except BaseException as exc:
                pending = exc
                value = None
    except GeneratorExit:
        raise
    except BaseException as exc:
        if tracked:
            fail(frame, exc)
        raise
    finally:
        if tracked:
            leave(frame)


def _agen_wrapper(
    func: Callable[..., Any], tracker: Any, meta: tuple[str, str, str], level: int, plan: _Plan
) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        agen = func(*args, **kwargs)
        frame = begin(tracker, level, meta, lambda: plan.pb(*args, **kwargs))
        tracked = frame is not None and frame is not SILENT
        value: Any = None
        pending: BaseException | None = None
        try:
            while True:
                token = FRAME.set(frame) if frame is not None else None
                try:
                    if pending is None:
                        item = await agen.asend(value)
                    else:
                        exc, pending = pending, None
                        item = await agen.athrow(exc)
                except StopAsyncIteration:
                    return
                finally:
                    if token is not None:
                        try:
                            FRAME.reset(token)
                        except ValueError:
                            pass
                try:
                    value = yield item
                except GeneratorExit:
                    token = FRAME.set(frame) if frame is not None else None
                    try:
                        await agen.aclose()
                    finally:
                        if token is not None:
                            try:
                                FRAME.reset(token)
                            except ValueError:
                                pass
                    raise
                except BaseException as exc:
                    pending = exc
                    value = None
        except GeneratorExit:
            raise
        except BaseException as exc:
            if tracked:
                fail(frame, exc)
            raise
        finally:
            if tracked:
                leave(frame)

    return wrapper


def _names(value: object, what: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset({value})
    if not isinstance(value, Iterable):
        raise TypeError(f"probe(): {what} must be an iterable of str, not {type(value).__name__}")
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(
                f"probe(): {what} must contain only str, found {type(item).__name__} {item!r}"
            )
    return frozenset(items)


def make_probe(
    tracker: Any,
    func: Any,
    *,
    level: Any,
    fname: str | None,
    inc: Any,
    exc: Any,
) -> Any:
    """
    Return the probed version of ``func`` (see ``Tracker.probe``).
    """
    lvl = parse_level(level, "probe(): level")
    if fname is not None and not isinstance(fname, str):
        raise TypeError(f"probe(): fname must be a str or None, not {type(fname).__name__}")
    inc_names = _names(inc, "inc")
    exc_names = _names(exc, "exc") or frozenset()

    if isinstance(func, (classmethod, staticmethod)):
        inner = make_probe(tracker, func.__func__, level=level, fname=fname, inc=inc, exc=exc)
        return type(func)(inner)
    if not callable(func):
        raise TypeError(f"probe() needs a callable, not {type(func).__name__}")

    try:
        sig: inspect.Signature | None = inspect.signature(func)
    except (TypeError, ValueError):
        sig = None
    if sig is not None and any(not p.name.isidentifier() for p in sig.parameters.values()):
        sig = None  # pragma: no cover - exotic callables

    has_var_kw = sig is None or any(p.kind is _P.VAR_KEYWORD for p in sig.parameters.values())
    param_names = set(sig.parameters) if sig is not None else set()
    if inc_names is not None and not has_var_kw:
        unknown = sorted(inc_names - param_names)
        if unknown:
            raise ValueError(
                f"probe(): inc names {unknown} that are not parameters of {_qualname(func)} "
                f"(parameters: {sorted(param_names)})"
            )
    if exc_names and not has_var_kw:
        unknown = sorted(exc_names - param_names)
        if unknown:
            raise ValueError(
                f"probe(): exc names {unknown} that are not parameters of {_qualname(func)} "
                f"(parameters: {sorted(param_names)})"
            )

    if sig is not None:
        if inc_names is not None:
            kept: frozenset[str] | None = (inc_names & param_names) - exc_names
            extra_inc: frozenset[str] | None = inc_names - param_names
        else:
            kept = frozenset(param_names - exc_names - {"self", "cls"})
            extra_inc = None
        # keep **kwargs itself when it is kept or when inc names keys inside it
        for p in sig.parameters.values():
            if p.kind is _P.VAR_KEYWORD and kept is not None and extra_inc:
                kept = kept | {p.name}
    else:
        kept = None
        extra_inc = inc_names
    plan = _Plan(func, sig, kept, (extra_inc, exc_names))

    function = fname if fname is not None else _qualname(func)
    meta = (function, tracker.name, level_name(lvl))
    # NONE never tracks: -1 is below every threshold, so the call only silences.
    eff = lvl if lvl < NONE else -1

    if inspect.isasyncgenfunction(func):
        wrapper = _agen_wrapper(func, tracker, meta, eff, plan)
    elif inspect.isgeneratorfunction(func):
        wrapper = _gen_wrapper(func, tracker, meta, eff, plan)
    elif inspect.iscoroutinefunction(func):
        wrapper = _generate(_ASYNC, func, sig, tracker, meta, eff, plan)
    else:
        wrapper = _generate(_SYNC, func, sig, tracker, meta, eff, plan)
    functools.update_wrapper(wrapper, func)
    if sig is not None:
        wrapper.__signature__ = sig  # type: ignore[attr-defined]
    wrapper.__asynctrack_probe__ = meta  # type: ignore[attr-defined]
    return wrapper
