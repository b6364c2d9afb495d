"""
No secret may be written (issue #14, section 6): a secret under a secret name at any
depth of any containers and objects with fields, or as the password of a URL of any
length in a value or a key, is never encoded in clear, whatever the limits.

Secrets are drawn from Greek letters and nothing else in the generated values is, so
one Greek letter anywhere in the output (a whole secret or the first character of
one left by a cut) is a leak.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import keyword
import types
import warnings
from pathlib import Path
from typing import Any

import attrs
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack._core.encode import encode_obj
from asynctrack._core.failure import describe_error
from asynctrack._core.values import DEFAULT_REDACT, Limits, convert, convert_mapping, set_limits

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # pydantic.v1 warns on Python versions it does not support
    import pydantic.v1 as pydantic_v1

GREEK = "αβγδεζηθικλμνξοπρστυφχψω"
secrets = st.text(GREEK, min_size=1, max_size=40) | st.text(GREEK, min_size=200, max_size=3000)
ascii_text = st.text("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 -_.:/@?#", max_size=30)
benign_names = st.from_regex(r"v_[a-z0-9]{1,6}", fullmatch=True)


def cased(word: str, flips: list[bool]) -> str:
    """
    ``word`` with the letters whose flip is set in upper case (redaction ignores case).
    """
    return "".join(
        c.upper() if f else c for c, f in zip(word, flips + [False] * len(word), strict=False)
    )


@st.composite
def secret_names(draw: st.DrawFn, identifier: bool = False) -> str:
    """
    A name containing an entry of the default redaction list, in any case and with
    any separators inside it, with text around it.
    """
    words = [w for w in DEFAULT_REDACT if w.isidentifier()] if identifier else DEFAULT_REDACT
    word = cased(draw(st.sampled_from(words)), draw(st.lists(st.booleans(), max_size=12)))
    # Spelled with any separators, or none (privateKey, private-key, "Private Key").
    seps = st.sampled_from(["", "_"] if identifier else ["", "_", "-", " ", "."])
    bare = word.replace("_", "").replace("-", "")
    word = bare[0] + "".join(draw(seps) + c for c in bare[1:])
    alphabet = "abcxyz" if identifier else "abcxyz-_ ."
    name = "x" + draw(st.text(alphabet, max_size=300)) + word + draw(st.text(alphabet, max_size=8))
    assert not identifier or (name.isidentifier() and not keyword.iskeyword(name))
    return name


@st.composite
def urls(draw: st.DrawFn) -> str:
    """
    Text holding a URL whose password is a secret (of any length).
    """
    scheme = draw(st.sampled_from(["postgresql+asyncpg", "mysql", "redis", "https", "amqp"]))
    user = draw(st.from_regex(r"[a-z@.]{0,12}", fullmatch=True))
    host = draw(st.from_regex(r"[a-z0-9.]{1,12}(:[0-9]{1,5})?", fullmatch=True))
    url = f"{scheme}://{user}:{draw(secrets)}@{host}"
    before = draw(ascii_text)
    after = draw(st.sampled_from(["", " ", "/", "?q=1", "#x"])) + draw(ascii_text)
    return before + url + after


@st.composite
def field_objects(draw: st.DrawFn, children: st.SearchStrategy[Any]) -> Any:
    """
    An instance of a freshly made class with fields: benign fields holding ``children``,
    maybe a secret-named field holding a secret, maybe a ``repr=False`` one holding one.
    """
    kind = draw(
        st.sampled_from(
            ["dataclass", "attrs", "namedtuple", "namespace", "pydantic", "pydantic_v1"]
        )
    )
    names = draw(st.lists(benign_names, unique=True, max_size=3))
    values = {name: draw(children) for name in names}
    if draw(st.booleans()):
        values[draw(secret_names(identifier=True))] = draw(secrets | children)
    hidden = None
    if kind in ("dataclass", "attrs") and draw(st.booleans()):
        hidden = "v_hidden"
        values[hidden] = draw(secrets)
    return make_instance(kind, values, hidden)


def make_instance(kind: str, values: dict[str, Any], hidden: str | None) -> Any:
    """
    An instance of a new class of ``kind`` whose fields hold ``values``.
    """
    if kind == "dataclass":
        fields = [(n, Any, dataclasses.field(repr=n != hidden)) for n in values]
        return dataclasses.make_dataclass("Form", fields)(**values)
    if kind == "attrs":
        cls = attrs.make_class("Form", {n: attrs.field(repr=n != hidden) for n in values})
        return cls(**values)
    if kind == "namedtuple":
        return collections.namedtuple("Form", list(values))(**values)  # type: ignore[misc]
    if kind == "namespace":
        return types.SimpleNamespace(**values)
    if kind == "pydantic":
        model = pydantic.create_model("Form", **{n: (Any, ...) for n in values})  # type: ignore[call-overload]
        return model(**values)
    model = pydantic_v1.create_model("Form", **{n: (Any, ...) for n in values})  # type: ignore[call-overload]
    return model(**values)


def secret_entries(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[Any, Any]]:
    """
    A dict with one secret-named key (a str, or a tuple naming it) over a secret value.
    """
    key = secret_names() | st.tuples(secret_names(), st.integers())
    return st.builds(lambda k, v: {k: v}, key, secrets | children)


leaves = st.none() | st.integers() | ascii_text | urls()
trees = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(ascii_text | urls(), children, max_size=4)
        | secret_entries(children)
        | field_objects(children)
        | st.builds(
            lambda a, b: {**a, **b},
            secret_entries(children),
            st.dictionaries(ascii_text, children, max_size=3),
        )
    ),
    max_leaves=10,
)
limits = st.builds(
    Limits,
    max_depth=st.integers(1, 8),
    max_items=st.integers(1, 12),
    max_string=st.integers(1, 400),
)


def strings_in(value: Any) -> list[str]:
    """
    Every string in a decoded JSON value, keys included.
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings_in(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


def leaked(line: bytes) -> list[str]:
    """
    The strings of an encoded value that hold a Greek letter: a secret, or part of one.
    """
    return [s for s in strings_in(json.loads(line)) if any(c in GREEK for c in s)]


class TestNoSecretEncoded:
    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(value=trees, lim=limits)
    def test_no_secret_in_any_value_under_any_limits(self, value: Any, lim: Limits) -> None:
        """
        Secrets under secret names at any depth of dicts, lists, tuples, pydantic v1/v2
        models, dataclasses, attrs classes, named tuples and namespaces, in repr=False
        fields, and as URL passwords of any length in values and keys: never encoded,
        under any depth, item and string limits.
        """
        set_limits(lim)
        assert leaked(encode_obj(convert(value))) == []
        assert leaked(encode_obj(convert_mapping({"p": value, "q": [value]}))) == []

    @settings(max_examples=200, deadline=None)
    @given(text=urls(), limit=st.integers(1, 400))
    def test_no_secret_in_error_messages(self, text: str, limit: int) -> None:
        """
        An error message with a URL password is cut after the password is redacted: no
        prefix of it survives, whatever ``max_string``.
        """
        set_limits(Limits(max_string=limit))
        assert not any(c in GREEK for c in describe_error(ValueError(text)))


@pytest.fixture
def anyio_backend() -> str:
    """
    The sinks' I/O runs on asyncio (the dispatcher's loop).
    """
    return "asyncio"


class LoginForm(pydantic.BaseModel):
    username: str
    password: str


class LoginFormV1(pydantic_v1.BaseModel):
    username: str
    password: str


@attrs.define
class Credentials:
    user: str
    api_key: str
    cache: str = attrs.field(repr=False, default="")


@pytest.mark.anyio
class TestNoSecretWritten:
    async def test_fastapi_style_bodies_reach_the_file_without_secrets(
        self, tmp_path: Path
    ) -> None:
        """
        The README's FastAPI pattern, a pydantic body with a password, and its v1, attrs,
        dataclass, namedtuple and namespace cousins, plus a 4 kB IAM token in a DSN and a
        short ``max_string``: neither the FileSink file nor the SQLite database holds
        any of the secrets.
        """

        @dataclasses.dataclass
        class Signup:
            email: str
            client_secret: str

        Pair = collections.namedtuple("Pair", "name token")
        iam = "δ" * 4096
        path = tmp_path / "track.jsonl"
        db = tmp_path / "track.db"
        asynctrack.configure(
            sinks=[asynctrack.FileSink(path), asynctrack.SQLSink(f"sqlite+aiosqlite:///{db}")],
            max_string=16,
        )
        tr = asynctrack.get_tracker("tests.secrets")

        @tr.probe
        def handle(body: Any, dsn: str, headers: dict[str, str]) -> None:
            raise ConnectionError(f"cannot reach {dsn}")

        bodies: list[Any] = [
            LoginForm(username="bob", password="αβγ"),
            LoginFormV1(username="bob", password="αβγ"),
            Credentials(user="bob", api_key="αβγ", cache="εζη"),
            Signup(email="b@x", client_secret="αβγ"),
            Pair("bob", "αβγ"),
            types.SimpleNamespace(user="bob", session_id="αβγ"),
        ]
        for body in bodies:
            with pytest.raises(ConnectionError):
                handle(
                    body,
                    f"postgresql://app:{iam}@db.internal/prod",
                    {"x-amz-security-token": "θικ"},
                )
        assert await asynctrack.flush(timeout=30)
        await asynctrack.shutdown()
        text = path.read_text("utf-8")
        assert text.count("\n") == len(bodies)
        assert not any(c in GREEK for c in text)
        stored = db.read_bytes().decode("utf-8", "ignore")
        assert "cannot reach" in stored
        assert not any(c in GREEK for c in stored)
        first = json.loads(text.splitlines()[0])["calls"][0]["params"]["body"]
        assert first == {"username": "bob", "password": "[REDACTED]"}
