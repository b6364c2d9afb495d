"""
``asynctrack stats`` and ``show``: the same logs give the same numbers from a JSON-lines
file, SQLite, PostgreSQL and MariaDB; percentiles are defined once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import Call, Log
from asynctrack._core.encode import encode_logs
from asynctrack.cli.commands import main
from asynctrack.cli.stats.percentiles import (
    EXACT_BELOW,
    PERCENTILES,
    Histogram,
    bucket_of,
    bucket_sql,
    bucket_sql_float,
    nearest_rank,
    rank_of,
)

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
FUNCTIONS = (
    "app.views.home",
    "app.views.edit",
    "app.db.query",
    "app.db.save",
    "app.a_b",  # '_' is a LIKE wildcard: must match only itself
    "app.aXb",
    "App.Upper",  # globs are case-sensitive everywhere (MariaDB collations are not)
    "app.upper",
    "app.percent%sign",
)
USERS: tuple[Any, ...] = ("alice", "bob", "carol", "Alice", "dave", 42, None)


def make_logs(n: int = 240, seed: int = 7) -> list[Log]:
    """
    Deterministic logs: durations from 0 µs to 2**41 µs, errors, users (some missing).
    """
    rnd = random.Random(seed)
    logs = []
    for i in range(n):
        calls = []
        for seq in range(rnd.randint(1, 4)):
            kind = rnd.random()
            if kind < 0.15:
                duration = rnd.randrange(0, 40)  # the exact buckets
            elif kind < 0.98:
                duration = int(rnd.lognormvariate(8, 2))
            else:
                duration = rnd.choice((2**41 + 12345, 10**10, 2**40 - 1))
            status = rnd.choices(("ok", "error", "cancelled"), (90, 8, 2))[0]
            calls.append(
                Call(
                    seq=seq,
                    depth=min(seq, 2),
                    function=rnd.choice(FUNCTIONS),
                    tracker="app",
                    params={"n": seq, "q": "x"},
                    data={"rows": seq} if seq else {},
                    offset_us=seq * 7,
                    duration_us=duration,
                    status=status,
                    error=f"ValueError: bad {i}" if status == "error" else None,
                )
            )
        user = USERS[i % len(USERS)]
        info: dict[str, Any] = {"app_version": "1.2"}
        if user is not None:
            info["user"] = user
        logs.append(
            Log(
                id=f"{i + 1:032x}",
                started_at=T0 + dt.timedelta(seconds=37 * i, microseconds=i),
                duration_us=max(c.duration_us for c in calls) + 10,
                info=info,
                calls=calls,
            )
        )
    return logs


LOGS = make_logs()


def expected(
    logs: list[Log],
    match: Callable[[str], bool] = lambda f: True,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> dict[str, dict[str, int]]:
    """
    Brute-force per-function figures with exact nearest-rank percentiles.
    """
    durations: dict[str, list[int]] = {}
    errors: dict[str, int] = {}
    for log in logs:
        if (since and log.started_at < since) or (until and log.started_at >= until):
            continue
        for call in log.calls:
            if match(call.function):
                durations.setdefault(call.function, []).append(call.duration_us)
                errors[call.function] = errors.get(call.function, 0) + (call.status == "error")
    out = {}
    for function, values in durations.items():
        values.sort()
        n = len(values)
        row = {"calls": n, "errors": errors[function], "max_us": values[-1]}
        for p in PERCENTILES:
            k = max(1, -(-p * n // 100))  # ceil(p/100 * n) in exact integers
            row[f"p{p}_us"] = values[k - 1]
        out[function] = row
    return out


def write_jsonl(path: Path, logs: list[Log]) -> Path:
    """Write logs as the FileSink does."""
    path.write_bytes(encode_logs(logs))
    return path


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Run ``asynctrack stats ... --format json`` and return the parsed output."""
    assert main([*argv, "--format", "json"]) == 0, capsys.readouterr().err
    return dict(json.loads(capsys.readouterr().out))


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what legitimately differs between sources."""
    return {k: v for k, v in report.items() if k not in ("source", "skipped_lines")}


# -- SQL sources, filled through the real SQL sink ---------------------------------------------
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


@pytest.fixture(
    params=[
        pytest.param(("sqlite", {"user": "string(64)"}), id="sqlite-column"),
        pytest.param(("sqlite", None), id="sqlite-json"),
        pytest.param(("postgres", {"user": "string(64)"}), id="postgres-column"),
        pytest.param(("postgres", None), id="postgres-json"),
        pytest.param(("mysql", {"user": "string(64)"}), id="mariadb-column"),
        pytest.param(("mysql", None), id="mariadb-json"),
    ]
)
def sql_source(
    request: pytest.FixtureRequest, tmp_path: Path, table_prefix: str
) -> Iterator[list[str]]:
    """
    ``[URL, --table-prefix, P]`` of tables holding LOGS, with ``user`` in a column or JSON.
    """
    backend, columns = request.param
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'track.db'}"
    else:
        url = request.getfixturevalue("postgres_url" if backend == "postgres" else "mysql_url")
    asyncio.run(_fill(url, table_prefix, columns))
    try:
        yield [url, "--table-prefix", table_prefix]
    finally:
        if backend != "sqlite":
            asyncio.run(_drop(url, table_prefix))


@pytest.fixture
def jsonl(tmp_path: Path) -> str:
    """A JSON-lines file holding LOGS."""
    return str(write_jsonl(tmp_path / "track.jsonl", LOGS))


class TestPercentileDefinition:
    def test_nearest_rank_edges(self) -> None:
        """The rank is ceil(p/100 * n), at least 1: what percentile_disc returns."""
        assert rank_of(50, 1) == 1
        assert rank_of(50, 2) == 1
        assert rank_of(50, 3) == 2
        assert rank_of(95, 20) == 19
        assert rank_of(99, 100) == 99
        assert rank_of(99, 101) == 100
        assert nearest_rank([1, 2, 3, 4], 50) == 2
        assert nearest_rank([5], 99) == 5

    def test_sql_bucket_expression_matches_python(self) -> None:
        """The SQL bucket expression computes bucket_of exactly (integer arithmetic only)."""
        rnd = random.Random(3)
        values = [0, 1, 31, 32, 33, 63, 64, 2**39, 2**40 - 1, 2**40, 2**41 + 5, 2**62]
        values += [rnd.randrange(0, 2 ** rnd.randrange(1, 45)) for _ in range(3000)]
        conn = sqlite3.connect(":memory:")
        conn.execute("CREATE TABLE t (d INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])
        got = [row[0] for row in conn.execute(f"SELECT {bucket_sql('d')} FROM t")]
        assert got == [bucket_of(v) for v in values]

    @pytest.mark.slow
    def test_postgres_float_bucket_expression_matches_python(self, postgres_url: str) -> None:
        """PostgreSQL's log-based bucket expression is exact, powers of two included."""
        rnd = random.Random(5)
        values = [0, 1, 31, 32, 33, 2**40 - 1, 2**40, 2**41 + 5, 2**62]
        for k in range(5, 45):
            values += [2**k - 1, 2**k, 2**k + 1, 3 * 2 ** (k - 1), 2 ** (k + 1) - 2 ** (k - 4)]
        values += [rnd.randrange(0, 2 ** rnd.randrange(1, 45)) for _ in range(3000)]

        async def compute() -> list[int]:
            import asyncpg

            conn = await asyncpg.connect("postgresql://" + postgres_url.partition("://")[2])
            try:
                rows = await conn.fetch(
                    f"SELECT {bucket_sql_float('d')} FROM unnest($1::bigint[]) AS t(d)", values
                )
            finally:
                await conn.close()
            return [row[0] for row in rows]

        assert asyncio.run(compute()) == [bucket_of(v) for v in values]

    def test_buckets_are_exact_below_32_and_narrow_above(self) -> None:
        """Values below 32 µs have their own bucket; above, a bucket spans <= 1/16 of it."""
        assert [bucket_of(v) for v in range(EXACT_BELOW)] == list(range(EXACT_BELOW))
        for v in (32, 100, 1000, 123_456, 2**40 + 7):
            assert bucket_of(v) <= v < bucket_of(v) * 17 / 16 + 1

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.integers(min_value=0, max_value=2**45), min_size=1, max_size=400))
    def test_histogram_estimate_within_one_32nd(self, values: list[int]) -> None:
        """The estimate is within 1/32 of the exact nearest-rank value; the max is exact."""
        ordered = sorted(values)
        hist = Histogram()
        # Fold in two chunks, as the streaming readers do.
        half = len(ordered) // 2
        hist.add_sorted(sorted(values[:half]))
        hist.add_sorted(sorted(values[half:]))
        estimates = hist.percentiles([*PERCENTILES, 100])
        for p, estimate in zip([*PERCENTILES, 100], estimates, strict=True):
            exact = nearest_rank(ordered, p)
            assert abs(estimate - exact) <= exact / 32
        assert estimates[-1] == ordered[-1]


class TestFileStats:
    def test_exact_figures_match_brute_force(
        self, jsonl: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--exact gives the brute-force counts, errors, maxima and nearest-rank values."""
        report = run_json(["stats", jsonl, "--exact"], capsys)
        want = expected(LOGS)
        got = {r["function"]: r for r in report["functions"]}
        assert set(got) == set(want)
        for function, row in want.items():
            assert {k: got[function][k] for k in row} == row
        assert report["logs"] == len(LOGS)
        assert report["calls"] == sum(len(log.calls) for log in LOGS)
        assert report["first"] == LOGS[0].started_at.isoformat(timespec="microseconds")
        assert report["last"] == LOGS[-1].started_at.isoformat(timespec="microseconds")

    def test_approximate_within_bound_and_counts_exact(
        self, jsonl: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The default estimate is within 1/32; counts, errors, averages, maxima are exact."""
        approx = {r["function"]: r for r in run_json(["stats", jsonl], capsys)["functions"]}
        exact = {
            r["function"]: r for r in run_json(["stats", jsonl, "--exact"], capsys)["functions"]
        }
        for function, row in exact.items():
            for key in ("calls", "errors", "error_pct", "avg_us", "max_us"):
                assert approx[function][key] == row[key]
            for p in PERCENTILES:
                assert abs(approx[function][f"p{p}_us"] - row[f"p{p}_us"]) <= row[f"p{p}_us"] / 32

    def test_torn_and_malformed_lines_are_reported_and_skipped(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Bad lines are counted on stderr with the first line number, and never counted."""
        good = encode_logs(LOGS[:10]).splitlines(keepends=True)
        bad_call = json.dumps(
            {
                "id": "f" * 32,
                "started_at": T0.isoformat(),
                "calls": [
                    {"function": "app.db.query", "status": "ok", "duration_us": 5},
                    {"function": "app.db.query", "status": "ok", "duration_us": "slow"},
                ],
            }
        ).encode()
        lines = [*good[:3], b"not json at all\n", *good[3:], b"\n", bad_call + b"\n", good[0][:40]]
        path = tmp_path / "torn.jsonl"
        path.write_bytes(b"".join(lines))
        report = run_json(["stats", str(path), "--exact"], capsys)
        # run_json consumed the output; run again for stderr.
        assert main(["stats", str(path)]) == 0
        err = capsys.readouterr().err
        assert f"{path}: skipped 3 malformed lines (first at line 4)" in err
        assert report["skipped_lines"] == 3
        assert report["logs"] == 10
        want = expected(LOGS[:10])
        assert {r["function"]: r["calls"] for r in report["functions"]} == {
            f: row["calls"] for f, row in want.items()
        }

    def test_rotated_files_and_globs(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A base name includes its rotations path.1, path.2; a glob reads every match."""
        write_jsonl(tmp_path / "t.jsonl", LOGS[:100])
        write_jsonl(tmp_path / "t.jsonl.1", LOGS[100:200])
        write_jsonl(tmp_path / "t.jsonl.2", LOGS[200:])
        (tmp_path / "t.jsonl.bak").write_text("not a rotation\n")
        whole = run_json(["stats", str(tmp_path / "t.jsonl")], capsys)
        assert whole["logs"] == len(LOGS)
        assert capsys.readouterr().err == ""
        globbed = run_json(["stats", str(tmp_path / "t.jsonl.[12]")], capsys)
        assert globbed["logs"] == len(LOGS) - 100

    @pytest.mark.parametrize(
        "options", [[], ["--exact"], ["--by", "user", "--until", "2026-03-02"]]
    )
    def test_split_into_byte_ranges(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        options: list[str],
    ) -> None:
        """A file read in byte ranges (worker processes) gives the same report and warnings."""
        from asynctrack.cli.stats import StatsQuery
        from asynctrack.cli.stats import files as _files

        lines = encode_logs(LOGS).splitlines(keepends=True)
        lines[5] = b"not json\n"
        lines[200] = lines[200][:50] + b"\n"  # torn
        path = tmp_path / "big.jsonl"
        path.write_bytes(b"".join(lines))
        whole = run_json(["stats", str(path), *options], capsys)
        monkeypatch.setattr(_files, "PART_BYTES", 1000)
        monkeypatch.setattr(_files, "cpu_count", lambda: 7)
        parts = _files._parts([str(path)], StatsQuery())
        assert len(parts) == 7
        assert main(["stats", str(path), *options, "--format", "json"]) == 0
        captured = capsys.readouterr()
        assert json.loads(captured.out) == whole
        assert f"{path}: skipped 2 malformed lines (first at line 6)" in captured.err

    def test_filters_by_time_and_function(
        self, jsonl: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--since is inclusive, --until exclusive; --function globs are case-sensitive."""
        since, until = LOGS[20].started_at, LOGS[200].started_at
        report = run_json(
            [
                "stats", jsonl, "--exact",
                "--since", since.isoformat(), "--until", until.isoformat(),
                "--function", "app.a_b", "--function", "app.u*",
            ],
            capsys,
        )  # fmt: skip
        want = expected(LOGS, lambda f: f in ("app.a_b", "app.upper"), since, until)
        assert {r["function"]: r["calls"] for r in report["functions"]} == {
            f: row["calls"] for f, row in want.items()
        }
        assert report["logs"] == 180

    def test_top_and_by_user(self, jsonl: str, capsys: pytest.CaptureFixture[str]) -> None:
        """--top keeps the busiest rows; --by groups logs by an info key, missing as null."""
        report = run_json(["stats", jsonl, "--top", "3", "--by", "user"], capsys)
        assert len(report["functions"]) == 3
        calls = [r["calls"] for r in report["functions"]]
        assert calls == sorted(calls, reverse=True)
        assert len(report["groups"]) == 3
        full = run_json(["stats", jsonl, "--by", "user"], capsys)
        groups = {g["value"]: g for g in full["groups"]}
        assert set(groups) == {"alice", "bob", "carol", "Alice", "dave", "42", None}
        alice = [log for log in LOGS if log.info.get("user") == "alice"]
        assert groups["alice"]["logs"] == len(alice)
        assert groups["alice"]["calls"] == sum(len(log.calls) for log in alice)
        assert groups["alice"]["errors"] == sum(
            c.status == "error" for log in alice for c in log.calls
        )
        assert groups["alice"]["last_seen"] == alice[-1].started_at.isoformat(
            timespec="microseconds"
        )
        assert sum(g["logs"] for g in full["groups"]) == len(LOGS)


FILTERED = [
    "--exact", "--by", "user", "--function", "app.*", "--function", "App.?pper",
    "--since", "2026-03-01T00:30:00", "--until", "2026-03-01T02:00:00+00:00",
]  # fmt: skip


class TestSameNumbersEverywhere:
    @pytest.mark.slow
    @pytest.mark.parametrize(
        "options",
        [
            pytest.param([], id="approximate"),
            pytest.param(["--exact"], id="exact"),
            pytest.param(["--by", "user"], id="by-user"),
            pytest.param(FILTERED, id="filtered"),
            pytest.param(["--function", "app.a_b", "--function", "*%*"], id="like-escapes"),
        ],
    )
    def test_stats_match_the_file(
        self,
        sql_source: list[str],
        jsonl: str,
        options: list[str],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """SQLite, PostgreSQL and MariaDB report exactly what the JSON-lines file does."""
        from_file = run_json(["stats", jsonl, *options], capsys)
        from_sql = run_json(["stats", *sql_source, *options], capsys)
        assert comparable(from_sql) == comparable(from_file)
        assert from_file["functions"]

    @pytest.mark.parametrize("options", [[], ["--exact"], FILTERED])
    def test_sqlite_split_into_rowid_ranges(
        self,
        tmp_path: Path,
        table_prefix: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        options: list[str],
    ) -> None:
        """A SQLite table read in rowid ranges (worker processes) gives the same report."""
        from asynctrack.cli.stats import sqlite_parts

        url = f"sqlite+aiosqlite:///{tmp_path / 'track.db'}"
        asyncio.run(_fill(url, table_prefix, None))
        argv = ["stats", url, "--table-prefix", table_prefix, *options]
        monkeypatch.setattr(sqlite_parts, "cpu_count", lambda: 1)
        whole = run_json(argv, capsys)
        monkeypatch.setattr(sqlite_parts, "cpu_count", lambda: 3)
        monkeypatch.setattr(sqlite_parts, "PART_ROWS", 50)
        assert run_json(argv, capsys) == whole

    @pytest.mark.slow
    @pytest.mark.parametrize(
        "options",
        [
            pytest.param(["--id", f"{17:032x}"], id="id"),
            pytest.param(["--last", "4"], id="last"),
            pytest.param(["--user", "Alice", "--last", "3"], id="user"),
            pytest.param(["--user", "42"], id="numeric-user"),
        ],
    )
    def test_show_matches_the_file(
        self,
        sql_source: list[str],
        jsonl: str,
        options: list[str],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """show prints the same call trees from every backend."""
        assert main(["show", jsonl, *options]) == 0
        from_file = capsys.readouterr().out
        assert main(["show", *sql_source, *options]) == 0
        from_sql = capsys.readouterr().out
        assert from_sql == from_file
        assert from_file.startswith("log ")

    @pytest.mark.slow
    def test_missing_tables_are_an_input_error(
        self, sql_source: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A prefix naming no tables exits 2 with a one-line error."""
        assert main(["stats", sql_source[0], "--table-prefix", "nothing_here_"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "table nothing_here_logs not found" in err
