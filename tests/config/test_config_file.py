"""
Tests of configuration files: ``track.toml``, ``[tool.asynctrack]``, discovery,
precedence over the environment, and the error messages.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import asynctrack
from asynctrack import ConfigError, FileSink, MemorySink, read_logs
from asynctrack._config.file import discover, load
from asynctrack._config.options import CONFIG_ENV, ENV_VARS, resolve
from asynctrack._delivery import pipeline as pipeline_module
from asynctrack.sinks._logging import LoggingSink
from tests.helpers import config_docs


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """
    Run each test in its own directory with no ASYNCTRACK_* variable set.
    """
    for var in [*ENV_VARS, CONFIG_ENV]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


USER_MODULE = """
from asynctrack import Sink, Tracker


class ListSink(Sink):
    def __init__(self, *, label, limit=10):
        self.label = label
        self.limit = limit
        self.logs = []

    @property
    def name(self):
        return f"list-{self.label}"

    async def write(self, logs):
        self.logs.extend(logs)


class HostTracker(Tracker):
    def extend_log(self, log):
        log.info["host"] = "web-1"


def tag(log):
    log.info["tagged"] = True
    return log


def drop_health(log):
    return None if log.calls[0].function.endswith("health") else log
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """
    An importable module of the user's (a sink, a tracker class, processors).
    """
    name = f"user_track_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(USER_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def write(path: str | Path, text: str) -> Path:
    p = Path(path)
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def current_sinks() -> list[Any]:
    pipeline = pipeline_module.current()
    assert pipeline is not None
    return pipeline.sinks


def workload() -> None:
    shop = asynctrack.get_tracker("shop")
    db = asynctrack.get_tracker("shop.db")

    @db.probe(level="DEBUG")
    def query(sql: str) -> int:
        return 1

    @shop.probe(level="INFO")
    def price(item: str) -> float:
        return 9.5

    @shop.probe(level="DEBUG")
    def detail() -> None:
        pass

    @shop.probe
    def checkout(cart: int, card: str, password: str, note: str) -> None:
        asynctrack.add_info("user", "alice")
        price("book")
        detail()
        query("select * from carts where id = 1")

    checkout(1, "4111-1111", "hunter2", "x" * 100)
    query("select 1")


def normalised(path: Path) -> list[dict[str, Any]]:
    out = []
    for log in read_logs(path):
        d = log.to_dict()
        for key in ("id", "trace_id", "started_at", "duration_us"):
            d.pop(key)
        for call in d["calls"]:
            call.pop("offset_us")
            call.pop("duration_us")
        out.append(d)
    return out


class TestRoundTrip:
    KWARGS: dict[str, Any] = {  # noqa: RUF012 - read-only test data
        "level": "INFO",
        "levels": {"shop.db": "DEBUG"},
        "batch_size": 7,
        "flush_interval": 0.2,
        "max_string": 20,
        "redact": ["card", "password"],
        "on_full": "block",
    }
    TOML = """
        [asynctrack]
        level = "INFO"
        batch_size = 7
        flush_interval = 0.2
        max_string = 20
        redact = ["card", "password"]
        on_full = "block"

        [asynctrack.levels]
        "shop.db" = "DEBUG"

        [[asynctrack.sinks]]
        type = "file"
        path = "{path}"
    """

    def test_file_writes_the_same_logs_as_the_call(self, tmp_path: Path) -> None:
        """
        A track.toml equivalent of a configure(...) call records the same logs.
        """
        asynctrack.configure(**self.KWARGS, sinks=[FileSink(tmp_path / "code.jsonl")])
        workload()
        asynctrack.shutdown_sync()

        write("track.toml", self.TOML.format(path="file.jsonl"))
        asynctrack.configure()
        workload()
        asynctrack.shutdown_sync()

        from_code = normalised(tmp_path / "code.jsonl")
        from_file = normalised(tmp_path / "file.jsonl")
        assert from_code == from_file
        assert [len(d["calls"]) for d in from_code] == [3, 1]  # DEBUG detail() left out
        params = from_code[0]["calls"][0]["params"]
        assert params["card"] == params["password"] == "[REDACTED]"
        assert params["note"].startswith("x" * 20 + "…")

    def test_file_resolves_to_the_same_options(self) -> None:
        """
        The options read from the file equal those of the keyword arguments.
        """
        write("track.toml", self.TOML.format(path="same.jsonl"))
        from_file = resolve({}, load("track.toml"))
        from_code = resolve({**self.KWARGS, "sinks": [FileSink("same.jsonl")]})
        file_sinks, code_sinks = from_file.pop("sinks"), from_code.pop("sinks")
        assert from_file == from_code
        assert [(type(s), s.path) for s in file_sinks] == [(type(s), s.path) for s in code_sinks]

    def test_every_builtin_sink_type(self) -> None:
        """
        type = "file" | "memory" | "logging" build the library's sinks with their keys.
        """
        write(
            "track.toml",
            """
            [asynctrack]
            [[asynctrack.sinks]]
            type = "file"
            path = "a.jsonl"
            max_bytes = 1_000_000
            mode = 0o640

            [[asynctrack.sinks]]
            type = "memory"
            name = "mem"

            [[asynctrack.sinks]]
            type = "logging"
            logger = "app.activity"
            level = "WARNING"
            """,
        )
        sinks = load("track.toml").options["sinks"]
        assert isinstance(sinks[0], FileSink)
        assert sinks[0].mode == 0o640
        assert isinstance(sinks[1], MemorySink)
        assert sinks[1].name == "mem"
        assert isinstance(sinks[2], LoggingSink)
        assert sinks[2].logger.name == "app.activity"
        assert sinks[2].level == 30

    def test_sql_sink_with_info_columns(self, tmp_path: Path, table_prefix: str) -> None:
        """
        A type = "sql" table with columns = {user = "string(64)"} fills that column.
        """
        pytest.importorskip("asynctrack.sinks._sql.sink", reason="SQLSink is not merged yet")
        write(
            "track.toml",
            f"""
            [[asynctrack.sinks]]
            type = "sql"
            url = "sqlite+aiosqlite:///{tmp_path / "t.db"}"
            table_prefix = "{table_prefix}"
            columns = {{ user = "string(64)", tenant = "integer" }}
            """,
        )
        asynctrack.configure()
        tr = asynctrack.get_tracker("shop")

        @tr.probe
        def checkout() -> None:
            asynctrack.add_info("user", "alice")
            asynctrack.add_info("tenant", 7)

        checkout()
        assert asynctrack.shutdown_sync()
        with contextlib.closing(sqlite3.connect(tmp_path / "t.db")) as db:
            rows = db.execute(f"SELECT user, tenant FROM {table_prefix}logs").fetchall()
        assert rows == [("alice", 7)]


class TestPyproject:
    def test_tool_table_is_read_by_configure(self, tmp_path: Path) -> None:
        """
        configure() with no argument reads [tool.asynctrack] from pyproject.toml.
        """
        write(
            "pyproject.toml",
            """
            [project]
            name = "shop"

            [tool.asynctrack]
            level = "DEBUG"

            [[tool.asynctrack.sinks]]
            type = "file"
            path = "py.jsonl"
            """,
        )
        asynctrack.configure()
        assert asynctrack.get_tracker("x").level == asynctrack.DEBUG
        asynctrack.get_tracker("x").probe(lambda: None)()
        asynctrack.shutdown_sync()
        assert len(list(read_logs(tmp_path / "py.jsonl"))) == 1

    def test_pyproject_without_the_table_is_ignored(self) -> None:
        """
        A pyproject.toml without [tool.asynctrack] is no configuration.
        """
        write("pyproject.toml", '[project]\nname = "shop"\n')
        assert discover() is None

    def test_configure_from_file_accepts_pyproject(self) -> None:
        """
        configure_from_file("pyproject.toml") reads its [tool.asynctrack] table.
        """
        write(
            "pyproject.toml",
            '[tool.asynctrack]\nlevel = "INFO"\n[[tool.asynctrack.sinks]]\ntype = "memory"\n',
        )
        asynctrack.configure_from_file("pyproject.toml")
        assert asynctrack.get_tracker("x").level == asynctrack.INFO
        assert isinstance(current_sinks()[0], MemorySink)

    def test_errors_name_the_tool_table(self) -> None:
        """
        Errors in pyproject.toml name the key under tool.asynctrack.
        """
        write("pyproject.toml", "[tool.asynctrack]\nmax_queue = 0\n")
        with pytest.raises(
            ConfigError, match=r"^pyproject\.toml: tool\.asynctrack\.max_queue must be an int >= 1"
        ):
            asynctrack.configure()


class TestDiscover:
    def test_nothing_found(self) -> None:
        """
        With no file and no ASYNCTRACK_CONFIG there is no configuration file.
        """
        assert discover() is None

    def test_order(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """
        ASYNCTRACK_CONFIG comes first, then track.toml, then pyproject.toml.
        """
        write("pyproject.toml", "[tool.asynctrack]\nbatch_size = 1\n")
        layer = discover()
        assert layer is not None
        assert layer.options == {"batch_size": 1}
        write("track.toml", "[asynctrack]\nbatch_size = 2\n")
        layer = discover()
        assert layer is not None
        assert layer.options == {"batch_size": 2}
        named = write(tmp_path / "elsewhere.toml", "[asynctrack]\nbatch_size = 3\n")
        monkeypatch.setenv(CONFIG_ENV, str(named))
        layer = discover()
        assert layer is not None
        assert layer.options == {"batch_size": 3}

    def test_missing_named_file(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        ASYNCTRACK_CONFIG naming no file is a ConfigError naming the variable.
        """
        monkeypatch.setenv(CONFIG_ENV, "nope.toml")
        with pytest.raises(ConfigError, match=r"ASYNCTRACK_CONFIG names 'nope.toml'"):
            asynctrack.configure()

    def test_arguments_skip_the_file(self) -> None:
        """
        configure(**options) with options uses them, not a file in the directory.
        """
        write("track.toml", '[asynctrack]\nlevel = "DEBUG"\n')
        asynctrack.configure(sinks=[MemorySink()])
        assert asynctrack.get_tracker("x").level == asynctrack.DEFAULT


class TestPrecedence:
    def test_environment_overrides_the_file(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        ASYNCTRACK_* variables override the file's values; the file's other values stay.
        """
        write(
            "track.toml",
            """
            [asynctrack]
            level = "INFO"
            batch_size = 100
            [[asynctrack.sinks]]
            type = "memory"
            """,
        )
        monkeypatch.setenv("ASYNCTRACK_LEVEL", "DEBUG")
        asynctrack.configure()
        assert asynctrack.get_tracker("x").level == asynctrack.DEBUG
        options = resolve({}, load("track.toml"))
        assert options["level"] == asynctrack.DEBUG
        assert options["batch_size"] == 100

    def test_arguments_override_environment_and_file(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        configure_from_file(path, **overrides): arguments > environment > file > defaults.
        """
        write(
            "track.toml",
            '[asynctrack]\nlevel = "INFO"\nbatch_size = 100\nmax_queue = 50\n'
            '[[asynctrack.sinks]]\ntype = "memory"\n',
        )
        monkeypatch.setenv("ASYNCTRACK_LEVEL", "DEBUG")
        monkeypatch.setenv("ASYNCTRACK_BATCH_SIZE", "10")
        options = resolve({"level": "NONE"}, load("track.toml"))
        assert (options["level"], options["batch_size"], options["max_queue"]) == (100, 10, 50)
        assert options["max_items"] == 100  # default
        asynctrack.configure_from_file("track.toml", level="NONE")
        assert asynctrack.get_tracker("x").level == asynctrack.NONE

    def test_environment_levels_add_to_the_file_levels(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        ASYNCTRACK_LEVELS overrides single entries of [asynctrack.levels], keeping others.
        """
        write(
            "track.toml",
            '[asynctrack.levels]\n"shop.db" = "DEBUG"\n"shop.web" = "INFO"\n',
        )
        monkeypatch.setenv("ASYNCTRACK_LEVELS", "shop.web=NONE,billing=DEBUG")
        options = resolve({}, load("track.toml"))
        assert options["levels"] == {"shop.db": 10, "shop.web": 100, "billing": 10}

    def test_environment_errors_beat_file_labels(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        A bad value from the environment is blamed on the variable, not on the file.
        """
        write("track.toml", "[asynctrack]\nbatch_size = 100\n")
        monkeypatch.setenv("ASYNCTRACK_BATCH_SIZE", "0")
        with pytest.raises(ConfigError, match=r"^environment variable ASYNCTRACK_BATCH_SIZE"):
            asynctrack.configure()


ERRORS = [
    pytest.param(
        "[asynctrack]\nbath_size = 3\n",
        "track.toml: unknown key asynctrack.bath_size (did you mean 'batch_size'?); accepted: ",
        id="unknown-key",
    ),
    pytest.param(
        '[asynctrack]\nlevel = "LOUD"\n',
        "track.toml: asynctrack.level: unknown level 'LOUD' (expected one of DEBUG, INFO, "
        "DEFAULT, NONE)",
        id="bad-level-name",
    ),
    pytest.param(
        '[asynctrack.levels]\n"shop.db" = "verbose"\n',
        "track.toml: asynctrack.levels.\"shop.db\": unknown level 'verbose'",
        id="bad-tracker-level",
    ),
    pytest.param(
        "[asynctrack]\nlevels = 3\n",
        "track.toml: asynctrack.levels must be a table of tracker name to level",
        id="levels-not-table",
    ),
    pytest.param(
        '[asynctrack]\nbatch_size = "big"\n',
        "track.toml: asynctrack.batch_size must be an int >= 1, got 'big'",
        id="bad-type",
    ),
    pytest.param(
        '[asynctrack]\non_full = "wait"\n',
        "track.toml: asynctrack.on_full must be 'drop' or 'block', got 'wait'",
        id="bad-choice",
    ),
    pytest.param(
        '[[asynctrack.sinks]]\ntype = "file"\n',
        "track.toml: asynctrack.sinks[0]: missing key 'path' (required by type 'file')",
        id="missing-sink-field",
    ),
    pytest.param(
        '[[asynctrack.sinks]]\npath = "a.jsonl"\n',
        "track.toml: asynctrack.sinks[0]: missing key 'type' (expected one of file, sql, "
        "memory, logging, otlp, or 'module:Class' naming a Sink subclass)",
        id="missing-sink-type",
    ),
    pytest.param(
        '[[asynctrack.sinks]]\ntype = "fil"\npath = "a.jsonl"\n',
        "track.toml: asynctrack.sinks[0].type must be one of file, sql, memory, logging, otlp, "
        "or 'module:Class' naming a Sink subclass, got 'fil' (did you mean 'file'?)",
        id="unknown-sink-type",
    ),
    pytest.param(
        '[[asynctrack.sinks]]\ntype = "memory"\n[[asynctrack.sinks]]\ntype = "file"\n'
        'pth = "a.jsonl"\n',
        "track.toml: asynctrack.sinks[1].pth: unknown key for type 'file' (did you mean "
        "'path'?); accepted: type, path, max_bytes, backup_count, fsync, mode",
        id="unknown-sink-key",
    ),
    pytest.param(
        '[[asynctrack.sinks]]\ntype = "file"\npath = "a.jsonl"\nfsync = "always"\n',
        "track.toml: asynctrack.sinks[0].fsync: FileSink: fsync must be 'never' or 'batch', "
        "got 'always'",
        id="sink-constructor-error",
    ),
    pytest.param(
        '[[asynctrack.sinks]]\ntype = "logging"\nmessage = "{nope}"\n',
        "track.toml: asynctrack.sinks[0].message: LoggingSink: message uses unknown field",
        id="logging-sink-error",
    ),
    pytest.param(
        '[[asynctrack.sinks]]\ntype = "no_such_module_xq:Sink"\n',
        "track.toml: asynctrack.sinks[0].type: cannot import module 'no_such_module_xq': "
        "No module named 'no_such_module_xq'",
        id="unimportable-sink-class",
    ),
    pytest.param(
        '[[asynctrack.sinks]]\ntype = "asynctrack:NoSuchSink"\n',
        "track.toml: asynctrack.sinks[0].type: module 'asynctrack' has no attribute 'NoSuchSink'",
        id="missing-sink-class",
    ),
    pytest.param(
        '[[asynctrack.sinks]]\ntype = "collections:OrderedDict"\n',
        "track.toml: asynctrack.sinks[0].type: 'collections:OrderedDict' is not a subclass of "
        "asynctrack.Sink",
        id="not-a-sink",
    ),
    pytest.param(
        '[asynctrack]\nsinks = "file"\n',
        "track.toml: asynctrack.sinks must be an array of tables ([[asynctrack.sinks]])",
        id="sinks-not-array",
    ),
    pytest.param(
        '[asynctrack]\ntracker_class = "asynctrack.Tracker"\n',
        'track.toml: asynctrack.tracker_class must be "module:Name" naming a Tracker subclass',
        id="tracker-class-form",
    ),
    pytest.param(
        '[asynctrack]\ntracker_class = "asynctrack:Log"\n',
        "track.toml: asynctrack.tracker_class must be a subclass of asynctrack.Tracker",
        id="tracker-class-type",
    ),
    pytest.param(
        '[asynctrack]\nprocessors = ["asynctrack:DEBUG"]\n',
        "track.toml: asynctrack.processors[0]: 'asynctrack:DEBUG' is not callable",
        id="processor-not-callable",
    ),
    pytest.param(
        '[asynctrack]\nprocessors = "mod:f"\n',
        'track.toml: asynctrack.processors must be an array of "module:function" strings',
        id="processors-not-array",
    ),
    pytest.param(
        "[asynctrack]\nredact = { password = true, ssn = false }\n",
        "track.toml: asynctrack.redact must be a list of str, got {'password': True",
        id="redact-table",
    ),
    pytest.param(
        '[asyntrack]\nlevel = "INFO"\n',
        "track.toml: expected an [asynctrack] table (or [tool.asynctrack] in pyproject.toml); "
        "found asyntrack",
        id="no-table",
    ),
    pytest.param(
        "asynctrack = 3\n",
        "track.toml: asynctrack must be a table, got 3",
        id="table-not-table",
    ),
]


class TestErrors:
    @pytest.mark.parametrize(("text", "message"), ERRORS)
    def test_message_names_file_key_and_expectation(self, text: str, message: str) -> None:
        """
        Each kind of mistake is a ConfigError naming the file, the key path and what
        was expected, raised before anything is applied.
        """
        write("track.toml", text)
        with pytest.raises(ConfigError) as info:
            asynctrack.configure()
        assert message in str(info.value)
        assert pipeline_module.current() is None

    def test_toml_syntax_error_gives_the_line(self) -> None:
        """
        A TOML syntax error is a ConfigError naming the file and the line.
        """
        write("track.toml", '[asynctrack]\nlevel = "INFO"\nbatch_size = \n')
        with pytest.raises(ConfigError) as info:
            asynctrack.configure()
        assert str(info.value).startswith("track.toml: invalid TOML: ")
        assert "line 3" in str(info.value)

    def test_unreadable_file(self) -> None:
        """
        A file that cannot be read is a ConfigError naming it.
        """
        with pytest.raises(ConfigError, match=r"^missing\.toml: cannot read the configuration"):
            asynctrack.configure_from_file("missing.toml")

    def test_unknown_sql_column_type(self) -> None:
        """
        An info column with an SQL type SQLSink does not know is reported with its path.
        """
        pytest.importorskip("asynctrack.sinks._sql.sink", reason="SQLSink is not merged yet")
        write(
            "track.toml",
            '[[asynctrack.sinks]]\ntype = "sql"\nurl = "sqlite+aiosqlite:///t.db"\n'
            'columns = { user = "string(64)", tenant = "integr" }\n',
        )
        with pytest.raises(ConfigError) as info:
            asynctrack.configure()
        assert str(info.value).startswith("track.toml: asynctrack.sinks[0].columns: ")
        assert "integr" in str(info.value)


class TestUserCode:
    def test_sink_tracker_class_and_processors(self, user_module: str) -> None:
        """
        "module:Name" strings import the user's sink class, tracker class and processors.
        """
        write(
            "track.toml",
            f"""
            [asynctrack]
            tracker_class = "{user_module}:HostTracker"
            processors = ["{user_module}:drop_health", "{user_module}:tag"]

            [[asynctrack.sinks]]
            type = "{user_module}:ListSink"
            label = "main"
            """,
        )
        asynctrack.configure()
        tr = asynctrack.get_tracker("shop")
        assert type(tr).__name__ == "HostTracker"

        @tr.probe
        def health() -> None:
            pass

        @tr.probe
        def order() -> None:
            pass

        health()
        order()
        asynctrack.flush_sync()
        (sink,) = current_sinks()
        assert sink.name == "list-main"
        assert [log.info for log in sink.logs] == [{"host": "web-1", "tagged": True}]
        assert asynctrack.stats().dropped == 1

    def test_user_sink_missing_key(self, user_module: str) -> None:
        """
        A required keyword of the user's sink class missing from the table is named.
        """
        write("track.toml", f'[[asynctrack.sinks]]\ntype = "{user_module}:ListSink"\n')
        with pytest.raises(
            ConfigError,
            match=rf"asynctrack\.sinks\[0\]: missing key 'label' \(required by type "
            rf"'{user_module}:ListSink'\)",
        ):
            asynctrack.configure()

    def test_module_raising_on_import(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        A module that fails while importing is reported with the file and key.
        """
        name = f"broken_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text("raise RuntimeError('boom')\n", encoding="utf-8")
        monkeypatch.syspath_prepend(str(tmp_path))
        write("track.toml", f'[[asynctrack.sinks]]\ntype = "{name}:S"\n')
        with pytest.raises(
            ConfigError,
            match=rf"asynctrack\.sinks\[0\]\.type: importing module '{name}' raised "
            r"RuntimeError: boom",
        ):
            asynctrack.configure()
        sys.modules.pop(name, None)


class TestDocumentation:
    def test_full_example_loads(self, tmp_path: Path) -> None:
        """
        The documentation's full track.toml example is valid, with a myapp package
        providing the classes and functions it names.
        """
        pytest.importorskip("asynctrack.sinks._sql.sink", reason="SQLSink is not merged yet")
        (block,) = [b for b in config_docs().split("```toml\n")[1:] if "[asynctrack]" in b]
        package = tmp_path / "myapp"
        package.mkdir()
        (package / "__init__.py").write_text("", encoding="utf-8")
        (package / "tracking.py").write_text(
            "from asynctrack import Tracker\n"
            "class AppTracker(Tracker):\n    pass\n"
            "def drop_health_checks(log):\n    return log\n",
            encoding="utf-8",
        )
        (package / "sinks.py").write_text(
            "from asynctrack import Sink\n"
            "class CSVSink(Sink):\n"
            "    def __init__(self, path):\n        self.path = path\n",
            encoding="utf-8",
        )
        write("track.toml", block.split("```", 1)[0])
        sys.path.insert(0, str(tmp_path))
        try:
            options = resolve({}, load("track.toml"))
        finally:
            sys.path.remove(str(tmp_path))
            for name in [m for m in sys.modules if m == "myapp" or m.startswith("myapp.")]:
                del sys.modules[name]
        assert [type(s).__name__ for s in options["sinks"]] == [
            "FileSink",
            "SQLSink",
            "LoggingSink",
            "CSVSink",
        ]
        assert options["tracker_class"].__name__ == "AppTracker"
        assert options["levels"] == {"shop.db": 10, "shop.health": 100}
