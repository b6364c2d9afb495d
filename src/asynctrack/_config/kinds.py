"""
The kinds of option: how a value of each is checked, parsed from an environment
variable, described in errors and in the manual's reference table.

An :class:`Option` is one option's declaration (default, bounds, one-line doc, whether
an environment variable or a file may set it); the declarations themselves are the
annotations of :class:`asynctrack._config.options.Options`.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, get_args

from asynctrack._core import levels as _levels
from asynctrack._core import tracker as _tracker
from asynctrack._exceptions import ConfigError, quote
from asynctrack.sinks._base import Sink

__all__ = [
    "MAX_INT",
    "Choice",
    "Directory",
    "Flag",
    "Functions",
    "Int",
    "Level",
    "LevelMap",
    "Names",
    "Option",
    "Seconds",
    "SinkList",
    "TrackerClass",
    "level_value",
]

#: Ints and seconds above this are refused (a float cannot hold a huge int at all).
MAX_INT = 2**63 - 1
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def fail(label: str, expected: str, value: Any) -> ConfigError:
    """
    The error for a value that is not what an option accepts, naming the option.
    """
    return ConfigError(f"{label} must be {expected}, got {quote(value)}")


class Option:
    """
    One option of ``configure``, declared once.

    Args:
        default: the value when no source sets it.
        doc: one line for the manual's reference table and ``help(configure)``.
        env: whether ``ASYNCTRACK_<NAME>`` may set it.
        file: whether a configuration file may set it.
        example: a value shown in the reference table's file column (default: the
            default).
        shown_default: the default as the reference table writes it, where the value
            itself does not read well.
        file_example: the file column of the reference table, where ``name = value``
            does not fit (tables).
        env_example: a value shown after the variable in the reference table.
    """

    # Plain classes, not dataclasses: generating a dataclass's methods costs about a
    # millisecond per class at every `import asynctrack`.
    __slots__ = (
        "default",
        "doc",
        "env",
        "env_example",
        "example",
        "file",
        "file_example",
        "name",
        "shown_default",
    )

    def __init__(
        self,
        default: Any,
        doc: str,
        *,
        env: bool = True,
        file: bool = True,
        example: Any = None,
        shown_default: str = "",
        file_example: str = "",
        env_example: str = "",
    ) -> None:
        self.default = default
        self.doc = doc
        self.env = env
        self.file = file
        self.example = example
        self.shown_default = shown_default
        self.file_example = file_example
        self.env_example = env_example
        #: The option's name, set from the key it annotates (see :meth:`bind`).
        self.name = ""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} option {self.name or '(unbound)'}>"

    @property
    def expected(self) -> str:
        """
        What the option accepts, as error messages and the reference table say it.
        """
        raise NotImplementedError

    def bind(self, name: str, annotation: Any) -> None:
        """
        Name this declaration after the key it annotates (once, at import).
        """
        self.name = name

    def check(self, value: Any, label: str) -> Any:
        """
        Return ``value`` normalised, or raise ``ConfigError`` naming ``label``.
        """
        raise NotImplementedError

    def parse_env(self, raw: str, label: str) -> Any:
        """
        Parse the text of an environment variable; :meth:`check` checks it after.
        """
        return raw

    @property
    def env_var(self) -> str | None:
        """
        The environment variable that sets this option, or None.
        """
        return f"ASYNCTRACK_{self.name.upper()}" if self.env else None


# -- scalars -----------------------------------------------------------------------------------


class Int(Option):
    """
    An int of at least ``minimum``.
    """

    __slots__ = ("minimum",)

    def __init__(self, default: int, doc: str, *, minimum: int = 0, **kwargs: Any) -> None:
        super().__init__(default, doc, **kwargs)
        self.minimum = minimum

    @property
    def expected(self) -> str:
        return f"an int >= {self.minimum}"

    def check(self, value: Any, label: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < self.minimum:
            raise fail(label, self.expected, value)
        if value > MAX_INT:
            raise fail(label, f"{self.expected} and < 2**63", value)
        return value

    def parse_env(self, raw: str, label: str) -> Any:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{label} must be an int, got {quote(raw)}") from None


class Seconds(Option):
    """
    A finite number of seconds, at least ``minimum``.
    """

    __slots__ = ("minimum",)

    def __init__(self, default: float, doc: str, *, minimum: float = 0.0, **kwargs: Any) -> None:
        super().__init__(default, doc, **kwargs)
        self.minimum = minimum

    @property
    def expected(self) -> str:
        return f"a finite number of seconds >= {self.minimum:g}"

    def check(self, value: Any, label: str) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not -MAX_INT <= value <= MAX_INT  # an int too large for a float
            or not math.isfinite(value)
            or value < self.minimum
        ):
            raise fail(label, self.expected, value)
        return float(value)

    def parse_env(self, raw: str, label: str) -> Any:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{label} must be a number of seconds, got {quote(raw)}") from None


class Flag(Option):
    """
    A bool; from the environment ``1/0/true/false/yes/no/on/off``.
    """

    @property
    def expected(self) -> str:
        return "a bool"

    def check(self, value: Any, label: str) -> bool:
        if not isinstance(value, bool):
            raise fail(label, self.expected, value)
        return value

    def parse_env(self, raw: str, label: str) -> Any:
        low = raw.lower()
        if low in _TRUE | _FALSE:
            return low in _TRUE
        raise ConfigError(
            f"{label} must be a boolean (1, 0, true, false, yes, no, on, off), got {quote(raw)}"
        )


class Choice(Option):
    """
    One of the strings of the ``Literal`` type that the option is annotated with.
    """

    __slots__ = ("choices",)

    def __init__(self, default: str, doc: str, **kwargs: Any) -> None:
        super().__init__(default, doc, **kwargs)
        #: Set by :meth:`bind` from the ``Literal`` annotation.
        self.choices: tuple[str, ...] = ()

    def bind(self, name: str, annotation: Any) -> None:
        self.name = name
        self.choices = get_args(annotation)

    @property
    def expected(self) -> str:
        quoted = [repr(c) for c in self.choices]
        if len(quoted) == 2:
            return " or ".join(quoted)
        return f"one of {', '.join(quoted)}"

    def check(self, value: Any, label: str) -> str:
        if value not in self.choices:
            raise fail(label, self.expected, value)
        return str(value)


class Directory(Option):
    """
    A directory path, returned as a ``Path``.
    """

    @property
    def expected(self) -> str:
        return "a directory path (str or Path)"

    def check(self, value: Any, label: str) -> Path:
        if not isinstance(value, (str, os.PathLike)):
            raise fail(label, self.expected, value)
        path = os.fspath(value)
        # A PathLike may return bytes, which Path() refuses.
        if not isinstance(path, str) or not path or "\0" in path:
            raise fail(label, self.expected, value)
        return Path(path)


# -- levels ------------------------------------------------------------------------------------


def level_value(value: Any, label: str) -> int:
    """
    Parse a level (a name or an int), or raise ``ConfigError`` naming ``label``.
    """
    try:
        return _levels.parse_level(value, label)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def _level_text(raw: str) -> int | str:
    # A level from the environment: digits are an int, anything else a name (an
    # unknown one is then refused by name). isdecimal(), not isdigit(): int() refuses
    # digits such as "²", and more digits than CPython converts.
    if raw.isdecimal():
        try:
            return int(raw)
        except ValueError:
            pass
    return raw


class Level(Option):
    """
    A level: a name (any case) or an int, returned as an int.
    """

    @property
    def expected(self) -> str:
        names = ", ".join(level.name for level in _levels.Level)
        return f"a level name ({names}; any case) or an int"

    def check(self, value: Any, label: str) -> int:
        return level_value(value, label)

    def parse_env(self, raw: str, label: str) -> Any:
        return _level_text(raw)


class LevelMap(Option):
    """
    Levels per dotted tracker name; from the environment ``name=LEVEL,name=LEVEL``.
    """

    @property
    def expected(self) -> str:
        return "a mapping of tracker name to level"

    def check(self, value: Any, label: str) -> dict[str, int]:
        if not isinstance(value, Mapping):
            raise fail(label, self.expected, value)
        checked: dict[str, int] = {}
        for name, level in value.items():
            if not isinstance(name, str):
                raise fail(label, "a mapping with str keys (tracker names)", value)
            checked[name] = level_value(level, f"{label}[{quote(name)}]")
        return checked

    def parse_env(self, raw: str, label: str) -> Any:
        out: dict[str, int] = {}
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, level = part.partition("=")
            if not sep or not name.strip() or not level.strip():
                raise ConfigError(
                    f"{label} must be name=LEVEL pairs separated by commas "
                    f"(e.g. 'shop.db=DEBUG,shop=INFO'), got {quote(raw)}"
                )
            level = level.strip()
            out[name.strip()] = level_value(_level_text(level), f"{label} ({quote(name.strip())})")
        return out


# -- lists and code ----------------------------------------------------------------------------


def _sequence(value: Any, label: str, expected: str) -> tuple[Any, ...]:
    # A str or bytes is iterable but never meant as a list here, nor a mapping (a TOML
    # table), whose keys alone would be taken.
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise fail(label, expected, value)
    return tuple(value)


class Names(Option):
    """
    A list of non-empty strings, returned lower case as a tuple.
    """

    @property
    def expected(self) -> str:
        return "a list of non-empty str"

    def check(self, value: Any, label: str) -> tuple[str, ...]:
        names = _sequence(value, label, "a list of str")
        if not all(isinstance(n, str) and n for n in names):
            raise fail(label, self.expected, names)
        return tuple(n.lower() for n in names)


class Functions(Option):
    """
    A list of callables, returned as a tuple.
    """

    @property
    def expected(self) -> str:
        return "a list of callables taking and returning a Log"

    def check(self, value: Any, label: str) -> tuple[Any, ...]:
        functions = _sequence(value, label, self.expected)
        for f in functions:
            if not callable(f):
                raise fail(label, self.expected, f)
        return functions


class TrackerClass(Option):
    """
    None or a ``Tracker`` subclass whose constructor takes ``(name)``.
    """

    @property
    def expected(self) -> str:
        return "a subclass of asynctrack.Tracker"

    def check(self, value: Any, label: str) -> type[_tracker.Tracker] | None:
        if value is None:
            return None
        if not (isinstance(value, type) and issubclass(value, _tracker.Tracker)):
            raise fail(label, self.expected, value)
        try:
            inspect.signature(value).bind("name")
        except TypeError as exc:
            raise fail(label, "a Tracker subclass whose constructor takes (name)", value) from exc
        except ValueError:  # pragma: no cover - a signature inspect cannot read: trust it
            pass
        return value


class SinkList(Option):
    """
    None (the default sink) or a list of ``Sink`` instances with distinct names.
    """

    @property
    def expected(self) -> str:
        return "a list of asynctrack.Sink instances"

    def check(self, value: Any, label: str) -> list[Sink] | None:
        if value is None:
            return None
        if isinstance(value, Sink):
            raise fail(label, self.expected, value)
        sinks: list[Sink] = list(_sequence(value, label, self.expected))
        names: dict[str, int] = {}
        for i, sink in enumerate(sinks):
            if not isinstance(sink, Sink):
                raise ConfigError(
                    f"{label}[{i}] must be an asynctrack.Sink instance, got {type(sink).__name__}"
                )
            try:
                name = str(sink.name)
            except Exception as exc:
                raise ConfigError(
                    f"{label}[{i}]: {type(sink).__name__}.name raised {exc!r}"
                ) from None
            if name in names:
                raise ConfigError(
                    f"{label}[{i}]: sinks[{names[name]}] and sinks[{i}] are both named "
                    f"{name!r}; sink names must differ (they name spill files and counters)"
                )
            names[name] = i
        return sinks
