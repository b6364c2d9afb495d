"""
Generated wrappers run exactly like the functions they wrap (#14, section 1).

A property test generates signatures whose parameter names collide with builtins and
with every name the generated code uses, calls them in random ways and checks that the
probed function returns, yields and raises exactly what the unprobed one does, with
tracking on, off, below threshold and inside a silenced subtree. Then one test per
``functools.wraps`` decorator style, and readable tracebacks through a probe.
"""

from __future__ import annotations

import builtins
import functools
import gc
import inspect
import keyword
import linecache
import re
import traceback
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import DEBUG, NONE
from asynctrack._core import calltree, wrapsrc
from asynctrack._core import params as params_module
from asynctrack._core import probe as probe_module
from asynctrack._core.runtime import RUNTIME
from asynctrack.testing import capture

tr = asynctrack.get_tracker("tests.wrappers")

_P = inspect.Parameter
KINDS = ("sync", "coroutine", "generator", "async generator")
MODES = ("on", "off", "below threshold", "silenced")


def _generated_names() -> set[str]:
    """
    Every name the generated code of a probe uses, with and without its prefix.
    """

    def sample(a: int, /, b: int, *args: int, c: int = 1, **kw: int) -> None: ...

    async def asample(a: int, /, b: int, *args: int, c: int = 1, **kw: int) -> None: ...

    names: set[str] = set()
    with capture():
        for func in (sample, asample):
            probed = tr.probe(func)
            if func is sample:
                probed(1, 2)
            else:
                probed(1, 2).close()
            code = probed.__code__
            names.update(code.co_names, code.co_varnames, probed.__globals__)
    names.discard("__builtins__")
    names |= {n.removeprefix("_at_") for n in names}
    names |= {"args", "kwargs", "wrapper", "pb", "bind", "_at_pb", "_at_bind", "_at_args"}
    return {n for n in names if n.isidentifier() and not keyword.iskeyword(n)}


GENERATED = sorted(_generated_names())
BUILTINS = sorted(
    n
    for n in dir(builtins)
    if n.isidentifier() and not keyword.iskeyword(n) and n != "__debug__"  # not assignable
)


def _usable(name: str) -> bool:
    # Python compares identifiers after NFKC normalisation.
    norm = unicodedata.normalize("NFKC", name)
    return (
        norm.isidentifier()
        and not keyword.iskeyword(norm)
        and norm != "__debug__"
        and not norm.startswith("_fx_")
    )


IDENTIFIERS = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,7}", fullmatch=True),
    st.text(min_size=1, max_size=4),  # non-ASCII identifiers, ligatures (NFKC) included
).filter(lambda n: n.isidentifier() and _usable(n))
NAMES = st.one_of(st.sampled_from(BUILTINS), st.sampled_from(GENERATED), IDENTIFIERS)
VALUES = st.one_of(
    st.integers(),
    st.none(),
    st.text(max_size=5),
    st.just("https://user:pw@host/x"),
    st.just("s" * 5000),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["a", "password"]), st.integers(), max_size=2),
)


@dataclass
class Spec:
    """
    A generated signature: parameters in order, as (name, kind, has_default).
    """

    params: list[tuple[str, Any, bool]]

    def source(self, kind: str) -> str:
        pieces: list[str] = []
        posonly = any(k is _P.POSITIONAL_ONLY for _, k, _ in self.params)
        slash_done, star_done = not posonly, False
        for i, (name, k, default) in enumerate(self.params):
            if not slash_done and k is not _P.POSITIONAL_ONLY:
                pieces.append("/")
                slash_done = True
            if k is _P.VAR_POSITIONAL:
                piece, star_done = f"*{name}", True
            elif k is _P.VAR_KEYWORD:
                piece = f"**{name}"
            elif k is _P.KEYWORD_ONLY and not star_done:
                pieces.append("*")
                star_done = True
                piece = name
            else:
                piece = name
            if default:
                piece += f"=_fx_d[{i}]"
            pieces.append(piece)
        if not slash_done:
            pieces.append("/")
        result = "[" + ", ".join(name for name, _, _ in self.params) + "]"
        head = "async def" if kind in ("coroutine", "async generator") else "def"
        body = f"    _fx_r = {result}\n"
        if kind in ("generator", "async generator"):
            body += "    yield _fx_r\n    yield 1\n"
        body += "    if _fx_mode[0]:\n        raise _fx_E(_fx_r)\n"
        if kind != "async generator":
            body += "    return _fx_r\n"
        return f"{head} f({', '.join(pieces)}):\n{body}"


class Boom(Exception):
    """
    The exception the generated functions raise on request.
    """


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    """
    Signatures with every parameter kind, defaults, *args and **kwargs.
    """
    names = draw(
        st.lists(
            NAMES,
            min_size=0,
            max_size=7,
            unique_by=lambda n: unicodedata.normalize("NFKC", n),
        )
    )
    params: list[tuple[str, Any, bool]] = []
    kinds = [_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY]
    order = sorted(draw(st.sampled_from(kinds)) for _ in names)
    has_var_pos = draw(st.booleans())
    has_var_kw = draw(st.booleans())
    positional_default = False
    plain = [n for n in names]
    extra: list[str] = []
    if has_var_pos and plain:
        extra.append(plain.pop())
    var_kw = plain.pop() if has_var_kw and plain else None
    for name, k in zip(plain, order, strict=False):
        if k is _P.KEYWORD_ONLY:
            default = draw(st.booleans())
        else:
            default = positional_default or draw(st.booleans())
            positional_default = default
        params.append((name, k, default))
    if extra:
        # *args goes after the positional parameters, before the keyword-only ones
        at = sum(1 for _, k, _ in params if k is not _P.KEYWORD_ONLY)
        params.insert(at, (extra[0], _P.VAR_POSITIONAL, False))
    if var_kw is not None:
        params.append((var_kw, _P.VAR_KEYWORD, False))
    return Spec(params)


@st.composite
def calls(draw: st.DrawFn, spec: Spec) -> tuple[list[Any], dict[str, Any]]:
    """
    Well-formed calls (each parameter passed positionally, by keyword or left to its
    default) and arbitrary ones (too many, too few, unknown or duplicate names).
    """
    if draw(st.booleans()):
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        positional = True
        for name, k, default in spec.params:
            if k is _P.VAR_POSITIONAL:
                if positional:
                    args += draw(st.lists(VALUES, max_size=2))
                continue
            if k is _P.VAR_KEYWORD:
                extra = draw(st.dictionaries(NAMES, VALUES, max_size=2))
                kwargs.update({n: v for n, v in extra.items() if n not in kwargs})
                continue
            how = draw(st.sampled_from(["pos", "kw", "default"]))
            if default and how == "default":
                positional = False
                continue
            by_position = positional and how == "pos" and k is not _P.KEYWORD_ONLY
            if k is _P.POSITIONAL_ONLY or by_position:
                args.append(draw(VALUES))
            else:
                positional = False
                kwargs[name] = draw(VALUES)
        return args, kwargs
    args = draw(st.lists(VALUES, max_size=len(spec.params) + 2))
    names = [name for name, _, _ in spec.params]
    keys = draw(st.lists(st.one_of(st.sampled_from(names or ["x"]), NAMES), max_size=4))
    return args, {k: draw(VALUES) for k in keys}


def _drive(kind: str, func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    """
    Call ``func`` and return what it did: ("return", value, yielded) or ("raise", ...).
    """
    yielded: list[Any] = []
    try:
        result = func(*args, **kwargs)
        if kind == "sync":
            return ("return", result, yielded)
        if kind == "coroutine":
            try:
                result.send(None)
            except StopIteration as stop:
                return ("return", stop.value, yielded)
            raise AssertionError("the coroutine suspended")  # pragma: no cover
        if kind == "generator":
            while True:
                try:
                    yielded.append(next(result))
                except StopIteration as stop:
                    return ("return", stop.value, yielded)
        while True:
            try:
                result.__anext__().send(None)
            except StopIteration as stop:
                yielded.append(stop.value)
            except StopAsyncIteration:
                return ("return", None, yielded)
    except Exception as exc:
        return ("raise", type(exc), str(exc), exc.args, yielded)


def _make(spec: Spec, kind: str, raising: bool) -> Callable[..., Any]:
    ns: dict[str, Any] = {
        "_fx_d": [object() if i % 2 else i for i in range(len(spec.params))],
        "_fx_mode": [raising],
        "_fx_E": Boom,
    }
    exec(spec.source(kind), ns)
    func: Callable[..., Any] = ns["f"]
    return func


@tr.probe(level=NONE)
def _silencer(thunk: Callable[[], Any]) -> Any:
    return thunk()


def _context(mode: str) -> AbstractContextManager[Any]:
    return nullcontext([]) if mode == "off" else capture()


class TestGeneratedWrappersProperty:
    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("kind", KINDS)
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(data=st.data(), spec=specs(), raising=st.booleans())
    def test_probed_runs_like_unprobed(
        self, kind: str, mode: str, data: st.DataObject, spec: Spec, raising: bool
    ) -> None:
        """
        For any signature (parameter names from builtins, from the generated code's own
        names, or random) and any call, the probed function returns, yields and raises
        exactly what the unprobed one does, its signature is unchanged, and a tracked
        call that binds is recorded once with its bound parameters.
        """
        func = _make(spec, kind, raising)
        probed = tr.probe(level=DEBUG if mode == "below threshold" else "DEFAULT")(func)
        assert inspect.signature(probed) == inspect.signature(func)
        assert inspect.iscoroutinefunction(probed) == inspect.iscoroutinefunction(func)
        assert inspect.isgeneratorfunction(probed) == inspect.isgeneratorfunction(func)
        assert inspect.isasyncgenfunction(probed) == inspect.isasyncgenfunction(func)
        args, kwargs = data.draw(calls(spec))
        expected = _drive(kind, func, args, kwargs)
        with _context(mode) as logs:
            if mode == "silenced":
                got = _silencer(lambda: _drive(kind, probed, args, kwargs))
            else:
                got = _drive(kind, probed, args, kwargs)
        assert got == expected
        try:
            bound = inspect.signature(func).bind(*args, **kwargs)
        except TypeError:
            bound = None
        if mode != "on":
            assert logs == []
        elif bound is not None:
            (log,) = logs
            bound.apply_defaults()
            assert set(log.calls[0].params) == set(bound.arguments) - {"self", "cls"}
            assert log.calls[0].status == ("error" if raising else "ok")


def _inner(user_id: int, password: str, session: str) -> tuple[int, str]:
    return (user_id, session)


class TestDecoratorStyles:
    def test_decorator_injecting_an_argument(self) -> None:
        """
        A wraps decorator that supplies an argument itself (``session=``) keeps working
        when probed; the arguments the caller passed are recorded by name.
        """

        def with_session(f: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(f)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return f(*args, session="db", **kwargs)

            return wrapper

        probed = tr.probe(with_session(_inner))
        assert inspect.signature(probed) == inspect.signature(_inner)
        with capture() as logs:
            assert probed(5, "pw") == (5, "db")
            assert probed(user_id=6, password="pw") == (6, "db")
        assert [log.calls[0].params for log in logs] == [
            {"user_id": 5, "password": "[REDACTED]"},
            {"user_id": 6, "password": "[REDACTED]"},
        ]

    def test_decorator_dropping_an_argument(self) -> None:
        """
        A wraps decorator that accepts an extra argument and drops it keeps working;
        a call that does not fit the shown signature is recorded as args/kwargs.
        """

        def quiet(f: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(f)
            def wrapper(*args: Any, verbose: bool = False, **kwargs: Any) -> Any:
                return f(*args, **kwargs)

            return wrapper

        def add(a: int, b: int) -> int:
            return a + b

        probed = tr.probe(quiet(add))
        with capture() as logs:
            assert probed(1, 2, verbose=True) == 3
            assert probed(1, b=3) == 4
        # the decorator's own keyword is left out, like an argument it supplies
        assert [log.calls[0].params for log in logs] == [{"a": 1, "b": 2}, {"a": 1, "b": 3}]

    def test_calls_that_fit_no_way_never_show_secrets(self) -> None:
        """
        A call that does not fit the shown signature even without the decorator's own
        keywords is recorded as args/kwargs, its positional values hidden when the
        shown signature has a secret or excluded positional parameter.
        """

        def shift(f: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(f)
            def wrapper(prefix: str, *args: Any, **kwargs: Any) -> Any:
                return f(*args, **kwargs)

            return wrapper

        def login(user: str, password: str) -> str:
            return user

        def note(user: str, text: str) -> str:
            return text

        with capture() as logs:
            assert tr.probe(shift(login))("x", "bob", "hunter2") == "bob"
            assert tr.probe(exc=("text",))(shift(note))("x", "bob", "hi") == "hi"
            assert tr.probe(shift(note))("x", "bob", "hi") == "hi"
        assert [log.calls[0].params for log in logs] == [
            {"args": "[REDACTED]", "kwargs": {}},
            {"args": "[REDACTED]", "kwargs": {}},
            {"args": ["x", "bob", "hi"], "kwargs": {}},
        ]

    def test_decorator_renaming_an_argument(self) -> None:
        """
        A wraps decorator whose wrapper names its parameter differently works with the
        names it accepts, positional or keyword.
        """

        def by_uid(f: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(f)
            def wrapper(uid: int) -> Any:
                return f(user_id=uid, password="", session="s")

            return wrapper

        probed = tr.probe(by_uid(_inner))
        with capture() as logs:
            assert probed(3) == (3, "s")
            assert probed(uid=4) == (4, "s")
            with pytest.raises(TypeError, match="user_id"):
                probed(user_id=4)
        # the wrapper forwards uid positionally, where the shown signature has user_id
        assert [log.calls[0].params for log in logs] == [{"user_id": 3}, {"user_id": 4}]

    def test_pass_through_decorator_records_names(self) -> None:
        """
        A wraps decorator that forwards everything is recorded under the inner names,
        with defaults applied and exc honoured.
        """

        def retry(f: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(f)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return f(*args, **kwargs)

            return wrapper

        @tr.probe(exc=("card",))
        @retry
        def charge(amount: int, card: str, currency: str = "EUR") -> int:
            return amount

        with capture() as logs:
            assert charge(3, "4111") == 3
        assert logs[0].calls[0].params == {"amount": 3, "currency": "EUR"}

    @pytest.mark.anyio
    async def test_async_decorator_injecting_an_argument(self) -> None:
        """
        The same holds for coroutine functions behind a wraps decorator.
        """

        def with_session(f: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(f)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                return await f(*args, session="db", **kwargs)

            return wrapper

        async def handler(q: str, session: str) -> str:
            return q + session

        probed = tr.probe(with_session(handler))
        assert inspect.iscoroutinefunction(probed)
        with capture() as logs:
            assert await probed("x") == "xdb"
        assert logs[0].calls[0].params == {"q": "x"}

    def test_generator_behind_decorator(self) -> None:
        """
        A generator function behind an injecting decorator yields what it yields.
        """

        def with_step(f: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(f)
            def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
                return (yield from f(*args, step=2, **kwargs))

            return wrapper

        def count(n: int, step: int) -> Iterator[int]:
            yield from range(0, n, step)

        probed = tr.probe(with_step(count))
        with capture() as logs:
            assert list(probed(5)) == [0, 2, 4]
        assert logs[0].calls[0].params == {"n": 5}

    def test_callable_object_decorator(self) -> None:
        """
        A class-based decorator (an instance with __call__ and update_wrapper) works.
        """

        class Counted:
            def __init__(self, f: Callable[..., Any]) -> None:
                functools.update_wrapper(self, f)
                self.f = f
                self.calls = 0

            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                self.calls += 1
                return self.f(*args, **kwargs)

        def double(x: int) -> int:
            return 2 * x

        counted = Counted(double)
        probed = tr.probe(fname="double")(counted)
        with capture() as logs:
            assert probed(4) == 8
        assert counted.calls == 1 and logs[0].calls[0].params == {"x": 4}

    def test_advertised_signature_is_not_trusted_for_binding(self) -> None:
        """
        A function whose ``__signature__`` differs from what it accepts is called with
        what it accepts; probing a probe works too.
        """

        def handler(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
            return (args, kwargs)

        handler.__signature__ = inspect.signature(_inner)  # type: ignore[attr-defined]
        probed = tr.probe(tr.probe(handler))
        assert inspect.signature(probed) == inspect.signature(_inner)
        with capture() as logs:
            assert probed(1) == ((1,), {})
        assert len(logs) == 1 and [c.params for c in logs[0].calls] == [{"user_id": 1}] * 2

    def test_partial_of_an_advertising_function(self) -> None:
        """
        A partial of a function advertising another signature is called with what it
        accepts.
        """

        def handler(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
            return (args, kwargs)

        handler.__signature__ = inspect.signature(_inner)  # type: ignore[attr-defined]
        probed = tr.probe(fname="partial")(functools.partial(handler, 1))
        with capture() as logs:
            assert probed(2, x=3) == ((1, 2), {"x": 3})
        assert len(logs) == 1

    def test_broken_signature_attribute(self) -> None:
        """
        A callable whose ``__signature__`` raises is still probed and called unchanged.
        """

        class Odd:
            @property
            def __signature__(self) -> Any:
                raise RuntimeError("no signature")

            def __call__(self, a: int) -> int:
                return a + 1

        probed = tr.probe(fname="odd")(Odd())
        with capture() as logs:
            assert probed(1) == 2
        assert logs[0].calls[0].params == {"args": [1], "kwargs": {}}


class TestTracebacks:
    def test_traceback_shows_generated_source(self) -> None:
        """
        A traceback through a probe shows the wrapper's source line, under a file name
        naming the probed function, and the function's own name.
        """

        @tr.probe
        def fails(type: str) -> None:
            raise ValueError(type)

        for context in (capture(), nullcontext()):
            with context, pytest.raises(ValueError, match="x") as info:
                fails("x")
            frames = traceback.extract_tb(info.value.__traceback__)
            probe_frame = next(f for f in frames if f.filename.startswith("<asynctrack probe"))
            assert probe_frame.filename == (
                "<asynctrack probe of tests.core.test_probe_wrappers."
                "TestTracebacks.test_traceback_shows_generated_source.<locals>.fails>"
            )
            assert probe_frame.name == "fails"
            assert probe_frame.line is not None and "_at_f(type)" in probe_frame.line

    def test_file_names_are_unique_and_forgotten(self) -> None:
        """
        Two probes of functions with the same name get distinct file names, each with
        its own source; a collected probe's source leaves linecache.
        """

        def make(x: int) -> Callable[..., Any]:
            def same() -> int:
                return x

            return tr.probe(same)

        first, second = make(1), make(2)
        f1, f2 = first.__code__.co_filename, second.__code__.co_filename
        assert f1 != f2 and f1 in linecache.cache and f2 in linecache.cache
        params_module.refresh_plans()  # regenerating keeps the entry
        assert f2 in linecache.cache
        del second
        gc.collect()
        assert f2 not in linecache.cache and f1 in linecache.cache


class TestProbingAClass:
    def test_class_is_refused(self) -> None:
        """
        Probing a class raises a TypeError that says to probe its methods instead.
        """

        class Service:
            def __call__(self) -> None: ...

        with pytest.raises(TypeError, match=r"cannot probe the class .*Service.*methods"):
            tr.probe(Service)
        with pytest.raises(TypeError, match="__init__"):
            tr.probe(level="INFO")(Service)


def _documented_names() -> set[str]:
    # The ``P…`` names of the table in wrapsrc's docstring; ``Pd0``, ``Pd1``, … as ``d``.
    table = wrapsrc.__doc__ or ""
    table = table[table.index("====") :]
    names = set(re.findall(r"``P(\w+)``", table))
    return {"d" if re.fullmatch(r"d\d+", n) else n for n in names}


def _names_in_sources() -> set[str]:
    # Every generated name is written as ``{P}name``, ``{prefix}name`` or
    # ``{_PREFIX}name`` in the modules that generate code.
    found: set[str] = set()
    for module in (wrapsrc, calltree, probe_module, params_module):
        source = inspect.getsource(module)
        found.update(re.findall(r"\{(?:P|prefix|_PREFIX)\}(\w+)", source))
    return found


class TestNameTable:
    def test_table_lists_exactly_the_names_the_generators_write(self) -> None:
        """
        The table of generated names in wrapsrc's docstring is the set of names the
        generating code writes, no more and no fewer.
        """
        assert _documented_names() == _names_in_sources()

    def test_generated_code_binds_only_documented_names(self) -> None:
        """
        Every prefixed global and local of generated wrappers (with a signature and
        without one) and of the call tree's enter and leave is in the table.
        """

        def sample(a: int, b: int = 2, *args: int, **kw: int) -> int:
            return a

        class Opaque:
            __signature__ = inspect.Signature()  # advertised: the wrapper takes *args, **kw

            def __call__(self, *args: Any, **kwargs: Any) -> int:
                return 1

        codes: list[Any] = [calltree.enter, calltree.leave]
        with capture():
            for func in (sample, Opaque()):
                probed = tr.probe(func)
                probed(1)
                codes.append(probed)
        used: set[str] = set()
        for func in codes:
            names = set(func.__globals__) | set(func.__code__.co_varnames)
            used |= {n.removeprefix("_at_") for n in names if n.startswith("_at_")}
        used = {"d" if re.fullmatch(r"d\d+", n) else n for n in used}
        assert used - _documented_names() == set()
        assert {"wrapper", "enter", "leave", "args", "kw", "open", "cur", "fr"} <= used

    def test_join_and_leave_are_one_source(self) -> None:
        """
        A generated wrapper's tracked path holds the source calltree.enter and
        calltree.leave are compiled from, and no bare offset into a call's slots.
        """

        def sample(a: int) -> int:
            return a

        probed = tr.probe(sample)
        limit = str(RUNTIME.max_slots)
        for code, max_slots in (
            (probed.__code__, limit),
            (calltree.enter.__code__, "_at_RT.max_slots"),
        ):
            join = wrapsrc.render(wrapsrc.JOIN, "_at_", max_slots)
            body = [line.strip() for line in join.splitlines() if line.strip()]
            lines = [line.strip() for line in linecache.getlines(code.co_filename)]
            start = lines.index(body[0])
            assert lines[start : start + len(body)] == body
        leave = wrapsrc.render(wrapsrc.LEAVE, "_at_", limit)
        body = [line.strip() for line in leave.splitlines() if line.strip()]
        for code in (probed.__code__, calltree.leave.__code__):
            lines = [line.strip() for line in linecache.getlines(code.co_filename)]
            start = lines.index(body[0])
            assert lines[start : start + len(body)] == body
        for template in (wrapsrc.WRAPPER, wrapsrc.JOIN, wrapsrc.LEAVE, wrapsrc.ENTER):
            assert re.search(r"\{P\}i \+ \d", template) is None
