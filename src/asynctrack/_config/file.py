"""
Configuration files: ``track.toml`` (``[asynctrack]``) or ``pyproject.toml``
(``[tool.asynctrack]``), read with :mod:`tomllib`.

The keys mirror ``configure(**options)``; a sink's keys mirror its constructor. Code
runs from a file only where the file names it explicitly as ``"module:Name"`` (a
sink ``type``, ``tracker_class``, ``processors``): that module is imported, nothing
else. Every error names the file, the table path and what was expected.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asynctrack._config.kinds import (
    Functions,
    Level,
    LevelMap,
    Option,
    SinkList,
    TrackerClass,
    level_value,
)
from asynctrack._config.options import CONFIG_ENV, OPTIONS, Layer, suggest
from asynctrack._exceptions import ConfigError, quote
from asynctrack.sinks._base import Sink

__all__ = ["SINK_TYPES", "discover", "load"]

#: Sink types a file may name without ``module:Class``.
SINK_TYPES: dict[str, tuple[str, str]] = {
    "file": ("asynctrack.sinks._file", "FileSink"),
    "sql": ("asynctrack.sinks._sql.sink", "SQLSink"),
    "memory": ("asynctrack.sinks._memory", "MemorySink"),
    "logging": ("asynctrack.sinks._logging", "LoggingSink"),
    "otlp": ("asynctrack.sinks._otlp.sink", "OTLPSink"),
}
_TYPE_HELP = f"one of {', '.join(SINK_TYPES)}, or 'module:Class' naming a Sink subclass"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def discover() -> Layer | None:
    """
    Find the configuration ``configure()`` reads when called with no argument.

    Looks for the file named by ``ASYNCTRACK_CONFIG``, then ``track.toml``, then
    ``pyproject.toml`` with a ``[tool.asynctrack]`` table, in the working directory.

    Returns:
        The file's options, or None when there is no configuration file.

    Raises:
        ConfigError: ``ASYNCTRACK_CONFIG`` names no file, or the file found is invalid.
    """
    named = os.environ.get(CONFIG_ENV, "").strip()
    if named:
        if not Path(named).is_file():
            raise ConfigError(
                f"environment variable {CONFIG_ENV} names {quote(named)}, which is not a file"
            )
        return load(named)
    if Path("track.toml").is_file():
        return load("track.toml")
    if Path("pyproject.toml").is_file():
        data = _read("pyproject.toml")
        tool = data.get("tool")
        if isinstance(tool, dict) and "asynctrack" in tool:
            return _convert(tool["asynctrack"], "pyproject.toml", "tool.asynctrack")
    return None


def load(path: str | os.PathLike[str]) -> Layer:
    """
    Read a configuration file into options (sinks built, classes imported).

    Raises:
        ConfigError: as :func:`configure_from_file`.
    """
    file = os.fspath(path)
    data = _read(file)
    if "asynctrack" in data:
        return _convert(data["asynctrack"], file, "asynctrack")
    tool = data.get("tool")
    if isinstance(tool, dict) and "asynctrack" in tool:
        return _convert(tool["asynctrack"], file, "tool.asynctrack")
    found = ", ".join(sorted(data)) or "nothing"
    raise ConfigError(
        f"{file}: expected an [asynctrack] table (or [tool.asynctrack] in pyproject.toml); "
        f"found {found}"
    )


def _read(file: str) -> dict[str, Any]:
    try:
        with open(file, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the configuration file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        # The message ends with "(at line N, column M)".
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively (#15).
        raise ConfigError(
            f"{file}: invalid TOML: arrays or inline tables nested too deeply"
        ) from None


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else '"' + name.replace('"', '\\"') + '"'


def _convert(table: Any, file: str, prefix: str) -> Layer:
    if not isinstance(table, dict):
        raise ConfigError(f"{file}: {prefix} must be a table, got {quote(table)}")
    layer = Layer()
    for key, value in table.items():
        where = f"{prefix}.{_key(key)}"
        option = OPTIONS.get(key)
        if option is None:
            raise ConfigError(
                f"{file}: unknown key {where}{suggest(key, OPTIONS)}; "
                f"accepted: {', '.join(sorted(OPTIONS))}"
            )
        if not option.file:
            raise ConfigError(
                f"{file}: {where} cannot be set in a configuration file, only in code"
            )
        layer.labels[key] = f"{file}: {where}"
        convert = _FROM_TOML.get(type(option))
        layer.options[key] = value if convert is None else convert(value, file, where)
    return layer


def _root_level(value: Any, file: str, where: str) -> int:
    return level_value(value, f"{file}: {where}")


def _tracker_class(value: Any, file: str, where: str) -> Any:
    return _import(value, f"{file}: {where}", "a Tracker subclass")


def _levels(value: Any, file: str, where: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise ConfigError(
            f"{file}: {where} must be a table of tracker name to level "
            f'(e.g. [{where}] "shop.db" = "DEBUG"), got {quote(value)}'
        )
    return {name: level_value(lvl, f"{file}: {where}.{_key(name)}") for name, lvl in value.items()}


def _processors(value: Any, file: str, where: str) -> list[Callable[..., Any]]:
    if not isinstance(value, list):
        raise ConfigError(
            f'{file}: {where} must be an array of "module:function" strings, got {quote(value)}'
        )
    out = []
    for i, spec in enumerate(value):
        label = f"{file}: {where}[{i}]"
        func = _import(spec, label, "a function")
        if not callable(func):
            raise ConfigError(f"{label}: {quote(spec)} is not callable")
        out.append(func)
    return out


def _import(spec: Any, label: str, what: str) -> Any:
    """
    Import ``"module:qualified.name"``; the only way a file runs code.
    """
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ConfigError(f'{label} must be "module:Name" naming {what}, got {quote(spec)}')
    module_name, _, qualname = spec.partition(":")
    if not module_name or not qualname:
        raise ConfigError(f'{label} must be "module:Name" naming {what}, got {quote(spec)}')
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{label}: cannot import module {quote(module_name)}: {exc}") from exc
    except Exception as exc:
        raise ConfigError(
            f"{label}: importing module {quote(module_name)} raised {type(exc).__name__}: {exc}"
        ) from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"{label}: module {quote(module_name)} has no attribute {quote(qualname)}"
            ) from None
    return obj


def _sinks(value: Any, file: str, where: str) -> list[Sink]:
    if not isinstance(value, list):
        raise ConfigError(
            f"{file}: {where} must be an array of tables ([[{where}]]), got {quote(value)}"
        )
    return [_sink(spec, file, f"{where}[{i}]") for i, spec in enumerate(value)]


def _sink(spec: Any, file: str, where: str) -> Sink:
    if not isinstance(spec, dict):
        raise ConfigError(f"{file}: {where} must be a table, got {quote(spec)}")
    kwargs = dict(spec)
    kind = kwargs.pop("type", None)
    if kind is None:
        raise ConfigError(f"{file}: {where}: missing key 'type' (expected {_TYPE_HELP})")
    label = f"{file}: {where}.type"
    if not isinstance(kind, str):
        raise ConfigError(f"{label} must be {_TYPE_HELP}, got {quote(kind)}")
    if kind in SINK_TYPES:
        module, name = SINK_TYPES[kind]
        cls = _import(f"{module}:{name}", label, "a sink class")
    elif ":" in kind:
        cls = _import(kind, label, "a Sink subclass")
    else:
        raise ConfigError(
            f"{label} must be {_TYPE_HELP}, got {quote(kind)}{suggest(kind, SINK_TYPES)}"
        )
    if not (isinstance(cls, type) and issubclass(cls, Sink)):
        raise ConfigError(f"{label}: {quote(kind)} is not a subclass of asynctrack.Sink")
    _check_arguments(cls, kwargs, file, where, kind)
    try:
        sink = cls(**kwargs)
    except Exception as exc:
        raise ConfigError(f"{file}: {_blame(where, kwargs, str(exc))}: {exc}") from exc
    return sink


def _check_arguments(
    cls: type[Sink], kwargs: dict[str, Any], file: str, where: str, kind: str
) -> None:
    """
    Name a missing or unknown key before calling the constructor.
    """
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - a signature inspect cannot read
        return
    P = inspect.Parameter
    named = {p.name: p for p in params if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)}
    if not any(p.kind is P.VAR_KEYWORD for p in params):
        for key in kwargs:
            if key not in named:
                accepted = ", ".join(["type", *named])
                raise ConfigError(
                    f"{file}: {where}.{_key(key)}: unknown key for type {quote(kind)}"
                    f"{suggest(key, named)}; accepted: {accepted}"
                )
    for p in params:
        if p.default is not P.empty:
            continue
        if p.kind is P.POSITIONAL_ONLY:
            raise ConfigError(
                f"{file}: {where}: type {quote(kind)} cannot be built from a file "
                f"(its parameter {p.name!r} is positional-only)"
            )
        if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY) and p.name not in kwargs:
            raise ConfigError(
                f"{file}: {where}: missing key {p.name!r} (required by type {quote(kind)})"
            )


def _blame(where: str, kwargs: dict[str, Any], message: str) -> str:
    # A constructor's message usually names its argument: point at that key.
    hits = [k for k in kwargs if re.search(rf"\b{re.escape(k)}\b", message)]
    return f"{where}.{_key(hits[0])}" if len(hits) == 1 else where


#: How a file's value of each kind of option becomes what ``configure`` takes: TOML
#: tables become sinks, ``"module:Name"`` strings the objects they name. Kinds not
#: listed are taken as TOML gives them and checked with the other sources.
_FROM_TOML: dict[type[Option], Callable[[Any, str, str], Any]] = {
    Level: _root_level,
    LevelMap: _levels,
    SinkList: _sinks,
    TrackerClass: _tracker_class,
    Functions: _processors,
}
