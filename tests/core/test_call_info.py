"""
``tracker.call(..., info={...})``: items for the info of the block's log, set as the
block starts, converted and redacted like ``add_info`` (docs/design.md; the web
middlewares give a request's log its method and client this way).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import NONE
from asynctrack._core import calltree
from asynctrack.testing import capture

tr = asynctrack.get_tracker("tests.call_info")

NAMES = st.sampled_from(["user", "password", "api_token", "method", "x y", "client"])
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.sampled_from(["x" * 5000, "https://u:secret@host/p", "\u2028"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from(["a", "token"]), st.integers(), max_size=2),
)


class TestInfoAtTheStart:
    @settings(max_examples=80, deadline=None)
    @given(
        info=st.dictionaries(NAMES, VALUES, max_size=4),
        bound=st.dictionaries(NAMES, VALUES, max_size=2),
        joined=st.booleans(),
    )
    def test_same_info_as_add_info(
        self, info: dict[str, Any], bound: dict[str, Any], joined: bool
    ) -> None:
        """
        Property: a block's ``info`` gives its log the info ``add_info`` at the start
        of the block would, whether the block opens the log (with or without info
        bound in the context) or joins one.
        """

        def run(via_argument: bool) -> dict[str, Any]:
            with capture() as logs:
                with asynctrack.info(**bound):
                    if joined:
                        with tr.call("outer"):
                            block(via_argument)
                    else:
                        block(via_argument)
            (log,) = logs
            return log.info

        def block(via_argument: bool) -> None:
            if via_argument:
                with tr.call("block", info=info):
                    pass
            else:
                with tr.call("block") as call:
                    call.add_info(**info)

        assert run(True) == run(False)

    def test_set_before_the_block_runs(self) -> None:
        """
        The items are in the log while the block runs: a log written incomplete at
        shutdown has them.
        """

        async def main() -> dict[str, Any]:
            async with tr.call("job", info={"queue": "mail", "password": "p"}):
                (log,) = [lg for lg in calltree.open_logs() if lg._raw[0][0] == "job"]
                return dict(log.info)

        with capture():
            assert asyncio.run(main()) == {"queue": "mail", "password": "[REDACTED]"}

    def test_the_callers_dict_is_copied(self) -> None:
        items = {"a": 1}
        with capture() as logs:
            scope = tr.call("block", info=items)
            items["a"] = 2
            items["b"] = 3
            with scope:
                pass
        assert logs[0].info == {"a": 1}

    def test_the_dict_is_the_logs_own(self) -> None:
        """
        Two logs opened from the same items never share an info dict.
        """
        with capture() as logs:
            for _ in range(2):
                with tr.call("block", info={"a": 1}) as call:
                    call.add_info(b=2)
        assert logs[0].info == logs[1].info == {"a": 1, "b": 2}
        assert logs[0].info is not logs[1].info

    def test_untracked_blocks_record_nothing(self) -> None:
        with capture() as logs:
            with tr.call("silent", level=NONE, info={"a": 1}):
                asynctrack.add_info("b", 2)
        assert logs == []

    def test_wrong_type(self) -> None:
        with pytest.raises(TypeError, match="info must be a dict, not list"):
            tr.call("block", info=[("a", 1)])  # type: ignore[arg-type]


class TestTheUsualItemsShortcut:
    @settings(max_examples=100, deadline=None)
    @given(items=st.dictionaries(NAMES, VALUES, max_size=4), warm=st.booleans())
    def test_same_as_converting_every_item(self, items: dict[str, Any], warm: bool) -> None:
        """
        Property: the items ``add_info`` and ``info=`` store without converting (known
        plain names, atoms and short plain strings) are exactly what converting them
        would store; names seen before (``warm``: the cache of plain names filled)
        or not.
        """
        from asynctrack._core.activity import _converted

        expected = _converted(dict(items), "add_info")
        with capture() as logs:
            for _ in range(2 if warm else 1):
                with tr.call("many") as call:
                    call.add_info(**items)
                with tr.call("opened", info=items):
                    pass
        assert all(log.info == expected for log in logs)


class TestInfoKeys:
    def test_a_key_that_is_not_a_str_fails_at_the_call(self) -> None:
        """
        ``info`` keys are checked by ``call()``, before the block starts: a block never
        fails as it enters, and the log around it completes.
        """
        with capture() as logs:
            with tr.call("outer"):
                with pytest.raises(TypeError, match=r"call\(\): info: key must be a str, not int"):
                    tr.call("inner", info={1: "x"})  # type: ignore[dict-item]
        assert [log.calls[0].function for log in logs] == ["outer"]

    def test_str_subclass_keys_become_str(self) -> None:
        class Key(str):
            pass

        with capture() as logs:
            for _ in range(2):  # the second time, the names are known to be plain
                with tr.call("block", info={Key("user"): "alice"}) as call:
                    call.add_info(**{Key("plan"): "pro"})
        for log in logs:
            assert log.info == {"user": "alice", "plan": "pro"}
            assert {type(key) for key in log.info} == {str}
