"""
``integrations.sqlalchemy.instrument``: statements as calls, on SQLite (sync and
async), PostgreSQL and MariaDB, never recording parameter values.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import asynctrack
from asynctrack import Log
from asynctrack.integrations.sqlalchemy import instrument, uninstrument, verb
from asynctrack.testing import capture

tr = asynctrack.get_tracker("tests.sqla")


def only(logs: list[Log]) -> Log:
    assert len(logs) == 1, [log.to_dict() for log in logs]
    return logs[0]


@pytest.fixture
def sync_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """
    A SQLite engine with a ``users`` table, instrumented.
    """
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE)"))
    instrument(engine)
    yield engine
    engine.dispose()


@tr.probe(exc=("email",))  # the probe's own params would show it otherwise
def add_user(engine: sa.Engine, email: str) -> int:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (email) VALUES (:email)"), {"email": email})
        return int(conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one())


class TestSyncSQLite:
    def test_statements_are_calls_under_the_tracked_call(self, sync_engine: sa.Engine) -> None:
        """
        Each statement run inside a probed function is a ``sql.<VERB>`` call beneath
        it, with the normalised statement text and the insert's rowcount; the bound
        value appears nowhere in the log.
        """
        with capture() as logs:
            assert add_user(sync_engine, "alice@example.org") == 1
        log = only(logs)
        functions = [c.function for c in log.calls]
        assert functions[0] == "tests.sqla.add_user" or functions[0].endswith("add_user")
        sql = [c for c in log.calls if c.function.startswith("sql.")]
        assert [c.function for c in sql] == ["sql.INSERT", "sql.SELECT"]
        assert all(c.depth == 1 and c.tracker == "asynctrack.sqlalchemy" for c in sql)
        assert sql[0].params == {"statement": "INSERT INTO users (email) VALUES (?)"}
        assert sql[0].data == {"rowcount": 1}
        assert "alice" not in json.dumps(log.to_dict())

    def test_outside_a_tracked_call_nothing_is_recorded(self, sync_engine: sa.Engine) -> None:
        """
        Statements executed outside any tracked call open no log.
        """
        with capture() as logs, sync_engine.begin() as conn:
            conn.execute(sa.text("SELECT 1"))
        assert logs == []

    def test_failed_statement_is_an_error_with_a_traceback(self, sync_engine: sa.Engine) -> None:
        """
        A failing statement is recorded as an error call (the driver's message, not
        SQLAlchemy's, which quotes parameters); the application's exception is the
        one SQLAlchemy raises.
        """
        with capture() as logs:
            add_user(sync_engine, "bob@example.org")
            with pytest.raises(sa.exc.IntegrityError):
                add_user(sync_engine, "bob@example.org")
        log = logs[1]
        insert = next(c for c in log.calls if c.function == "sql.INSERT")
        assert insert.status == "error"
        assert insert.error is not None and insert.error.startswith("IntegrityError: UNIQUE")
        assert insert.traceback and insert.traceback[-1][2] == "do_execute"
        # The probed caller's error is SQLAlchemy's message, without the values.
        assert "parameters hidden" in (log.calls[0].error or "")
        assert "bob" not in json.dumps(log.to_dict())

    def test_param_names_option_records_names_only(self, tmp_path: Path) -> None:
        """
        With ``param_names=True`` the names of bound parameters are recorded, never
        their values; executemany records the names of the first set.
        """
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'p.db'}")
        instrument(engine, param_names=True)
        instrument(engine)  # a second instrumentation is ignored

        @tr.probe
        def fill() -> None:
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TABLE t (a INTEGER, secret_b TEXT)"))
                conn.execute(
                    sa.text("INSERT INTO t VALUES (:a, :secret_b)"),
                    [{"a": 1, "secret_b": "s3cr3t"}, {"a": 2, "secret_b": "hush"}],
                )

        with capture() as logs:
            fill()
        engine.dispose()
        calls = only(logs).calls
        assert [c.function for c in calls[1:]] == ["sql.CREATE", "sql.INSERT"]
        assert calls[2].params["parameters"] == ["a", "secret_b"]
        text = json.dumps(logs[0].to_dict())
        assert "s3cr3t" not in text and "hush" not in text

    def test_uninstrument_stops_recording(self, sync_engine: sa.Engine) -> None:
        """
        After ``uninstrument`` only the probed call is recorded.
        """
        uninstrument(sync_engine)
        uninstrument(sync_engine)  # a no-op the second time
        with capture() as logs:
            add_user(sync_engine, "carol@example.org")
        assert len(only(logs).calls) == 1

    def test_bad_arguments(self) -> None:
        """
        Wrong argument types raise TypeError naming the argument, unknown levels
        ValueError.
        """
        with pytest.raises(TypeError, match="engine"):
            instrument("sqlite://")
        engine = sa.create_engine("sqlite://")
        with pytest.raises(TypeError, match="tracker"):
            instrument(engine, tracker=3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="param_names"):
            instrument(engine, param_names="yes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="level"):
            instrument(engine, level="LOUD")

    @pytest.mark.parametrize(
        ("statement", "expected"),
        [
            pytest.param("select 1", "SELECT", id="lower"),
            pytest.param("  /* hint */\n -- c\n  UPDATE t SET a=1", "UPDATE", id="comments"),
            pytest.param("(SELECT 1) UNION (SELECT 2)", "SELECT", id="parenthesised"),
            pytest.param("WITH x AS (SELECT 1) SELECT * FROM x", "WITH", id="cte"),
            pytest.param("", "OTHER", id="empty"),
            pytest.param("123", "OTHER", id="no-keyword"),
        ],
    )
    def test_verb(self, statement: str, expected: str) -> None:
        """
        The call name's verb is the statement's first keyword, upper-cased.
        """
        assert verb(statement) == expected


# -- never parameter values, as a property ---------------------------------------------


_engines: dict[str, sa.Engine] = {}


def _property_engine(tmp: Path) -> sa.Engine:
    engine = _engines.get(str(tmp))
    if engine is None:
        engine = sa.create_engine(f"sqlite:///{tmp / 'prop.db'}")
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE v (k TEXT, n INTEGER, x REAL)"))
        instrument(engine, param_names=True)
        _engines[str(tmp)] = engine
    return engine


class TestNeverValues:
    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        text=st.text(min_size=6).map(lambda s: "VAL" + s),
        number=st.integers(min_value=10**12, max_value=10**15),
        many=st.booleans(),
    )
    def test_bound_values_never_reach_the_log(
        self, tmp_path: Path, text: str, number: int, many: bool
    ) -> None:
        """
        Whatever values are bound (any text, large ints), single or executemany, and
        with parameter names on, none of them appears in the recorded log.
        """
        engine = _property_engine(tmp_path)

        @tr.probe
        def store() -> None:
            with engine.begin() as conn:
                stmt = sa.text("INSERT INTO v VALUES (:k, :n, :x)")
                row = {"k": text, "n": number, "x": 0.5}
                conn.execute(stmt, [row, row] if many else row)
                conn.execute(sa.text("SELECT * FROM v WHERE k = :k"), {"k": text})

        with capture() as logs:
            store()
        encoded = json.dumps(only(logs).to_dict(), ensure_ascii=False)
        assert text not in encoded and str(number) not in encoded
        assert [c.function for c in logs[0].calls[1:]] == ["sql.INSERT", "sql.SELECT"]


# -- async engines: SQLite, PostgreSQL, MariaDB -----------------------------------------


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def async_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """
    The URL of each async engine under test (server ones skip when unreachable).
    """
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'async.db'}"
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(request.getfixturevalue("mysql_url"))


@pytest.fixture
def anyio_backend() -> str:
    """
    SQLAlchemy's asyncio extension runs on asyncio only.
    """
    return "asyncio"


@pytest.fixture
async def async_engine(async_url: str, table_prefix: str) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """
    An instrumented async engine and a table of this test's own (dropped afterwards).
    """
    engine = create_async_engine(async_url)
    table = f"{table_prefix}items"
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT)"))
    instrument(engine)
    try:
        yield engine, table
    finally:
        uninstrument(engine)
        async with engine.begin() as conn:
            await conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        await engine.dispose()


class TestAsyncEngines:
    @pytest.mark.anyio
    async def test_statements_join_the_awaiting_call(
        self, async_engine: tuple[AsyncEngine, str]
    ) -> None:
        """
        On every async engine, statements awaited inside a probed coroutine are calls
        beneath it (rowcount for writes), concurrent coroutines keep their own
        statements, and a failing statement is an error call.
        """
        import anyio

        engine, table = async_engine

        @tr.probe
        async def save(i: int) -> None:  # its value is made inside
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(f"INSERT INTO {table} (id, name) VALUES (:i, :name)"),
                    {"i": i, "name": f"secret-name-{i}"},
                )
                await conn.execute(sa.text(f"SELECT name FROM {table} WHERE id = :i"), {"i": i})

        with capture() as logs:
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(save, i)
            with pytest.raises(sa.exc.IntegrityError):
                await save(0)
        assert len(logs) == 5
        for log in logs[:4]:
            i = log.calls[0].params["i"]
            assert [c.function for c in log.calls] == [
                log.calls[0].function,
                "sql.INSERT",
                "sql.SELECT",
            ]
            assert log.calls[1].data == {"rowcount": 1}
            assert all(c.depth == 1 for c in log.calls[1:])
            assert f"secret-name-{i}" not in json.dumps(log.to_dict())
        failed = logs[4]
        assert failed.calls[1].function == "sql.INSERT"
        assert failed.calls[1].status == "error" and failed.calls[0].status == "error"

    @pytest.mark.anyio
    async def test_outside_a_tracked_call_nothing_is_recorded(
        self, async_engine: tuple[AsyncEngine, str]
    ) -> None:
        """
        Statements awaited outside any tracked call open no log.
        """
        engine, table = async_engine
        with capture() as logs:
            async with engine.begin() as conn:
                await conn.execute(sa.text(f"SELECT * FROM {table}"))
        assert logs == []
