"""
Trace model v2 (#17): parent links reproduce the real call graph exactly, whatever
the calls were spread over — tasks, gather, TaskGroup, trio nurseries, threads
(``propagate``), generators and async generators — continuations included.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import Log
from asynctrack.testing import capture
from tests.strategies import Spawn, spawn_trees

tr = asynctrack.get_tracker("tests.trace_tree")

_FUNCTIONS = {"acall", "scall", "sgen", "aspawn"}


class Boom(Exception):
    pass


@dataclass
class Run:
    """
    One request of the forest: its id, where its fire-and-forget tasks go, and the
    event they wait for (set once the request's root call has returned).
    """

    tree: int
    late: Any
    done: anyio.Event
    backend: str


async def _quiet(call: Awaitable[None]) -> None:
    try:
        await call
    except Boom:
        pass


@tr.probe(exc=("node", "run"))
async def acall(tree: int, path: str, node: Spawn, run: Run) -> None:
    if path == "0":
        asynctrack.add_info("user", f"u{tree}")
    await achildren(path, node, run)
    if node.fails:
        raise Boom(path)


@tr.probe(exc=("node", "run"))
async def aspawn(tree: int, path: str, node: Spawn, run: Run) -> AsyncIterator[int]:
    yield 0
    await achildren(path, node, run)
    yield 1
    if node.fails:
        raise Boom(path)


@tr.probe(exc=("node", "run"))
def scall(tree: int, path: str, node: Spawn, run: Run) -> None:
    schildren(path, node, run)
    if node.fails:
        raise Boom(path)


@tr.probe(exc=("node", "run"))
def sgen(tree: int, path: str, node: Spawn, run: Run) -> Iterator[int]:
    yield 0
    schildren(path, node, run)
    yield 1
    if node.fails:
        raise Boom(path)


def _sync_child(path: str, node: Spawn, run: Run) -> None:
    try:
        if node.kind == "gen":
            list(sgen(run.tree, path, node, run))
        else:
            scall(run.tree, path, node, run)
    except Boom:
        pass


def schildren(path: str, node: Spawn, run: Run) -> None:
    for i, child in enumerate(node.children):
        p = f"{path}.{i}"
        if child.kind == "thread":
            with ThreadPoolExecutor(1) as pool:
                pool.submit(asynctrack.propagate(_sync_child), p, child, run).result()
        else:
            _sync_child(p, child, run)


async def _async_child(path: str, node: Spawn, run: Run) -> None:
    kind = node.kind
    if kind == "gen":
        _sync_child(path, node, run)
    elif kind == "thread":
        work = asynctrack.propagate(_sync_child)
        if run.backend == "asyncio":
            await asyncio.get_running_loop().run_in_executor(None, work, path, node, run)
        else:
            await anyio.to_thread.run_sync(work, path, node, run)
    elif kind == "agen":
        try:
            async for _ in aspawn(run.tree, path, node, run):
                await anyio.lowlevel.checkpoint()
        except Boom:
            pass
    else:
        await _quiet(acall(run.tree, path, node, run))


async def _late(path: str, node: Spawn, run: Run) -> None:
    await run.done.wait()
    await _quiet(acall(run.tree, path, node, run))


async def achildren(path: str, node: Spawn, run: Run) -> None:
    concurrent = [(f"{path}.{i}", c) for i, c in enumerate(node.children) if c.kind == "group"]
    tasks: list[asyncio.Task[None]] = []
    for i, child in enumerate(node.children):
        p = f"{path}.{i}"
        if child.kind == "late":
            run.late.start_soon(_late, p, child, run)
        elif child.kind == "task" and run.backend == "asyncio":
            # Awaited after the other children: it runs beside them.
            tasks.append(asyncio.create_task(_async_child(p, child, run)))
        elif child.kind == "group":
            if (p, child) != concurrent[0]:
                continue
            if run.backend == "asyncio" and len(path) % 2:
                await asyncio.gather(*(_async_child(q, c, run) for q, c in concurrent))
            elif run.backend == "asyncio":
                async with asyncio.TaskGroup() as tg:
                    for q, c in concurrent:
                        tg.create_task(_async_child(q, c, run))
            else:
                async with anyio.create_task_group() as group:
                    for q, c in concurrent:
                        group.start_soon(_async_child, q, c, run)
        elif child.kind == "task":
            async with anyio.create_task_group() as group:
                group.start_soon(_async_child, p, child, run)
        else:
            await _async_child(p, child, run)
        await anyio.lowlevel.checkpoint()
    for task in tasks:
        await task


def check_forest(logs: list[Log], forest: list[Spawn]) -> None:
    """
    Assert that the logs hold every call of every tree exactly once, each linked to
    the call that really started it: ``parent`` within a log, ``parent_id`` /
    ``parent_seq`` / ``trace_id`` / info for a continuation's first call.
    """
    where: dict[tuple[int, str], tuple[Log, Any]] = {}
    for log in logs:
        assert [c.seq for c in log.calls] == list(range(len(log.calls)))
        for call in log.calls:
            key = (call.params["tree"], call.params["path"])
            assert key not in where, f"{key} recorded twice"
            where[key] = (log, call)
    expected = {(t, p) for t, tree in enumerate(forest) for p, _ in tree.walk()}
    assert set(where) == expected
    for t, tree in enumerate(forest):
        for path, node in tree.walk():
            log, call = where[(t, path)]
            assert call.function.rsplit(".", 1)[-1] in _FUNCTIONS
            if node.fails:
                assert (call.status, call.error) == ("error", f"Boom: {path}")
                assert call.traceback is not None
                file, _, function = call.traceback[-1]
                assert file == __file__ and function in _FUNCTIONS
            else:
                assert (call.status, call.error, call.traceback) == ("ok", None, None)
            if path == "0":
                assert call.seq == 0 and call.parent is None and log.parent_id is None
                assert log.parent_seq is None
                continue
            parent_log, parent = where[(t, path.rsplit(".", 1)[0])]
            assert log.trace_id == parent_log.trace_id
            if node.kind == "late":
                assert call.seq == 0 and call.parent is None and call.depth == 0
                assert log.parent_id == parent_log.id and log.parent_seq == parent.seq
                assert log.info == {"user": f"u{t}"}
            else:
                assert log is parent_log, f"{path} left its parent's log"
                assert call.parent == parent.seq, f"{path}: wrong parent"
                assert call.depth == parent.depth + 1
                assert call.offset_us >= parent.offset_us


class TestParentLinksProperty:
    @pytest.mark.anyio
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(forest=st.lists(spawn_trees(), min_size=1, max_size=6))
    async def test_parent_links_reproduce_the_call_graph(
        self, forest: list[Spawn], anyio_backend: str
    ) -> None:
        """
        Random call graphs, run concurrently, spread over tasks, gather, TaskGroup or
        nurseries, propagated threads, generators, async generators and late
        fire-and-forget tasks: every call's ``parent`` is the call that started it,
        and every late task's log continues the right log at the right call.
        """
        with capture() as logs:
            async with anyio.create_task_group() as late:

                async def request(t: int, tree: Spawn) -> None:
                    run = Run(t, late, anyio.Event(), anyio_backend)
                    await _quiet(acall(t, "0", tree, run))
                    run.done.set()

                async with anyio.create_task_group() as requests:
                    for t, tree in enumerate(forest):
                        requests.start_soon(request, t, tree)
        check_forest(list(logs), forest)


def test_traceback_frames_are_the_real_ones() -> None:
    """
    A failing call's traceback ends at the line that raised (sanity check of the
    property test's assertions).
    """
    with capture() as logs:
        try:
            scall(0, "0", Spawn(fails=True), Run(0, None, anyio.Event(), "asyncio"))
        except Boom as exc:
            tb = exc.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            assert tb is not None
            raised_at = tb.tb_lineno
    (log,) = logs
    assert log.calls[0].traceback == [(__file__, raised_at, "scall")]
    assert sys.exc_info() == (None, None, None)


def test_every_sink_carries_the_new_fields(tmp_path: Any) -> None:
    """
    A tree with an error and a continuation goes through FileSink (read back with
    read_logs), MemorySink and LoggingSink with parent, traceback, trace_id,
    parent_seq and remote_parent intact.
    """
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("tests.trace_tree.sink")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(Keep())
    memory = asynctrack.MemorySink()
    path = tmp_path / "t.jsonl"
    asynctrack.configure(
        sinks=[asynctrack.FileSink(path), memory, asynctrack.LoggingSink(logger=logger)],
        spill_dir=str(tmp_path),
    )
    late: list[Any] = []

    @tr.probe
    def inner() -> None:
        raise Boom("x")

    @tr.probe
    def outer() -> None:
        asynctrack.add_info("user", "u")
        try:
            inner()
        except Boom:
            pass
        late.append(asynctrack.propagate(outer_late))

    @tr.probe
    def outer_late() -> None:
        pass

    outer()
    late[0]()
    asynctrack.flush_sync(timeout=30)
    first, second = memory.logs
    assert second.parent_id == first.id and second.parent_seq == 0
    assert second.trace_id == first.trace_id and second.info == {"user": "u"}
    assert first.calls[1].parent == 0 and first.calls[1].traceback is not None
    from_file = list(asynctrack.read_logs(path))
    assert [log.to_dict() for log in from_file[1:]] == [second.to_dict()]
    assert from_file[0].calls[1].traceback == first.calls[1].traceback
    assert from_file[0].trace_id == first.trace_id
    assert [r.asynctrack["trace_id"] for r in records] == [first.trace_id] * 2  # type: ignore[attr-defined]
    assert records[1].asynctrack["parent_seq"] == 0  # type: ignore[attr-defined]
    # remote_parent (filled from traceparent by the interop layer) is a plain field.
    remote = Log.from_dict({**first.to_dict(), "remote_parent": "00f067aa0ba902b7"})
    assert remote.remote_parent == "00f067aa0ba902b7"
    assert remote.to_dict()["remote_parent"] == "00f067aa0ba902b7"
