"""
Misuse gets a clear message, early (#14): malformed SQL sink URLs fail at construction
naming the option and the accepted form, SQL sinks are named by their masked URL in
warnings, and an SQLite database given to the CLI as a path is read as a database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

import asynctrack
from asynctrack import ConfigError, FileSink, SQLSink
from asynctrack._core.encode import encode_logs
from asynctrack._core.redact import hide_url_secrets, mask_url
from asynctrack.cli.commands import main
from tests.cli.test_cli import LOGS
from tests.conftest import Configure

PASSWORD = "pw-s3cr3t-XYZ"
MARK = "S3CR3T"

#: Around the mark in a password: anything a careless user may type, URL delimiters
#: included (but not the mark's own letters, so the mark is found only where put).
password_part = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="S3CRT\n"),
    max_size=10,
)

segment = st.text(
    alphabet=st.characters(blacklist_characters="/?#@:\\", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=12,
).filter(lambda s: s.strip() == s)


class TestSinkURLs:
    @given(
        scheme=st.sampled_from(["sqlite", "sqlite+aiosqlite"]),
        parts=st.lists(segment, min_size=1, max_size=4),
    )
    @settings(max_examples=60, deadline=None)
    def test_sqlite_with_two_slashes_is_refused_with_the_three_slash_form(
        self, scheme: str, parts: list[str]
    ) -> None:
        """
        ``sqlite://<path>`` (the file read as a host) is a ConfigError that names the
        option, shows the three-slash form and suggests the URL meant.
        """
        url = f"{scheme}://" + "/".join(parts)
        try:
            parsed = make_url(url)
        except Exception:
            parsed = None
        with pytest.raises(ConfigError) as info:
            SQLSink(url)
        message = str(info.value)
        assert message.startswith("SQLSink(url=")
        if parsed is not None and parsed.host:
            assert "three slashes" in message
            assert "sqlite+aiosqlite:///track.db" in message

    @pytest.mark.parametrize(
        ("url", "message"),
        [
            pytest.param(
                "sqlite://track.db", r"did you mean 'sqlite\+aiosqlite:///track\.db'", id="two"
            ),
            pytest.param("sqlite://u@/x.db", r"no host, port or user", id="user"),
            pytest.param("mysql://u@h", r"must name its database", id="mysql-no-db"),
            pytest.param("mariadb+asyncmy://u@h:3306", r"must name its database", id="maria-no-db"),
            pytest.param("postgresql://u@h:port/db", r"cannot parse the URL", id="port"),
            pytest.param(" sqlite:///x.db", r"cannot parse the URL", id="space"),
            pytest.param(
                "track.db", r"expected e\.g\. 'sqlite\+aiosqlite:///track\.db'", id="path"
            ),
        ],
    )
    def test_malformed_urls(self, url: str, message: str) -> None:
        """
        Each malformed URL is a ConfigError at construction that says what is accepted.
        """
        with pytest.raises(ConfigError, match=message):
            SQLSink(url)

    @given(st.text(max_size=80), st.sampled_from(["", "sqlite:", "postgresql://", "mysql://u:"]))
    @settings(max_examples=150, deadline=None)
    def test_any_text_is_a_sink_or_a_short_config_error_without_the_password(
        self, text: str, prefix: str
    ) -> None:
        """
        Any string builds a sink or raises ConfigError (nothing else), whose message is
        short and never shows a password given in the URL.
        """
        url = prefix + text.replace("@", "") + f":{PASSWORD}@host/db"
        shown: list[str] = []
        try:
            sink = SQLSink(url)
            shown += [sink.url, str(sink), repr(sink)]
        except ConfigError as exc:
            shown.append(str(exc))
        assert all(PASSWORD not in text and len(text) <= 1100 for text in shown), shown

    @given(
        scheme=st.sampled_from(
            ["sqlite", "postgresql", "postgresql+asyncpg", "mysql", "mariadb+asyncmy"]
        ),
        shape=st.sampled_from(["userinfo", "no-user", "no-host", "query"]),
        around=st.tuples(password_part, password_part),
        user=st.sampled_from(["", "app", "bob@server"]),
        key=st.sampled_from(["password", "pwd", "sslpassword", "auth_token", "PASSWD"]),
    )
    @settings(max_examples=200, deadline=None)
    def test_a_password_in_any_url_shape_is_never_shown(
        self, scheme: str, shape: str, around: tuple[str, str], user: str, key: str
    ) -> None:
        """
        Whatever the URL's shape — a password holding unencoded ``@``, ``:``, ``/``
        or ``?``; credentials after three slashes; a password whose ``@host`` was
        forgotten; a secret query value — neither the sink (its url, str and repr, or
        its ConfigError) nor the command line's display of the URL shows it, nor any
        piece of it a driver may quote as a host or a database name.
        """
        password = around[0] + MARK + around[1]
        if shape == "query":  # unencoded, these end the value
            password = re.sub(r"[&;#]", "", password)
        if shape == "no-host":  # with no '@', these start the database name
            password = re.sub(r"[/?#@]", "", password)
        url = {
            "userinfo": f"{scheme}://{user}:{password}@db.example:5432/app",
            "no-user": f"{scheme}:///:{password}@db.example/app",
            "no-host": f"{scheme}://{user}:{password}/app",
            "query": f"{scheme}://{user}@db.example/app?sslmode=require&{key}={password}",
        }[shape]
        shown: list[str] = [mask_url(url)]
        try:
            sink = SQLSink(url)
            shown += [sink.url, str(sink), repr(sink)]
        except ConfigError as exc:
            shown.append(str(exc))
        for piece in password.split("@"):
            if MARK in piece:
                shown.append(hide_url_secrets(f"cannot reach '{piece}'", url))
        assert all(MARK not in text for text in shown), (url, shown)

    @pytest.mark.parametrize(
        "url",
        [
            pytest.param(f"postgresql:///:{MARK}@127.0.0.1/db", id="three-slashes"),
            pytest.param(f"mysql://u:ab@{MARK}@127.0.0.1:1/db", id="at-in-password"),
            pytest.param(f"postgresql://u@127.0.0.1:1/db?password={MARK}", id="query"),
            pytest.param(f"postgresql://u:{MARK}/db", id="no-host"),
        ],
    )
    def test_the_command_line_never_shows_a_password(
        self, url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        ``asynctrack stats URL`` on a URL that does not work says so in one line,
        without the password, even where the driver's own message quotes it (as a
        database name or a host).
        """
        assert main(["stats", url]) in (1, 2)
        err = capsys.readouterr().err
        assert err.startswith("asynctrack: error: ") and err.count("\n") == 1, err
        assert MARK not in err

    def test_secret_query_values_are_masked(self) -> None:
        """
        Query parameters that carry secrets are masked like the password.
        """
        sink = SQLSink(f"postgresql://u:{PASSWORD}@h/db?password={PASSWORD}&sslmode=require")
        assert sink.url == "postgresql+asyncpg://u:***@h/db?password=***&sslmode=require"
        sink = SQLSink(f"postgresql://u@h/db?sslmode=require&PWD={PASSWORD}")
        assert sink.url == "postgresql+asyncpg://u@h/db?PWD=***&sslmode=require"
        assert PASSWORD not in str(sink)

    def test_file_configuration_names_the_key(self, tmp_path: Path) -> None:
        """
        In a file, the error names the sink's ``url`` key.
        """
        path = tmp_path / "track.toml"
        path.write_text('[asynctrack]\n[[asynctrack.sinks]]\ntype = "sql"\nurl = "sqlite://t.db"\n')
        with pytest.raises(ConfigError, match=r"asynctrack\.sinks\[0\]\.url: .*three slashes"):
            asynctrack.configure_from_file(path)


class TestWarningsNameTheURL:
    def test_a_failing_sql_sink_is_named_by_its_masked_url(
        self, configured: Configure, caplog: pytest.LogCaptureFixture
    ) -> None:
        """
        The warning about a SQL sink that cannot open names its URL (password hidden),
        not only its hash name.
        """
        # A refused connection (asyncpg: no driver thread left behind, unlike aiosqlite).
        sink = SQLSink(f"postgresql+asyncpg://app:{PASSWORD}@127.0.0.1:1/db", connect_timeout=2)
        tr = asynctrack.get_tracker("tests.misuse")

        @tr.probe
        def work() -> None:
            pass

        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            configured(sink, retry_attempts=0, max_backoff=0.01)
            work()
            asynctrack.flush_sync(timeout=10)
            asynctrack.shutdown_sync(timeout=10)
        texts = [r.getMessage() for r in caplog.records if "failed to" in r.getMessage()]
        assert texts, [r.getMessage() for r in caplog.records]
        assert f"sink postgresql+asyncpg://app:***@127.0.0.1:1/db ({sink.name})" in texts[0]
        assert all(PASSWORD not in r.getMessage() for r in caplog.records)


def write_sqlite(path: Path) -> None:
    sink = SQLSink(f"sqlite+aiosqlite:///{path}")

    async def go() -> None:
        await sink.open()
        try:
            await sink.write(LOGS)
        finally:
            await sink.close()

    asyncio.run(go())


class TestSQLiteFileAsSource:
    def test_stats_and_show_read_an_sqlite_file_given_as_a_path(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        ``stats track.db`` and ``show track.db`` give what ``sqlite:///track.db`` gives,
        with no malformed-line warning.
        """
        monkeypatch.chdir(tmp_path)
        write_sqlite(tmp_path / "track.db")
        out = {}
        for source in ("track.db", "sqlite:///track.db"):
            assert main(["stats", source, "--format", "json", "--by", "user"]) == 0
            stats = json.loads(capsys.readouterr().out)
            stats.pop("source", None)
            assert main(["show", source, "--last", "10"]) == 0
            captured = capsys.readouterr()
            assert "malformed" not in captured.err
            out[source] = (stats, captured.out)
        assert out["track.db"] == out["sqlite:///track.db"]
        assert out["track.db"][0]["logs"] == len(LOGS)

    def test_a_glob_matching_a_database_says_how_to_read_it(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        A glob that matches an SQLite database exits 2 and says to read it alone.
        """
        write_sqlite(tmp_path / "a.db")
        assert main(["stats", str(tmp_path / "*.db")]) == 2
        err = capsys.readouterr().err
        assert "is an SQLite database" in err
        assert "sqlite:///" in err

    def test_json_lines_files_are_still_files(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        A JSON-lines file named ``.db`` is still read as JSON lines.
        """
        path = tmp_path / "logs.db"
        path.write_bytes(encode_logs(LOGS))
        assert main(["stats", str(path), "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["logs"] == len(LOGS)

    def test_the_sqlite_magic_alone_does_not_make_a_database(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        A JSON-lines file whose first line is the 16-byte SQLite magic is still read
        as JSON lines (that line skipped); a whole database header with a broken
        database behind it is refused with a one-line error.
        """
        path = tmp_path / "logs.jsonl"
        path.write_bytes(b"SQLite format 3\x00\n" + encode_logs(LOGS))
        assert main(["stats", str(path), "--format", "json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert (report["logs"], report["skipped_lines"]) == (len(LOGS), 1)
        write_sqlite(tmp_path / "real.db")
        broken = tmp_path / "broken.db"
        broken.write_bytes((tmp_path / "real.db").read_bytes()[:100] + b"\n" + encode_logs(LOGS))
        for command in ("stats", "show", "report"):
            assert main([command, str(broken)]) in (1, 2)
            err = capsys.readouterr().err
            assert err.startswith("asynctrack: error: ") and err.count("\n") == 1, err

    def test_report_reads_an_sqlite_file_given_as_a_path(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        ``report track.db`` reads the database, like ``stats`` and ``show``.
        """
        write_sqlite(tmp_path / "track.db")
        page = tmp_path / "page.html"
        assert main(["report", str(tmp_path / "track.db"), "-o", str(page)]) == 0
        assert "malformed" not in capsys.readouterr().err
        assert "malformed lines" not in page.read_text()


class TestFileSinkPaths:
    @given(
        parts=st.lists(
            segment.filter(lambda s: s not in (".", "..") and "\x00" not in s),
            min_size=1,
            max_size=3,
        ),
        shape=st.sampled_from(["existing-dir", "trailing-sep", "dot", "dotdot", "nul", "file"]),
    )
    @settings(max_examples=80, deadline=None)
    def test_a_path_that_cannot_be_a_file_is_refused_at_once(
        self, parts: list[str], shape: str, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """
        A FileSink path that can never name the file — an existing directory, a path
        ending with a separator, ``.`` or ``..``, a NUL character — is a ConfigError
        naming the path when the sink is built (not endless failed writes later); any
        other path is accepted.
        """
        base = tmp_path_factory.mktemp("paths")
        rel = "/".join(parts)
        path = {
            "existing-dir": str(base),
            "trailing-sep": f"{base}/{rel}/",
            "dot": f"{base}/{rel}/.",
            "dotdot": f"{base}/{rel}/..",
            "nul": f"{base}/{rel}\x00.jsonl",
            "file": f"{base}/{rel}.jsonl",
        }[shape]
        if shape == "file":
            assert FileSink(path).path.name == parts[-1] + ".jsonl"
        else:
            with pytest.raises(ConfigError, match=r"^FileSink: path .*(directory|NUL)"):
                FileSink(path)
