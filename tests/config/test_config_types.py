"""
Each option is declared once: ``configure()``'s typed keyword arguments, validation,
the environment variables, the file reader and the manual's reference table all come
from the annotations of ``Options``.
"""

from __future__ import annotations

import copy
import inspect
import typing
from pathlib import Path

import pytest

import asynctrack
from asynctrack._config import kinds
from asynctrack._config.__main__ import main as reference_main
from asynctrack._config.file import load
from asynctrack._config.options import DEFAULTS, ENV_VARS, OPTIONS, Options, from_env, validate
from asynctrack._config.reference import BEGIN, END, docstring, splice, table
from asynctrack._core.layout import REC
from asynctrack._core.runtime import Runtime
from asynctrack._core.values import Limits
from asynctrack._delivery.worker import WorkerOptions
from tests.helpers import DOCS


def _after_reset(runtime: Runtime) -> Runtime:
    runtime.max_slots = runtime.max_frames = runtime.root_level = -1
    runtime.reset()
    return runtime


#: The static type each kind of option is annotated with (what mypy checks).
STATIC_TYPES: dict[type[kinds.Option], str] = {
    kinds.Int: "<class 'int'>",
    kinds.Seconds: "<class 'float'>",
    kinds.Flag: "<class 'bool'>",
    kinds.Level: "int | str",
}


class TestDeclarations:
    def test_every_key_of_options_is_declared_once(self) -> None:
        """
        Each key of the ``Options`` TypedDict that types ``configure(**options)`` carries
        exactly one declaration, so mypy knows every option and no other, and the
        option table is the TypedDict's keys, in order.
        """
        assert Options.__total__ is False
        for name, annotation in Options.__annotations__.items():
            declared = [m for m in typing.get_args(annotation)[1:] if isinstance(m, kinds.Option)]
            assert len(declared) == 1, name
        assert list(OPTIONS) == list(Options.__annotations__)
        assert all(option.name == name for name, option in OPTIONS.items())

    def test_kinds_match_the_static_types(self) -> None:
        """
        The static type of an option agrees with the kind that checks it at run time,
        and a choice's accepted values are those of its ``Literal`` type.
        """
        for name, option in OPTIONS.items():
            static = typing.get_args(Options.__annotations__[name])[0]
            if type(option) in STATIC_TYPES:
                assert str(static) == STATIC_TYPES[type(option)], name
            if isinstance(option, kinds.Choice):
                assert option.choices == typing.get_args(static)
                assert option.choices  # a Choice is annotated with a Literal
        assert OPTIONS["on_full"].expected == "'drop' or 'block'"

    def test_defaults_are_valid_values(self) -> None:
        """
        Every declared default passes its own check, and ``validate({})`` returns them.
        """
        checked = validate({})
        for name, option in OPTIONS.items():
            assert option.check(DEFAULTS[name], name) == checked[name]

    def test_the_unconfigured_state_is_the_declared_defaults(self) -> None:
        """
        The layers below the configuration keep their own state for a process that has
        not called ``configure()`` (they cannot import the declarations): it equals the
        declared defaults, so ``configure()`` with no option changes none of it.
        """
        limits = Limits()
        worker = WorkerOptions()
        for runtime in (Runtime(), _after_reset(Runtime())):
            assert runtime.max_slots == DEFAULTS["max_calls_per_log"] * REC
            assert runtime.max_frames == DEFAULTS["max_traceback_frames"]
            assert runtime.root_level == DEFAULTS["level"]
        assert (limits.max_depth, limits.max_items, limits.max_string, limits.redact) == (
            DEFAULTS["max_depth"],
            DEFAULTS["max_items"],
            DEFAULTS["max_string"],
            DEFAULTS["redact"],
        )
        for name in ("retry_attempts", "max_backoff", "write_timeout", "max_pending_batches"):
            assert getattr(worker, name) == DEFAULTS[name], name
        assert worker.replay_batch == DEFAULTS["batch_size"]
        assert (worker.spill_dir, worker.fsync_spill) == (
            Path(DEFAULTS["spill_dir"]),
            DEFAULTS["fsync_spill"],
        )

    def test_environment_variables_follow_the_declarations(self) -> None:
        """
        An option has its ``ASYNCTRACK_<NAME>`` variable exactly when declared so.
        """
        assert sorted(ENV_VARS.values()) == sorted(n for n, o in OPTIONS.items() if o.env)
        assert from_env({"ASYNCTRACK_REDACT": "x", "ASYNCTRACK_SINKS": "y"}).options == {}

    def test_a_file_cannot_set_an_option_declared_code_only(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """
        An option declared ``file=False`` is refused by the file reader, naming the file
        and the key; the reference table shows no file form for it.
        """
        code_only = copy.copy(OPTIONS["processors"])
        code_only.file = False
        monkeypatch.setitem(OPTIONS, "processors", code_only)
        path = tmp_path / "track.toml"
        path.write_text('[asynctrack]\nprocessors = ["os:getcwd"]\n', encoding="utf-8")
        with pytest.raises(asynctrack.ConfigError) as info:
            load(path)
        assert str(info.value) == (
            f"{path}: asynctrack.processors cannot be set in a configuration file, only in code"
        )
        (row,) = [r for r in table().splitlines() if r.startswith("| `processors`")]
        assert row.split(" | ")[3] == "—"


class TestTypedOptions:
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


class TestReference:
    def test_the_manual_shows_the_generated_table(self) -> None:
        """
        The reference table of docs/configuration.md, between its marker comments, is
        the one generated from the declarations (``make reference`` rewrites it).
        """
        text = (DOCS / "configuration.md").read_text(encoding="utf-8")
        assert BEGIN in text and END in text
        assert splice(text, table()) == text, "stale table: run `make reference`"

    def test_the_command_writes_and_checks_the_table(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        ``python -m asynctrack._config`` prints the table; ``--write`` replaces what lies
        between the markers (and only that); ``--check`` fails on a stale table.
        """
        page = tmp_path / "page.md"
        page.write_text(f"# Title\n\n{BEGIN}\n| old |\n{END}\n\nAfter.\n", encoding="utf-8")
        assert reference_main(["--check", str(page)]) == 1
        assert "out of date" in capsys.readouterr().err
        assert reference_main(["--write", str(page)]) == 0
        assert page.read_text(encoding="utf-8") == (
            f"# Title\n\n{BEGIN}\n\n{table()}\n{END}\n\nAfter.\n"
        )
        assert reference_main(["--check", str(page)]) == 0
        assert reference_main([]) == 0
        assert capsys.readouterr().out == table()
        page.write_text("no markers\n", encoding="utf-8")
        assert reference_main(["--write", str(page)]) == 2

    def test_every_row_states_what_the_option_accepts(self) -> None:
        """
        Each row names the option, its default and what it accepts, in the words of the
        error messages (the bounds included).
        """
        rows = {r.split(" | ")[0]: r.split(" | ") for r in table().splitlines()[2:]}
        assert list(rows) == [f"| `{name}`" for name in OPTIONS]
        assert rows["| `max_string`"][1:3] == ["`1000`", "an int >= 16"]
        assert rows["| `flush_interval`"][2] == "a finite number of seconds >= 0.001"
        assert rows["| `level`"][1] == "`DEFAULT`"
        with pytest.raises(asynctrack.ConfigError, match="an int >= 16"):
            validate({"max_string": 3})

    def test_help_lists_every_option(self) -> None:
        """
        ``help(configure)`` describes each option, generated from its declaration.
        """
        doc = inspect.getdoc(asynctrack.configure) or ""
        assert doc.endswith(docstring())
        for name, option in OPTIONS.items():
            assert f"\n    {name}: " in doc
            if option.env_var:
                assert option.env_var in doc
