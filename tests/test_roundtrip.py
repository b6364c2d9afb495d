"""
No value costs a log, distinct keys stay distinct, and what is written reads back
equal: through the converter, the encoder, FileSink and SQLSink on SQLite, PostgreSQL
and MariaDB (issue #14, section 4).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import create_async_engine

import asynctrack
from asynctrack import Call, Log
from asynctrack._core.decode import decode_line
from asynctrack._core.encode import encode_logs, encode_obj, jsonable
from asynctrack._core.values import convert
from asynctrack.sinks._file import read_logs

UTC = dt.UTC
#: Integers around every limit: 64 bits (orjson), 128 bits (uuid.int), CPython's
#: 4,300-digit int-to-str limit.
EDGE_INTS = [
    2**63 - 1,
    2**64,
    -(2**64) - 1,
    uuid.UUID("d5f1c3a2-8b7e-4c1d-9f2a-3b4c5d6e7f80").int,
    2**128 - 1,
    10**4300 - 1,
    -(10**4300 - 1),
    10**4300,
    -(10**5000),
]


def edge_int(i: int) -> int:
    """
    The i-th edge integer (by index: hypothesis cannot print ints past the digit limit).
    """
    return EDGE_INTS[i]


ints = st.integers() | st.builds(edge_int, st.integers(0, len(EDGE_INTS) - 1))
# Lone surrogates included (file names decoded with surrogateescape carry them).
texts = st.text(st.characters(codec=None), max_size=12)
scalars = st.none() | st.booleans() | ints | st.floats() | texts


class Color(enum.Enum):
    RED = 1


hashables = st.recursive(
    st.none() | st.booleans() | ints | st.floats(allow_nan=False) | texts,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=4,
) | st.just(Color.RED)
#: Values as a processor may leave them in a log: keys of any hashable type.
raw_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(hashables, inner, max_size=4)
        | st.dictionaries(texts, inner, max_size=4)
    ),
    max_leaves=12,
)


def made_log(n: int, params: Any, data: Any, info: dict[Any, Any]) -> Log:
    """
    A log holding the given params, data and info (as a processor may leave them).
    """
    return Log(
        id=f"{n:032x}",
        parent_id=None,
        started_at=dt.datetime(2026, 12, 7, 3, 0, 0, n % 1_000_000, tzinfo=UTC),
        duration_us=10,
        complete=True,
        info=info,
        calls=[
            Call(
                seq=0,
                depth=0,
                function="f",
                tracker="t",
                level="DEFAULT",
                params={"v": params},
                data={"d": data},
                offset_us=0,
                duration_us=10,
                status="ok",
                error=None,
            )
        ],
    )


def key_count(value: Any) -> list[int]:
    """
    The number of keys of every dict in ``value``, depth first.
    """
    if isinstance(value, dict):
        return [len(value), *(n for v in value.values() for n in key_count(v))]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in key_count(v)]
    return []


def one_line(line: bytes) -> str:
    """
    Check that ``line`` is one strict-JSON line under both readers; return its text.
    """
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    text = line.decode("utf-8")
    assert len(text.splitlines()) == 1
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    return text


class TestEncoderLastResort:
    @settings(max_examples=300, deadline=None)
    @given(params=raw_values, data=raw_values, info=st.dictionaries(hashables, raw_values))
    @example(params=None, data=float("inf"), info={})
    @example(params=[float("nan")], data={"x": -float("inf")}, info={"i": float("inf")})
    def test_any_value_and_key_gives_one_line(self, params: Any, data: Any, info: Any) -> None:
        """
        Whatever a log holds (huge ints, NaN, lone surrogates, keys of any type), encoding
        gives exactly one strict JSON line that decodes to the same log, with the
        encoder's last-resort form of its values and one key per distinct key.
        """
        log = made_log(1, params, data, info)
        line = encode_logs([log])
        one_line(line)
        back = decode_line(line)
        assert back.id == log.id
        assert back.to_dict() == jsonable(log.to_dict())
        assert key_count(back.info) == key_count(jsonable(info))
        assert len(back.info) == len(info)

    @settings(max_examples=300, deadline=None)
    @given(value=raw_values)
    def test_converted_values_come_back_equal(self, value: Any) -> None:
        """
        A converted value is written and read back unchanged, except what no reader takes:
        ints beyond 4,300 digits become placeholders naming their size.
        """
        converted = convert({"v": value})
        back = decode_line(encode_logs([made_log(2, converted, None, {})]))
        assert back.calls[0].params == {"v": jsonable(converted)}
        assert key_count(converted) == key_count(jsonable(converted))

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param(10**5000, "<int of 16610 bits>", id="beyond-digit-limit"),
            pytest.param(10**4300 - 1, 10**4300 - 1, id="at-digit-limit"),
            pytest.param(2**128 - 1, 2**128 - 1, id="128-bit"),
            pytest.param({(1, 2): 1, (1, 3): 2, (2, 3): 3}, {"[1,2]": 1, "[1,3]": 2, "[2,3]": 3}),
            pytest.param({1: "a", "1": "b"}, {"1": "a", "1 #2": "b"}, id="int-and-str-key"),
            pytest.param(
                dict([("\ud800", 1), ("\ud801", 2)]), {"\ufffd": 1, "\ufffd #2": 2}, id="surrogates"
            ),
            pytest.param(float("nan"), "NaN", id="nan"),
            pytest.param(object, "<class 'object'>", id="object"),
        ],
    )
    def test_last_resort_examples(self, value: Any, expected: Any) -> None:
        """
        Documented members of the class: each value keeps its line, and a readable form.
        """
        assert json.loads(encode_obj({"v": value, "big": 10**5000})) == {
            "v": expected,
            "big": "<int of 16610 bits>",
        }

    def test_cycles_and_deep_nesting(self) -> None:
        """
        A processor's cyclic or 1,000-level structure becomes placeholders, not an error.
        """
        cyclic: dict[str, Any] = {"big": 10**5000}
        cyclic["self"] = cyclic
        deep: list[Any] = [10**5000]
        for _ in range(1000):
            deep = [deep]
        out = json.loads(encode_obj({"c": cyclic, "d": deep}))
        assert out["c"]["self"] == "<cycle: dict>"
        assert "too deep" in json.dumps(out["d"])


@pytest.mark.anyio
class TestProcessorsCannotLoseLogs:
    async def test_non_str_info_keys_and_huge_ints_reach_the_file(self, tmp_path: Path) -> None:
        """
        A processor and an ``extend_log`` hook adding tuple, int and None info keys, and a
        parameter beyond the digit limit: every log is written to the file and to SQLite,
        every key kept, and both read back the same.
        """

        class Extending(asynctrack.Tracker):
            def extend_log(self, log: Log) -> None:
                log.info[("tenant", 7)] = "acme"  # type: ignore[index]

        def processor(log: Log) -> Log:
            log.info[1] = "one"  # type: ignore[index]
            log.info["1"] = "text one"
            log.info[None] = 10**5000  # type: ignore[index]
            return log

        path = tmp_path / "track.jsonl"
        url = f"sqlite+aiosqlite:///{tmp_path / 'track.db'}"
        asynctrack.configure(
            sinks=[asynctrack.FileSink(path), asynctrack.SQLSink(url)],
            processors=[processor],
            tracker_class=Extending,
        )
        tr = asynctrack.get_tracker("tests.roundtrip")

        @tr.probe
        def handler(n: int) -> int:
            return n

        for _ in range(3):
            handler(10**5000)
        handler(uuid.uuid4().int)
        assert await asynctrack.flush(timeout=30)
        await asynctrack.shutdown()
        reader = asynctrack.SQLSink(url)
        try:
            stored = [log async for log in reader.read_logs()]
        finally:
            await reader.close()
        logs = list(read_logs(path))
        assert [log.to_dict() for log in stored] == [log.to_dict() for log in logs]
        assert len(logs) == 4
        for log in logs:
            assert log.info == {
                '["tenant",7]': "acme",
                "1": "one",
                "1 #2": "text one",
                "None": "<int of 16610 bits>",
            }
        assert [log.calls[0].params["n"] for log in logs[:3]] == ["<int of 16610 bits>"] * 3
        assert isinstance(logs[3].calls[0].params["n"], int)


@pytest.mark.anyio
async def test_non_finite_floats_from_a_processor_are_not_nulled(tmp_path: Path) -> None:
    """
    orjson writes NaN and infinities as null without complaint: a processor's values
    (which skip the probe's conversion) keep their documented string forms instead.
    """

    def processor(log: Log) -> Log:
        log.info["ratio"] = float("nan")
        log.info["limits"] = {"high": float("inf"), "low": [-float("inf"), 1.5]}
        return log

    path = tmp_path / "track.jsonl"
    asynctrack.configure(sinks=[asynctrack.FileSink(path)], processors=[processor])
    tr = asynctrack.get_tracker("tests.roundtrip")

    @tr.probe
    def handler(n: int) -> int:
        return n

    handler(1)
    assert await asynctrack.flush(timeout=30)
    await asynctrack.shutdown()
    (log,) = read_logs(path)
    assert log.info == {
        "ratio": "NaN",
        "limits": {"high": "Infinity", "low": ["-Infinity", 1.5]},
    }


class NaiveJSONSink(asynctrack.Sink):
    """
    A user's sink that encodes with ``json.dumps``: it refuses ints past the digit limit.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []

    @property
    def name(self) -> str:
        return "naive"

    async def write(self, logs: Sequence[Log]) -> None:
        self.lines += [json.dumps(log.to_dict()) for log in logs]


class TestDeadLetters:
    def test_a_log_refused_for_a_huge_int_is_dead_lettered(
        self, configured: Any, tmp_path: Path
    ) -> None:
        """
        A sink that cannot take an int beyond the digit limit refuses its log: the log
        goes to the dead-letter file (whose writing used to fail the same way), the
        others are written.
        """
        sink = NaiveJSONSink()
        configured(sink, retry_attempts=1, max_backoff=0.01)
        tr = asynctrack.get_tracker("tests.roundtrip.dead")

        @tr.probe
        def work(n: int) -> int:
            return 0

        for i in range(20):
            work(10**5000 if i == 7 else i)
        asynctrack.flush_sync(timeout=10)
        assert len(sink.lines) == 19
        (dead,) = tmp_path.glob("asynctrack-naive*.dead.jsonl")
        (line,) = dead.read_bytes().splitlines()
        assert decode_line(line).calls[0].params == {"n": "<int of 16610 bits>"}
        assert asynctrack.stats().dead_lettered == 1


@pytest.fixture
def anyio_backend() -> str:
    """
    The sinks' I/O runs on asyncio (the dispatcher's loop).
    """
    return "asyncio"


@pytest.mark.anyio
class TestFileSinkRoundTrip:
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(batch=st.lists(st.tuples(raw_values, raw_values), min_size=1, max_size=4))
    async def test_file_sink_reads_back_what_it_wrote(
        self, tmp_path: Path, batch: list[tuple[Any, Any]]
    ) -> None:
        """
        FileSink writes any batch of converted values, and reads back exactly the
        encoder's form of them, one log per line.
        """
        path = tmp_path / f"{uuid.uuid4().hex}.jsonl"
        logs = [
            made_log(n, convert(p), convert(d), convert({"k": p}))
            for n, (p, d) in enumerate(batch, 1)
        ]
        sink = asynctrack.FileSink(path)
        await sink.open()
        try:
            await sink.write(logs)
        finally:
            await sink.close()
        assert [log.to_dict() for log in read_logs(path)] == [
            jsonable(log.to_dict()) for log in logs
        ]


# -- SQL ---------------------------------------------------------------------------------
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


@pytest.fixture
async def sql_sink(db_url: str, table_prefix: str) -> AsyncIterator[Callable[[], Any]]:
    """
    Make SQL sinks on ``db_url`` with this test's tables; drop the tables afterwards.
    """

    def make() -> Any:
        return asynctrack.SQLSink(
            db_url, table_prefix=table_prefix, columns={"user": "string(16)", "n": "integer"}
        )

    yield make
    engine = create_async_engine(db_url)
    try:
        async with engine.begin() as conn:

            def drop(sync_conn: sa.Connection) -> None:
                metadata = sa.MetaData()
                metadata.reflect(sync_conn)
                mine = [t for t in metadata.sorted_tables if t.name.startswith(table_prefix)]
                metadata.drop_all(sync_conn, tables=mine)

            await conn.run_sync(drop)
    finally:
        await engine.dispose()


async def sql_round_trip(make: Callable[[], Any], logs: list[Log]) -> list[Log]:
    """
    Write ``logs`` with a fresh sink and read them back by id.
    """
    sink = make()
    try:
        await sink.write(logs)
        return [log async for log in sink.read_logs(ids=[log.id for log in logs])]
    finally:
        await sink.close()


@pytest.mark.anyio
class TestSQLRoundTrip:
    async def test_uuid_int_comes_back_an_int(self, sql_sink: Callable[[], Any]) -> None:
        """
        A 128-bit int (``uuid.int``) in params, data, info and an integer info column comes
        back from ``read_logs()`` as the same int, not a float, on every database.
        """
        big = uuid.UUID("d5f1c3a2-8b7e-4c1d-9f2a-3b4c5d6e7f80").int
        log = made_log(7, big, [big, -big], {"request": big, "n": big, "user": "u"})
        (back,) = await sql_round_trip(sql_sink, [log])
        assert back.to_dict() == log.to_dict()
        assert type(back.calls[0].params["v"]) is int
        assert type(back.info["n"]) is int

    async def test_keys_differing_by_lone_surrogates_stay_distinct(
        self, sql_sink: Callable[[], Any]
    ) -> None:
        """
        Keys that differ only by lone surrogates (which every database refuses) are stored
        as two keys, on every database.
        """
        keys = dict([("\ud800", 1), ("\ud801", 2)])
        log = made_log(8, keys, keys, {"k": keys})
        (back,) = await sql_round_trip(sql_sink, [log])
        assert back.to_dict() == jsonable(log.to_dict())
        assert back.calls[0].params == {"v": {"\ufffd": 1, "\ufffd #2": 2}}

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(batch=st.lists(st.tuples(raw_values, raw_values), min_size=1, max_size=3))
    async def test_sql_sink_reads_back_what_it_wrote(
        self, sql_sink: Callable[[], Any], batch: list[tuple[Any, Any]]
    ) -> None:
        """
        Any converted values in params, data, the info JSON and typed info columns read back
        from the database as the encoder's form of them.
        """
        base = uuid.uuid4().int >> 32
        logs = [
            made_log(base + n, convert(p), convert(d), convert({"k": p, "n": d, "user": p}))
            for n, (p, d) in enumerate(batch)
        ]
        back = await sql_round_trip(sql_sink, logs)
        assert [log.to_dict() for log in back] == [jsonable(log.to_dict()) for log in logs]
