"""
How a probe records its parameters: one plan per probe, rebuilt when limits change.

A plan whose recorded signature is the one the wrapper is generated with (*exact*)
gives the wrapper a dict display to inline (``items_src``); otherwise its builder
``pb`` matches each call against the shown signature (``_loose``), or records
``args``/``kwargs`` when the callable has none. New limits or a new redaction list
(``refresh_plans``) rebuild every builder and regenerate every wrapper.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import Any

from asynctrack._core.runtime import RUNTIME
from asynctrack._core.values import REDACTED, convert, current_limits, is_redacted
from asynctrack._core.wrapsrc import (
    builtin_names,
    compile_function,
    forget_with,
    prefix_for,
    signature_source,
    unique_filename,
)

__all__ = ["ParamPlan", "qualname_of", "refresh_plans"]

_ATOMS = frozenset({int, bool, type(None)})
_P = inspect.Parameter
#: Default of the parameters a call may leave to a decorator (see ParamPlan._loose).
_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "<missing>"})()

#: Every plan, so that new limits or a new redaction list rebuild the builders.
_PLANS: weakref.WeakSet[ParamPlan] = weakref.WeakSet()


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


class ParamPlan:
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
            self.filename = unique_filename("params", qualname_of(self.func))
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


def qualname_of(func: Any) -> str:
    return f"{getattr(func, '__module__', None) or '?'}.{getattr(func, '__qualname__', repr(func))}"


# RUNTIME.reset() (tests): probes rebuild their plans under the default limits.
RUNTIME.on_reset.append(refresh_plans)
