"""
SQLSink against SQLite, PostgreSQL and MariaDB: round trips, idempotence, own tables,
validation, hostile input, several writer processes (issue #4).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import asynctrack
from asynctrack import Call, ConfigError, Log
from asynctrack.sinks._sql.schema import default_tables
from asynctrack.sinks._sql.sink import SQLSink
from asynctrack.testing import capture

pytestmark = pytest.mark.anyio

UTC = dt.UTC
MB = 1024 * 1024
HOSTILE = 'x"; DROP TABLE track_logs;--'
SRC = str(Path(__file__).resolve().parents[3] / "src")

EVERY_VALUE: dict[str, Any] = {
    "int": 42,
    "negative": -7,
    "int64_max": 2**63 - 1,
    "int64_min": -(2**63),
    "float": 3.141592653589793,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "none": None,
    "true": True,
    "false": False,
    "empty": "",
    "unicode": "héllo wörld ✓ 😀 中文 \u2028 \u0085 end",
    "quotes": 'it\'s "quoted" \\ back\\slash ` `',
    "nested": {"a": [1, 2.5, {"b": [None, "x", True]}], "c": {}, "d": []},
    "list": [1, "two", 3.0, None, False, [], {}],
}


@pytest.fixture
def anyio_backend() -> str:
    """
    SQLAlchemy's asyncio engine runs on asyncio only (the dispatcher always uses asyncio).
    """
    return "asyncio"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql"),
        pytest.param("mysql", id="mariadb"),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """
    The URL of each database: a SQLite file, the PostgreSQL and MariaDB test servers.
    """
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'track.db'}"
    name = "postgres_url" if request.param == "postgresql" else "mysql_url"
    return str(request.getfixturevalue(name))


async def _drop_tables(url: str, prefix: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:

            def drop(sync_conn: sa.Connection) -> None:
                metadata = sa.MetaData()
                # Reflect this test's tables only: other tests (and other checkouts)
                # create and drop tables in the same database meanwhile, and a table
                # listed then dropped by them would fail the reflection.
                metadata.reflect(sync_conn, only=lambda name, _: name.startswith(prefix))
                metadata.drop_all(sync_conn, tables=metadata.sorted_tables)

            await conn.run_sync(drop)
    finally:
        await engine.dispose()


@pytest.fixture
async def make_sink(db_url: str, table_prefix: str) -> AsyncIterator[Callable[..., SQLSink]]:
    """
    Build sinks on ``db_url`` with this test's table prefix; close them and drop the tables.
    """
    sinks: list[SQLSink] = []

    def make(**options: Any) -> SQLSink:
        options.setdefault("table_prefix", table_prefix)
        sink = SQLSink(options.pop("url", db_url), **options)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        await sink.close()
    await _drop_tables(db_url, table_prefix)


def make_log(
    n: int,
    *,
    info: dict[str, Any] | None = None,
    calls: int = 3,
    params: dict[str, Any] | None = None,
    complete: bool = True,
    **call_fields: Any,
) -> Log:
    """
    A log with ``calls`` calls, the first one at depth 0.
    """
    started = dt.datetime(2026, 11, 28, 17, 35, 20, 123456, tzinfo=UTC) + dt.timedelta(seconds=n)
    return Log(
        id=f"{n:032x}",
        trace_id=f"{n // 3 + 1:032x}",
        parent_id=f"{n - 1:032x}" if n % 3 == 0 else None,
        parent_seq=2 if n % 3 == 0 else None,
        remote_parent="00f067aa0ba902b7" if n % 2 else None,
        started_at=started,
        duration_us=1834 + n,
        complete=complete,
        info=dict(info or {}),
        calls=[
            Call(
                seq=s,
                parent=None if s == 0 else min(s - 1, 1),
                traceback=[("shop/payments.py", 88, "charge")] if s == 1 else None,
                depth=min(s, 2),
                function=call_fields.get("function", f"shop.views.step{s}"),
                tracker=call_fields.get("tracker", "shop.views"),
                level=call_fields.get("level", "DEFAULT"),
                params=dict(params or {"cart_id": n, "step": s}),
                data=dict(call_fields.get("data", {"rows": s})),
                offset_us=10 * s,
                duration_us=100 + s,
                status=call_fields.get("status", "error" if s == 1 else "ok"),
                error=call_fields.get("error", "PaymentDeclined: no funds" if s == 1 else None),
            )
            for s in range(calls)
        ],
    )


async def read_all(sink: SQLSink, **filters: Any) -> list[Log]:
    return [log async for log in sink.read_logs(**filters)]


def dicts(logs: list[Log]) -> list[dict[str, Any]]:
    return [log.to_dict() for log in logs]


def without_trace_fields(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    The logs as read from tables without the columns added in 0.2 (#17).
    """
    out = []
    for d in logs:
        d = {**d, "trace_id": None, "parent_seq": None, "remote_parent": None}
        d["calls"] = [{**c, "parent": None, "traceback": None} for c in d["calls"]]
        out.append(d)
    return out


async def count(sink: SQLSink, table: sa.Table) -> int:
    assert sink.engine is not None
    async with sink.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one())


async def raw_logs(sink: SQLSink, *names: str) -> list[tuple[Any, ...]]:
    assert sink.engine is not None
    table = sink.logs_table
    query = sa.select(*[table.c[n] for n in names]).order_by(table.c.id)
    async with sink.engine.connect() as conn:
        return [tuple(row) for row in (await conn.execute(query)).all()]


class TestRoundTrip:
    async def test_every_value_type(self, make_sink: Callable[..., SQLSink]) -> None:
        """
        Every value type the converter produces comes back equal, in params, data and info.
        """
        sink = make_sink(columns={"user": "string(64)", "tenant": "integer"})
        logs = [
            make_log(1, params=EVERY_VALUE, info={"user": "alice", **EVERY_VALUE}),
            make_log(2, params={"only": EVERY_VALUE}, data=EVERY_VALUE, info={"tenant": 7}),
            make_log(3, calls=0, info={}),
        ]
        await sink.write(logs)
        assert dicts(await read_all(sink)) == dicts(logs)

    async def test_info_columns_and_json_rest(self, make_sink: Callable[..., SQLSink]) -> None:
        """
        Declared info keys land in their typed columns, the others in the info JSON.
        """
        sink = make_sink(
            columns={
                "user": "string(64)",
                "tenant": "INTEGER",
                "ratio": sa.Double,
                "vip": "boolean",
                "signup": "datetime",
                "prefs": "json",
                "plan": ("plan_name", "string(16)"),
            }
        )
        info = {
            "user": "alice",
            "tenant": 42,
            "ratio": 0.25,
            "vip": True,
            "signup": "2024-05-01T12:30:00+02:00",
            "prefs": {"theme": "dark", "langs": ["en", "fr"]},
            "plan": "gold",
            "app_version": "1.4.2",
        }
        logs = [make_log(1, info=info), make_log(2, info={"user": "bob"})]
        await sink.write(logs)
        rows = await raw_logs(
            sink, "user", "tenant", "ratio", "vip", "signup", "prefs", "plan_name", "info"
        )
        user, tenant, ratio, vip, signup, prefs, plan, rest = rows[0]
        assert (user, tenant, ratio, vip, plan) == ("alice", 42, 0.25, True, "gold")
        assert signup.replace(tzinfo=None) == dt.datetime(2024, 5, 1, 10, 30)
        assert prefs == {"theme": "dark", "langs": ["en", "fr"]}
        # The exact ISO string of a datetime is kept too (the column holds UTC).
        assert rest == {"app_version": "1.4.2", "signup": "2024-05-01T12:30:00+02:00"}
        assert rows[1] == ("bob", None, None, None, None, None, None, {})
        assert dicts(await read_all(sink)) == dicts(logs)

    async def test_values_that_do_not_fit_their_column(
        self, make_sink: Callable[..., SQLSink]
    ) -> None:
        """
        A value of the wrong type or size is converted or NULL, and kept exact in the JSON.
        """
        sink = make_sink(
            columns={"user": "string(8)", "tenant": "integer", "vip": "boolean", "at": "datetime"}
        )
        info = {"user": "a name longer than 8", "tenant": "12", "vip": "yes", "at": "never"}
        none_info = {"user": None, "tenant": 2**40, "vip": 1.5}
        logs = [make_log(1, info=info), make_log(2, info=none_info)]
        await sink.write(logs)
        rows = await raw_logs(sink, "user", "tenant", "vip", "at", "info")
        assert rows[0] == (None, 12, True, None, info)
        assert rows[1] == (None, None, None, None, none_info)
        assert dicts(await read_all(sink)) == dicts(logs)

    async def test_calls_order(self, make_sink: Callable[..., SQLSink]) -> None:
        """
        Calls come back ordered by seq, with their depth, offsets and outcomes.
        """
        sink = make_sink()
        log = make_log(5, calls=60)
        await sink.write([log])
        (back,) = await read_all(sink)
        assert [c.seq for c in back.calls] == list(range(60))
        assert [c.to_dict() for c in back.calls] == [c.to_dict() for c in log.calls]

    async def test_unicode_long_strings_and_nul(self, make_sink: Callable[..., SQLSink]) -> None:
        """
        1 MB strings, NUL characters and unicode round-trip in params, data and info
        (PostgreSQL's JSONB refuses NUL: the sink escapes it there, reversibly).
        """
        sink = make_sink(columns={"user": "string(64)", "note": "text"})
        big = ("abc✓😀" * (MB // 5))[:MB]
        nul = "before\x00after"
        info = {"user": nul, "note": big, "free": nul + big}
        logs = [
            make_log(1, params={"big": big, "nul": nul}, data={"nul": nul}, info=info),
            make_log(2, function="mod.f\x00unc", tracker="t\x00", error="E: a\x00b" + big),
        ]
        await sink.write(logs)
        assert dicts(await read_all(sink)) == dicts(logs)

    async def test_long_names_are_kept_exactly(self, make_sink: Callable[..., SQLSink]) -> None:
        """
        A function name longer than its column is shortened there and read back whole.
        """
        sink = make_sink()
        long_name = "pkg." + "very_long_module_name." * 20 + "handler"
        logs = [make_log(1, function=long_name, level="L" * 40, status="s" * 20)]
        await sink.write(logs)
        assert sink.engine is not None
        async with sink.engine.connect() as conn:
            stored = (await conn.execute(sa.select(sink.calls_table.c.function))).scalars().all()
        assert all(long_name.startswith(s) and len(s) == 255 for s in stored)
        assert dicts(await read_all(sink)) == dicts(logs)

    async def test_incomplete_logs(self, make_sink: Callable[..., SQLSink]) -> None:
        """
        Logs written incomplete at shutdown (calls still running) round-trip as such.
        """
        sink = make_sink()
        log = make_log(1, complete=False, status="running", error=None)
        log.dropped_calls = 3
        await sink.write([log])
        (back,) = await read_all(sink)
        assert back.complete is False
        assert back.dropped_calls == 3
        assert back.to_dict() == log.to_dict()

    async def test_probed_logs(self, make_sink: Callable[..., SQLSink]) -> None:
        """
        Logs recorded by real probes (info, data, an error, redaction) round-trip.
        """
        tr = asynctrack.get_tracker("tests.sql")

        @tr.probe
        async def charge(amount: float, card: str) -> None:
            raise ValueError("declined")

        @tr.probe
        async def checkout(cart_id: int, password: str) -> None:
            asynctrack.add_info("user", "alice")
            asynctrack.add_data("total", 99.5)
            try:
                await charge(99.5, "4111")
            except ValueError:
                pass

        with capture() as logs:
            for i in range(5):
                await checkout(i, "secret")
        sink = make_sink(columns={"user": "string(64)"})
        await sink.write(logs)
        back = await read_all(sink)
        assert dicts(back) == dicts(sorted(logs, key=lambda log: log.id))
        assert back[0].calls[0].params["password"] == "[REDACTED]"

    async def test_filters(self, make_sink: Callable[..., SQLSink]) -> None:
        """
        read_logs filters by time, ids and count, always in id order, across pages.
        """
        sink = make_sink()
        logs = [make_log(n, calls=1) for n in range(1, 1201)]
        await sink.write(logs)
        everything = await read_all(sink)
        assert [log.id for log in everything] == [log.id for log in logs]
        t0 = logs[0].started_at
        window = await read_all(
            sink, since=t0 + dt.timedelta(seconds=10), until=t0 + dt.timedelta(seconds=20)
        )
        assert [log.id for log in window] == [log.id for log in logs[10:20]]
        naive = (t0 + dt.timedelta(seconds=1195)).replace(tzinfo=None).isoformat()
        assert len(await read_all(sink, since=naive)) == 5
        ids = [logs[700].id, logs[3].id, "missing"]
        assert [log.id for log in await read_all(sink, ids=ids)] == [logs[3].id, logs[700].id]
        limited = await read_all(sink, limit=600)
        assert [log.id for log in limited] == [log.id for log in logs[:600]]
        with pytest.raises(ValueError, match="limit"):
            await read_all(sink, limit=-1)
        with pytest.raises(ValueError, match="since"):
            await read_all(sink, since="yesterday")


class TestIdempotence:
    async def test_rewriting_a_batch_creates_no_duplicates(
        self, make_sink: Callable[..., SQLSink]
    ) -> None:
        """
        A replayed batch, whole or overlapping a new one, leaves each row once.
        """
        sink = make_sink(columns={"user": "string(64)"})
        first = [make_log(n, info={"user": f"u{n}"}) for n in range(1, 101)]
        await sink.write(first)
        await sink.write(first)
        second = first[50:] + [make_log(n) for n in range(101, 151)]
        await sink.write(second)
        await sink.write([*second, second[0]])  # a duplicate inside one batch too
        assert await count(sink, sink.logs_table) == 150
        assert await count(sink, sink.calls_table) == 450
        expected = dicts(first + second[50:])
        assert dicts(await read_all(sink)) == expected

    async def test_a_second_sink_on_the_same_tables(
        self, make_sink: Callable[..., SQLSink]
    ) -> None:
        """
        Two sinks (two processes' worth) on one set of tables share it without duplicates.
        """
        one, two = make_sink(), make_sink()
        logs = [make_log(n) for n in range(1, 21)]
        await one.write(logs[:15])
        await two.write(logs[5:])
        assert await count(one, one.logs_table) == 20
        assert await count(two, two.calls_table) == 60


def own_models(prefix: str) -> tuple[type[Any], type[Any]]:
    """
    A user's own models for logs and calls, with an extra column each.
    """

    class Base(DeclarativeBase):
        pass

    class MyLog(Base):
        __tablename__ = f"{prefix}activity"
        id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
        parent_id: Mapped[str | None] = mapped_column(sa.String(32))
        started_at: Mapped[dt.datetime] = mapped_column(
            sa.DateTime(timezone=True).with_variant(
                sa.dialects.mysql.DATETIME(fsp=6), "mysql", "mariadb"
            )
        )
        duration_us: Mapped[int] = mapped_column(sa.BigInteger)
        complete: Mapped[bool] = mapped_column(sa.Boolean)
        dropped_calls: Mapped[int] = mapped_column(sa.Integer, default=0)
        info: Mapped[Any] = mapped_column(sa.JSON)
        user_name: Mapped[str | None] = mapped_column(sa.String(64), index=True)
        tenant_id: Mapped[int | None] = mapped_column(sa.Integer)
        note: Mapped[str | None] = mapped_column(sa.String(20), default="none")

    class MyCall(Base):
        __tablename__ = f"{prefix}activity_calls"
        pk: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
        log_id: Mapped[str] = mapped_column(sa.String(32))
        seq: Mapped[int] = mapped_column(sa.Integer)
        depth: Mapped[int] = mapped_column(sa.Integer)
        function: Mapped[str] = mapped_column(sa.String(255))
        tracker: Mapped[str] = mapped_column(sa.String(255))
        level: Mapped[str] = mapped_column(sa.String(16))
        params: Mapped[Any] = mapped_column(sa.JSON)
        data: Mapped[Any] = mapped_column(sa.JSON)
        offset_us: Mapped[int] = mapped_column(sa.BigInteger)
        duration_us: Mapped[int] = mapped_column(sa.BigInteger)
        status: Mapped[str] = mapped_column(sa.String(16))
        error: Mapped[str | None] = mapped_column(
            sa.Text().with_variant(sa.dialects.mysql.LONGTEXT(), "mysql", "mariadb")
        )
        __table_args__ = (sa.UniqueConstraint("log_id", "seq"),)

    return MyLog, MyCall


def table(name: str, *columns: sa.Column[Any], **kw: Any) -> sa.Table:
    return sa.Table(name, sa.MetaData(), *columns, **kw)


def log_columns(**replace: sa.Column[Any] | None) -> list[sa.Column[Any]]:
    """
    The fixed logs columns, with some replaced (or removed with None).
    """
    columns: dict[str, sa.Column[Any]] = {
        "id": sa.Column("id", sa.String(32), primary_key=True),
        "parent_id": sa.Column("parent_id", sa.String(32)),
        "started_at": sa.Column("started_at", sa.DateTime(timezone=True)),
        "duration_us": sa.Column("duration_us", sa.BigInteger),
        "complete": sa.Column("complete", sa.Boolean),
        "dropped_calls": sa.Column("dropped_calls", sa.Integer),
        "info": sa.Column("info", sa.JSON),
    }
    for name, column in replace.items():
        if column is None:
            del columns[name]
        else:
            columns[name] = column
    return list(columns.values())


class TestOwnTables:
    async def test_own_tables_round_trip(
        self, make_sink: Callable[..., SQLSink], table_prefix: str
    ) -> None:
        """
        The user's own models serve as tables; info keys map onto their columns. Tables
        without the columns added in 0.2 are written without those fields.
        """
        MyLog, MyCall = own_models(table_prefix)
        sink = make_sink(
            logs_table=MyLog.__table__,
            calls_table=MyCall.__table__,
            columns={"user": "user_name", "tenant": "tenant_id"},
        )
        logs = [
            make_log(1, info={"user": "alice", "tenant": 3, "other": [1]}),
            make_log(2, info={"tenant": "x"}),
        ]
        await sink.write(logs)
        await sink.write(logs)
        assert sink.engine is not None
        async with sink.engine.connect() as conn:
            query = sa.select(MyLog.user_name, MyLog.tenant_id, MyLog.note).order_by(MyLog.id)
            rows = [tuple(r) for r in (await conn.execute(query)).all()]
        assert rows == [("alice", 3, "none"), (None, None, "none")]
        assert await count(sink, MyCall.__table__) == 6
        assert dicts(await read_all(sink)) == without_trace_fields(dicts(logs))
        assert sink.name.startswith("sql-")

    def test_missing_required_column(self) -> None:
        """
        An own logs table without a required column is refused, naming table and column.
        """
        logs = table("mylog", *log_columns(complete=None))
        with pytest.raises(ConfigError, match=r"table 'mylog' has no column 'complete'"):
            SQLSink("sqlite+aiosqlite:///x.db", logs_table=logs)

    def test_wrong_column_type(self) -> None:
        """
        A fixed column of the wrong type is refused, naming table, column and expectation.
        """
        logs = table("mylog", *log_columns(started_at=sa.Column("started_at", sa.String(40))))
        with pytest.raises(
            ConfigError, match=r"table 'mylog', column 'started_at' has type .*DATETIME"
        ):
            SQLSink("sqlite+aiosqlite:///x.db", logs_table=logs)
        short = table("mylog2", *log_columns(id=sa.Column("id", sa.String(16), primary_key=True)))
        with pytest.raises(ConfigError, match=r"column 'id' .* at least 32 characters"):
            SQLSink("sqlite+aiosqlite:///x.db", logs_table=short)

    def test_unknown_info_column(self) -> None:
        """
        An info key mapped to a column the table lacks is refused, naming both.
        """
        logs = table("mylog", *log_columns(), sa.Column("user_name", sa.String(64)))
        with pytest.raises(
            ConfigError, match=r"table 'mylog' has no column 'username' for info key 'user'"
        ):
            SQLSink("sqlite+aiosqlite:///x.db", logs_table=logs, columns={"user": "username"})

    def test_info_column_with_unsupported_type(self) -> None:
        """
        An info key mapped to a column of an unusable type (binary) is refused.
        """
        logs = table("mylog", *log_columns(), sa.Column("avatar", sa.LargeBinary))
        with pytest.raises(
            ConfigError,
            match=r"table 'mylog', column 'avatar' for info key 'pic' has unsupported type",
        ):
            SQLSink("sqlite+aiosqlite:///x.db", logs_table=logs, columns={"pic": "avatar"})

    def test_type_instead_of_column_name(self) -> None:
        """
        With own tables, columns maps keys to column names: a type there is refused.
        """
        logs = table("mylog", *log_columns())
        with pytest.raises(ConfigError, match=r"maps info keys to column names of 'mylog'"):
            SQLSink("sqlite+aiosqlite:///x.db", logs_table=logs, columns={"user": sa.String(9)})

    def test_key_on_a_fixed_column(self) -> None:
        """
        An info key cannot be mapped onto a fixed column such as ``id``.
        """
        logs = table("mylog", *log_columns())
        with pytest.raises(ConfigError, match=r"column 'id' is a fixed column"):
            SQLSink("sqlite+aiosqlite:///x.db", logs_table=logs, columns={"user": "id"})

    def test_table_without_unique_key(self) -> None:
        """
        A calls table without a key on (log_id, seq) is refused: replays would duplicate.
        """
        calls = table(
            "mycalls",
            sa.Column("pk", sa.Integer, primary_key=True),
            *[
                sa.Column(name, sa.String(255) if kind == "string" else sa.BigInteger)
                for name, kind in [
                    ("log_id", "string"),
                    ("seq", "int"),
                    ("depth", "int"),
                    ("function", "string"),
                    ("tracker", "string"),
                    ("level", "string"),
                    ("offset_us", "int"),
                    ("duration_us", "int"),
                    ("status", "string"),
                ]
            ],
            sa.Column("params", sa.JSON),
            sa.Column("data", sa.JSON),
            sa.Column("error", sa.Text),
        )
        with pytest.raises(ConfigError, match=r"unique constraint on \(log_id, seq\)"):
            SQLSink("sqlite+aiosqlite:///x.db", calls_table=calls)

    def test_not_null_column_the_sink_does_not_write(self) -> None:
        """
        An extra NOT NULL column without a default would fail every insert: refused.
        """
        logs = table("mylog", *log_columns(), sa.Column("region", sa.String(8), nullable=False))
        with pytest.raises(ConfigError, match=r"column 'region' is NOT NULL without a default"):
            SQLSink("sqlite+aiosqlite:///x.db", logs_table=logs)

    def test_not_a_table(self) -> None:
        """
        logs_table must be a Table (a model class is a common slip).
        """
        MyLog, _ = own_models("slip_")
        with pytest.raises(ConfigError, match=r"MyModel.__table__"):
            SQLSink("sqlite+aiosqlite:///x.db", logs_table=MyLog)  # type: ignore[arg-type]

    async def test_database_table_lacks_a_configured_column(
        self, make_sink: Callable[..., SQLSink]
    ) -> None:
        """
        Tables created by an older configuration are checked at open(), naming the key.
        """
        await make_sink().open()
        sink = make_sink(columns={"user": "string(64)"})
        with pytest.raises(ConfigError, match=r"has no column 'user' for info key 'user'"):
            await sink.open()
        assert sink.engine is None

    async def test_database_column_of_the_wrong_type(
        self, make_sink: Callable[..., SQLSink]
    ) -> None:
        """
        A column whose type in the database does not fit is refused at open().
        """
        await make_sink(columns={"user": "integer"}).open()
        sink = make_sink(columns={"user": "datetime"})
        with pytest.raises(ConfigError, match=r"column 'user' for info key 'user' has type"):
            await sink.open()

    async def test_missing_tables_without_create(self, make_sink: Callable[..., SQLSink]) -> None:
        """
        create_tables=False and no tables: a ConfigError at open(), not at the first insert.
        """
        sink = make_sink(create_tables=False)
        with pytest.raises(ConfigError, match=r"does not exist \(create_tables=False\)"):
            await sink.open()


class TestConfiguration:
    @pytest.mark.parametrize(
        ("options", "message"),
        [
            pytest.param({"table_prefix": HOSTILE}, r"not a valid identifier", id="prefix"),
            pytest.param({"table_prefix": 3}, r"table_prefix=...\) must be a str", id="prefix"),
            pytest.param({"columns": {HOSTILE: "string"}}, r"info key .* not a valid", id="key"),
            pytest.param({"columns": {"": "string"}}, r"info key '' is not a valid", id="empty"),
            pytest.param(
                {"columns": {"user": (HOSTILE, "string")}}, r"column for info key", id="column"
            ),
            pytest.param({"columns": {"user": "varchar"}}, r"unknown column type", id="type"),
            pytest.param({"columns": {"user": "string(0)"}}, r"string length", id="length"),
            pytest.param({"columns": {"u": sa.LargeBinary}}, r"unsupported column", id="binary"),
            pytest.param({"columns": {"u": 3}}, r"expected a column type", id="int"),
            pytest.param({"columns": ["user"]}, r"must be a mapping", id="list"),
            pytest.param(
                {"columns": {"a": ("x", "string"), "b": ("X", "integer")}},
                r"both map to column",
                id="twice",
            ),
            pytest.param({"columns": {"__asynctrack__": "json"}}, r"reserved", id="reserved"),
            pytest.param({"pool_size": 0}, r"pool_size", id="pool"),
            pytest.param({"echo": "yes"}, r"echo", id="echo"),
            pytest.param({"busy_timeout": -1}, r"busy_timeout", id="busy"),
            pytest.param({"name": "a/b"}, r"name", id="name"),
        ],
    )
    def test_bad_options(self, options: dict[str, Any], message: str) -> None:
        """
        Bad options are ConfigErrors at construction, naming the option or key.
        """
        with pytest.raises(ConfigError, match=message):
            SQLSink("sqlite+aiosqlite:///x.db", **options)

    def test_unknown_type_lists_the_accepted_ones(self) -> None:
        """
        An unknown type name names the key and lists every accepted type.
        """
        with pytest.raises(ConfigError) as caught:
            SQLSink(columns={"tenant": "number"})
        message = str(caught.value)
        assert "'tenant'" in message
        for name in ("string(N)", "text", "integer", "bigint", "float", "boolean", "datetime"):
            assert name in message

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            pytest.param("not a url", r"cannot parse the URL", id="garbage"),
            pytest.param("oracle://u:pw@h/db", r"unsupported database 'oracle'", id="oracle"),
            pytest.param("sqlite+pysqlite:///x.db", r"is not async", id="sync"),
            pytest.param("postgresql+nodriver://h/db", r"unknown driver", id="unknown"),
            pytest.param(42, r"must be a str or URL", id="type"),
        ],
    )
    def test_bad_urls(self, url: Any, message: str) -> None:
        """
        A URL the sink cannot use is a ConfigError at construction.
        """
        with pytest.raises(ConfigError, match=message):
            SQLSink(url)

    def test_url_without_driver_gets_the_async_one(self) -> None:
        """
        ``postgresql://`` and ``sqlite://`` get asyncpg and aiosqlite.
        """
        assert SQLSink("postgresql://u@h/db").url == "postgresql+asyncpg://u@h/db"
        assert SQLSink("sqlite:///t.db").url == "sqlite+aiosqlite:///t.db"
        assert SQLSink("mysql://u@h/db").url == "mysql+asyncmy://u@h/db"

    def test_name_is_stable_and_hides_the_password(self) -> None:
        """
        The name depends on URL (without password) and tables, is filename-safe and secret-free.
        """
        url = "postgresql+asyncpg://app:s3cr3t-pw@db.example:5432/prod"
        a, b = SQLSink(url), SQLSink(url.replace("s3cr3t-pw", "rotated"))
        c = SQLSink(url, table_prefix="other_")
        assert a.name == b.name != c.name
        assert a.name.startswith("sql-postgresql-")
        assert all(ch.isalnum() or ch in "-_." for ch in a.name)
        for text in (a.name, repr(a), a.url):
            assert "s3cr3t" not in text
        assert "***" in repr(a)
        assert SQLSink(url, name="main-db").name == "main-db"

    async def test_connection_errors_hide_the_password(self, postgres_url: str) -> None:
        """
        A connection failure raises (for the pipeline to retry) without the password.
        """
        url = sa.make_url(postgres_url).set(password="s3cr3t-pw", port=1)
        sink = SQLSink(url, connect_timeout=2)
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the driver's error type
            await sink.open()
        assert "s3cr3t" not in str(caught.value)
        assert "s3cr3t" not in repr(caught.value)
        assert sink.engine is None

    def test_default_tables_schema(self) -> None:
        """
        default_tables() builds the documented schema that the statistics command reads.
        """
        logs, calls = default_tables(sa.MetaData(), "track_", {"user": "string(64)"})
        assert logs.name == "track_logs"
        assert calls.name == "track_calls"
        assert list(logs.c.keys()) == [
            "id",
            "parent_id",
            "started_at",
            "duration_us",
            "complete",
            "dropped_calls",
            "user",
            "info",
            "trace_id",
            "parent_seq",
            "remote_parent",
        ]
        assert list(calls.c.keys()) == [
            "log_id",
            "seq",
            "depth",
            "function",
            "tracker",
            "level",
            "params",
            "data",
            "offset_us",
            "duration_us",
            "status",
            "error",
            "parent_seq",
            "traceback",
        ]
        assert [c.name for c in logs.primary_key] == ["id"]
        assert [c.name for c in calls.primary_key] == ["log_id", "seq"]
        indexed = {c.name for index in logs.indexes for c in index.columns}
        assert indexed == {"started_at", "user", "trace_id"}
        assert {c.name for index in calls.indexes for c in index.columns} == {"function"}

    def test_import_loads_no_sqlalchemy(self) -> None:
        """
        ``import asynctrack`` does not import SQLAlchemy; using SQLSink does.
        """
        code = (
            "import sys, asynctrack; assert 'sqlalchemy' not in sys.modules; "
            "asynctrack.SQLSink; assert 'sqlalchemy' in sys.modules"
        )
        env = {**os.environ, "PYTHONPATH": SRC}
        subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


class TestHostileInput:
    async def test_hostile_keys_and_values_are_stored(
        self, make_sink: Callable[..., SQLSink]
    ) -> None:
        """
        Quotes, SQL, NUL and 1 MB keys and values are stored as data, never executed.
        """
        sink = make_sink(columns={"user": "string(64)"})
        hostile = {
            HOSTILE: HOSTILE,
            "it's": "'; DROP TABLE track_calls; --",
            "nul\x00key": "nul\x00value",
            "big": "x" * MB,
            "k" * 1000: "long key",
            "user": "Robert'); DROP TABLE Students;--",
            "__asynctrack__": {"not": "ours"},
        }
        logs = [
            make_log(1, info=hostile, params=hostile, data=hostile, function=HOSTILE),
            make_log(2, info={"user": HOSTILE}),
        ]
        await sink.write(logs)
        assert dicts(await read_all(sink)) == dicts(logs)
        assert await count(sink, sink.logs_table) == 2

    async def test_invalid_unicode_is_replaced_not_fatal(
        self, make_sink: Callable[..., SQLSink]
    ) -> None:
        """
        Lone surrogates (not storable as UTF-8) become U+FFFD instead of failing the batch.
        """
        sink = make_sink(columns={"user": "string(64)"})
        bad = "a\udc80b"
        log = make_log(1, info={"user": bad, "k\ud800": bad}, params={"p": bad}, error=bad)
        await sink.write([log])
        (back,) = await read_all(sink)
        fixed = "a\ufffdb"
        assert back.info == {"user": fixed, "k\ufffd": fixed}
        assert back.calls[0].params == {"p": fixed}
        assert back.calls[0].error == fixed

    async def test_no_value_ever_appears_in_sql_text(
        self, make_sink: Callable[..., SQLSink], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        Every statement the sink runs is free of the values written (all are parameters).
        """
        marker = "MARKER'\"; DROP TABLE x;--"
        statements: list[str] = []
        parameters: list[str] = []
        copied: list[str] = []

        sink = make_sink(columns={"user": "string(64)"})
        await sink.open()
        assert sink.engine is not None

        @event.listens_for(sink.engine.sync_engine, "before_cursor_execute")
        def record(conn: Any, cursor: Any, statement: str, params: Any, *args: Any) -> None:
            statements.append(statement)
            parameters.append(repr(params))

        def on_query(query: Any) -> None:
            statements.append(query.query)
            parameters.append(repr(query.args))

        logged: set[int] = set()

        @event.listens_for(sink.engine.sync_engine, "checkout")
        def add_logger(dbapi_connection: Any, record: Any, proxy: Any) -> None:
            driver = dbapi_connection.driver_connection
            if hasattr(driver, "add_query_logger") and id(driver) not in logged:
                driver.add_query_logger(on_query)
                logged.add(id(driver))

        if sink.engine.dialect.name == "postgresql":
            import asyncpg

            original = asyncpg.Connection.copy_records_to_table

            async def copy(self: Any, table_name: str, **kw: Any) -> Any:
                copied.append(repr((table_name, kw.get("schema_name"), kw.get("columns"))))
                parameters.append(repr(kw.get("records")))
                return await original(self, table_name, **kw)

            monkeypatch.setattr(asyncpg.Connection, "copy_records_to_table", copy)

        info = {"user": marker, marker: marker, "other": marker}
        logs = [make_log(n, info=info, params={"p": marker}, error=marker) for n in range(3)]
        await sink.write(logs)
        await sink.write(logs)  # a replay: the INSERT ... ON CONFLICT path on PostgreSQL
        await read_all(sink, ids=[marker])
        assert statements
        assert not [s for s in statements + copied if "MARKER" in s]
        assert any("MARKER" in p for p in parameters)


WRITER = textwrap.dedent(
    """
    import asyncio, datetime as dt, sys, time
    import asynctrack
    from asynctrack import Call, Log

    async def main(url, first, count, start_at):
        sink = asynctrack.SQLSink(url, table_prefix="mp_", columns={"worker": "integer"})
        await sink.open()
        while time.time() < start_at:
            await asyncio.sleep(0.01)
        for base in range(first, first + count, 10):
            logs = [
                Log(id=f"{i:032x}", started_at=dt.datetime.now(dt.UTC), info={"worker": first},
                    calls=[Call(seq=s, depth=s, function="f", tracker="t") for s in range(2)])
                for i in range(base, base + 10)
            ]
            await sink.write(logs)
        await sink.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
    """
)


class TestSeveralProcesses:
    @pytest.mark.slow
    def test_two_processes_write_one_sqlite_file(self, tmp_path: Path) -> None:
        """
        Two processes writing one SQLite file at once: every row, no "database is locked".
        """
        url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
        script = tmp_path / "writer.py"
        script.write_text(WRITER)
        env = {**os.environ, "PYTHONPATH": SRC}
        start_at = str(time.time() + 3.0)
        per_process = 1500
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), url, str(first), str(per_process), start_at],
                stderr=subprocess.PIPE,
                env=env,
            )
            for first in (0, 1_000_000)
        ]
        errors = [p.communicate(timeout=100)[1].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errors
        assert not any("locked" in e for e in errors)

        async def check() -> tuple[int, int, list[tuple[Any, ...]]]:
            sink = SQLSink(url, table_prefix="mp_", columns={"worker": "integer"})
            async with sink:
                logs = await count(sink, sink.logs_table)
                calls = await count(sink, sink.calls_table)
                return logs, calls, await raw_logs(sink, "worker")

        logs, calls, workers = asyncio.run(check())
        assert (logs, calls) == (2 * per_process, 4 * per_process)
        assert {w for (w,) in workers} == {0, 1_000_000}


class TestLifecycle:
    async def test_refused_log_does_not_hold_back_the_others(
        self, make_sink: Callable[..., SQLSink]
    ) -> None:
        """
        A log the database refuses is isolated: the others are written, then write raises.
        """
        sink = make_sink()
        bad = make_log(2)
        bad._t1 = 2**70 * 1000  # duration_us beyond BIGINT
        long_id = Log(id="f" * 40, started_at=dt.datetime.now(UTC))
        logs = [make_log(1), bad, make_log(3), long_id, make_log(4)]
        with pytest.raises(Exception) as caught:  # noqa: PT011 - the driver's error type
            await sink.write(logs)
        notes = "\n".join(getattr(caught.value, "__notes__", []))
        assert "refused 2 of 5 logs" in notes
        assert bad.id in notes
        expected = [logs[0].id, logs[2].id, logs[4].id]
        assert [log.id for log in await read_all(sink)] == expected

    async def test_close_and_reopen(self, make_sink: Callable[..., SQLSink]) -> None:
        """
        close() disposes of the engine; the next write opens a new one.
        """
        sink = make_sink()
        await sink.write([make_log(1)])
        await sink.close()
        assert sink.engine is None
        await sink.write([make_log(2)])
        assert sink.engine is not None
        assert len(await read_all(sink)) == 2

    async def test_after_fork_forgets_the_engine(self, make_sink: Callable[..., SQLSink]) -> None:
        """
        after_fork() drops the engine without closing it; open() makes a fresh one.
        """
        sink = make_sink()
        await sink.write([make_log(1)])
        inherited = sink.engine
        assert inherited is not None
        sink.after_fork()
        assert sink.engine is None
        async with inherited.connect() as conn:  # the "parent's" engine still works
            assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
        await sink.write([make_log(2)])
        assert sink.engine is not None
        assert sink.engine is not inherited
        await inherited.dispose()

    async def test_reconnects_after_connections_are_killed(
        self, postgres_url: str, table_prefix: str
    ) -> None:
        """
        When the server drops the sink's connections, the next write reconnects.
        """
        sink = SQLSink(postgres_url, table_prefix=table_prefix, pool_size=1)
        try:
            await sink.write([make_log(1)])
            assert sink.engine is not None
            async with sink.engine.connect() as conn:  # the pool's only connection
                pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
            killer = create_async_engine(postgres_url)
            try:
                async with killer.connect() as conn:
                    await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            finally:
                await killer.dispose()
            await sink.write([make_log(2)])
            assert len(await read_all(sink)) == 2
        finally:
            await sink.close()
            await _drop_tables(postgres_url, table_prefix)
