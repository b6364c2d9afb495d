"""
Conversion of recorded values: JSON-safe, bounded, redacted, never raising; objects
with fields recorded field by field, keys kept distinct (issue #14).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import re
import types
import uuid
import warnings
from pathlib import PurePosixPath
from typing import Any

import attrs
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack._core import values
from asynctrack._core.redact import clip, scrub
from asynctrack._core.values import REDACTED, Limits, convert, set_limits

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pydantic.v1 warns on Python versions it does not support
    import pydantic.v1 as pydantic_v1


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

    def test_passwords_of_any_length(self) -> None:
        """
        URL passwords are redacted whatever their length (kilobyte IAM tokens), also when
        the string is cut: no prefix of the password is kept before the cut.
        """
        for n in (1, 256, 257, 5000, 100_000):
            dsn = f"postgresql://app:{'p' * n}@db.internal:5432/prod"
            assert convert(dsn) == "postgresql://app:[REDACTED]@db.internal:5432/prod"
        set_limits(Limits(max_string=20))
        assert convert("postgresql://app:secretsecret@db/x") == ("postgresql://app:[RE…[+12 chars]")
        assert convert(b"mysql://root:hunter2@h/db") == "b'mysql://root:[REDACT'…[+8 bytes]"
        assert convert(b"m://r:" + b"p" * 5000 + b"@h") == "b'm://r:[REDACTED]@h'"

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            pytest.param("a://u:p@ss@host/db", "a://u:[REDACTED]@host/db", id="at-in-password"),
            pytest.param("a://u:pa/ss@h", "a://u:[REDACTED]@h", id="slash-in-password"),
            pytest.param(
                "pg://bob@corp.com:pw@h/db", "pg://bob@corp.com:[REDACTED]@h/db", id="at-in-user"
            ),
            pytest.param("x://u:1234@h", "x://u:[REDACTED]@h", id="digits"),
            pytest.param(
                "https://h:443/path?mail=a@b", "https://h:443/path?mail=a@b", id="port-then-at"
            ),
            pytest.param(
                "see http://h:80 or mail a@b", "see http://h:80 or mail a@b", id="space-then-at"
            ),
            pytest.param("x://u:pw@host?to=a@b", "x://u:[REDACTED]@host?to=a@b", id="at-in-query"),
            pytest.param(
                "a://u:p@h b://v:q@h2", "a://u:[REDACTED]@h b://v:[REDACTED]@h2", id="two"
            ),
        ],
    )
    def test_url_forms(self, text: str, expected: str) -> None:
        """
        The user-info is read as SQLAlchemy and urllib read it, except across whitespace
        and ports: members of the class, in both directions.
        """
        assert convert(text) == expected

    @settings(max_examples=300, deadline=None)
    @given(
        before=st.text("ab :/@", max_size=20),
        password=st.text("pq:/@?#", min_size=1, max_size=600).filter(
            lambda p: "@" not in p[-1:] and not p[0].isdigit()
        ),
        limit=st.integers(1, 700),
    )
    def test_no_prefix_survives_a_cut(self, before: str, password: str, limit: int) -> None:
        """
        Whatever the text before the URL, the password and the cut: nothing of the
        password's first character onwards is kept when it ends at the host's "@".
        """
        set_limits(Limits(max_string=limit))
        text = f"{before} pg://app:Z{password}@db/prod"
        assert "Z" not in convert(text)

    @settings(max_examples=500, deadline=None)
    @given(parts=st.lists(st.sampled_from(["://", "a", "b:", "1", "@", "/", " ", "?", "#", ":"])))
    def test_scrub_follows_its_rules(self, parts: list[str]) -> None:
        """
        The linear scrubber redacts exactly what a naive reading of its rules does, on
        any text made of URL punctuation.
        """
        text = "".join(parts)
        assert scrub(text) == naive_scrub(text)

    @settings(max_examples=500, deadline=None)
    @given(
        parts=st.lists(st.sampled_from(["://", "a", "b:", "@", "/", " ", "?", ":", "p" * 20])),
        limit=st.integers(1, 200),
    )
    def test_clip_is_scrub_then_cut(self, parts: list[str], limit: int) -> None:
        """
        Cutting never changes what is redacted: a text whose redacted form fits is the
        redacted form; a longer one keeps at most ``limit`` characters and a marker.
        """
        text = "".join(parts)
        full, cut = scrub(text), clip(text, limit)
        if len(full) <= limit:
            assert cut == full
        else:
            assert len(cut[: cut.rindex("…[+")]) <= limit

    def test_hostile_strings_finish(self) -> None:
        """
        Strings built to make a scanner quadratic (many URL starts, many "@") finish: the
        scan is linear (pytest's timeout is the bound; no timing assert).
        """
        set_limits(Limits(max_string=2_000_000))
        for text in (
            "a://u:" * 200_000 + " @",
            "a://u:" + "@" * 1_000_000,
            "a://u:p@h " * 100_000,
            "a://" + "u:1/" * 300_000 + "@",
        ):
            assert isinstance(convert(text), str)


def naive_scrub(s: str) -> str:
    """
    The scrubber's rules, read naively (quadratic): the user name runs to a ":", the
    password to the next "@" and on to the last "@" of the host part; not across
    whitespace, not when it starts with a port.
    """
    out: list[str] = []
    pos = 0
    i = s.find("://")
    while i >= 0:
        user = re.match(r"[^/\s:]*:", s[i + 3 :])
        if user is None:
            i = s.find("://", i + 3)
            continue
        start = i + 3 + user.end()
        at = s.find("@", start)
        if at < 0:
            break
        if re.search(r"\s", s[start:at]) or re.match(r"\d{1,5}[/?#]", s[start:at]):
            i = s.find("://", start)
            continue
        host = re.match(r"[^/?#\s]*", s[at + 1 :])
        assert host is not None
        last = s.rfind("@", at + 1, at + 1 + host.end())
        out += [s[pos:start], REDACTED]
        pos = last if last >= 0 else at
        i = s.find("://", pos)
    return "".join(out) + s[pos:]


class LoginV2(pydantic.BaseModel):
    username: str
    password: str


class LoginV1(pydantic_v1.BaseModel):
    username: str
    password: str


class Extra(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    user: str


@attrs.define
class Creds:
    user: str
    api_key: str
    cache: str = attrs.field(repr=False, default="c")


@dataclasses.dataclass
class Hidden:
    user: str
    blob: str = dataclasses.field(repr=False, default="b")


Pair = collections.namedtuple("Pair", "name token")


class TestFieldObjects:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param(
                LoginV2(username="bob", password="hunter2"),
                {"username": "bob", "password": REDACTED},
                id="pydantic-v2",
            ),
            pytest.param(
                LoginV1(username="bob", password="hunter2"),
                {"username": "bob", "password": REDACTED},
                id="pydantic-v1",
            ),
            pytest.param(
                Extra(user="bob", auth_token="t", n=1),
                {"user": "bob", "auth_token": REDACTED, "n": 1},
                id="pydantic-extra",
            ),
            pytest.param(Creds("bob", "k"), {"user": "bob", "api_key": REDACTED}, id="attrs"),
            pytest.param(Hidden("bob"), {"user": "bob"}, id="dataclass-repr-false"),
            pytest.param(Pair("bob", "t"), {"name": "bob", "token": REDACTED}, id="namedtuple"),
            pytest.param(
                types.SimpleNamespace(user="bob", session_id="s"),
                {"user": "bob", "session_id": REDACTED},
                id="namespace",
            ),
            pytest.param(
                [LoginV2(username="a", password="p")],
                [{"username": "a", "password": REDACTED}],
                id="nested",
            ),
        ],
    )
    def test_recorded_field_by_field(self, value: Any, expected: Any) -> None:
        """
        Objects with declared fields are recorded as dicts of their fields, through the
        same redaction as dicts, never by a repr that would show the password.
        """
        assert convert(value) == expected

    def test_limits_apply_as_to_dicts(self) -> None:
        """
        Item and depth limits cut field objects like dicts.
        """
        set_limits(Limits(max_depth=1, max_items=1))
        assert convert(Creds("bob", "k")) == {"user": "bob", "…": "[+1 items]"}
        assert convert([Creds("bob", "k")]) == ["<depth limit: Creds>"]

    def test_representations_win_and_failures_are_placeholders(self) -> None:
        """
        represent() and __track__ still decide; a field never set is left out; a field
        whose reading fails gives a placeholder, not the repr.
        """

        @dataclasses.dataclass
        class Job:
            id: int
            password: str

            def __track__(self) -> dict[str, int]:
                return {"job": self.id}

        assert convert(Job(1, "p")) == {"job": 1}

        @dataclasses.dataclass
        class Unset:
            user: str
            password: str

        unset = Unset("bob", "hunter2")
        del unset.user
        assert convert(unset) == {"password": REDACTED}

        @dataclasses.dataclass
        class Broken:
            password: str

            def __getattribute__(self, name: str) -> Any:
                if name == "password":
                    raise RuntimeError("no")
                return object.__getattribute__(self, name)

        out = convert(Broken("hunter2"))
        assert out.startswith("<unrepresentable ") and out.endswith("Broken>")

    def test_other_objects_keep_their_repr(self) -> None:
        """
        Objects without declared fields are still recorded by their repr.
        """

        class Plain:
            def __init__(self) -> None:
                self.password = "hunter2"

            def __repr__(self) -> str:
                return "Plain()"

        assert convert(Plain()) == "Plain()"


class TestKeys:
    def test_distinct_keys_stay_distinct(self) -> None:
        """
        Three tuple keys stay three keys; an int key and its str form both stay.
        """
        assert convert({(1, 2): "a", (1, 3): "b", (2, 3): "c"}) == {
            "[1,2]": "a",
            "[1,3]": "b",
            "[2,3]": "c",
        }
        assert convert({1: "a", "1": "b", "1 #2": "c"}) == {"1": "a", "1 #2": "b", "1 #2 #2": "c"}
        assert convert({"…": "mine", "a": 1, "b": 2}) != {"…": "[+1 items]"}

    def test_keys_are_checked_before_the_cut(self) -> None:
        """
        With a small max_string a long secret-named key is still redacted, and a key
        holding a URL has its password redacted.
        """
        set_limits(Limits(max_string=5))
        out = convert({"x-amz-security-token": "t", "postgresql://u:pw@h": 1})
        assert list(out.values()) == [REDACTED, 1]
        assert "pw" not in json.dumps(out)
        set_limits(Limits(max_string=1))
        assert list(convert({("xpassword", 0): "p"}).values()) == [REDACTED]

    def test_huge_int_keys(self) -> None:
        """
        An int key beyond the digit limit becomes a placeholder key, not an error.
        """
        assert convert({10**5000: 1}) == {"<int of 16610 bits>": 1}

    @settings(max_examples=300, deadline=None)
    @given(
        keys=st.lists(
            st.none()
            | st.booleans()
            | st.integers()
            | st.text(max_size=5)
            | st.tuples(st.integers(), st.text(max_size=3))
            | st.frozensets(st.integers(), max_size=3),
            unique=True,
            max_size=30,
        )
    )
    def test_key_count_is_kept(self, keys: list[Any]) -> None:
        """
        However many distinct keys of whatever types a dict has, its conversion has as
        many (up to max_items).
        """
        d: dict[Any, int] = {}
        for i, k in enumerate(keys):
            d[k] = i
        assert len(convert(d)) == len(d)


class _ReconfiguredMidway(dict[str, bool]):
    """
    A redaction cache whose size check, between classifying a name and storing the
    result, is where a reconfiguration by another thread lands.
    """

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits: Limits | None = limits

    def __len__(self) -> int:
        limits, self.limits = self.limits, None
        if limits is not None:
            set_limits(limits)
        return super().__len__()


class TestRedactionCache:
    def test_a_name_classified_during_a_reconfiguration_is_not_cached_stale(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        A name classified by the old redaction list while configure() installs a new
        one is not remembered as the old list said: afterwards the new list decides
        (else a name newly made secret is written in clear until the next configure).
        """
        cache = _ReconfiguredMidway(Limits(redact=("blob",)))
        monkeypatch.setattr(values, "_REDACT_CACHE", cache)
        assert not asynctrack.is_redacted("blob_value")  # the old list, mid-change
        assert asynctrack.is_redacted("blob_value")
        assert "blob_value" not in values.PLAIN_NAMES
