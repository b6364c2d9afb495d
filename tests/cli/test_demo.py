"""
``asynctrack demo``: the simulated collaborative application and its entry point.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from asynctrack.cli.commands import main
from asynctrack.cli.demo import simulate, user_names
from asynctrack.testing import capture


class TestSimulation:
    def test_one_log_per_action_with_users_nesting_and_failures(self) -> None:
        """Every action is one log carrying its user; failed actions are failed roots."""
        with capture() as logs:
            editor = asyncio.run(simulate(4, 1.0, seed=11, speed=0.1))
        assert len(logs) == editor.actions > 50
        assert sum(log.calls[0].status == "error" for log in logs) == editor.failures > 0
        assert {log.info["user"] for log in logs} == set(user_names(4))
        assert {log.info["plan"] for log in logs} <= {"free", "team", "enterprise"}
        roots = {log.calls[0].function for log in logs}
        assert {"demo.auth.login", "demo.docs.open", "demo.docs.edit"} <= roots
        nested = {c.function for log in logs for c in log.calls if c.depth > 0}
        assert {"demo.storage.load", "demo.docs.check_permission"} <= nested
        login = next(log for log in logs if log.calls[0].function == "demo.auth.login")
        assert login.calls[0].params["password"] == "[REDACTED]"
        assert login.calls[1].function == "demo.auth.check_password"

    def test_errors_keep_the_traceback_where_they_arose(self) -> None:
        """
        The demo ships inside the package but is the application of its logs: each
        failed request has exactly one call with a traceback, and it points into the
        demo's own code, so the report's waterfalls show where errors arose.
        """
        with capture() as logs:
            asyncio.run(simulate(4, 1.0, seed=11, speed=0.1))
        failed = [log for log in logs if log.calls[0].status == "error"]
        assert failed
        for log in failed:
            with_tb = [c for c in log.calls if c.traceback]
            assert len(with_tb) == 1, log.to_dict()
            assert with_tb[0].traceback is not None
            assert with_tb[0].traceback[-1][0].endswith("demo.py")

    def test_notifications_outlive_the_request_but_join_its_log(self) -> None:
        """Notification tasks still running after the action returned land in its log."""
        with capture() as logs:
            asyncio.run(simulate(5, 1.0, seed=5, speed=0.1))
        notified = [log for log in logs if any(c.function == "demo.notify.send" for c in log.calls)]
        assert notified
        for log in notified:
            root = log.calls[0]
            assert root.function in ("demo.docs.edit", "demo.docs.comment", "demo.docs.share")
            last_end = max(c.offset_us + c.duration_us for c in log.calls)
            assert log.duration_us >= last_end
        assert any(log.duration_us > log.calls[0].duration_us for log in notified)

    def test_user_names_are_distinct(self) -> None:
        """More users than names get numbered names, all distinct."""
        names = user_names(45)
        assert len(set(names)) == 45
        assert names[:2] == ["alice", "bob"]
        assert names[20] == "alice2"


class TestDemoCommand:
    @pytest.mark.slow
    def test_demo_into_sqlite(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The entry point writes through the pipeline to SQLite, then prints the stats."""
        db = tmp_path / "demo.db"
        argv = ["demo", "--users", "3", "--seconds", "1", "--sink", f"sqlite+aiosqlite:///{db}"]
        assert main(argv) == 0
        captured = capsys.readouterr()
        assert "Simulating 3 users" in captured.err
        assert "demo: 3 users" in captured.err
        assert "function" in captured.out
        assert "demo.auth.login" in captured.out
        assert "asynctrack show sqlite:///" in captured.out
        with sqlite3.connect(db) as conn:
            (written,) = conn.execute("SELECT COUNT(*) FROM track_logs").fetchone()
            users = {row[0] for row in conn.execute("SELECT DISTINCT user FROM track_logs")}
        assert written > 0
        assert users == {"alice", "bob", "carol"}
        assert f"wrote {written:,} logs" in captured.err
        assert main(["stats", f"sqlite:///{db}", "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["logs"] == written

    @pytest.mark.slow
    def test_demo_into_a_json_lines_file(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A sink that is not a URL is a JSON-lines file, read back for the stats."""
        path = tmp_path / "demo.jsonl"
        assert main(["demo", "--users", "2", "--seconds", "0.5", "--sink", str(path)]) == 0
        out = capsys.readouterr().out
        lines = path.read_bytes().splitlines()
        assert lines
        assert f"logs         {len(lines):,}" in out
