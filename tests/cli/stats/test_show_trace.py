"""
``asynctrack show`` with the trace model v2 (#17): trees from parent links, the
waterfall, continuations under their call, errors once, and the new filters, on
JSON-lines files and SQLite.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import asynctrack
from asynctrack import Log
from asynctrack._core.encode import encode_logs
from asynctrack.cli import main
from asynctrack.cli.stats.show import bar, render_logs
from asynctrack.testing import capture

tr = asynctrack.get_tracker("tests.show_trace")


class Declined(Exception):
    pass


@tr.probe
async def parse(name: str) -> str:
    await asyncio.sleep(0)
    return name


@tr.probe
async def load(name: str) -> str:
    await asyncio.sleep(0)
    if name == "bad":
        raise ValueError("cannot load bad")
    return await parse(name)


@tr.probe
async def notify(user: str) -> None:
    await asyncio.sleep(0)


@tr.probe
def charge(amount: float) -> None:
    try:
        raise OSError("card reader offline")
    except OSError as exc:
        raise Declined("no funds") from exc


@tr.probe
def pay(amount: float) -> None:
    charge(amount)


@tr.probe
async def handler(user: str, names: list[str], fail: bool, spawned: list[Any]) -> None:
    asynctrack.add_info("user", user)
    results = await asyncio.gather(*(load(n) for n in names), return_exceptions=True)
    asynctrack.add_data("loaded", len([r for r in results if isinstance(r, str)]))
    spawned.append(asyncio.get_running_loop().create_task(_later(user)))
    if fail:
        pay(9.5)


async def _later(user: str) -> None:
    await _GO.wait()
    await notify(user)


_GO = asyncio.Event()


async def record() -> list[Log]:
    """
    Three requests: alice's (gather with a failing load, a late notify), bob's (its
    payment fails through two calls), carol's.
    """
    global _GO
    _GO = asyncio.Event()
    spawned: list[Any] = []
    with capture() as logs:
        await handler("alice", ["a", "bad", "b"], False, spawned)
        try:
            await handler("bob", ["c"], True, spawned)
        except Declined:
            pass
        await handler("carol", [], False, spawned)
        _GO.set()
        await asyncio.gather(*spawned)
    return list(logs)


@pytest.fixture
def logs() -> list[Log]:
    """
    The scenario's logs (asyncio; the command line runs its own loop, so the tests
    that call it are plain functions).
    """
    return asyncio.run(record())


def _write(kind: str, logs: list[Log], where: Path | str, prefix: str = "track_") -> str:
    """
    Store ``logs`` in a JSON-lines file or through SQLSink; return the source to read.
    """
    if kind == "file":
        path = Path(where) / "track.jsonl"
        path.write_bytes(encode_logs(logs))
        return str(path)
    from asynctrack.sinks._sql.sink import SQLSink

    url = f"sqlite+aiosqlite:///{Path(where) / 'track.db'}" if kind == "sqlite" else str(where)
    sink = SQLSink(url, table_prefix=prefix)

    async def write() -> None:
        await sink.write(logs)
        await sink.close()

    asyncio.run(write())
    return str(Path(where) / "track.db") if kind == "sqlite" else url


@pytest.fixture(params=["file", "sqlite"])
def source(request: pytest.FixtureRequest, logs: list[Log], tmp_path: Path) -> str:
    """
    The scenario's logs in a JSON-lines file, or in SQLite through SQLSink.
    """
    return _write(request.param, logs, tmp_path)


@pytest.fixture(params=["file", "sqlite", "postgresql", "mariadb"])
def any_source(
    request: pytest.FixtureRequest, logs: list[Log], tmp_path: Path, table_prefix: str
) -> Iterator[list[str]]:
    """
    The scenario's logs in a file or in the SQL sink's tables of each database: the
    command line's source and options.
    """
    if request.param in ("file", "sqlite"):
        yield [_write(request.param, logs, tmp_path)]
        return
    from tests.sinks.sql.test_sql_sink import _drop_tables

    fixture = "postgres_url" if request.param == "postgresql" else "mysql_url"
    url = str(request.getfixturevalue(fixture))
    yield [_write(request.param, logs, url, table_prefix), "--table-prefix", table_prefix]
    asyncio.run(_drop_tables(url, table_prefix))


def show(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["show", *argv])
    return code, capsys.readouterr().out


def headers(out: str) -> list[str]:
    return [line.split()[1] for line in out.splitlines() if line.startswith("log ")]


def by_user(logs: list[Log], user: str) -> Log:
    return next(log for log in logs if log.info.get("user") == user and log.parent_id is None)


class TestTree:
    def test_concurrent_children_under_their_true_parent(
        self, logs: list[Log], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        gather'ed loads and the parse each one called: every parse is drawn right
        under its own load (not under whichever load started last), and a load that
        raised before calling anything has no child.
        """
        alice = by_user(logs, "alice")
        text = render_logs([alice], width=100)
        names = [
            re.search(r"(\w+)\((.*)\)$", line).group(0)  # type: ignore[union-attr]
            for line in text.splitlines()
            if "tests.cli.stats.test_show_trace." in line and "│" in line
        ]
        tree = [n.split("tests.cli.stats.test_show_trace.", 1)[-1] for n in names]
        assert tree[0].startswith("handler(")
        assert tree[1:] == [
            'load(name="a")',
            'parse(name="a")',
            'load(name="bad")',
            'load(name="b")',
            'parse(name="b")',
        ]
        # Indentation follows the parent links.
        lines = [line for line in text.splitlines() if "load(" in line or "parse(" in line]
        indents = [len(line.split("│")[-1]) - len(line.split("│")[-1].lstrip()) for line in lines]
        assert indents == [3, 5, 3, 3, 5]

    def test_continuation_under_the_call_that_spawned_it(self, logs: list[Log]) -> None:
        """
        The late notify is a continuation: drawn inside alice's request, under the
        handler call, marked as running after the request ended, with alice's user.
        """
        alice = by_user(logs, "alice")
        (cont,) = [log for log in logs if log.parent_id == alice.id]
        assert cont.parent_seq == 0 and cont.trace_id == alice.trace_id
        assert cont.info == {"user": "alice"}
        text = render_logs([alice, cont], width=100)
        assert text.count("\nlog ") == 0  # one request, one header
        assert f"↳ continuation {cont.id}, after the request ended" in text
        after = text.split("↳ continuation", 1)[1]
        assert 'notify(user="alice")' in after

    def test_error_once_with_traceback_and_arrows_above(self, logs: list[Log]) -> None:
        """
        bob's payment error is printed once, on charge where it arose, with its cause
        and traceback; pay and the handler show 'error ↑'.
        """
        bob = by_user(logs, "bob")
        text = render_logs([bob], width=100)
        assert text.count("Declined: no funds; caused by OSError: card reader offline") == 1
        lines = text.splitlines()
        pay_line = next(line for line in lines if ".pay(" in line)
        handler_line = next(line for line in lines if ".handler(" in line)
        charge_line = next(line for line in lines if ".charge(" in line)
        assert "error ↑" in pay_line and "error ↑" in handler_line
        assert "ERROR" in charge_line and "↑" not in charge_line
        frames = [line.strip() for line in lines if line.strip().startswith("File ")]
        assert frames and frames[-1].endswith(", in charge")
        assert all(__file__ in f for f in frames)

    def test_bar_is_scaled_and_never_empty(self) -> None:
        """
        A bar spans its share of the width, ends to the eighth of a cell, and a call
        too short to see still gets a sliver.
        """
        assert bar(0, 100, 100, 10) == "█" * 10
        assert bar(50, 50, 100, 10) == " " * 5 + "█" * 5
        assert bar(0, 1, 10_000, 10) == "▏" + " " * 9
        assert bar(0, 15, 100, 10) == "█▌" + " " * 8
        assert len(bar(99, 1000, 100, 7)) == 7


class TestFilters:
    def test_status_function_duration_where(
        self, source: str, logs: list[Log], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        --status (of the root call), --function GLOB (any call), --min-duration and
        --where KEY=VALUE select requests; continuations never count as requests.
        """
        alice, bob, carol = (by_user(logs, u) for u in ("alice", "bob", "carol"))
        assert headers(show(capsys, source, "--status", "error")[1]) == [bob.id]
        assert headers(show(capsys, source, "--status", "ok")[1]) == [alice.id, carol.id]
        assert headers(show(capsys, source, "--function", "*.charge")[1]) == [bob.id]
        assert headers(show(capsys, source, "--function", "*.lo?d")[1]) == [alice.id, bob.id]
        assert headers(show(capsys, source, "--where", "user=carol")[1]) == [carol.id]
        assert headers(show(capsys, source, "--where", "user=carol", "--where", "x=1")[1]) == []
        longest = max((alice, bob, carol), key=lambda log: log.duration_us)
        out = show(capsys, source, "--min-duration", f"{longest.duration_us}us")[1]
        assert headers(out) == [longest.id]
        assert headers(show(capsys, source, "--last", "5")[1]) == [alice.id, bob.id, carol.id]

    def test_since_until_trace_and_json(
        self, source: str, logs: list[Log], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        --since/--until bound the start; --trace gives a request with its
        continuations; --format json prints one to_dict() per line.
        """
        alice, bob, carol = (by_user(logs, u) for u in ("alice", "bob", "carol"))
        after_alice = (alice.started_at + dt.timedelta(microseconds=1)).isoformat()
        out = show(capsys, source, "--since", after_alice, "--until", carol.started_at.isoformat())
        assert headers(out[1]) == [bob.id]
        code, out_text = show(capsys, source, "--trace", str(alice.trace_id))
        assert code == 0 and headers(out_text) == [alice.id] and "↳ continuation" in out_text
        code, out_text = show(capsys, source, "--trace", str(alice.trace_id), "--format", "json")
        lines = [json.loads(line) for line in out_text.splitlines()]
        cont = next(log for log in logs if log.parent_id == alice.id)
        assert [d["id"] for d in lines] == [alice.id, cont.id]
        assert lines == [alice.to_dict(), cont.to_dict()]

    def test_bad_filter_values_are_usage_errors(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        A malformed duration, a --where without '=', an unknown status, or a filter
        next to --id exits 2 with a usage message.
        """
        path = tmp_path / "x.jsonl"
        path.write_text("")
        for argv in (
            ["--min-duration", "fast"],
            ["--where", "user"],
            ["--status", "weird"],
            ["--id", "a" * 32, "--status", "ok"],
            ["--id", "a" * 32, "--where", "a=b"],
        ):
            assert main(["show", str(path), *argv]) == 2
            assert "usage:" in capsys.readouterr().err


class TestStats:
    def test_requests_continuations_and_request_error_rates(
        self, any_source: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        stats counts requests (logs that continue no other) next to logs; --by folds
        each continuation into its request's group (it inherited the user); error rates
        per request count a request as failed when its root call failed.
        """
        assert main(["stats", *any_source, "--by", "user", "--format", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert (report["requests"], report["logs"], report["failed_requests"]) == (3, 6, 1)
        assert report["request_error_pct"] == 33.33
        groups = {g["value"]: g for g in report["groups"]}
        assert set(groups) == {"alice", "bob", "carol"}  # no "(none)" group of late tasks
        assert [(g["requests"], g["logs"], g["failed_requests"]) for g in groups.values()] == [
            (1, 2, 0) if v != "bob" else (1, 2, 1) for v in groups
        ]
        assert groups["bob"]["request_error_pct"] == 100.0
        assert main(["stats", *any_source, "--by", "user"]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[1] == "requests     3 (33.3 % failed)"
        assert table[2].startswith("logs         6")
