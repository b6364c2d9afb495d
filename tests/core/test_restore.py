"""
A tracked coroutine or ``tracker.call`` block gives its caller's frame back to the
context it entered even when a call below it left that context without restoring it
(what ``ContextVar.reset`` did before they stopped keeping a token, #20).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import Log
from asynctrack._core import calltree
from asynctrack.testing import capture

tr = asynctrack.get_tracker("tests.restore")


def shape(log: Log) -> tuple[bool, list[tuple[str, int]]]:
    return log.parent_id is not None, [(c.function.rsplit(".", 1)[-1], c.depth) for c in log.calls]


@tr.probe
async def after() -> None:
    pass


class Yield:
    def __await__(self) -> Any:
        yield


async def _open_block() -> AsyncIterator[int]:
    with tr.call("g"):
        yield 1
        yield 2


@tr.probe
async def consumer() -> None:
    async for _ in _open_block():
        break  # the block stays open in this context until the generator is closed


@tr.probe
async def top() -> None:
    await consumer()
    await after()


@tr.probe
async def inner() -> None:
    await Yield()


@tr.probe
async def outer() -> None:
    c = inner()
    c.send(None)  # starts in this context ...
    try:
        contextvars.Context().run(c.send, None)  # ... and ends in another one
    except StopIteration:
        pass


class TestRestoreBelow:
    def test_block_open_across_async_generator_yield(self) -> None:
        """
        A call after a coroutine whose async generator left a block open is its
        caller's child, not the open block's.
        """

        async def main() -> None:
            await top()
            gc.collect()  # closes the generator: the block ends
            await asyncio.sleep(0.01)

        with capture() as logs:
            asyncio.run(main())
        assert [shape(log) for log in logs] == [
            (False, [("top", 0), ("consumer", 1), ("g", 2), ("after", 1)])
        ]

    def test_coroutine_finished_in_another_context(self) -> None:
        """
        A coroutine's call started here and ended elsewhere does not stay the current
        frame past its caller: the next call opens a new log, not a continuation.
        """

        async def main() -> None:
            await outer()
            await after()

        with capture() as logs:
            asyncio.run(main())
        assert [shape(log) for log in logs] == [
            (False, [("outer", 0), ("inner", 1)]),
            (False, [("after", 0)]),
        ]

    def test_block_exit_after_inner_block_left_open(self) -> None:
        """
        ``tracker.call`` blocks restore like coroutines: an inner block entered and
        never exited does not outlive the outer block.
        """
        with capture() as logs:
            with tr.call("a"):
                tr.call("b").__enter__()  # never exited
            with tr.call("c"):
                pass
        assert shape(logs[-1]) == (False, [("c", 0)])


class TestRestoreProperty:
    @settings(max_examples=60, deadline=None)
    @given(
        kinds=st.lists(st.sampled_from(["coro", "block", "sync"]), min_size=1, max_size=5),
        leak_at=st.integers(0, 5),
        silenced=st.booleans(),
    )
    def test_caller_frame_is_back_after_any_nesting(
        self, kinds: list[str], leak_at: int, silenced: bool
    ) -> None:
        """
        However coroutines, ``tracker.call`` blocks and plain functions nest, and
        wherever a block below is left open (tracked or silenced), the outermost call
        gives its caller's context back the frame it found there (as
        ``ContextVar.reset`` would).
        """
        # The outermost is a call (a plain function would not enclose the rest).
        kinds = ["coro" if kinds[0] == "sync" else kinds[0], *kinds[1:]]

        async def level(i: int) -> None:
            if i == leak_at:
                tr.call("left open", level=asynctrack.NONE if silenced else "default").__enter__()
            if i == len(kinds):
                return
            kind = kinds[i]
            if kind == "coro":
                await tr.probe(level)(i + 1)
            elif kind == "block":
                with tr.call(f"block {i}"):
                    await level(i + 1)
            else:
                tr.probe(lambda: None)()
                await level(i + 1)

        async def main() -> None:
            before = calltree.FRAME.get()
            await level(0)
            if leak_at > 0:  # a block left open at the top is the caller's own
                assert calltree.FRAME.get() is before

        with capture():
            asyncio.run(main())
