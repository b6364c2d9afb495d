"""
Records: the JSON form of logs and calls, ids, round trips, line safety.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import Call, Log
from asynctrack._encode import decode_line, encode_logs
from asynctrack.testing import capture

tr = asynctrack.get_tracker("tests.records")


@tr.probe
def charge(amount: float, card: str) -> None:
    raise RuntimeError("declined")


@tr.probe
def checkout(cart_id: int) -> None:
    asynctrack.add_info("user", "alice")
    asynctrack.add_data("total", 99.5)
    try:
        charge(99.5, "4111")
    except RuntimeError:
        pass


class TestJsonForm:
    def test_exact_keys_and_types(self) -> None:
        """
        to_dict gives exactly the documented keys, in order, with the documented types.
        """
        with capture() as logs:
            checkout(42)
        d = logs[0].to_dict()
        assert list(d) == [
            "id",
            "parent_id",
            "started_at",
            "duration_us",
            "complete",
            "info",
            "calls",
        ]
        assert re.fullmatch(r"[0-9a-f]{32}", d["id"])
        assert d["parent_id"] is None and d["complete"] is True
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", d["started_at"])
        assert d["info"] == {"user": "alice"}
        root, child = d["calls"]
        assert list(root) == [
            "seq",
            "depth",
            "function",
            "tracker",
            "level",
            "params",
            "data",
            "offset_us",
            "duration_us",
            "status",
            "error",
        ]
        assert root["function"] == "tests.test_records.checkout"
        assert root["tracker"] == "tests.records" and root["level"] == "DEFAULT"
        assert root["params"] == {"cart_id": 42} and root["data"] == {"total": 99.5}
        assert child["params"] == {"amount": 99.5, "card": "4111"}
        assert (child["status"], child["error"]) == ("error", "RuntimeError: declined")
        assert child["seq"] == 1 and child["depth"] == 1
        assert 0 <= child["offset_us"] <= root["duration_us"]
        assert d["duration_us"] == root["duration_us"]
        assert logs[0].started_at.tzinfo is not None

    def test_ids_sort_by_creation_time(self) -> None:
        """
        Ids are unique and sort by creation time.
        """
        with capture() as logs:
            for _ in range(3):
                checkout(1)
                time.sleep(0.002)
        ids = [log.id for log in logs]
        assert ids == sorted(ids) and len(set(ids)) == 3

    def test_round_trip_through_json_lines(self) -> None:
        """
        Log → JSON line → Log is lossless.
        """
        with capture() as logs:
            checkout(7)
        line = encode_logs(logs)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        back = decode_line(line)
        assert back == logs[0]
        assert back.to_dict() == logs[0].to_dict()
        assert isinstance(back.calls[0], Call)

    def test_constructor_and_from_dict_errors(self) -> None:
        """
        Logs can be built by hand; malformed dicts give a ValueError.
        """
        log = Log(
            id="0" * 32,
            started_at="2026-11-28T17:35:20.123456+00:00",
            duration_us=5,
            calls=[Call(seq=0, depth=0, function="f", tracker="t")],
        )
        assert log.to_dict()["started_at"] == "2026-11-28T17:35:20.123456+00:00"
        for bad in ({}, {"id": 1, "started_at": "x"}, {"id": "a", "started_at": "nope"}, []):
            try:
                Log.from_dict(bad)  # type: ignore[arg-type]
            except ValueError:
                continue
            raise AssertionError(f"accepted {bad!r}")


hostile = st.text(
    alphabet=st.sampled_from(
        ["a", "\n", "\r", "\u2028", "\u2029", "\u0085", "\x00", "\ud800", "é", '"', "\\"]
    ),
    max_size=30,
)


class TestLineSafety:
    @settings(max_examples=200, deadline=None)
    @given(values=st.lists(hostile | st.floats(), max_size=5))
    def test_one_strict_json_line_per_log(self, values: list[Any]) -> None:
        """
        Whatever the values, each log is one line under split("\\n") and splitlines(),
        and strict json.loads (no NaN) accepts it.
        """

        @tr.probe
        def f(v: list[Any]) -> None:
            asynctrack.add_info("k", values[0] if values else None)

        with capture() as logs:
            f(values)
            f(values)
        data = encode_logs(logs)
        text = data.decode("utf-8", errors="surrogatepass")
        assert len(text.split("\n")) == 3
        assert len(text.splitlines()) == 2
        for line in text.splitlines():
            json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
            assert decode_line(line.encode("utf-8", errors="surrogatepass")).id in {
                log.id for log in logs
            }
