"""
Objects with declared fields, read field by field so they are recorded like dicts.

A pydantic request body ``LoginForm(username='bob', password='hunter2')`` recorded by
its ``repr`` would write the password; read as ``{"username": ..., "password": ...}``
it goes through the same redaction and limits as a dict (issue #14). Classes are
recognised duck-typed, so neither pydantic nor attrs is imported (or needed):

* pydantic v2 models (``__pydantic_fields__``, plus ``__pydantic_extra__``),
* pydantic v1 models, also ``pydantic.v1`` under v2 (``__fields__`` and ``__dict__``),
* dataclasses (``__dataclass_fields__``), attrs classes (``__attrs_attrs__``),
* named tuples (a ``tuple`` subclass with ``_fields``), ``types.SimpleNamespace``.

Fields declared ``repr=False`` are left out, as the class's own ``repr`` leaves them.
:func:`field_reader` inspects a class once; the converter caches its answer per class.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any

__all__ = ["field_reader"]

#: Reads an instance's fields as ``{name: value}`` (may raise; the converter copes).
Reader = Callable[[Any], dict[str, Any]]


def field_reader(cls: type) -> Reader | None:
    """
    Return a function reading the fields of instances of ``cls``, or None.

    Never raises: a class whose inspection fails is treated as having no fields.
    """
    try:
        return _reader(cls)
    except Exception:
        return None


def _shown(flag: Any) -> bool:
    # attrs allows a callable as ``repr`` (a custom formatter): the field is shown.
    return flag is not False


def _reader(cls: type) -> Reader | None:
    fields = getattr(cls, "__pydantic_fields__", None)
    if isinstance(fields, dict) and hasattr(cls, "model_dump"):
        return _attributes(
            tuple(n for n, f in fields.items() if _shown(getattr(f, "repr", True))),
            extra="__pydantic_extra__",
        )
    if dataclasses.is_dataclass(cls):
        # fields() leaves out ClassVar and InitVar pseudo-fields.
        return _attributes(tuple(f.name for f in dataclasses.fields(cls) if _shown(f.repr)))
    declared = getattr(cls, "__attrs_attrs__", None)
    if isinstance(declared, tuple):
        return _attributes(tuple(a.name for a in declared if _shown(getattr(a, "repr", True))))
    if issubclass(cls, tuple):
        names = getattr(cls, "_fields", None)
        if isinstance(names, tuple) and all(type(n) is str for n in names):
            return _named_tuple(names)
        return None
    if issubclass(cls, types.SimpleNamespace):
        return _namespace
    # pydantic v1 (checked after v2, whose deprecated __fields__ would warn).
    declared = getattr(cls, "__fields__", None)
    if isinstance(declared, dict) and hasattr(cls, "__fields_set__"):
        hidden = frozenset(
            n
            for n, f in declared.items()
            if not _shown(getattr(getattr(f, "field_info", None), "repr", True))
        )
        return _v1_model(hidden)
    return None


_UNSET = object()


def _attributes(names: tuple[str, ...], extra: str | None = None) -> Reader:
    def read(value: Any) -> dict[str, Any]:
        # A field never set (attrs or dataclass init=False, a deleted attribute) is
        # left out, as it has no value to record.
        out = {}
        for name in names:
            item = getattr(value, name, _UNSET)
            if item is not _UNSET:
                out[name] = item
        if extra is not None:
            more = getattr(value, extra, None)
            if isinstance(more, dict):
                for key, item in more.items():
                    out.setdefault(key, item)
        return out

    return read


def _named_tuple(names: tuple[str, ...]) -> Reader:
    def read(value: Any) -> dict[str, Any]:
        return dict(zip(names, tuple.__iter__(value), strict=False))

    return read


def _namespace(value: Any) -> dict[str, Any]:
    return dict(vars(value))


def _v1_model(hidden: frozenset[str]) -> Reader:
    def read(value: Any) -> dict[str, Any]:
        return {k: v for k, v in vars(value).items() if k not in hidden}

    return read
