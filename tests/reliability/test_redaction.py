"""
Redaction (issue #7, item 11): 100 seeded secrets passed as denylisted names in any
case, nested dicts, ``**kwargs``, header mappings, info, data and URL user-info reach
no output: the JSON-lines file, the SQLite tables, the spill file and dead letters are
searched byte by byte.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.datastructures import Headers

import asynctrack
from asynctrack import Log
from asynctrack.sinks import FileSink
from tests.conftest import Configure

tr = asynctrack.get_tracker("rel.redaction")


@tr.probe
def login(user: str, password: str, **kwargs: Any) -> str:
    return user


@tr.probe
def call_api(url: str, headers: Any, body: Any) -> int:
    asynctrack.add_data("client_secret", body.get("api_token"))
    return 200


@tr.probe
def connect(dsn: str, note: str) -> None:
    return None


@tr.probe
def request(n: int) -> None:
    asynctrack.add_info("X-Auth-Token", n)


class Refusing(asynctrack.Sink):
    """
    Always fails: its batches are spilled to disk, where the secrets must not be either.
    """

    @property
    def name(self) -> str:
        return "refusing"

    async def write(self, logs: Sequence[Log]) -> None:
        raise ConnectionError("down")


def seed(n: int) -> list[str]:
    return [f"sek{secrets.token_hex(12)}" for _ in range(n)]


def leaks(root: Path, secrets_: list[str]) -> dict[str, list[str]]:
    """
    Which secrets occur in which files under ``root`` (raw bytes, any file).
    """
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits = [x for x in secrets_ if x.encode() in data]
            if hits:
                found[path.name] = hits
    return found


class TestRedaction:
    def test_100_seeded_secrets_reach_no_output(self, tmp_path: Path) -> None:
        """
        100 secrets in sensitive names (any case), nested dicts, **kwargs, header
        mappings (dict, starlette, httpx), info, data and URL user-info: 0 hits in the
        file, the SQLite database, the spill file; "[REDACTED]" is there instead.
        """
        out = tmp_path / "out"
        sql = asynctrack.SQLSink(f"sqlite+aiosqlite:///{out / 'track.db'}")
        asynctrack.configure(
            sinks=[FileSink(out / "track.jsonl"), sql, Refusing()],
            spill_dir=out / "spill",
            retry_attempts=0,
        )
        keys = seed(100)
        it = iter(keys)
        for _round in range(10):
            with tr.call("round"):
                request(_round)
                login("alice", next(it), PassWord=next(it), **{"X-API-KEY": next(it)})
                login("bob", "x", db={"DB_PASSWORD": next(it)}, Session_Id=next(it))
                call_api(
                    "https://api.example.com/v1",
                    {"Authorization": f"Bearer {next(it)}", "Cookie": f"sid={next(it)}"},
                    {"api_token": next(it), "user": {"auth": {"refresh_token": next(it)}}},
                )
                call_api("https://x", Headers({"authorization": f"Basic {next(it)}"}), {})
                asynctrack.add_info("api_key", "x")
            call_api("https://x", httpx.Headers({"x-session": "s"}), {"api_token": "-"})
        # URL user-info in values: as a parameter and inside a longer string
        more = seed(20)
        for a, b in zip(more[::2], more[1::2], strict=True):
            connect(
                f"postgresql+asyncpg://app:{a}@db.internal:5432/prod",
                f"retrying mysql://root:{b}@10.0.0.7/shop after a timeout",
            )
        asynctrack.flush_sync(timeout=None)  # the refusing sink stays down
        asynctrack.shutdown_sync(timeout=30)
        everything = keys + more
        assert len(set(everything)) == 120
        assert list((out / "spill").glob("*.spill.jsonl")), "the spill file was written"
        assert leaks(out, everything) == {}
        text = (out / "track.jsonl").read_text()
        assert text.count("[REDACTED]") >= 120
        st = asynctrack.stats()
        assert st.written["file-track.jsonl"] == 30 and st.spilled == 30

    def test_url_password_in_an_error_message(self, configured: Configure, tmp_path: Path) -> None:
        """
        An exception whose message holds a DSN with a password: the recorded error
        keeps the message but not the password.
        """
        out = tmp_path / "out.jsonl"
        configured(FileSink(out))

        @tr.probe
        def fails(dsn: str) -> None:
            raise ValueError(f"cannot connect to {dsn}")

        (secret,) = seed(1)
        with pytest.raises(ValueError, match="cannot connect"):
            fails(f"postgresql://app:{secret}@db/prod")
        asynctrack.flush_sync(timeout=30)
        text = out.read_text()
        assert "ValueError: cannot connect to postgresql://app:" in text
        assert secret not in text
