"""
The probe decorator: function kinds, what it preserves, parameters, levels.
"""

from __future__ import annotations

import functools
import inspect
import traceback
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asynctrack
from asynctrack import DEBUG, DEFAULT, INFO, NONE
from asynctrack.testing import capture
from tests.conftest import Configure
from tests.helpers import CyclicGarbage

tr = asynctrack.get_tracker("tests.probe")


def only(logs: list[asynctrack.Log]) -> asynctrack.Log:
    assert len(logs) == 1, logs
    return logs[0]


class Shop:
    def __init__(self) -> None:
        self.items: list[int] = []

    @tr.probe
    def add(self, item_id: int, qty: int = 1) -> int:
        self.items.append(item_id)
        return qty

    @tr.probe(inc=("self", "item_id"))
    def add_with_self(self, item_id: int) -> None:
        pass

    @classmethod
    @tr.probe
    def make(cls, n: int) -> Shop:
        return cls()

    @tr.probe
    @classmethod
    def make_other_order(cls, n: int) -> Shop:
        return cls()

    @staticmethod
    @tr.probe
    def static(x: int) -> int:
        return x * 2

    @tr.probe
    @staticmethod
    def static_other_order(x: int) -> int:
        return x * 3

    def __repr__(self) -> str:
        return "<Shop>"


class TestKinds:
    def test_sync_result_and_params(self) -> None:
        """
        A sync function returns its result; params are bound with defaults applied.
        """

        @tr.probe
        def f(a: int, b: str = "x", *args: int, k: bool = False, **kw: Any) -> int:
            return a

        with capture() as logs:
            assert f(1, "y", 3, 4, k=True, z=5) == 1
            assert f(2) == 2
        first, second = logs
        assert first.calls[0].params == {
            "a": 1,
            "b": "y",
            "args": [3, 4],
            "k": True,
            "kw": {"z": 5},
        }
        assert second.calls[0].params == {"a": 2, "b": "x", "args": [], "k": False, "kw": {}}

    def test_positional_only_and_keyword_only(self) -> None:
        """
        Positional-only and keyword-only parameters are bound and forwarded correctly.
        """

        @tr.probe
        def f(a: int, /, b: int, *, c: int) -> tuple[int, int, int]:
            return (a, b, c)

        with capture() as logs:
            assert f(1, b=2, c=3) == (1, 2, 3)
            with pytest.raises(TypeError):
                f(a=1, b=2, c=3)  # type: ignore[call-arg]
        assert logs[0].calls[0].params == {"a": 1, "b": 2, "c": 3}

    def test_methods_exclude_self_and_cls(self) -> None:
        """
        self and cls are left out unless inc names them; both decorator orders work.
        """
        shop = Shop()
        with capture() as logs:
            assert shop.add(7, qty=2) == 2
            shop.add_with_self(8)
            assert isinstance(Shop.make(1), Shop)
            assert isinstance(Shop.make_other_order(2), Shop)
            assert Shop.static(2) == 4
            assert shop.static_other_order(2) == 6
        params = [log.calls[0].params for log in logs]
        assert params == [
            {"item_id": 7, "qty": 2},
            {"self": "<Shop>", "item_id": 8},
            {"n": 1},
            {"n": 2},
            {"x": 2},
            {"x": 2},
        ]
        names = [log.calls[0].function for log in logs]
        assert names[0] == "tests.core.test_probe.Shop.add"
        assert names[3] == "tests.core.test_probe.Shop.make_other_order"

    @pytest.mark.anyio
    async def test_coroutine(self) -> None:
        """
        A coroutine function stays one: the call spans the whole await.
        """

        @tr.probe
        async def f(x: int) -> int:
            await anyio.sleep(0.02)
            return x + 1

        assert inspect.iscoroutinefunction(f)
        with capture() as logs:
            assert await f(1) == 2
        assert only(logs).calls[0].duration_us >= 15_000

    def test_preserves_metadata_and_signature(self) -> None:
        """
        Name, docstring, __wrapped__, __module__ and inspect.signature are unchanged.
        """

        def original(a: int, b: str = "s", *, c: float = 1.0) -> str:
            """Docstring."""
            return b

        wrapped = tr.probe(original)
        assert wrapped.__name__ == "original"
        assert wrapped.__doc__ == "Docstring."
        assert wrapped.__wrapped__ is original  # type: ignore[attr-defined]
        assert wrapped.__module__ == original.__module__
        assert inspect.signature(wrapped) == inspect.signature(original)
        assert not inspect.iscoroutinefunction(wrapped)

    def test_generator_kinds_preserved(self) -> None:
        """
        Generator and async generator functions stay what they are.
        """

        @tr.probe
        def g() -> Any:
            yield 1

        @tr.probe
        async def ag() -> Any:
            yield 1

        assert inspect.isgeneratorfunction(g)
        assert inspect.isasyncgenfunction(ag)

    def test_same_exception_object_with_traceback(self) -> None:
        """
        The exception is the same object, its traceback reaches the raising line.
        """
        boom = ValueError("bad")

        @tr.probe
        def f() -> None:
            raise boom

        with capture() as logs:
            with pytest.raises(ValueError, match="bad") as info:
                f()
        assert info.value is boom
        frames = traceback.extract_tb(info.value.__traceback__)
        assert frames[-1].line == "raise boom"
        call = only(logs).calls[0]
        assert (call.status, call.error) == ("error", "ValueError: bad")

    def test_param_names_colliding_with_internals(self) -> None:
        """
        Parameters named like the generated wrapper's internals still work.
        """

        @tr.probe
        def f(_at_f: int, _at_tok: int, _at_lvl: int = 3) -> int:
            return _at_f + _at_tok + _at_lvl

        with capture() as logs:
            assert f(1, 2) == 6
        assert only(logs).calls[0].params == {"_at_f": 1, "_at_tok": 2, "_at_lvl": 3}

    def test_callable_without_signature(self) -> None:
        """
        A builtin without an introspectable signature is recorded with args/kwargs.
        """
        probed = tr.probe(fname="builtins.max")(max)
        with capture() as logs:
            assert probed(1, 5, 3) == 5
        assert only(logs).calls[0].params == {"args": [1, 5, 3], "kwargs": {}}

    def test_fastapi_style_introspection(self) -> None:
        """
        Frameworks that read signature and annotations see the original function.
        """

        async def endpoint(item_id: int, q: str | None = None) -> dict[str, Any]:
            return {}

        probed = tr.probe(endpoint)
        assert inspect.signature(probed) == inspect.signature(endpoint)
        assert probed.__annotations__ == endpoint.__annotations__
        assert inspect.iscoroutinefunction(probed)

    def test_functools_partial_is_accepted(self) -> None:
        """
        Any callable can be probed (its signature is used when it has one).
        """

        def add(a: int, b: int) -> int:
            return a + b

        probed = tr.probe(fname="add5")(functools.partial(add, 5))
        with capture() as logs:
            assert probed(1) == 6
        assert only(logs).calls[0].params == {"b": 1}


class TestDecorationErrors:
    def test_unknown_inc_name(self) -> None:
        """
        An inc name that is not a parameter fails at decoration time, naming it.
        """
        with pytest.raises(ValueError, match=r"inc names \['nope'\]"):

            @tr.probe(inc=("nope",))
            def f(a: int) -> None: ...

    def test_unknown_exc_name(self) -> None:
        """
        An exc name that is not a parameter fails at decoration time.
        """
        with pytest.raises(ValueError, match=r"exc names \['pwd'\]"):

            @tr.probe(exc=("pwd",))
            def f(a: int) -> None: ...

    def test_bad_level(self) -> None:
        """
        A non-level raises TypeError, an unknown name ValueError, at decoration time.
        """
        with pytest.raises(TypeError, match="level"):
            tr.probe(level=1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="unknown level 'LOUD'"):
            tr.probe(level="LOUD")
        with pytest.raises(ValueError, match="between 0 and 100"):
            tr.probe(level=1000)

    def test_inc_must_be_strings(self) -> None:
        """
        inc/exc must be iterables of str.
        """
        with pytest.raises(TypeError, match="inc must contain only str"):

            @tr.probe(inc=[1])  # type: ignore[list-item]
            def f(a: int) -> None: ...

        with pytest.raises(TypeError, match="exc must be an iterable of str"):

            @tr.probe(exc=3)  # type: ignore[arg-type]
            def g(a: int) -> None: ...

    def test_fname_type(self) -> None:
        """
        fname must be a str.
        """
        with pytest.raises(TypeError, match="fname"):

            @tr.probe(fname=3)  # type: ignore[arg-type]
            def f() -> None: ...

    def test_not_callable(self) -> None:
        """
        Probing a non-callable is a TypeError.
        """
        with pytest.raises(TypeError, match="callable"):
            tr.probe(42)  # type: ignore[call-overload]


class TestParams:
    def test_inc_and_exc(self) -> None:
        """
        Only names in inc and not in exc are kept.
        """

        @tr.probe(inc=("a", "b"), exc=("b",))
        def f(a: int, b: int, c: int) -> None: ...

        with capture() as logs:
            f(1, 2, 3)
        assert only(logs).calls[0].params == {"a": 1}

    def test_exc_applies_to_kwargs_keys(self) -> None:
        """
        With **kwargs, exc may name keys passed through it.
        """

        @tr.probe(exc=("card",))
        def f(**kw: Any) -> None: ...

        with capture() as logs:
            f(card="4111", amount=3)
        assert only(logs).calls[0].params == {"kw": {"amount": 3}}

    def test_redacted_param_names(self) -> None:
        """
        Sensitive names are redacted whatever their case, also nested and in kwargs.
        """

        @tr.probe
        def login(user: str, Password: str, headers: dict[str, Any], **kw: Any) -> None: ...

        with capture() as logs:
            login(
                "alice",
                "hunter2",
                {"Authorization": "Bearer x", "X-Api-Key": "k", "accept": "json"},
                session_id="s",
                nested={"db": {"secret_key": "z", "ok": 1}},
            )
        assert only(logs).calls[0].params == {
            "user": "alice",
            "Password": "[REDACTED]",
            "headers": {"Authorization": "[REDACTED]", "X-Api-Key": "[REDACTED]", "accept": "json"},
            "kw": {
                "session_id": "[REDACTED]",
                "nested": {"db": {"secret_key": "[REDACTED]", "ok": 1}},
            },
        }

    def test_params_captured_at_call_time(self) -> None:
        """
        A mutable argument changed after the call keeps its value at call time.
        """

        @tr.probe
        def f(items: list[int]) -> None:
            items.append(99)

        with capture() as logs:
            f([1])
        assert only(logs).calls[0].params == {"items": [1]}

    def test_configure_changes_limits_of_existing_probes(self, configured: Configure) -> None:
        """
        New limits and redaction lists apply to probes decorated before configure.
        """

        @tr.probe
        def f(note: str, pin: str) -> None: ...

        sink = asynctrack.MemorySink()
        configured(sink, max_string=16, redact=["pin"])
        f("x" * 40, "1234")
        asynctrack.flush_sync()
        params = sink.logs[0].calls[0].params
        assert params == {"note": "x" * 16 + "…[+24 chars]", "pin": "[REDACTED]"}


class TestLevels:
    def test_suppressed_call_silences_its_subtree(self) -> None:
        """
        A call below threshold is not tracked and neither is anything beneath it.
        """

        @tr.probe(level=DEBUG)
        def low() -> None:
            high()

        @tr.probe(level=DEFAULT)
        def high() -> None: ...

        with capture() as logs:
            low()
            high()
        assert [len(log.calls) for log in logs] == [1]

    def test_level_none_never_tracks(self) -> None:
        """
        level=NONE silences its subtree even when the threshold is DEBUG.
        """

        @tr.probe(level=NONE)
        def health() -> None:
            inner()

        @tr.probe(level=DEFAULT)
        def inner() -> None: ...

        tr.set_level(DEBUG)
        with capture() as logs:
            health()
        assert logs == []

    def test_threshold_none_tracks_nothing(self) -> None:
        """
        A threshold of NONE tracks nothing.
        """

        @tr.probe(level=DEFAULT)
        def f() -> None: ...

        with capture() as logs:
            tr.set_level(NONE)
            f()
        assert logs == []

    def test_per_name_levels_follow_dotted_hierarchy(self) -> None:
        """
        The nearest configured dotted ancestor gives the threshold; changes apply to
        calls that start afterwards.
        """
        db = asynctrack.get_tracker("tests.lvl.db")
        deep = asynctrack.get_tracker("tests.lvl.db.pool")

        @db.probe(level=INFO)
        def query() -> None: ...

        @deep.probe(level=INFO)
        def acquire() -> None: ...

        with capture() as logs:
            query()
            acquire()
            asynctrack.get_tracker("tests.lvl").set_level("INFO")
            query()
            acquire()
            deep.set_level(DEFAULT)
            acquire()
            assert deep.level == DEFAULT and db.level == INFO
        assert [log.calls[0].function.rsplit(".", 1)[-1] for log in logs] == ["query", "acquire"]

    def test_get_tracker_identity_and_type_check(self) -> None:
        """
        The same name gives the same tracker; a non-str name is a TypeError.
        """
        assert asynctrack.get_tracker("a.b") is asynctrack.get_tracker("a.b")
        with pytest.raises(TypeError):
            asynctrack.get_tracker(3)  # type: ignore[arg-type]

    def test_untracked_without_configuration(self) -> None:
        """
        Until configure or capture, probes record nothing.
        """
        seen: list[asynctrack.Log] = []
        from asynctrack._core import calltree

        calltree.add_listener(seen.append)
        try:

            @tr.probe
            def f() -> int:
                return 1

            assert f() == 1
        finally:
            calltree.remove_listener(seen.append)
        assert seen == []


class TestInfoAndData:
    def test_info_bound_outside_a_log(self) -> None:
        """
        add_info outside a log binds to the context: later logs start with it.
        """

        @tr.probe
        def handler() -> None:
            asynctrack.add_info("route", "/x")

        with capture() as logs:
            with asynctrack.info(user="alice"):
                handler()
            handler()
        assert logs[0].info == {"user": "alice", "route": "/x"}
        assert logs[1].info == {"route": "/x"}

    def test_info_from_untracked_call_never_leaks(self) -> None:
        """
        Info set inside an untracked top-level call does not reach the next log.
        """

        @tr.probe(level=DEBUG)
        def untracked() -> None:
            asynctrack.add_info("user", "mallory")

        @tr.probe
        def tracked() -> None: ...

        with capture() as logs:
            untracked()
            tracked()
        assert logs[0].info == {}

    def test_add_data_depths(self) -> None:
        """
        depth=None, k >= 0 and negative depths address the right calls; out of range
        is a ValueError; outside a call add_data does nothing.
        """

        @tr.probe
        def a() -> None:
            b()

        @tr.probe
        def b() -> None:
            c()

        @tr.probe
        def c() -> None:
            asynctrack.add_data("here", 2)
            asynctrack.add_data("root", 0, depth=0)
            asynctrack.add_data("caller", 1, depth=-1)
            with pytest.raises(ValueError, match="out of range"):
                asynctrack.add_data("x", 1, depth=3)
            with pytest.raises(ValueError, match="out of range"):
                asynctrack.add_data("x", 1, depth=-3)

        asynctrack.add_data("ignored", 1)
        with capture() as logs:
            a()
        assert [call.data for call in only(logs).calls] == [{"root": 0}, {"caller": 1}, {"here": 2}]

    def test_key_type_errors(self) -> None:
        """
        Keys must be str.
        """
        with pytest.raises(TypeError, match="key must be a str"):
            asynctrack.add_info(1, "x")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="key must be a str"):
            asynctrack.add_data(1, "x")  # type: ignore[arg-type]

    def test_info_values_redacted_and_converted(self) -> None:
        """
        Info and data go through the same conversion and redaction as params.
        """

        @tr.probe
        def f() -> None:
            asynctrack.add_info("api_token", "t")
            asynctrack.add_info("nan", float("nan"))
            asynctrack.add_data("cfg", {"password": "p", "n": 1})

        with capture() as logs:
            f()
        log = only(logs)
        assert log.info == {"api_token": "[REDACTED]", "nan": "NaN"}
        assert log.calls[0].data == {"cfg": {"password": "[REDACTED]", "n": 1}}

    def test_max_calls_per_log(self, configured: Configure) -> None:
        """
        A log keeps at most max_calls_per_log calls and counts the rest.
        """

        @tr.probe
        def leaf() -> None: ...

        @tr.probe
        def root() -> None:
            for _ in range(10):
                leaf()

        sink = asynctrack.MemorySink()
        configured(sink, max_calls_per_log=4)
        root()
        asynctrack.flush_sync()
        log = sink.logs[0]
        assert len(log.calls) == 4 and log.dropped_calls == 7
        assert log.to_dict()["dropped_calls"] == 7


class TestCallScope:
    def test_logs_opened_by_a_probe_and_by_a_block_alike(self) -> None:
        """
        A probed root call and a ``tracker.call`` block open logs with the same fields
        (the generated wrappers inline what ``tracker.call`` does through calltree).
        """

        @tr.probe
        def job(n: int) -> int:
            return n

        with capture() as logs:
            job(1)
            with tr.call("job", params={"n": 1}):
                pass
        assert len(logs) == 2
        by_probe, by_block = logs
        for name in asynctrack.Log.__slots__:
            if name == "__weakref__":
                continue
            assert hasattr(by_probe, name) == hasattr(by_block, name), name
            if not hasattr(by_probe, name):
                continue  # ``_claim``: the completion token, taken by the completer
            a, b = getattr(by_probe, name), getattr(by_block, name)
            assert type(a) is type(b), name
        assert by_probe.to_dict()["calls"][0]["params"] == by_block.to_dict()["calls"][0]["params"]
        assert by_probe.id < by_block.id and by_probe.parent_id is by_block.parent_id is None

    @pytest.mark.anyio
    async def test_call_block_rename_and_error(self) -> None:
        """
        tracker.call records a block; rename and add_data work; errors propagate.
        """

        @tr.probe
        async def handler() -> None: ...

        with capture() as logs:
            async with tr.call("GET /x", params={"q": "1"}) as scope:
                await handler()
                scope.rename("GET /items/{id}")
                scope.add_data("status", 200)
            with pytest.raises(KeyError), tr.call("failing"):
                raise KeyError("k")
        first, second = logs
        assert first.calls[0].function == "GET /items/{id}"
        assert first.calls[0].data == {"status": 200} and first.calls[0].params == {"q": "1"}
        assert len(first.calls) == 2
        assert second.calls[0].status == "error"


class TestBlockParams:
    def test_blocks_without_params_never_share_a_dict(self) -> None:
        """
        A tracker.call block without params records {}; editing one log's params
        (its calls or its dict form) changes no other log.
        """
        with capture() as logs:
            for _ in range(3):
                with tr.call("block"):
                    pass
        first, second, third = logs
        first.calls[0].params["edited"] = 1
        second.to_dict()["calls"][0]["params"]["edited"] = 1
        assert second.calls[0].params == {}
        assert third.to_dict()["calls"][0]["params"] == {}
        assert third.calls[0].params == {}
        assert third.calls[0].params is not second.calls[0].params


@tr.probe
def _leaf(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x + 1


@tr.probe
def _branch(x: int) -> int:
    return _leaf(x) + _leaf(x + 1)


@tr.probe
async def _aleaf(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x + 1


@tr.probe
async def _abranch(x: int) -> int:
    return await _aleaf(x) + await _aleaf(x + 1)


@tr.probe
def _gen(n: int) -> Any:
    yield from range(n)


class TestNoCyclicGarbage:
    """
    A tracked call leaves nothing that only the garbage collector can free: each cycle
    would make gen0 collections come sooner on every request (issue #20).
    """

    def test_sync_calls_ok_and_failing(self) -> None:
        """
        Nested sync probes, returning and raising, and a tracker.call block, create no
        cyclic garbage of asynctrack's (collector off, DEBUG_SAVEALL, then a collection).
        """
        with capture() as logs, CyclicGarbage() as found:
            for i in range(20):
                assert _branch(i) == 2 * i + 3
                with pytest.raises(ValueError, match="negative"):
                    _branch(-5)
                with tr.call("block", params={"i": i}) as call:
                    call.add_info(user="u")
                    _leaf(i)
                with pytest.raises(ValueError, match="negative"), tr.call("failing block"):
                    _leaf(-1)
                assert list(_gen(3)) == [0, 1, 2]
        assert len(logs) == 100
        assert logs[1].calls[0].status == "error"
        assert found == []

    @pytest.mark.anyio
    async def test_async_calls_ok_and_failing(self) -> None:
        """
        Nested coroutine probes, returning and raising, in one task and in concurrent
        child tasks, create no cyclic garbage of asynctrack's.
        """
        with capture() as logs, CyclicGarbage() as found:
            for i in range(20):
                assert await _abranch(i) == 2 * i + 3
                with pytest.raises(ValueError, match="negative"):
                    await _abranch(-5)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_abranch, i)
                    tg.start_soon(_aleaf, i)
        assert len(logs) == 80
        assert logs[1].calls[0].status == "error"
        assert found == []
