"""
The probe: wrappers built at decoration time, one kind per function kind.

For plain and coroutine functions the wrapper is generated (``wrapsrc``) with the
parameter list the wrapped callable itself accepts, so the call is bound by CPython
itself and the parameters are recorded by a generated dict display with inline
checks for primitive values. Generators and async generators get hand-written
wrappers that set the call's frame around each resumption, never holding a
ContextVar token across a ``yield``.

Parameters are recorded (``_core/params.py``) under the names of the signature the callable shows
(``inspect.signature``). When that is not the one it accepts (a ``functools.wraps``
decorator that injects, drops or renames arguments), each call is matched against
the shown signature at call time: the arguments it binds are recorded by name, the
ones it misses are left out, and a call that does not fit is recorded as
``args``/``kwargs``.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from asynctrack._core import calltree
from asynctrack._core.calltree import FRAME, SILENT, begin, enter, leave
from asynctrack._core.failure import WRAPPER_CODES, fail
from asynctrack._core.levels import NONE, level_name, parse_level
from asynctrack._core.params import ParamPlan, qualname_of
from asynctrack._core.runtime import RUNTIME
from asynctrack._core.wrapsrc import (
    WRAPPER,
    accepted_signature,
    compile_function,
    forget_with,
    prefix_for,
    render,
    signature_source,
    unique_filename,
)

__all__ = ["make_probe"]

_P = inspect.Parameter


def _same_parameters(a: inspect.Signature, b: inspect.Signature) -> bool:
    pa, pb = list(a.parameters.values()), list(b.parameters.values())
    return len(pa) == len(pb) and all(
        p.name == q.name and p.kind is q.kind and p.default is q.default
        for p, q in zip(pa, pb, strict=True)
    )


def _generate(
    is_async: bool,
    func: Callable[..., Any],
    sig: inspect.Signature | None,
    tracker: Any,
    meta: tuple[str, str, str],
    level: int,
    plan: ParamPlan,
) -> Callable[..., Any]:
    # ``sig`` is what ``func`` accepts: the wrapper takes exactly that and forwards it.
    ns: dict[str, Any] = {}
    if sig is not None:
        prefix = prefix_for(sig.parameters)
        params, call = signature_source(sig, prefix, ns)
    else:
        prefix = "_at_"
        params = call = f"*{prefix}args, **{prefix}kw"
    # The names of the join and leave fragments are calltree's, as for its enter and
    # leave; the rest are the wrapper's own (wrapsrc's table lists them all).
    ns.update(calltree.hot_names(prefix))
    ns.update(
        {
            f"{prefix}lvl": level,
            f"{prefix}tr": tracker,
            f"{prefix}f": func,
            f"{prefix}get": FRAME.get,
            f"{prefix}set": FRAME.set,
            f"{prefix}reset": FRAME.reset,
            f"{prefix}S": SILENT,
            f"{prefix}fail": fail,
            f"{prefix}meta": meta,
            f"{prefix}plan": plan,
        }
    )

    def source() -> str:
        if plan.exact:
            params_expr = plan.items_src(prefix, ns)
        else:
            params_expr = f"{prefix}plan.pb({call})"
        return render(
            WRAPPER,
            prefix,
            str(RUNTIME.max_slots),
            ASYNC="async " if is_async else "",
            AWAIT="await " if is_async else "",
            params=params,
            call=call,
            PARAMS=params_expr,
        )

    name = getattr(func, "__name__", None)
    qualname = getattr(func, "__qualname__", name)
    rename = (name, qualname) if isinstance(name, str) and isinstance(qualname, str) else None
    entry = f"{prefix}wrapper"
    filename = unique_filename("probe", qualname_of(func))
    wrapper = compile_function(source(), filename, ns, entry, rename=rename)
    forget_with(wrapper, filename)
    ref = weakref.ref(wrapper)

    def regenerate() -> None:
        # New limits or redaction list: swap in freshly generated code. The function
        # object (which users and frameworks hold) stays the same.
        target = ref()
        if target is None:
            return
        scratch = dict(ns)
        fresh = compile_function(source(), filename, scratch, entry, rename=rename)
        ns.update({k: v for k, v in scratch.items() if k != entry and k != "__builtins__"})
        target.__code__ = fresh.__code__

    plan.regenerate = regenerate
    return wrapper


def _gen_wrapper(
    func: Callable[..., Any], tracker: Any, meta: tuple[str, str, str], level: int, plan: ParamPlan
) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        gen = func(*args, **kwargs)
        # The body runs at the first resumption: that is when the call starts.
        frame = begin(
            tracker, level, lambda cur: enter(tracker, meta, cur, plan.pb(*args, **kwargs))
        )
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
    func: Callable[..., Any], tracker: Any, meta: tuple[str, str, str], level: int, plan: ParamPlan
) -> Callable[..., Any]:
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        agen = func(*args, **kwargs)
        frame = begin(
            tracker, level, lambda cur: enter(tracker, meta, cur, plan.pb(*args, **kwargs))
        )
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
    if isinstance(func, type):
        # A probed class would become a function: isinstance, subclassing and class
        # attributes would all break (#14).
        raise TypeError(
            f"probe() cannot probe the class {qualname_of(func)}: it would turn it into a "
            f"function. Probe its methods instead (decorate __init__, __call__ or the "
            f"methods whose calls you want recorded)"
        )
    if not callable(func):
        raise TypeError(f"probe() needs a callable, not {type(func).__name__}")

    # What the callable accepts (the generated wrapper's parameters) and what it shows
    # (kept as the wrapper's signature, and the names parameters are recorded under)
    # differ for functools.wraps decorators that inject, drop or rename arguments.
    accepted = accepted_signature(func)
    try:
        sig: inspect.Signature | None = inspect.signature(func)
    except Exception:  # a broken __signature__ or __wrapped__ loop: record generically
        sig = None
    shown = sig
    if sig is not None and any(not p.name.isidentifier() for p in sig.parameters.values()):
        sig = None  # pragma: no cover - exotic callables
    if sig is None:
        sig = accepted
    exact = sig is not None and accepted is not None and _same_parameters(sig, accepted)

    has_var_kw = sig is None or any(p.kind is _P.VAR_KEYWORD for p in sig.parameters.values())
    param_names = set(sig.parameters) if sig is not None else set()
    if inc_names is not None and not has_var_kw:
        unknown = sorted(inc_names - param_names)
        if unknown:
            raise ValueError(
                f"probe(): inc names {unknown} that are not parameters of {qualname_of(func)} "
                f"(parameters: {sorted(param_names)})"
            )
    if exc_names and not has_var_kw:
        unknown = sorted(exc_names - param_names)
        if unknown:
            raise ValueError(
                f"probe(): exc names {unknown} that are not parameters of {qualname_of(func)} "
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
    implicit = {}
    if not exact and accepted is not None:
        implicit = {
            p.name: p.default
            for p in accepted.parameters.values()
            if p.kind is _P.KEYWORD_ONLY and p.default is not _P.empty and p.name not in param_names
        }
    plan = ParamPlan(
        func,
        sig,
        kept,
        (extra_inc, exc_names),
        (inc_names, exc_names),
        exact=exact,
        implicit=implicit,
    )

    function = fname if fname is not None else qualname_of(func)
    meta = (function, tracker.name, level_name(lvl))
    # NONE never tracks: -1 is below every threshold, so the call only silences.
    eff = lvl if lvl < NONE else -1

    if inspect.isasyncgenfunction(func):
        wrapper = _agen_wrapper(func, tracker, meta, eff, plan)
    elif inspect.isgeneratorfunction(func):
        wrapper = _gen_wrapper(func, tracker, meta, eff, plan)
    elif inspect.iscoroutinefunction(func):
        wrapper = _generate(True, func, accepted, tracker, meta, eff, plan)
    else:
        wrapper = _generate(False, func, accepted, tracker, meta, eff, plan)
    functools.update_wrapper(wrapper, func)
    if shown is not None:
        wrapper.__signature__ = shown  # type: ignore[attr-defined]
    wrapper.__asynctrack_probe__ = meta  # type: ignore[attr-defined]
    return wrapper


# The hand-written wrappers, so that a traceback shows which probed call is innermost.
_CODE = type(_drive_gen.__code__)
WRAPPER_CODES.add(_drive_gen.__code__)
WRAPPER_CODES.update(
    c for c in _agen_wrapper.__code__.co_consts if isinstance(c, _CODE) and c.co_name == "wrapper"
)
