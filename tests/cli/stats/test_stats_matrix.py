"""
The same numbers on every backend (#15): the same logs — hostile info keys and values
included — written to a JSON-lines file, SQLite, PostgreSQL and MariaDB give identical
``stats --format json`` and ``show --format json`` output.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import Call, Log
from asynctrack._core.encode import encode_logs
from asynctrack.cli.commands import main
from asynctrack.cli.stats.model import json_key_text, key_text

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
QUOTED = 'we"ird\\key'

#: Values that backends used to merge, cut, fail on or render differently.
HOSTILE: list[Any] = [
    "alice",
    "Alice",
    "alice ",
    "eve\x00admin",
    "eve",
    "é",
    "😀",
    "line\u2028break",
    "",
    42,
    "42",
    True,
    False,
    1,
    0,
    None,
    2**64 + 1,
    2**64 + 2,
    -(2**70),
    0.1 + 0.2,
    0.3,
    1e20,
    1.0,
    {"b": 1, "a": [1, 2.5]},
    {"a": [1, 2.5], "b": 1},
    [1, "two", None],
    "x" * 100,
]
#: Function names for the glob test: ``?`` must match one character, not one byte.
FUNCTIONS = ["café.view", "cafe.view", "caf😀.view", "cafés.view", "shop.x_y", "shop.x%y"]


def make_logs() -> list[Log]:
    logs = []
    for i in range(len(HOSTILE) * 2):
        value = HOSTILE[i % len(HOSTILE)]
        other = HOSTILE[(i * 7 + 3) % len(HOSTILE)]
        info: dict[str, Any] = {"app": "1.0"}
        if i % 5 != 4:  # some logs lack the keys
            info["user"] = value
            info["meta"] = other
            info["vip"] = [True, False, 1, 0, "yes", None][i % 6]
            info["n"] = [7, "7", 2**64 + 1, -3, 7.0][i % 5]
            info[QUOTED] = other
            info["üser"] = value
        calls = [
            Call(
                seq=seq,
                depth=seq,
                function=FUNCTIONS[(i + seq) % len(FUNCTIONS)],
                tracker="shop",
                params={"big": 2**64 + i, "f": 0.1 * i, "s": "a\x00b"} if seq == 0 else {},
                data={"rows": seq, "nested": {"z": 1, "a": [True, None]}},
                offset_us=seq * 10,
                duration_us=100 + 37 * i + seq,
                status="error" if (i + seq) % 4 == 0 else "ok",
                error="ValueError: bad" if (i + seq) % 4 == 0 else None,
            )
            for seq in range(1 + i % 3)
        ]
        logs.append(
            Log(
                id=f"{i + 1:032x}",
                started_at=T0 + dt.timedelta(seconds=11 * i),
                duration_us=500 + i,
                info=info,
                calls=calls,
            )
        )
    return logs


LOGS = make_logs()
COLUMNS = {"user": "string(64)", "vip": "boolean", "meta": "json", "n": "integer"}


async def _fill(url: str, prefix: str, columns: dict[str, str] | None) -> None:
    sink = asynctrack.SQLSink(url, table_prefix=prefix, columns=columns)
    await sink.open()
    try:
        await sink.write(LOGS)
    finally:
        await sink.close()


async def _drop(url: str, prefix: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for table in ("calls", "logs"):
                await conn.execute(text(f"DROP TABLE IF EXISTS {prefix}{table}"))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[str]]]:
    """
    The same logs in a JSON-lines file and, with and without info columns, in SQLite,
    PostgreSQL and MariaDB (servers that are not reachable are left out).
    """
    from tests.conftest import MYSQL_URL, POSTGRES_URL, REQUIRE_SERVERS, _reachable

    tmp = tmp_path_factory.mktemp("matrix")
    path = tmp / "track.jsonl"
    path.write_bytes(encode_logs(LOGS))
    out: dict[str, list[str]] = {"file": [str(path)]}
    made: list[tuple[str, str]] = []
    servers = {"sqlite": f"sqlite+aiosqlite:///{tmp / 'track.db'}"}
    for name, url in (("postgres", POSTGRES_URL), ("mariadb", MYSQL_URL)):
        if _reachable(url):
            servers[name] = url
        elif REQUIRE_SERVERS:
            pytest.fail(f"{name} at {url} is not reachable")
    try:
        for name, url in servers.items():
            for label, columns in (("columns", COLUMNS), ("json", None)):
                prefix = f"m{label[0]}{abs(hash((name, str(tmp)))) % 10**8}_"
                asyncio.run(_fill(url, prefix, columns))
                made.append((url, prefix))
                out[f"{name}-{label}"] = [url, "--table-prefix", prefix]
        yield out
    finally:
        for url, prefix in made:
            if not url.startswith("sqlite"):
                asyncio.run(_drop(url, prefix))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def canonical_lines(text: str) -> list[str]:
    """
    JSON lines re-rendered with sorted keys: info keys kept in their own SQL columns
    come back in another order; values (ints vs floats vs booleans) must not differ.
    """
    return [json.dumps(json.loads(line), sort_keys=True) for line in text.splitlines()]


def stats_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    report = dict(json.loads(run([*argv, "--format", "json"], capsys)))
    report.pop("source", None)
    report.pop("skipped_lines", None)
    return report


class TestKeyText:
    @given(
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(),
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
            ),
            max_leaves=12,
        )
    )
    @settings(max_examples=300, deadline=None)
    def test_json_text_and_value_give_the_same_key(self, value: Any) -> None:
        """
        A value and any JSON rendering of it (orjson's, the stdlib's, with or without
        spaces, keys in any order) have the same canonical text; distinct values of
        distinct types (``1``, ``1.0``, ``true``) do not.
        """
        text = key_text(value)
        for rendered in (
            json.dumps(value),
            json.dumps(value, indent=1, ensure_ascii=False),
            json.dumps(value, sort_keys=True, separators=(",", ":")),
        ):
            assert json_key_text(rendered) == text
        if isinstance(value, bool):
            assert text in ("true", "false")
        elif isinstance(value, (int, float)):
            assert text == json.dumps(value)

    def test_distinct_values_stay_apart(self) -> None:
        """
        Ints beyond 64 bits, close floats and booleans keep distinct texts.
        """
        values = [2**64 + 1, 2**64 + 2, 0.1 + 0.2, 0.3, True, 1, 1.0, "eve\x00admin", "eve"]
        texts = [key_text(v) for v in values]
        assert texts[:6] == ["18446744073709551617", "18446744073709551618",
                             "0.30000000000000004", "0.3", "true", "1"]  # fmt: skip
        assert len(set(texts)) == len(texts)


@pytest.mark.slow
class TestFourBackends:
    @pytest.mark.parametrize(
        "options",
        [
            pytest.param([], id="functions"),
            pytest.param(["--by", "user"], id="by-user"),
            pytest.param(["--by", "meta"], id="by-json-column"),
            pytest.param(["--by", "vip"], id="by-bool-column"),
            pytest.param(["--by", "n"], id="by-int-column"),
            pytest.param(["--by", QUOTED], id="by-quoted-key"),
            pytest.param(["--by", "üser"], id="by-unicode-key"),
            pytest.param(["--by", "absent"], id="by-absent-key"),
            pytest.param(["--function", "caf?.view"], id="glob-one-character"),
            pytest.param(["--function", "shop.x_y", "--function", "*%*"], id="like-escapes"),
        ],
    )
    def test_stats_are_identical(
        self,
        sources: dict[str, list[str]],
        options: list[str],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """
        ``stats --format json`` gives the same report from every backend, with and
        without info columns.
        """
        reports = {
            name: stats_of(["stats", *argv, *options], capsys) for name, argv in sources.items()
        }
        expected = reports.pop("file")
        if "--by" in options:
            assert expected["groups"], expected
        for name, report in reports.items():
            assert report == expected, name

    def test_groups_keep_hostile_values_apart(
        self, sources: dict[str, list[str]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        The file's groups are the canonical texts of the values: NUL kept, big ints
        exact, floats and booleans apart, equal objects merged.
        """
        report = stats_of(["stats", *sources["file"], "--by", "user"], capsys)
        values = {group["value"] for group in report["groups"]}
        assert {"eve\x00admin", "eve", "18446744073709551617", "18446744073709551618"} <= values
        assert {"0.30000000000000004", "0.3", "true", "1", "1.0", "42"} <= values
        assert '{"a":[1,2.5],"b":1}' in values
        assert '{"b":1,"a":[1,2.5]}' not in values

    @pytest.mark.parametrize(
        "options",
        [
            pytest.param(["--last", "100"], id="all"),
            pytest.param(["--user", "alice", "--last", "5"], id="user"),
            pytest.param(["--user", "42"], id="numeric-user"),
            pytest.param(["--user", "true"], id="bool-user"),
            pytest.param(["--user", "18446744073709551617"], id="big-user"),
            pytest.param(["--user", "0.30000000000000004"], id="float-user"),
            pytest.param(["--user", '{"a":[1,2.5],"b":1}'], id="object-user"),
            pytest.param(["--user", "eve\x00admin"], id="nul-user"),
            pytest.param(["--id", f"{3:032x}"], id="id"),
        ],
    )
    def test_show_is_identical(
        self,
        sources: dict[str, list[str]],
        options: list[str],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """
        ``show --format json`` prints the same logs, with the same values, from every
        backend.
        """
        shown = {
            name: canonical_lines(run(["show", *argv, *options, "--format", "json"], capsys))
            for name, argv in sources.items()
        }
        expected = shown.pop("file")
        assert expected
        for name, lines in shown.items():
            assert lines == expected, name


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
key_names = st.just("user") | st.text(min_size=1, max_size=8).filter(lambda k: k != "app")


@pytest.mark.slow
class TestGeneratedValues:
    @given(
        key=key_names,
        values=st.lists(json_values, min_size=1, max_size=8),
        columns=st.booleans(),
    )
    @pytest.mark.parametrize("backend", ["sqlite", "postgres", "mariadb"])
    @settings(max_examples=10, deadline=None)
    def test_file_and_each_database_group_alike(
        self,
        tmp_path_factory: pytest.TempPathFactory,
        backend: str,
        key: str,
        values: list[Any],
        columns: bool,
    ) -> None:
        """
        For generated info keys and values (any text, ints beyond 64 bits, floats,
        nested lists and objects), ``stats --by KEY`` and ``show --user`` agree between
        the file and each database.
        """
        from tests.conftest import MYSQL_URL, POSTGRES_URL, REQUIRE_SERVERS, _reachable

        tmp = tmp_path_factory.mktemp("gen")
        if backend == "sqlite":
            urls = [f"sqlite+aiosqlite:///{tmp / 'g.db'}"]
        else:
            url = POSTGRES_URL if backend == "postgres" else MYSQL_URL
            if not _reachable(url):
                if REQUIRE_SERVERS:
                    pytest.fail(f"{backend} at {url} is not reachable")
                pytest.skip(f"{backend} is not reachable")
            urls = [url]
        logs = [
            Log(
                id=f"{i + 1:032x}",
                started_at=T0 + dt.timedelta(seconds=i),
                duration_us=10,
                info={"app": "1", key: value},
                calls=[Call(seq=0, depth=0, function="f", tracker="t", duration_us=5 + i)],
            )
            for i, value in enumerate(values)
        ]
        path = tmp / "g.jsonl"
        path.write_bytes(encode_logs(logs))
        simple = key.isascii() and key.isidentifier() and len(key) < 30
        cols = {key: "string(64)"} if columns and simple else None
        prefix = f"g{abs(hash(str(tmp))) % 10**8}_"

        async def fill(url: str) -> None:
            sink = asynctrack.SQLSink(url, table_prefix=prefix, columns=cols)
            await sink.open()
            try:
                await sink.write(logs)
            finally:
                await sink.close()

        def both(argv: list[str]) -> tuple[str, str]:
            with pytest.MonkeyPatch.context():
                import contextlib
                import io

                out = []
                for source in ([str(path)], [url, "--table-prefix", prefix]):
                    buffer = io.StringIO()
                    with (
                        contextlib.redirect_stdout(buffer),
                        contextlib.redirect_stderr(io.StringIO()),
                    ):
                        assert main([argv[0], *source, *argv[1:]]) == 0
                    out.append(buffer.getvalue())
                return out[0], out[1]

        for url in urls:
            asyncio.run(fill(url))
            try:
                a, b = both(["stats", "--by", key, "--format", "json"])
                left, right = json.loads(a), json.loads(b)
                for report in (left, right):
                    report.pop("source")
                assert right == left, url
                wanted = key_text(values[0])
                if wanted is not None and "\x00" not in wanted and key == "user":
                    a, b = both(["show", "--user", wanted, "--format", "json"])
                    assert canonical_lines(b) == canonical_lines(a), url
            finally:
                if not url.startswith("sqlite"):
                    asyncio.run(_drop(url, prefix))
