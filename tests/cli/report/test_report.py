"""
``asynctrack report``: the page's data is the same from a JSON-lines file, SQLite,
PostgreSQL and MariaDB, matches a brute-force count, stays bounded, and embeds
strings from logs only as data.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import Call, Log
from asynctrack._core.encode import encode_logs
from asynctrack.cli.commands import main
from asynctrack.cli.report import ReportQuery, build_report, render_page
from asynctrack.cli.report import model as _model
from asynctrack.cli.report.build import MAX_CALLS, MAX_LOG_BYTES, trim_log
from asynctrack.cli.report.model import STEPS, Series, step_for
from asynctrack.cli.report.page import embed_json
from asynctrack.cli.stats import StatsQuery
from asynctrack.cli.stats.model import key_text
from asynctrack.cli.stats.percentiles import PERCENTILES
from tests.cli.stats.test_stats import make_logs
from tests.helpers import drop_tables

HOSTILE = (
    "</script><script>window.__pwned = 1</script>",
    '<img src=x onerror="window.__pwned = 2">',
    "<!--<script>",
    "]]>&lt;&amp;\u2028\u2029",
)


def report_logs() -> list[Log]:
    """
    The stats tests' logs (every duration range, errors, users of several types) plus
    continuations of the slowest log and of a continuation.
    """
    logs = make_logs()
    slowest = max(logs, key=lambda log: (log.duration_us, log.started_at.isoformat()))
    parent = slowest
    for i in range(2):
        started = parent.started_at + dt.timedelta(microseconds=parent.duration_us + 50 + i)
        call = Call(
            seq=0, depth=0, function="app.tasks.notify", tracker="app",
            offset_us=0, duration_us=120, status="ok",
        )  # fmt: skip
        parent = Log(
            id=f"c{i:031x}",
            parent_id=parent.id,
            started_at=started,
            duration_us=120,
            info=dict(parent.info),
            calls=[call],
        )
        logs.append(parent)
    return logs


LOGS = report_logs()


def comparable(data: dict[str, Any]) -> dict[str, Any]:
    """The page's data without what legitimately differs between sources."""
    out = {k: v for k, v in data.items() if k not in ("source", "generated")}
    for key in ("slowest", "failedRequests"):
        out[key] = [(log["id"], len(log["calls"])) for log in data[key]]
    out["continuations"] = {
        parent: [log["id"] for log in logs] for parent, logs in data["continuations"].items()
    }
    return out


def query(**options: Any) -> ReportQuery:
    """A report query over the ``user`` key with stats' options."""
    prefix = options.pop("table_prefix", "track_")
    return ReportQuery(stats=StatsQuery(by="user", table_prefix=prefix, **options))


def warnings() -> tuple[list[str], Any]:
    """A list of warnings and the callable that collects them."""
    seen: list[str] = []
    return seen, seen.append


@pytest.fixture
def jsonl(tmp_path: Path) -> str:
    """A JSON-lines file holding LOGS."""
    path = tmp_path / "track.jsonl"
    path.write_bytes(encode_logs(LOGS))
    return str(path)


async def _fill(url: str, prefix: str, columns: dict[str, str] | None) -> None:
    sink = asynctrack.SQLSink(url, table_prefix=prefix, columns=columns)
    await sink.open()
    try:
        await sink.write(LOGS)
    finally:
        await sink.close()


@pytest.fixture(
    params=[
        pytest.param(("sqlite", {"user": "string(64)"}), id="sqlite-column"),
        pytest.param(("sqlite", None), id="sqlite-json"),
        pytest.param(("postgres", None), id="postgres-json"),
        pytest.param(("mysql", {"user": "string(64)"}), id="mariadb-column"),
    ]
)
def sql_source(
    request: pytest.FixtureRequest, tmp_path: Path, table_prefix: str
) -> Iterator[tuple[str, str]]:
    """``(URL, table prefix)`` of tables holding LOGS, written by the SQL sink."""
    backend, columns = request.param
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'track.db'}"
    else:
        url = request.getfixturevalue("postgres_url" if backend == "postgres" else "mysql_url")
    asyncio.run(_fill(url, table_prefix, columns))
    try:
        yield url, table_prefix
    finally:
        if backend != "sqlite":
            asyncio.run(drop_tables(url, table_prefix))


def brute_force(every: list[Log]) -> dict[str, Any]:
    """What the page must show, computed the obvious way; requests continue no log."""
    logs = [log for log in every if log.parent_id is None]
    starts = [int(log.started_at.timestamp()) for log in every]
    step = step_for(max(starts) - min(starts) + 1)
    requests: collections.Counter[int] = collections.Counter()
    failed: collections.Counter[int] = collections.Counter()
    heat = [0] * 168
    for log in logs:
        second = int(log.started_at.timestamp())
        requests[second // step] += 1
        failed[second // step] += log.calls[0].status == "error"
        heat[log.started_at.weekday() * 24 + log.started_at.hour] += 1
    keys = range(min(starts) // step, max(starts) // step + 1)
    slowest = sorted(logs, key=lambda log: (log.duration_us, log.started_at, log.id), reverse=True)[
        :50
    ]
    failures = sorted(
        (log for log in logs if log.calls[0].status == "error"),
        key=lambda log: (log.started_at, log.id),
        reverse=True,
    )[:50]
    return {
        "step": step,
        "t": [k * step for k in keys],
        "requests": [requests[k] for k in keys],
        "failed": [failed[k] for k in keys],
        "heat": heat,
        "slowest": [log.id for log in slowest],
        "failedRequests": [log.id for log in failures],
        "users": len({json.dumps(log.info.get("user")) for log in logs}),
        "groups": {
            key_text(log.info.get("user")): [
                sum(1 for x in logs if x.info.get("user") == log.info.get("user")),
                sum(
                    1
                    for x in logs
                    if x.info.get("user") == log.info.get("user") and x.calls[0].status == "error"
                ),
            ]
            for log in logs
        },
    }


class TestData:
    def test_file_matches_brute_force(self, jsonl: str) -> None:
        """Requests, failures, buckets, heatmap and the selected requests are exact."""
        data = build_report(jsonl, query(), warnings()[1])
        expect = brute_force(LOGS)
        series = data["series"]
        assert series["step"] == expect["step"]
        assert series["t"] == expect["t"]
        assert len(series["t"]) <= _model.MAX_POINTS
        assert series["requests"] == expect["requests"]
        assert series["failed"] == expect["failed"]
        assert data["heat"] == expect["heat"]
        assert [log["id"] for log in data["slowest"]] == expect["slowest"]
        assert [log["id"] for log in data["failedRequests"]] == expect["failedRequests"]
        assert data["overview"]["requests"] == len(LOGS) - 2  # two continuations
        assert data["overview"]["failed"] == sum(series["failed"])
        assert data["overview"]["keys"] == expect["users"]
        assert {g[0]: g[1:3] for g in data["groups"]} == expect["groups"]
        assert [g[1] for g in data["groups"]] == sorted(
            (g[1] for g in data["groups"]), reverse=True
        )
        slowest = expect["slowest"][0]
        assert [log["id"] for log in data["continuations"][slowest]] == ["c" + "0" * 31]
        assert [log["id"] for log in data["continuations"]["c" + "0" * 31]] == [
            "c" + "0" * 30 + "1"
        ]
        functions = {row[0]: row for row in data["functions"]}
        assert sum(row[1] for row in data["functions"]) == data["overview"]["calls"]
        for name, figures in data["functionSeries"].items():
            assert sum(figures["calls"]) == functions[name][1]
            assert sum(figures["errors"]) == functions[name][2]

    def test_sql_matches_the_file(self, jsonl: str, sql_source: tuple[str, str]) -> None:
        """SQLite, PostgreSQL and MariaDB give the file's page data, figure for figure."""
        url, prefix = sql_source
        from_file = build_report(jsonl, query(), warnings()[1])
        from_sql = build_report(url, query(table_prefix=prefix), warnings()[1])
        assert comparable(from_sql) == comparable(from_file)
        assert 3600 % from_file["series"]["step"] != 0  # the heatmap has its own query
        # A window of two hours: one-minute buckets, the heatmap from the buckets.
        until = LOGS[200].started_at
        from_file = build_report(jsonl, query(until=until), warnings()[1])
        from_sql = build_report(url, query(table_prefix=prefix, until=until), warnings()[1])
        assert 3600 % from_file["series"]["step"] == 0
        assert comparable(from_sql) == comparable(from_file)

    def test_sqlite_split_into_rowid_ranges(
        self, jsonl: str, tmp_path: Path, table_prefix: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SQLite tables read in rowid ranges by worker processes give the file's data."""
        from asynctrack.cli.report import sqlite as _sqlite

        url = f"sqlite+aiosqlite:///{tmp_path / 'track.db'}"
        asyncio.run(_fill(url, table_prefix, None))
        parts: list[int] = []
        start_parts = _sqlite.start_parts

        def spy(func: Any, items: list[Any]) -> Any:
            parts.append(len(items))
            return start_parts(func, items)

        monkeypatch.setattr(_sqlite, "start_parts", spy)
        monkeypatch.setattr(_sqlite, "cpu_count", lambda: 3)
        monkeypatch.setattr(_sqlite, "PART_ROWS", 50)
        split = build_report(url, query(table_prefix=table_prefix), warnings()[1])
        assert parts == [6]  # three ranges of logs, three of calls
        assert comparable(split) == comparable(build_report(jsonl, query(), warnings()[1]))

    def test_split_into_byte_ranges(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A file read in byte ranges by worker processes gives the same data and warnings."""
        from asynctrack.cli.stats import files as _files

        lines = encode_logs(LOGS).splitlines(keepends=True)
        lines[5] = b"not json\n"
        lines[200] = lines[200][:50] + b"\n"
        path = tmp_path / "big.jsonl"
        path.write_bytes(b"".join(lines))
        seen_whole, warn_whole = warnings()
        whole = build_report(str(path), query(), warn_whole)
        monkeypatch.setattr(_files, "PART_BYTES", 1000)
        monkeypatch.setattr(_files, "cpu_count", lambda: 7)
        seen_split, warn_split = warnings()
        split = build_report(str(path), query(), warn_split)
        assert comparable(split) == comparable(whole)
        assert seen_split == seen_whole == [f"{path}: skipped 2 malformed lines (first at line 6)"]

    def test_malformed_lines_are_skipped_and_counted(self, tmp_path: Path) -> None:
        """
        A line with a timestamp of the right shape but no date, a torn line or a call
        without a duration is skipped and reported, never the end of the report.
        """
        lines = encode_logs(LOGS[:10]).splitlines(keepends=True)
        lines[2] = lines[2].replace(b'"started_at":"2', b'"started_at":" ', 1)
        lines[4] = lines[4][:40] + b"\n"
        lines[6] = lines[6].replace(b'"duration_us":', b'"duration":')
        path = tmp_path / "bad.jsonl"
        path.write_bytes(b"".join(lines))
        seen, warn = warnings()
        data = build_report(str(path), query(), warn)
        assert data["overview"]["requests"] == 7
        assert seen == [f"{path}: skipped 3 malformed lines (first at line 3)"]
        assert "3 malformed lines skipped" in data["notes"]

    def test_filters(self, jsonl: str) -> None:
        """--since/--until keep logs by start; --function keeps function figures only."""
        since = LOGS[40].started_at
        until = LOGS[100].started_at
        data = build_report(jsonl, query(since=since, until=until), warnings()[1])
        assert data["overview"]["requests"] == 60
        data = build_report(jsonl, query(functions=("app.db.*",)), warnings()[1])
        assert {row[0] for row in data["functions"]} == {"app.db.query", "app.db.save"}
        assert data["overview"]["requests"] == len(LOGS) - 2

    def test_empty_source(self, tmp_path: Path) -> None:
        """A file without logs still gives a page (nothing to draw, no error)."""
        path = tmp_path / "empty.jsonl"
        path.write_bytes(b"")
        data = build_report(str(path), query(), warnings()[1])
        assert data["overview"]["requests"] == 0
        assert data["series"]["t"] == []
        assert "<html" in render_page(data)


class TestSeries:
    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.integers(1_700_000_000, 1_700_000_000 + 40 * 86_400),
                st.integers(0, 10**7),
                st.booleans(),
            ),
            min_size=1,
            max_size=60,
        ),
        st.integers(0, 60),
        st.integers(2, 8),
    )
    def test_split_and_coarsened_series_merge_exactly(
        self, requests: list[tuple[int, int, bool]], cut: int, held: int
    ) -> None:
        """
        Any split of the requests into two parts, each widening its buckets when it
        holds too many, merges to the figures of one pass at the same width.
        """
        with mock.patch.object(_model, "HELD_POINTS", held):
            parts = [Series(), Series()]
            for i, (second, duration, failed) in enumerate(requests):
                bucket = parts[i >= cut].bucket(second)
                bucket.durations.buf.append(duration)
                bucket.failed += failed
            merged = parts[0]
            merged.merge(parts[1])
        one = Series(merged.step)
        for second, duration, failed in requests:
            bucket = one.bucket(second)
            bucket.durations.buf.append(duration)
            bucket.failed += failed
        assert merged.step in STEPS
        assert sorted(merged.buckets) == sorted(one.buckets)
        for key, bucket in one.buckets.items():
            other = merged.buckets[key]
            assert other.requests() == bucket.requests()
            assert other.failed == bucket.failed
            mine, theirs = other.durations.hist, bucket.durations.hist
            assert mine.percentiles(PERCENTILES) == theirs.percentiles(PERCENTILES)

    def test_step_covers_any_span_in_bounded_points(self) -> None:
        """Any span a datetime can hold (year 1 to 9999) fits in at most MAX_POINTS buckets."""
        years = dt.datetime(9999, 12, 31, tzinfo=dt.UTC) - dt.datetime(1, 1, 1, tzinfo=dt.UTC)
        for span in (0, 1, 59, 3_600, 86_400, 365 * 86_400, int(years.total_seconds())):
            step = step_for(span + 1)
            assert (span + 1) / step + 1 < _model.MAX_POINTS
        for narrow, wide in itertools.pairwise(STEPS):
            assert wide % narrow == 0

    def test_far_apart_logs_give_a_short_axis(self, tmp_path: Path) -> None:
        """A log dated in year 1 beside one of today still gives a bounded page."""
        lines = encode_logs(make_logs(2)).splitlines(keepends=True)
        first = json.loads(lines[0])
        first["started_at"] = "0001-01-01T00:00:00.000000+00:00"
        path = tmp_path / "far.jsonl"
        path.write_bytes(json.dumps(first).encode() + b"\n" + lines[1])
        data = build_report(str(path), query(), warnings()[1])
        assert len(data["series"]["t"]) <= _model.MAX_POINTS
        assert sum(data["series"]["requests"]) == 2


class TestSafety:
    @settings(max_examples=200, deadline=None)
    @given(st.one_of(st.sampled_from(HOSTILE), st.text()))
    def test_embedded_json_cannot_leave_its_script_element(self, value: str) -> None:
        """
        Embedded JSON holds no character that HTML or JavaScript could read as the end
        of the element or of a line, and parses back to the same value.
        """
        data = {value: [value, {"k": value}]}
        text = embed_json(data)
        assert not set(text) & {"<", ">", "&", "\u2028", "\u2029"}
        assert json.loads(text) == data

    def test_values_json_cannot_hold_are_embedded_as_text(self) -> None:
        """Ints beyond 64 bits, NaN and non-string keys do not break the page."""
        data = {"big": 1 << 80, "nan": float("nan"), "keys": {1: "x"}, "lone": "\ud800"}
        back = json.loads(embed_json(data))
        assert back["big"] == str(1 << 80)
        assert back["nan"] == "nan"
        assert back["keys"] == {"1": "x"}

    def test_hostile_values_appear_in_the_page_only_escaped(self, tmp_path: Path) -> None:
        """Markup in functions, params, info and errors never reaches the HTML as markup."""
        path = tmp_path / "hostile.jsonl"
        path.write_bytes(encode_logs(hostile_logs()))
        out = tmp_path / "report.html"
        assert main(["report", str(path), "-o", str(out), "--title", HOSTILE[0]]) == 0
        page = out.read_text(encoding="utf-8")
        for value in HOSTILE:
            assert value not in page
        assert page.count("<script") == 3  # the data, uPlot, the page's script
        assert "onerror" not in page.replace("onerror=\\", "")  # only inside JSON strings
        title = re.search(r"<title>(.*)</title>", page)
        assert title is not None and "&lt;/script&gt;" in title[1]

    def test_page_is_self_contained(self, jsonl: str, tmp_path: Path) -> None:
        """No URL outside the page: no CDN, no web font; a CSP forbids every request."""
        out = tmp_path / "r.html"
        assert main(["report", jsonl, "-o", str(out)]) == 0
        page = out.read_text(encoding="utf-8")
        assert "default-src 'none'" in page
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
        assert "@import" not in page and "url(" not in page


def hostile_logs() -> list[Log]:
    """Logs whose every string field holds markup and script."""
    logs = []
    t0 = dt.datetime(2026, 5, 4, 3, 2, 1, tzinfo=dt.UTC)
    for i, value in enumerate(HOSTILE):
        calls = [
            Call(seq=0, depth=0, function=value, tracker=value, params={value: value},
                 data={"d": value}, offset_us=0, duration_us=900 + i, status="error",
                 error=f"ValueError: {value}"),
            Call(seq=1, depth=1, function=f"inner {value}", tracker="t", params={"p": [value]},
                 offset_us=10, duration_us=400, status="error", error=value),
        ]  # fmt: skip
        logs.append(
            Log(
                id=f"{i + 1:032x}",
                started_at=t0 + dt.timedelta(seconds=i),
                duration_us=1000 + i,
                info={"user": value, value: value},
                calls=calls,
            )
        )
    return logs


class TestBounds:
    def test_page_embeds_aggregates_not_logs(self, tmp_path: Path) -> None:
        """
        Ten times the logs give the same number of embedded requests (the selected
        ones) and a page of about the same size.
        """
        sizes = []
        for n in (1000, 10000):
            path = tmp_path / f"{n}.jsonl"
            path.write_bytes(encode_logs(make_logs(n)))
            data = build_report(str(path), query(), warnings()[1])
            assert len(data["slowest"]) == 50
            assert len(data["failedRequests"]) == 50
            sizes.append(len(render_page(data)))
        assert sizes[1] < 1.5 * sizes[0]

    def test_large_logs_are_trimmed(self) -> None:
        """A selected log keeps at most MAX_CALLS calls and MAX_LOG_BYTES of JSON."""
        calls = [
            {"seq": i, "depth": 1, "function": "f", "params": {"x": "y" * 1000}, "data": {}}
            for i in range(MAX_CALLS + 10)
        ]
        trimmed = trim_log({"id": "a", "calls": calls, "info": {}, "ignored": 1})
        assert len(trimmed["calls"]) == MAX_CALLS
        assert trimmed["omitted_calls"] == 10
        assert "ignored" not in trimmed
        assert len(json.dumps(trimmed)) < MAX_LOG_BYTES


class TestCommand:
    def test_writes_the_page_and_prints_its_path(
        self, jsonl: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The command prints the path it wrote and exits 0; the page holds the data."""
        out = tmp_path / "out.html"
        assert main(["report", jsonl, "-o", str(out), "--title", "Shop"]) == 0
        assert capsys.readouterr().out == f"{out}\n"
        page = out.read_text(encoding="utf-8")
        assert "<title>Shop</title>" in page
        assert page.startswith("<!DOCTYPE html>")

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            pytest.param(["report", "missing.jsonl"], "no such file: missing.jsonl", id="file"),
            pytest.param(["report", "nope://x"], "unsupported database URL", id="url"),
            pytest.param(["report", "x.jsonl", "--since", "soon"], "invalid time", id="since"),
        ],
    )
    def test_bad_input_is_a_one_line_error(
        self, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Bad input gets stats' one-line errors and exit code 2."""
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err
        assert "Traceback" not in err

    def test_unwritable_output_is_a_one_line_error(
        self, jsonl: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An output path in a missing directory is an input error, not a traceback."""
        assert main(["report", jsonl, "-o", str(tmp_path / "no" / "r.html")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("asynctrack: error: cannot write") and err.count("\n") == 1
