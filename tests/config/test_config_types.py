"""
``configure()``'s typed keyword arguments match the option table.
"""

from __future__ import annotations

import inspect
import typing

import pytest

import asynctrack
from asynctrack._config.options import OPTIONS, Options


class TestTypedOptions:
    def test_typed_options_are_the_option_table(self) -> None:
        """
        The ``Options`` TypedDict that types ``configure(**options)`` declares exactly
        the options of the table, so mypy knows every option and no other.
        """
        assert set(Options.__annotations__) == set(OPTIONS)
        assert Options.__total__ is False

    def test_entry_points_take_typed_options(self) -> None:
        """
        ``configure``, ``configure_from_file`` and ``tracking`` take ``**Options``.
        """
        for func in (asynctrack.configure, asynctrack.configure_from_file, asynctrack.tracking):
            params = inspect.signature(func).parameters.values()
            var_kw = [p for p in params if p.kind is p.VAR_KEYWORD]
            assert len(var_kw) == 1, func
            assert "Unpack[Options]" in str(var_kw[0].annotation), func

    def test_misspelt_option_is_a_config_error(self) -> None:
        """
        Untyped callers still get a ConfigError naming a misspelt option at run time.
        """
        options: dict[str, typing.Any] = {"levle": "INFO"}
        with pytest.raises(asynctrack.ConfigError, match="levle"):
            asynctrack.configure(**options)
