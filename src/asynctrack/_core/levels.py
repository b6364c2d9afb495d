"""
Levels: ``DEBUG < INFO < DEFAULT < NONE``, plain ints so custom levels fit between.
"""

from __future__ import annotations

import enum

from asynctrack._exceptions import quote

__all__ = ["DEBUG", "DEFAULT", "INFO", "NONE", "OFF", "Level", "level_name", "parse_level"]


class Level(enum.IntEnum):
    """
    Tracking levels. A probed call is tracked when its level is ``>=`` the threshold.

    ``NONE`` as a probe's level means "never tracked" (it silences its subtree);
    as a threshold it tracks nothing.

    .. versionadded:: 0.1
    """

    DEBUG = 10
    INFO = 20
    DEFAULT = 30
    NONE = 100


Level.__module__ = "asynctrack"

DEBUG = Level.DEBUG
INFO = Level.INFO
DEFAULT = Level.DEFAULT
NONE = Level.NONE

#: Threshold used while tracking is off (nothing configured, nothing capturing):
#: larger than any probe level, so every probe takes the pass-through branch.
OFF = 1 << 30

#: The recorded name of each member's value (level_name without the call).
NAMES: dict[int, str] = {int(m): m.name for m in Level}
_NAMES = NAMES


def level_name(value: int) -> str:
    """
    Return the name recorded for a level: ``"DEFAULT"`` for members, ``"25"`` for custom ints.
    """
    name = _NAMES.get(value)
    return name if name is not None else str(int(value))


def parse_level(value: object, what: str = "level") -> int:
    """
    Validate a level given as a ``Level``, an int in ``0..NONE`` or a name (``"debug"``).

    Raises:
        TypeError: the value is neither an int nor a str (``what`` names the argument).
        ValueError: unknown name or out of range.
    """
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a Level, an int or a level name, not bool")
    if isinstance(value, str):
        try:
            return int(Level[value.strip().upper()])
        except KeyError:
            names = ", ".join(m.name for m in Level)
            raise ValueError(
                f"{what}: unknown level {quote(value)} (expected one of {names})"
            ) from None
    if isinstance(value, int):
        if not 0 <= value <= NONE:
            raise ValueError(f"{what} must be between 0 and {int(NONE)} (NONE), got {quote(value)}")
        return int(value)
    raise TypeError(f"{what} must be a Level, an int or a level name, not {type(value).__name__}")
