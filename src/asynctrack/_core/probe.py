"""
The probe: wrappers built at decoration time, one kind per function kind.

For plain and coroutine functions the wrapper is generated (``wrapsrc``) with the
parameter list the wrapped callable itself accepts, so the call is bound by CPython
itself and the parameters are recorded by a generated dict display with inline
checks for primitive values. Generators and async generators get hand-written
wrappers that set the call's frame around each resumption, never holding a
ContextVar token across a ``yield``.

Parameters are recorded under the names of the signature the callable shows
(``inspect.signature``). When that is not the one it accepts (a ``functools.wraps``
decorator that injects, drops or renames arguments), each call is matched against
the shown signature at call time: the arguments it binds are recorded by name, the
ones it misses are left out, and a call that does not fit is recorded as
``args``/``kwargs``.
"""

from __future__ import annotations

import functools
import inspect
import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from asynctrack._core import calltree, records
from asynctrack._core.calltree import FRAME, SILENT, begin, fail, leave
from asynctrack._core.levels import NONE, level_name, parse_level
from asynctrack._core.records import Log
from asynctrack._core.runtime import RUNTIME
from asynctrack._core.values import REDACTED, convert, current_limits, is_redacted
from asynctrack._core.wrapsrc import (
    ASYNC,
    SYNC,
    accepted_signature,
    builtin_names,
    compile_function,
    forget_with,
    prefix_for,
    signature_source,
    unique_filename,
)

__all__ = ["make_probe", "refresh_plans"]

_ATOMS = frozenset({int, bool, type(None)})
_P = inspect.Parameter
#: Default of the parameters a call may leave to a decorator (see _ParamPlan._loose).
_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "<missing>"})()

#: Every plan, so that new limits or a new redaction list rebuild the builders.
_PLANS: weakref.WeakSet[_ParamPlan] = weakref.WeakSet()


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


class _ParamPlan:
    """
    How one probe records its parameters: rebuilt when limits or redaction change.

    ``exact``: the recorded signature is the one the wrapper is generated with, so
    the wrapper records its own parameters inline. Otherwise ``pb`` records them.
    """

    __slots__ = (
        "__weakref__",
        "exact",
        "extra",
        "filename",
        "func",
        "implicit",
        "kept",
        "names",
        "pb",
        "regenerate",
        "signature",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        signature: inspect.Signature | None,
        kept: frozenset[str] | None,
        extra: tuple[frozenset[str] | None, frozenset[str]],
        names: tuple[frozenset[str] | None, frozenset[str]],
        *,
        exact: bool,
        implicit: dict[str, Any] | None = None,
    ) -> None:
        self.func = func
        self.signature = signature
        self.exact = exact
        # Keyword-only parameters the callable accepts but does not show, with their
        # defaults: the wrapper forwards them even when the caller did not pass them.
        self.implicit = implicit or {}
        self.kept = kept
        # (inc, exc) applied to the keys of **kwargs
        self.extra = extra
        # (inc, exc) as given, applied to the keyword arguments of a call that does
        # not fit the signature
        self.names = names
        self.filename: str | None = None
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

    def _compile(self, source: str, ns: dict[str, Any], name: str) -> Callable[..., Any]:
        if self.filename is None:
            self.filename = unique_filename("params", _qualname(self.func))
            forget_with(self, self.filename)
        return compile_function(source, self.filename, ns, name)

    def _build(self) -> Callable[..., dict[str, Any]]:
        sig = self.signature
        if sig is None:
            return self._generic
        if not self.exact:
            return self._loose(sig)
        prefix = prefix_for(sig.parameters)
        ns: dict[str, Any] = {}
        params_src, _call_src = signature_source(sig, prefix, ns)
        src = f"def {prefix}pb({params_src}):\n    return {self.items_src(prefix, ns)}\n"
        built: Callable[..., dict[str, Any]] = self._compile(src, ns, f"{prefix}pb")
        return built

    def items_src(self, prefix: str, ns: dict[str, Any]) -> str:
        """
        Return a dict display recording the parameters under the current limits.
        """
        sig = self.signature
        assert sig is not None
        limit = current_limits().max_string
        ns.update(builtin_names(prefix))
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
                    f"{name!r}: ({name} if ({prefix}ty := {prefix}type({name})) in {prefix}A or "
                    f"({prefix}ty is {prefix}str and {prefix}len({name}) <= {limit} "
                    f"and '://' not in {name}) else {prefix}c({name}))"
                )
        return "{" + ", ".join(items) + "}"

    def _loose(self, sig: inspect.Signature) -> Callable[..., dict[str, Any]]:
        # Match a call against the shown signature, every parameter optional: what a
        # decorator supplies itself is simply not recorded.
        loose = sig.replace(
            parameters=[
                p.replace(default=_MISSING)
                if p.default is _P.empty and p.kind not in (_P.VAR_POSITIONAL, _P.VAR_KEYWORD)
                else p
                for p in sig.parameters.values()
            ]
        )
        prefix = prefix_for(sig.parameters)
        ns: dict[str, Any] = {}
        params_src, _call_src = signature_source(loose, prefix, ns)
        body = ", ".join(f"{name!r}: {name}" for name in sig.parameters)
        bind = self._compile(
            f"def {prefix}bind({params_src}):\n    return {{{body}}}\n", ns, f"{prefix}bind"
        )
        kinds = {p.name: p.kind for p in sig.parameters.values()}
        kept, convert_kwargs = self.kept, self._convert_kwargs
        implicit = self.implicit
        # Keyword arguments the shown signature cannot take are the decorator's own
        # (it consumes them): a call is matched again without them.
        takes_any_keyword = any(k is _P.VAR_KEYWORD for k in kinds.values())
        keywords = {n for n, k in kinds.items() if k not in (_P.POSITIONAL_ONLY, _P.VAR_POSITIONAL)}
        # A call that fits no way is recorded as args/kwargs; its positional values
        # cannot be told apart, so they are hidden when one of them may be a secret.
        exc = self.names[1]
        hide_args = any(
            (is_redacted(n) or n in exc)
            for n, k in kinds.items()
            if k in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD, _P.VAR_POSITIONAL)
        )

        def pb(*args: Any, **kwargs: Any) -> dict[str, Any]:
            for name, default in implicit.items():
                if kwargs.get(name, _MISSING) is default:
                    del kwargs[name]
            try:
                raw = bind(*args, **kwargs)
            except TypeError:
                known = kwargs
                if not takes_any_keyword:
                    known = {k: v for k, v in kwargs.items() if k in keywords}
                try:
                    if len(known) == len(kwargs):
                        raise
                    raw = bind(*args, **known)
                except TypeError:
                    generic = self._generic(*args, **kwargs)
                    if hide_args and args:
                        generic["args"] = REDACTED
                    return generic
            out: dict[str, Any] = {}
            for name, value in raw.items():
                kind = kinds[name]
                if value is _MISSING or (
                    kept is not None and name not in kept and kind is not _P.VAR_KEYWORD
                ):
                    continue
                if kind is _P.VAR_KEYWORD:
                    if kept is None or name in kept:
                        out[name] = convert_kwargs(value)
                elif is_redacted(name):
                    out[name] = REDACTED
                elif kind is _P.VAR_POSITIONAL:
                    out[name] = convert(list(value))
                else:
                    out[name] = convert(value)
            return out

        return pb

    def _convert_kwargs(self, kwargs: dict[str, Any]) -> Any:
        inc, exc = self.extra
        if inc is not None or exc:
            kwargs = {k: v for k, v in kwargs.items() if (inc is None or k in inc) and k not in exc}
        return convert(kwargs)

    def _generic(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        inc, exc = self.names
        if inc is not None or exc:
            kwargs = {k: v for k, v in kwargs.items() if (inc is None or k in inc) and k not in exc}
        return {"args": convert(list(args)), "kwargs": convert(kwargs)}


def _qualname(func: Any) -> str:
    return f"{getattr(func, '__module__', None) or '?'}.{getattr(func, '__qualname__', repr(func))}"


def _same_parameters(a: inspect.Signature, b: inspect.Signature) -> bool:
    pa, pb = list(a.parameters.values()), list(b.parameters.values())
    return len(pa) == len(pb) and all(
        p.name == q.name and p.kind is q.kind and p.default is q.default
        for p, q in zip(pa, pb, strict=True)
    )


def _generate(
    template: str,
    func: Callable[..., Any],
    sig: inspect.Signature | None,
    tracker: Any,
    meta: tuple[str, str, str],
    level: int,
    plan: _ParamPlan,
) -> Callable[..., Any]:
    # ``sig`` is what ``func`` accepts: the wrapper takes exactly that and forwards it.
    ns: dict[str, Any] = {}
    if sig is not None:
        prefix = prefix_for(sig.parameters)
        params, call = signature_source(sig, prefix, ns)
    else:
        prefix = "_at_"
        params = call = f"*{prefix}args, **{prefix}kw"
    ns.update(builtin_names(prefix))
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
            f"{prefix}OPEN": RUNTIME.open_logs,
            f"{prefix}reg": RUNTIME.open_logs.append,
            f"{prefix}RT": RUNTIME,
            f"{prefix}sweep": calltree._sweep,
            f"{prefix}complete": calltree._try_complete,
            f"{prefix}slot": calltree.slot_of,
            f"{prefix}full": calltree.overflowed,
            f"{prefix}fail": fail,
            f"{prefix}cont": calltree.continue_from,
            f"{prefix}meta": meta,
            f"{prefix}plan": plan,
        }
    )

    def source() -> str:
        if plan.exact:
            params_expr = plan.items_src(prefix, ns)
        else:
            params_expr = f"{prefix}plan.pb({call})"
        return (
            template.replace("{PARAMS}", params_expr)
            .replace("{MAX}", str(RUNTIME.max_slots))
            .replace("{params}", params)
            .replace("{call}", call)
            .replace("{P}", prefix)
        )

    name = getattr(func, "__name__", None)
    qualname = getattr(func, "__qualname__", name)
    rename = (name, qualname) if isinstance(name, str) and isinstance(qualname, str) else None
    entry = f"{prefix}wrapper"
    filename = unique_filename("probe", _qualname(func))
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
    func: Callable[..., Any], tracker: Any, meta: tuple[str, str, str], level: int, plan: _ParamPlan
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
    func: Callable[..., Any], tracker: Any, meta: tuple[str, str, str], level: int, plan: _ParamPlan
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
    if isinstance(func, type):
        # A probed class would become a function: isinstance, subclassing and class
        # attributes would all break (#14).
        raise TypeError(
            f"probe() cannot probe the class {_qualname(func)}: it would turn it into a "
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
    implicit = {}
    if not exact and accepted is not None:
        implicit = {
            p.name: p.default
            for p in accepted.parameters.values()
            if p.kind is _P.KEYWORD_ONLY and p.default is not _P.empty and p.name not in param_names
        }
    plan = _ParamPlan(
        func,
        sig,
        kept,
        (extra_inc, exc_names),
        (inc_names, exc_names),
        exact=exact,
        implicit=implicit,
    )

    function = fname if fname is not None else _qualname(func)
    meta = (function, tracker.name, level_name(lvl))
    # NONE never tracks: -1 is below every threshold, so the call only silences.
    eff = lvl if lvl < NONE else -1

    if inspect.isasyncgenfunction(func):
        wrapper = _agen_wrapper(func, tracker, meta, eff, plan)
    elif inspect.isgeneratorfunction(func):
        wrapper = _gen_wrapper(func, tracker, meta, eff, plan)
    elif inspect.iscoroutinefunction(func):
        wrapper = _generate(ASYNC, func, accepted, tracker, meta, eff, plan)
    else:
        wrapper = _generate(SYNC, func, accepted, tracker, meta, eff, plan)
    functools.update_wrapper(wrapper, func)
    if shown is not None:
        wrapper.__signature__ = shown  # type: ignore[attr-defined]
    wrapper.__asynctrack_probe__ = meta  # type: ignore[attr-defined]
    return wrapper


# The hand-written wrappers, so that a traceback shows which probed call is innermost.
_CODE = type(_drive_gen.__code__)
calltree.WRAPPER_CODES.add(_drive_gen.__code__)
calltree.WRAPPER_CODES.update(
    c for c in _agen_wrapper.__code__.co_consts if isinstance(c, _CODE) and c.co_name == "wrapper"
)


# RUNTIME.reset() (tests): probes rebuild their plans under the default limits.
RUNTIME.on_reset.append(refresh_plans)
