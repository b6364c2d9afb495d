"""
Property fuzzing (issue #7, item 16): the value converter never raises and always
yields bounded, strict, one-line JSON with secrets redacted; a log survives the trip
``Log.to_dict`` → JSON lines → ``read_logs`` unchanged.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack._core.encode import encode_logs, encode_obj
from asynctrack._core.values import REDACTED, convert, current_limits, is_redacted
from asynctrack.sinks import read_logs
from asynctrack.testing import capture

tr = asynctrack.get_tracker("rel.fuzz")


class Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass
class Point:
    x: Any
    y: Any


class BadRepr:
    def __repr__(self) -> str:
        raise ValueError("nope")


class BadLen(dict[str, Any]):
    def __len__(self) -> int:
        raise RuntimeError("len")


# Every character, lone surrogates and line breaks included.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
names = st.one_of(
    any_text,
    st.sampled_from(["password", "X-Api-Key", "Authorization", "refresh_TOKEN", "sessionid"]),
)
atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    st.binary(max_size=40),
    st.just(Colour.RED),
    st.builds(BadRepr),
    st.builds(lambda n: "u" * n + "://user:pw@host", st.integers(0, 1200)),
)
values = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.tuples(inner, inner),
        st.dictionaries(names, inner, max_size=6),
        st.dictionaries(st.integers() | st.none() | st.floats(), inner, max_size=4),
        st.builds(Point, inner, inner),
        st.frozensets(st.integers(), max_size=4),
        st.builds(BadLen),
    ),
    max_leaves=25,
)


def _no_constants(name: str) -> Any:
    raise ValueError(name)


def walk(node: Any, depth: int = 0) -> None:
    """
    Check the converted form: JSON types only, bounded strings and containers,
    sensitive keys redacted.
    """
    lim = current_limits()
    assert depth <= lim.max_depth + 1
    if isinstance(node, str):
        assert len(node) <= lim.max_string + len("…[+99999999999 chars]")
    elif isinstance(node, float):
        assert math.isfinite(node)
    elif isinstance(node, list):
        assert len(node) <= lim.max_items + 1
        for item in node:
            walk(item, depth + 1)
    elif isinstance(node, dict):
        assert len(node) <= lim.max_items + 1
        for key, item in node.items():
            assert isinstance(key, str)
            if is_redacted(key):
                assert item == REDACTED
            else:
                walk(item, depth + 1)
    else:
        assert node is None or isinstance(node, (bool, int))


def replace_surrogates(obj: Any) -> Any:
    if isinstance(obj, str):
        return obj.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(obj, list):
        return [replace_surrogates(x) for x in obj]
    if isinstance(obj, dict):
        return {replace_surrogates(k): replace_surrogates(v) for k, v in obj.items()}
    return obj


class TestConverter:
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(value=values)
    def test_converted_values_are_bounded_strict_one_line_json(self, value: Any) -> None:
        """
        Any value converts without raising to bounded JSON types, encodes as one strict
        JSON line, and decodes back to the converted form (surrogates as U+FFFD).
        """
        out = convert(value)
        walk(out)
        line = encode_obj(out).decode("utf-8")
        assert "\n" not in line and len(line.splitlines()) <= 1
        assert json.loads(line, parse_constant=_no_constants) == replace_surrogates(out)


@tr.probe
def handler(value: Any, **kwargs: Any) -> None:
    asynctrack.add_info("note", value)
    asynctrack.add_data("echo", kwargs)
    inner(value)


@tr.probe
def inner(value: Any) -> None:
    if isinstance(value, str) and value[:1] == "!":
        raise RuntimeError(value)


class TestRoundTrip:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        batch=st.lists(
            st.tuples(values, st.dictionaries(names, values, max_size=3)), min_size=1, max_size=4
        )
    )
    def test_to_dict_json_lines_read_logs(self, batch: list[tuple[Any, dict[str, Any]]]) -> None:
        """
        Logs built from fuzzed parameters, info and data, written as JSON lines and read
        back with read_logs, equal the originals (as JSON forms, surrogates as U+FFFD).
        """
        with capture() as logs:
            for value, kwargs in batch:
                try:
                    handler(value, **{f"kw_{k}": v for k, v in kwargs.items()})
                except RuntimeError:
                    pass
        fd, name = tempfile.mkstemp(suffix=".jsonl")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(encode_logs(logs))
            back = list(read_logs(Path(name), rotated=False))
        finally:
            os.unlink(name)
        assert len(back) == len(logs) == len(batch)
        for original, read in zip(logs, back, strict=True):
            assert read.to_dict() == replace_surrogates(original.to_dict())
            assert read.id == original.id and read.started_at == original.started_at
