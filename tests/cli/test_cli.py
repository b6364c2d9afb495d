"""
The ``asynctrack`` command line: options, formats, exit codes and error messages.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from asynctrack import Call, Log
from asynctrack._core.encode import encode_logs
from asynctrack.cli.commands import main, parse_time, run
from asynctrack.cli.stats.format import FUNCTION_FIELDS, GROUP_FIELDS, human_us

T0 = dt.datetime(2026, 5, 4, 12, 0, tzinfo=dt.UTC)


def _log(i: int, user: str, calls: list[tuple[str, int, str]]) -> Log:
    return Log(
        id=f"{i:032x}",
        started_at=T0 + dt.timedelta(minutes=i),
        duration_us=max(d for _, d, _ in calls),
        info={"user": user, "password": "[REDACTED]"},
        calls=[
            Call(
                seq=seq,
                depth=seq,
                function=function,
                tracker="shop",
                params={"cart_id": i, "card": "[REDACTED]"} if seq == 0 else {"amount": 9.5},
                data={"total": 99.5} if seq == 0 else {},
                offset_us=seq * 210,
                duration_us=duration,
                status=status,
                error="PaymentDeclined: insufficient funds" if status == "error" else None,
            )
            for seq, (function, duration, status) in enumerate(calls)
        ],
    )


LOGS = [
    _log(1, "alice", [("shop.checkout", 1834, "ok"), ("shop.charge", 1501, "error")]),
    _log(2, "bob", [("shop.checkout", 2_500_000, "ok"), ("shop.charge", 12, "ok")]),
    _log(3, "alice", [("shop.search", 850, "ok")]),
    _log(4, "carol", [("shop.checkout", 20_000, "ok"), ("shop.charge", 15_000, "ok")]),
]


@pytest.fixture
def source(tmp_path: Path) -> str:
    """A JSON-lines file with four small logs."""
    path = tmp_path / "shop.jsonl"
    path.write_bytes(encode_logs(LOGS))
    return str(path)


class TestUsage:
    def test_help_exits_zero(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--help on the command and on each subcommand prints usage and returns 0."""
        for argv in (["--help"], ["stats", "--help"], ["show", "--help"], ["demo", "--help"]):
            assert main(argv) == 0
            assert "usage: asynctrack" in capsys.readouterr().out

    @pytest.mark.parametrize(
        "argv",
        [
            pytest.param([], id="no-command"),
            pytest.param(["frobnicate"], id="unknown-command"),
            pytest.param(["stats"], id="no-source"),
            pytest.param(["stats", "x.jsonl", "--top", "0"], id="top-zero"),
            pytest.param(["stats", "x.jsonl", "--since", "yesterday-ish"], id="bad-time"),
            pytest.param(["stats", "x.jsonl", "--format", "xml"], id="bad-format"),
            pytest.param(["show", "x.jsonl", "--id", "a", "--last", "2"], id="id-and-last"),
            pytest.param(["show", "x.jsonl", "--id", "a", "--user", "b"], id="id-and-user"),
            pytest.param(["demo", "--seconds", "-1"], id="bad-seconds"),
        ],
    )
    def test_usage_errors_exit_two(
        self, argv: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Bad options exit 2 with argparse's message on stderr, nothing on stdout."""
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "error:" in captured.err

    def test_run_exits_with_the_code(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """run() is the console script: it exits with main()'s return value."""
        monkeypatch.setattr(sys, "argv", ["asynctrack", "stats", "/nonexistent/x.jsonl"])
        with pytest.raises(SystemExit) as info:
            run()
        assert info.value.code == 2

    @pytest.mark.slow
    def test_python_dash_m(self, source: str) -> None:
        """python -m asynctrack runs the same command line."""
        proc = subprocess.run(
            [sys.executable, "-m", "asynctrack", "stats", source, "--format", "csv"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("function,calls,errors,")


class TestInputErrors:
    @pytest.mark.parametrize(
        ("source", "message"),
        [
            pytest.param("/nonexistent/x.jsonl", "no such file: /nonexistent/x.jsonl", id="file"),
            pytest.param("/nonexistent/*.jsonl", "no file matches", id="glob"),
            pytest.param("sqlite:////nonexistent/track.db", "no such database file", id="sqlite"),
            pytest.param("sqlite://", "in-memory database", id="sqlite-memory"),
            pytest.param("oracle://scott@db/orcl", "unsupported database URL", id="scheme"),
            pytest.param("postgresql://u@127.0.0.1:1/x", "cannot connect to", id="unreachable"),
            pytest.param("not a url://", "invalid database URL", id="malformed"),
        ],
    )  # fmt: skip
    def test_one_line_error_exit_two(
        self, source: str, message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A missing file or a bad URL is one line on stderr, exit code 2, no traceback."""
        for command in ("stats", "show"):
            assert main([command, source]) == 2
            captured = capsys.readouterr()
            assert captured.out == ""
            assert captured.err.startswith("asynctrack: error: ")
            assert message in captured.err
            assert captured.err.count("\n") == 1

    def test_password_hidden_in_errors(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A URL's password never appears in an error message."""
        assert main(["stats", "postgresql://u:hunter2@127.0.0.1:1/x"]) == 2
        err = capsys.readouterr().err
        assert "hunter2" not in err
        assert "***" in err

    def test_sqlite_file_without_tables(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A database without the tables is an input error that names the table."""
        import sqlite3

        sqlite3.connect(tmp_path / "empty.db").execute("CREATE TABLE other (x)").connection.close()
        assert main(["stats", f"sqlite:///{tmp_path / 'empty.db'}"]) == 2
        assert "table track_logs not found" in capsys.readouterr().err


class TestFormats:
    def test_table_is_aligned_with_human_units(
        self, source: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The table shows totals, the span, aligned rows per function and per user."""
        assert main(["stats", source, "--by", "user"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[1] == "requests     4 (0.0 % failed)"
        assert lines[2] == "logs         4    calls 7"
        assert lines[3] == (
            "time span    2026-05-04 12:01:00 → 2026-05-04 12:04:00 UTC  (3 min 0 s)"
        )
        assert lines[6:10] == [
            "function       calls  errors  err %      avg      p50      p95      p99      max",
            "shop.charge        3       1   33.3  5.50 ms  1.50 ms  15.0 ms  15.0 ms  15.0 ms",
            "shop.checkout      3       0    0.0   841 ms  20.0 ms   2.50 s   2.50 s   2.50 s",
            "shop.search        1       0    0.0   850 µs   850 µs   850 µs   850 µs   850 µs",
        ]
        assert lines[11:13] == [
            "user   requests  req err %  logs  calls  errors  err %      last seen (UTC)",
            "alice         2        0.0     2      3       1   33.3  2026-05-04 12:03:00",
        ]

    def test_json_layout(self, source: str, capsys: pytest.CaptureFixture[str]) -> None:
        """JSON: documented keys, durations as integer microseconds, ISO times in UTC."""
        assert main(["stats", source, "--exact", "--format", "json", "--by", "user"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert list(report) == [
            "source", "requests", "failed_requests", "request_error_pct", "logs", "calls",
            "first", "last", "exact", "functions", "by", "groups", "skipped_lines",
        ]  # fmt: skip
        charge = next(r for r in report["functions"] if r["function"] == "shop.charge")
        assert charge == {
            "function": "shop.charge",
            "calls": 3,
            "errors": 1,
            "error_pct": 33.33,
            "avg_us": 5504,
            "p50_us": 1501,
            "p95_us": 15000,
            "p99_us": 15000,
            "max_us": 15000,
        }
        assert report["first"] == "2026-05-04T12:01:00.000000+00:00"
        alice = next(g for g in report["groups"] if g["value"] == "alice")
        assert alice == {
            "value": "alice",
            "requests": 2,
            "failed_requests": 0,
            "request_error_pct": 0.0,
            "logs": 2,
            "calls": 3,
            "errors": 1,
            "error_pct": 33.33,
            "last_seen": "2026-05-04T12:03:00.000000+00:00",
        }

    def test_csv_layout(self, source: str, capsys: pytest.CaptureFixture[str]) -> None:
        """CSV: one row per function, or per key value with --by; a fixed header."""
        assert main(["stats", source, "--format", "csv"]) == 0
        rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
        assert tuple(rows[0]) == FUNCTION_FIELDS
        assert [r[0] for r in rows[1:]] == ["shop.charge", "shop.checkout", "shop.search"]
        assert main(["stats", source, "--format", "csv", "--by", "user"]) == 0
        rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
        assert tuple(rows[0]) == GROUP_FIELDS
        assert rows[1] == [
            "alice", "2", "0", "0.0", "2", "3", "1", "33.33", "2026-05-04T12:03:00.000000+00:00"
        ]  # fmt: skip

    def test_human_units(self) -> None:
        """Durations read as µs, ms or s with three significant digits."""
        assert [human_us(v) for v in (0, 999, 1000, 12_345, 999_499, 999_500, 2_500_000)] == [
            "0 µs", "999 µs", "1.00 ms", "12.3 ms", "999 ms", "1.00 s", "2.50 s",
        ]  # fmt: skip
        assert human_us(3_600_000_000) == "3600 s"

    def test_empty_selection(self, source: str, capsys: pytest.CaptureFixture[str]) -> None:
        """A filter that matches nothing still prints a valid report."""
        assert main(["stats", source, "--function", "nothing.*"]) == 0
        assert "no calls" in capsys.readouterr().out
        assert main(["stats", source, "--since", "2030-01-01", "--format", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert (report["logs"], report["first"], report["functions"]) == (0, None, [])


class TestTimes:
    def test_iso_and_relative(self) -> None:
        """--since accepts ISO 8601 (naive is UTC) and durations ago like 30m or 2d."""
        now = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
        assert parse_time("2026-01-02") == dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
        assert parse_time("2026-01-02T03:04:05+02:00") == dt.datetime(
            2026, 1, 2, 1, 4, 5, tzinfo=dt.UTC
        )
        assert parse_time("30m", now) == now - dt.timedelta(minutes=30)
        assert parse_time("2d", now) == now - dt.timedelta(days=2)
        assert parse_time("1.5h", now) == now - dt.timedelta(minutes=90)


class TestShow:
    def test_tree_with_params_data_and_errors(
        self, source: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        A log prints as a header, its info, then calls as a tree (by depth in records
        without parent links) with a waterfall scaled to the terminal's width.
        """
        monkeypatch.setenv("COLUMNS", "80")
        assert main(["show", source, "--id", f"{1:032x}"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == f"log {1:032x}  2026-05-04 12:01:00.000000 UTC  1.83 ms  2 calls"
        assert lines[1] == '  info: password="[REDACTED]", user="alice"'
        assert lines[2:] == [
            '    +0 µs  1.83 ms  ok     │███████████│ shop.checkout(cart_id=1, card="[REDACTED]")',
            "                                             data: total=99.5",
            "  +210 µs  1.50 ms  ERROR  │ █████████▎│   shop.charge(amount=9.5)",
            "                                               PaymentDeclined: insufficient funds",
        ]

    def test_last_and_user(self, source: str, capsys: pytest.CaptureFixture[str]) -> None:
        """--last N prints the N latest logs oldest first; --user keeps one user's logs."""
        assert main(["show", source, "--last", "2"]) == 0
        headers = [line for line in capsys.readouterr().out.splitlines() if line.startswith("log ")]
        assert [h.split()[1] for h in headers] == [f"{3:032x}", f"{4:032x}"]
        assert main(["show", source, "--user", "alice"]) == 0
        headers = [line for line in capsys.readouterr().out.splitlines() if line.startswith("log ")]
        assert [h.split()[1] for h in headers] == [f"{1:032x}", f"{3:032x}"]

    def test_unknown_id_exits_one(self, source: str, capsys: pytest.CaptureFixture[str]) -> None:
        """An id that is not there prints a note and exits 1."""
        assert main(["show", source, "--id", "f" * 32]) == 1
        assert capsys.readouterr().out == "no matching logs\n"
