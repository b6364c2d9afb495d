"""
Conversion of recorded values: JSON-safe, bounded, redacted, never raising.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import uuid
from pathlib import PurePosixPath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack._core.values import REDACTED, Limits, convert, set_limits


class Color(enum.Enum):
    RED = 1


@dataclasses.dataclass
class Point:
    x: int
    y: float


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Tracked:
    def __track__(self) -> dict[str, int]:
        return {"id": 7}


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


class Euro(Money):
    pass


class TestConvert:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param(None, None, id="none"),
            pytest.param(True, True, id="bool"),
            pytest.param(2**70, 2**70, id="bigint"),
            pytest.param(1.5, 1.5, id="float"),
            pytest.param(float("nan"), "NaN", id="nan"),
            pytest.param(float("inf"), "Infinity", id="inf"),
            pytest.param(float("-inf"), "-Infinity", id="-inf"),
            pytest.param("héllo\n", "héllo\n", id="str"),
            pytest.param(b"\x00ab", "b'\\x00ab'", id="bytes"),
            pytest.param((1, [2, {3}]), [1, [2, [3]]], id="nested"),
            pytest.param({1: "a", None: "b"}, {"1": "a", "None": "b"}, id="keys"),
            pytest.param(dt.datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05", id="datetime"),
            pytest.param(dt.date(2026, 1, 2), "2026-01-02", id="date"),
            pytest.param(dt.timedelta(seconds=1.5), 1.5, id="timedelta"),
            pytest.param(decimal.Decimal("1.10"), "1.10", id="decimal"),
            pytest.param(uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001", id="uuid"),
            pytest.param(PurePosixPath("/a/b"), "/a/b", id="path"),
            pytest.param(Color.RED, "Color.RED", id="enum"),
            pytest.param(Point(1, 2.0), {"x": 1, "y": 2.0}, id="dataclass"),
            pytest.param(Tracked(), {"id": 7}, id="__track__"),
            pytest.param(BadRepr(), "<unrepresentable BadRepr>", id="bad-repr"),
        ],
    )
    def test_forms(self, value: Any, expected: Any) -> None:
        """
        Each kind of value has its documented recorded form.
        """
        assert convert(value) == expected

    def test_limits_and_markers(self) -> None:
        """
        Long strings, long containers and deep nesting are cut with markers.
        """
        set_limits(Limits(max_depth=2, max_items=3, max_string=5))
        assert convert("abcdefgh") == "abcde…[+3 chars]"
        assert convert(list(range(10))) == [0, 1, 2, "…[+7 items]"]
        assert convert({i: i for i in range(5)}) == {"0": 0, "1": 1, "2": 2, "…": "[+2 items]"}
        assert convert([[[1]]]) == [["<list of 1 items>"]]

    def test_huge_and_cyclic_values_are_bounded(self) -> None:
        """
        A 50 MB string, a million-item list and a cyclic dict convert quickly and small.
        """
        cyc: dict[str, Any] = {}
        cyc["self"] = cyc
        for value in ("x" * 50_000_000, list(range(1_000_000)), cyc):
            out = json.dumps(convert(value), allow_nan=False)
            assert len(out) < 20_000

    def test_represent_follows_mro(self) -> None:
        """
        represent() covers subclasses; its function's errors become placeholders.
        """
        asynctrack.represent(Money, lambda m: f"{m.cents / 100:.2f} EUR")
        assert convert(Euro(150)) == "1.50 EUR"
        asynctrack.represent(Euro, lambda m: 1 / 0)
        assert convert(Euro(1)) == "<unrepresentable Euro>"
        with pytest.raises(TypeError):
            asynctrack.represent("Money", str)  # type: ignore[arg-type]

    def test_redaction_in_nested_keys(self) -> None:
        """
        Sensitive keys are redacted at any depth, case-insensitively.
        """
        value = {"a": {"DB_PASSWORD": "x", "list": [{"Cookie": "c"}]}}
        assert convert(value) == {"a": {"DB_PASSWORD": REDACTED, "list": [{"Cookie": REDACTED}]}}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda children: (
        st.lists(children)
        | st.dictionaries(st.text(), children)
        | st.tuples(children, children)
        | st.frozensets(st.integers())
    ),
    max_leaves=20,
)


class TestConvertProperty:
    @settings(max_examples=300, deadline=None)
    @given(value=json_values)
    def test_result_is_strict_json(self, value: Any) -> None:
        """
        Any value converts to something strict JSON accepts (no NaN), without raising.
        """
        out = convert(value)
        text = json.dumps(out, allow_nan=False)
        assert json.loads(text) == out or any(isinstance(x, float) and math.isnan(x) for x in [out])


class TestUrlUserInfo:
    def test_url_passwords_are_redacted_in_values(self) -> None:
        """
        The password of a URL with user-info is redacted wherever the URL appears.
        """
        assert convert("postgresql://bob:s3cr3t@db/x") == "postgresql://bob:[REDACTED]@db/x"
        assert convert(["redis://:pw@h:6379/0"]) == ["redis://:[REDACTED]@h:6379/0"]
        assert convert("mail bob@example.com, see https://a.b/c") == (
            "mail bob@example.com, see https://a.b/c"
        )

    def test_url_passwords_in_probe_params(self) -> None:
        """
        The probe's inline fast path for short strings also scrubs URLs.
        """
        tr = asynctrack.get_tracker("tests.values")

        @tr.probe
        def connect(dsn: str) -> None: ...

        from asynctrack.testing import capture

        with capture() as logs:
            connect("mysql://root:hunter2@127.0.0.1/test")
        assert logs[0].calls[0].params == {"dsn": "mysql://root:[REDACTED]@127.0.0.1/test"}
