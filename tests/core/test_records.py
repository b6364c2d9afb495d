"""
Records: the JSON form of logs and calls, ids, round trips, line safety.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import re
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import Call, Log
from asynctrack._core import encode
from asynctrack._core.decode import decode_line
from asynctrack._core.encode import encode_log, encode_logs, encode_obj
from asynctrack._core.layout import DATA, ERROR, PARENT, REC, STATUS, TRACEBACK
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
            "trace_id",
            "parent_id",
            "parent_seq",
            "remote_parent",
            "started_at",
            "duration_us",
            "complete",
            "info",
            "calls",
        ]
        assert re.fullmatch(r"[0-9a-f]{32}", d["id"])
        assert re.fullmatch(r"[0-9a-f]{32}", d["trace_id"])
        assert d["parent_id"] is None and d["complete"] is True
        assert d["parent_seq"] is None and d["remote_parent"] is None
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", d["started_at"])
        assert d["info"] == {"user": "alice"}
        root, child = d["calls"]
        assert list(root) == [
            "seq",
            "parent",
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
            "traceback",
        ]
        assert root["function"] == "tests.core.test_records.checkout"
        assert root["tracker"] == "tests.records" and root["level"] == "DEFAULT"
        assert root["params"] == {"cart_id": 42} and root["data"] == {"total": 99.5}
        assert child["params"] == {"amount": 99.5, "card": "4111"}
        assert (child["status"], child["error"]) == ("error", "RuntimeError: declined")
        assert child["seq"] == 1 and child["depth"] == 1
        assert root["parent"] is None and child["parent"] == 0
        assert root["traceback"] is None
        *_, (file, line, function) = child["traceback"]
        assert file == __file__ and function == "charge" and isinstance(line, int)
        assert len(logs[0].calls[1].span_id) == 16 and logs[0].calls[0].span_id != (
            logs[0].calls[1].span_id
        )
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

    @settings(max_examples=200, deadline=None)
    @given(
        stamp=st.datetimes(
            min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31)
        )
    )
    def test_any_start_time_is_an_iso_timestamp_both_ways(self, stamp: datetime.datetime) -> None:
        """
        A log started at any time from year 1 to 9999 is written with an ISO 8601
        timestamp (four-digit year) that every reader parses back to the same instant.
        """
        with capture() as logs:
            checkout(7)
        d = logs[0].to_dict()
        d["started_at"] = stamp.replace(tzinfo=datetime.UTC).isoformat()
        log = Log.from_dict(d)
        line = encode_logs([log])
        text = json.loads(line)["started_at"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", text), text
        assert datetime.datetime.fromisoformat(text) == stamp.replace(tzinfo=datetime.UTC)
        assert decode_line(line) == log
        assert log.to_dict()["started_at"] == text

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


@tr.probe(fname="odd\u2028name")
def odd(text: str, n: int) -> None:
    asynctrack.add_data("text", text)
    for i in range(n):
        with contextlib.suppress(ValueError):
            deep(i)


@tr.probe
def deep(i: int) -> None:
    if i % 4 == 1:
        raise ValueError(f"bad {i}\u2029")


def _records_strategy() -> st.SearchStrategy[tuple[Any, ...]]:
    # One call's ten slots; start and end as offsets from the log's start (ns); the
    # parent as a number of calls, made a slot index of the list by the test.
    metas = st.sampled_from(
        [("f", "t", "INFO"), ("g.h", "tests.records", "DEFAULT"), ("odd\u2028", "t", "25")]
    )
    status = st.sampled_from(
        [
            ("ok", None, None),
            ("error", "ValueError: bad", None),
            ("error", "KeyError: 'k'", [("a.py", 3, "f"), ("b\u2028.py", 9, "g")]),
            ("cancelled", "CancelledError", None),
        ]
    )
    params = st.dictionaries(st.sampled_from(["a", "b", "user"]), st.integers() | st.text())
    data = st.none() | st.dictionaries(st.sampled_from(["k", "rows"]), st.integers(0, 9))
    return st.builds(
        lambda meta, depth, p, d, start, dur, se, parent: (
            meta,
            depth,
            p,
            d,
            start,
            start + dur,
            se[0],
            se[1],
            parent,
            se[2],
        ),
        metas,
        st.integers(0, 4),
        params,
        data,
        st.integers(0, 10**9),
        st.integers(1, 10**9),
        status,
        st.none() | st.integers(0, 100),
    )


def _reference(logs: list[Log]) -> bytes:
    # The general path: the documented dict form, encoded value by value.
    return b"".join(encode_obj(log.to_dict()) + b"\n" for log in logs)


def _varied_logs() -> list[Log]:
    with capture() as logs:
        checkout(1)
        odd("é … \u0085", 3)
        odd("x", 100)  # more calls than the encoder keeps call lists for
    made = list(logs)
    made[0].parent_id = 'weird "parent"\u2028'
    made[1].dropped_calls = 2
    late = copy.copy(made[2])
    late.complete = False
    unordered = copy.copy(made[1])
    flat = unordered._raw or []
    n = len(flat) // REC
    # Raced threads: the calls in reverse order, parent slots moved along.
    unordered._raw = [
        x if k != PARENT or x is None else (n - 1 - x // REC) * REC
        for i in range(len(flat) - REC, -1, -REC)
        for k, x in enumerate(flat[i : i + REC])
    ]
    read = copy.copy(made[0])
    _ = read.calls  # materialised (and maybe edited by a hook): the general path
    by_hand = Log(
        id="f" * 32,
        started_at="2026-11-28T17:35:20.000001+00:00",
        calls=[Call(seq=0, depth=0, function="f", tracker="t", params={"n": 2**70})],
    )
    return [*made, late, unordered, read, by_hand]


class TestEncoder:
    def test_fast_path_is_byte_identical_to_the_dict_form(self) -> None:
        """
        encode_logs writes exactly the bytes of encoding to_dict(), for every kind of log.
        """
        logs = _varied_logs()
        expected = _reference([copy.copy(log) for log in logs])
        general: list[Log] = []
        dump_dict = encode._dump_dict

        def spy(log: Log, *args: Any) -> bytes:
            general.append(log)
            return dump_dict(log, *args)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(encode, "_dump_dict", spy)
            assert encode_logs([copy.copy(log) for log in logs]) == expected
        # Only the unordered, the materialised and the hand-built log take the general path.
        assert [log.id for log in general] == [log.id for log in logs[-3:]]
        for line, log in zip(expected.splitlines(), logs, strict=True):
            assert list(json.loads(line)) == list(log.to_dict())
        # Once more with the ids already read (cached on the logs).
        assert encode_logs(logs) == expected
        assert encode_log(logs[1]) == expected.split(b"\n")[1] + b"\n"

    def test_fallbacks_give_the_same_bytes(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        Without orjson.Fragment, and without orjson at all, the lines are the same.
        """
        logs = _varied_logs()
        expected = encode_logs([copy.copy(log) for log in logs])
        monkeypatch.setattr(encode, "_Fragment", None)
        assert encode_logs([copy.copy(log) for log in logs]) == expected
        monkeypatch.setattr(encode, "_dumps", None)
        assert encode_logs([copy.copy(log) for log in logs]) == expected

    @settings(max_examples=60, deadline=None)
    @given(
        records=st.lists(_records_strategy(), min_size=1, max_size=70),
        shuffle=st.booleans(),
        parent=st.tuples(
            st.none() | st.text(max_size=3),
            st.none() | st.integers(0, 3),
            st.none() | st.sampled_from(["00f067aa0ba902b7"]),
        ),
        wall_ns=st.integers(0, 2**62),
        number=st.integers(1, 2**48 + 2),
    )
    def test_any_flat_record_list_encodes_like_the_dict_form(
        self,
        records: list[tuple[Any, ...]],
        shuffle: bool,
        parent: tuple[Any, Any, Any],
        wall_ns: int,
        number: int,
    ) -> None:
        """
        For any calls in a log's flat record list — out of start order, with data,
        errors or cancellations — and any start time, log number and parent fields,
        encode_logs writes the bytes of to_dict().
        """
        with capture() as logs:
            checkout(1)
        log = copy.copy(logs[0])
        log.parent_id, log.parent_seq, log.remote_parent = parent
        log._wall_ns = wall_ns
        log._number = number
        t0 = log._t0
        ordered = sorted(records, key=lambda r: r[4], reverse=shuffle)
        n = len(ordered)
        log._raw = [
            t0 + v if k in (4, 5) else (v % n) * REC if k == PARENT and v is not None else v
            for rec in ordered
            for k, v in enumerate(rec)
        ]
        assert encode_logs([log]) == _reference([copy.copy(log)])

    def test_small_caches_and_concurrent_encoders(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """
        The probe-fragment cache may be cleared at any time; threads encoding at once
        each get their own reusable dicts.
        """
        monkeypatch.setattr(encode, "_META_MAX", 2)
        logs = _varied_logs()
        expected = _reference([copy.copy(log) for log in logs])
        results: list[bytes] = []

        def encode_many() -> None:
            for _ in range(30):
                results.append(encode_logs([copy.copy(log) for log in logs]))

        threads = [threading.Thread(target=encode_many) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 120 and set(results) == {expected}

    @settings(max_examples=60, deadline=None)
    @given(
        specs=st.lists(
            st.tuples(
                st.lists(_records_strategy(), min_size=1, max_size=6),
                st.tuples(
                    st.none() | st.text(max_size=3),
                    st.none() | st.integers(0, 3),
                    st.none() | st.sampled_from(["00f067aa0ba902b7"]),
                ),
                st.integers(0, 3_000_000_000),  # within a few seconds of each other
                st.integers(1, 2**48 + 2),
                st.booleans(),  # its id read before (cached on the log)
                st.integers(0, 2),  # dropped calls
            ),
            min_size=2,
            max_size=6,
        )
    )
    def test_a_batch_encodes_like_its_logs_one_by_one(self, specs: list[tuple[Any, ...]]) -> None:
        """
        The state encode_logs carries from line to line (reused call dicts put back
        after a call with data or an error, the second and id prefix of the last
        stamp, the head with or without parent fields) never leaks into the next
        line: a batch is the concatenation of its logs' dict forms.
        """
        with capture() as captured:
            checkout(1)
        base = captured[0]
        logs = []
        for records, parent, wall, number, read_id, dropped in specs:
            log = copy.copy(base)
            log._id = log._trace = None
            log.parent_id, log.parent_seq, log.remote_parent = parent
            log._wall_ns = 1_700_000_000 * 10**9 + wall
            log._number = number
            log.dropped_calls = dropped
            n = len(records)
            log._raw = [
                log._t0 + v
                if k in (4, 5)
                else (v % n) * REC
                if k == PARENT and v is not None
                else v
                for rec in sorted(records, key=lambda r: r[4])
                for k, v in enumerate(rec)
            ]
            if read_id:
                _ = log.id
            logs.append(log)
        assert encode_logs([copy.copy(log) for log in logs]) == _reference(
            [copy.copy(log) for log in logs]
        )

    def test_an_encoder_that_raised_leaves_no_values_behind(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        The reusable dicts are kept from call to call; an exception in the middle of a
        log (its data and status already set) does not leak them into the next line.
        """
        with capture() as logs:
            checkout(1)  # data on the root call, an error on the second
            checkout(2)
        failing, clean = logs
        raw = clean._raw = list(clean._raw or [])  # the same calls without data or error
        for i in range(0, len(raw), REC):
            raw[i + DATA] = raw[i + ERROR] = raw[i + TRACEBACK] = None
            raw[i + STATUS] = "ok"
        expected = _reference([copy.copy(clean)])
        assert encode_logs([copy.copy(clean)]) == expected

        def boom(*args: Any) -> Any:
            raise RuntimeError("boom")

        with monkeypatch.context() as mp:
            mp.setattr(encode, "_status_fragment", boom)
            with pytest.raises(RuntimeError):
                encode_logs([copy.copy(failing)])
        assert encode_logs([copy.copy(clean)]) == expected
