"""
Log injection (issue #7, item 13): line breaks of every kind, NUL, lone surrogates,
NaN and infinities in recorded values never split a record: each log is exactly one
line under ``str.splitlines()`` and ``split("\\n")``, and strict JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import asynctrack
from asynctrack import Log
from asynctrack.sinks import FileSink, read_logs

tr = asynctrack.get_tracker("rel.injection")

BREAKS = [
    "\n",
    "\r",
    "\r\n",
    "\u2028",
    "\u2029",
    "\u0085",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x00",
]
HOSTILE: list[Any] = [
    *BREAKS,
    "\ud800",  # lone surrogates (from surrogateescape-decoded OS data)
    "a\udfffb",
    float("nan"),
    float("inf"),
    float("-inf"),
    2**100,  # beyond 64 bits: orjson refuses it, the stdlib encoder takes over
    '{"id": "forged", "calls": []}\n{"id": "second"}',
]


@tr.probe
def take(value: Any, **extra: Any) -> None:
    asynctrack.add_data("echo", value)
    asynctrack.add_info("note", value)


@tr.probe
def fails(message: str) -> None:
    raise ValueError(message)


class Refusing(asynctrack.Sink):
    @property
    def name(self) -> str:
        return "refusing"

    async def write(self, logs: Sequence[Log]) -> None:
        raise ConnectionError("down")


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def check_lines(path: Path, expected: int) -> list[dict[str, Any]]:
    """
    One line per log under both splitters; every line strict JSON.
    """
    text = path.read_bytes().decode("utf-8")  # strict: surrogates would fail here
    assert len(text.splitlines()) == expected
    assert text.split("\n")[-1] == "" and len(text.split("\n")) == expected + 1
    return [json.loads(line, parse_constant=_no_constants) for line in text.split("\n")[:-1]]


class TestInjection:
    def test_one_strict_json_line_per_log(self, tmp_path: Path) -> None:
        """
        Each hostile value as a parameter, a dict key, info, data and an error message:
        the output file and the spill file hold one strict JSON line per log.
        """
        out = tmp_path / "out.jsonl"
        asynctrack.configure(
            sinks=[FileSink(out), Refusing()], spill_dir=tmp_path / "spill", retry_attempts=0
        )
        count = 0
        for value in HOSTILE:
            take(value, **{f"k{value}" if isinstance(value, str) else "k": value})
            take([value, {"nested": value}])
            count += 2
            if isinstance(value, str):
                with pytest.raises(ValueError, match=r"^bad"):
                    fails(f"bad{value}input")
                count += 1
        asynctrack.flush_sync(timeout=30)
        logs = check_lines(out, count)
        (spill,) = (tmp_path / "spill").glob("*.spill.jsonl")
        check_lines(spill, count)
        assert len(list(read_logs(out))) == count
        first = logs[0]["calls"][0]
        assert first["params"]["value"] == "\n" and first["data"]["echo"] == "\n"
        nan = next(log for log in logs if log["calls"][0]["params"].get("value") == "NaN")
        assert nan["info"]["note"] == "NaN"
        values = [log["calls"][0]["params"].get("value") for log in logs]
        assert "\ufffd" in values and "a\ufffdb" in values, "lone surrogates become U+FFFD"
        errors = [log["calls"][0]["error"] for log in logs if log["calls"][0]["error"]]
        assert "ValueError: bad\u2028input" in errors
        assert not any(log["id"] in ("forged", "second") for log in logs)
