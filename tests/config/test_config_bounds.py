"""
Configuration input is bounded: any bad value, however large or deeply nested, gives
a short ``ConfigError`` naming the option, never ``RecursionError`` or a message the
size of the value (#15).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import ConfigError
from asynctrack._config.file import load
from asynctrack._config.options import CONFIG_ENV, ENV_VARS, OPTIONS
from asynctrack._exceptions import MAX_MESSAGE, quote

#: Room for the ``…[N characters cut]…`` marker around the cut.
LIMIT = MAX_MESSAGE + 60
BIG = 2_000_000


def nested(depth: int, leaf: Any = 1, kind: str = "list") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {0: value}
    return value


#: Bad values of every shape: huge strings and bytes, deep lists and dicts, wide ones.
hostile = st.one_of(
    st.integers(1_000, BIG).map(lambda n: "x" * n),
    st.integers(1_000, BIG).map(lambda n: b"\xff" * n),
    st.integers(50, 100_000).map(nested),
    st.integers(50, 100_000).map(lambda d: nested(d, kind="dict")),
    st.integers(1_000, 100_000).map(lambda n: list(range(n))),
    st.just(10**5000),
)


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """
    Run each test in its own directory with no ASYNCTRACK_* variable set.
    """
    for var in [*ENV_VARS, CONFIG_ENV]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def short(exc: BaseException) -> str:
    text = str(exc)
    assert len(text) <= LIMIT, len(text)
    return text


class TestQuote:
    @given(hostile)
    @settings(max_examples=30, deadline=None)
    def test_quote_is_short_for_any_value(self, value: Any) -> None:
        """
        ``quote`` returns at most about a hundred characters for any value, without
        raising (deep nesting, huge ints and huge strings included).
        """
        assert len(quote(value)) <= 120

    def test_long_strings_are_quoted_by_a_prefix_and_their_length(self) -> None:
        """
        A long string shows its first 60 characters and its length.
        """
        assert quote("ab" * 1000) == repr("ab" * 30) + "… (2000 characters)"
        assert quote("short") == "'short'"

    def test_a_failing_repr_shows_the_type(self) -> None:
        """
        An object whose ``__repr__`` raises is shown by its type.
        """

        class Bad:
            def __repr__(self) -> str:
                raise RuntimeError("no")

        assert quote(Bad()).startswith("<Bad ")

    def test_config_error_messages_are_capped_keeping_both_ends(self) -> None:
        """
        A ConfigError built with a huge message keeps its beginning (the option) and
        its end, and says how much was cut.
        """
        exc = ConfigError("batch_size must be an int, got " + "9" * BIG + " (expected)")
        text = short(exc)
        assert text.startswith("batch_size must be an int, got 999")
        assert text.endswith("99 (expected)")
        assert "characters cut" in text


class TestKeywordArguments:
    @pytest.mark.parametrize("option", sorted(OPTIONS))
    @given(value=hostile)
    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def test_any_bad_option_value_gives_a_short_error_naming_it(
        self, option: str, value: Any
    ) -> None:
        """
        ``configure(option=<huge or deep value>)`` raises a ConfigError of bounded size
        that names the option.
        """
        if option == "spill_dir" and isinstance(value, str):
            value = value + "\0"  # a long str is a valid path; NUL makes it bad
        try:
            with pytest.raises(ConfigError) as info:
                asynctrack.configure(**{option: value})
        finally:
            asynctrack.shutdown_sync()
        assert option in short(info.value)

    def test_unknown_huge_option_name(self) -> None:
        """
        An unknown option named by a huge string gives a short error.
        """
        with pytest.raises(ConfigError) as info:
            asynctrack.configure(**{"y" * BIG: 1})
        assert "unknown option" in short(info.value)


class TestEnvironment:
    @pytest.mark.parametrize("var", sorted(ENV_VARS))
    def test_huge_environment_value(self, var: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        A huge bad ``ASYNCTRACK_*`` value gives a short error naming the variable.
        """
        if var == "ASYNCTRACK_SPILL_DIR":
            pytest.skip("any text is a directory name")
        monkeypatch.setenv(var, "not valid " + "z" * BIG)
        with pytest.raises(ConfigError) as info:
            asynctrack.configure()
        assert var in short(info.value)


class TestFiles:
    @pytest.mark.parametrize(
        ("table", "value"),
        [
            pytest.param("other", "[" * 5000 + "]" * 5000, id="unrelated-array"),
            pytest.param("other", "{a=" * 5000 + "1" + "}" * 5000, id="unrelated-inline"),
            pytest.param("asynctrack", "[" * 5000 + "]" * 5000, id="own-array"),
        ],
    )
    def test_deep_toml_is_a_config_error(self, table: str, value: str) -> None:
        """
        A TOML file nested thousands of levels deep, even in a table asynctrack does
        not read, is a ConfigError naming the file, not a RecursionError.
        """
        Path("track.toml").write_text(f'[asynctrack]\nlevel = "INFO"\n[{table}]\nx = {value}\n')
        if table == "asynctrack":
            Path("track.toml").write_text(f"[asynctrack]\nlevels = {value}\n")
        with pytest.raises(ConfigError, match=r"track\.toml: invalid TOML: .*nested too deeply"):
            load("track.toml")
        with pytest.raises(ConfigError, match="nested too deeply"):
            asynctrack.configure_from_file("track.toml")

    @given(
        st.sampled_from(
            [
                "level = {v}",
                "batch_size = {v}",
                "levels = {v}",
                'levels = {{ "shop" = {v} }}',
                "sinks = {v}",
                "processors = {v}",
                "tracker_class = {v}",
                "redact = {v}",
                "[[asynctrack.sinks]]\ntype = {v}",
                '[[asynctrack.sinks]]\ntype = "sql"\nurl = {v}',
                '[[asynctrack.sinks]]\ntype = "file"\npath = "t.jsonl"\nfsync = {v}',
                '[[asynctrack.sinks]]\ntype = "file"\npath = "t.jsonl"\n{k} = 1',
                "{k} = 1",
            ]
        ),
        st.sampled_from(["str", "array", "deep"]),
        st.integers(1_000, 300_000),
    )
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def test_huge_bad_values_in_a_file_give_short_errors(
        self, template: str, shape: str, size: int
    ) -> None:
        """
        A huge bad value (a long string, a long array, arrays nested as deep as TOML
        allows) or a huge unknown key anywhere in a file gives a short ConfigError
        naming the file.
        """
        if shape == "str":
            v = '"not valid ' + "q" * size + '"'
        elif shape == "array":
            v = "[" + ", ".join(["1"] * (size // 100)) + "]"
        else:
            depth = min(size // 1000 + 1, 200)
            v = "[" * depth + '"x"' + "]" * depth
        text = "[asynctrack]\n" + template.format(v=v, k="k" * size) + "\n"
        Path("track.toml").write_text(text)
        with pytest.raises(ConfigError) as info:
            asynctrack.configure_from_file("track.toml")
        assert short(info.value).startswith("track.toml")
        assert os.path.exists("track.toml")


class TestSinkArguments:
    @pytest.mark.parametrize(
        ("build", "name"),
        [
            pytest.param(
                lambda v: asynctrack.FileSink("t.jsonl", fsync=v), "fsync", id="file-fsync"
            ),
            pytest.param(lambda v: asynctrack.FileSink("t.jsonl", mode=v), "mode", id="file-mode"),
            pytest.param(lambda v: asynctrack.LoggingSink(extra_key=v), "extra_key", id="logging"),
            pytest.param(lambda v: asynctrack.LoggingSink(level=v), "level", id="logging-level"),
            pytest.param(
                lambda v: asynctrack.SQLSink(columns={v: "text"}), "info key", id="sql-key"
            ),
            pytest.param(lambda v: asynctrack.SQLSink(columns={"u": v}), "info key", id="sql-type"),
            pytest.param(lambda v: asynctrack.SQLSink(pool_size=v), "pool_size", id="sql-pool"),
            pytest.param(lambda v: asynctrack.SQLSink(v), "url", id="sql-url"),
        ],
    )
    @given(value=hostile)
    @settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    def test_huge_sink_arguments_give_short_errors(self, build: Any, name: str, value: Any) -> None:
        """
        A sink constructor given a huge or deeply nested bad value raises a short
        ConfigError naming the argument (or TypeError for a value of the wrong kind).
        """
        if isinstance(value, str):
            value = "not valid " + value  # a long identifier or level name is fine
        elif name == "info key":
            value = "not an identifier " + quote(value)
        elif name in ("level", "pool_size") and isinstance(value, int):
            assume(False)  # any int is a logging level; any positive one a pool size
        with pytest.raises((ConfigError, TypeError)) as info:
            build(value)
        assert name in short(info.value)
