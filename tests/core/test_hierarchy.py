"""
The call hierarchy as a property: concurrent tasks and threads never see each other.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asynctrack
from asynctrack import Log
from asynctrack._core.layout import REC
from asynctrack.testing import capture
from tests.strategies import Node, trees

tr = asynctrack.get_tracker("tests.hierarchy")


class Boom(Exception):
    pass


@tr.probe(exc=("node",))
async def anode(task: int, path: str, node: Node) -> None:
    if path == "0":
        asynctrack.add_info("task", task)
    for _ in range(node.checkpoints):
        await anyio.lowlevel.checkpoint()
    if node.data:
        asynctrack.add_data("path", path)
        asynctrack.add_data("root_task", task, depth=0)

    async def child(i: int, c: Node) -> None:
        try:
            await anode(task, f"{path}.{i}", c)
        except Boom:
            pass

    if node.concurrent and len(node.children) > 1:
        async with anyio.create_task_group() as tg:
            for i, c in enumerate(node.children):
                tg.start_soon(child, i, c)
    else:
        for i, c in enumerate(node.children):
            await child(i, c)
    if node.fails:
        raise Boom(path)


@tr.probe(exc=("node",))
def snode(task: int, path: str, node: Node) -> None:
    if path == "0":
        asynctrack.add_info("task", task)
    for _ in range(node.checkpoints):
        time.sleep(0)  # let other threads run
    if node.data:
        asynctrack.add_data("path", path)
        asynctrack.add_data("root_task", task, depth=0)
    for i, c in enumerate(node.children):
        try:
            snode(task, f"{path}.{i}", c)
        except Boom:
            pass
    if node.fails:
        raise Boom(path)


def check_log(log: Log, tree: Node) -> None:
    """
    Assert that ``log`` holds exactly the calls of ``tree`` with the right shape.
    """
    task = log.info["task"]
    paths = [c.params["path"] for c in log.calls]
    assert sorted(paths) == sorted(tree.paths()), "calls of another tree leaked in or out"
    assert [c.seq for c in log.calls] == list(range(len(log.calls)))
    assert log.calls[0].params["path"] == "0" and log.calls[0].depth == 0
    offsets = [c.offset_us for c in log.calls]
    assert offsets == sorted(offsets), "seq must follow start order"
    seen: set[str] = set()
    for call in log.calls:
        path = call.params["path"]
        assert call.params["task"] == task
        assert call.depth == path.count(".")
        parent = path.rsplit(".", 1)[0]
        if call.depth:
            assert parent in seen, "a child started before its parent"
        seen.add(path)
        node = tree.find(path)
        assert call.status == ("error" if node.fails else "ok")
        if node.fails:
            assert call.error == f"Boom: {path}"
        if node.data:
            assert call.data["path"] == path
            assert set(call.data) <= {"path", "root_task"}
        elif call.depth:
            assert call.data == {}
    root = log.calls[0]
    if any(tree.find(c.params["path"]).data for c in log.calls):
        assert root.data.get("root_task") == task


class TestAsyncProperty:
    @pytest.mark.anyio
    @settings(
        max_examples=6,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(forest=st.lists(trees(), min_size=1, max_size=8))
    async def test_thousand_concurrent_task_trees(self, forest: list[Node]) -> None:
        """
        1,000 concurrent root tasks with random nesting, checkpoints, data and errors:
        each log holds exactly its own tree, with the right depths, seq and statuses.
        """
        roots = [forest[i % len(forest)] for i in range(1000)]
        with capture() as logs:

            async def run(task: int, tree: Node) -> None:
                try:
                    await anode(task, "0", tree)
                except Boom:
                    pass

            async with anyio.create_task_group() as tg:
                for task, tree in enumerate(roots):
                    tg.start_soon(run, task, tree)
        assert len(logs) == 1000
        by_task = {log.info["task"]: log for log in logs}
        assert sorted(by_task) == list(range(1000))
        for task, tree in enumerate(roots):
            check_log(by_task[task], tree)


class TestThreadProperty:
    @settings(max_examples=4, deadline=None)
    @given(forest=st.lists(trees(), min_size=1, max_size=6), seed=st.integers(0, 1000))
    def test_eight_threads(self, forest: list[Node], seed: int) -> None:
        """
        8 threads running random trees interleaved: each log holds exactly its own tree.
        """
        per_thread = 60
        rnd = random.Random(seed)
        plan = [[rnd.choice(forest) for _ in range(per_thread)] for _ in range(8)]

        def worker(t: int) -> None:
            for i, tree in enumerate(plan[t]):
                try:
                    snode(t * 1000 + i, "0", tree)
                except Boom:
                    pass

        with capture() as logs:
            threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        assert len(logs) == 8 * per_thread
        by_task = {log.info["task"]: log for log in logs}
        for t in range(8):
            for i, tree in enumerate(plan[t]):
                check_log(by_task[t * 1000 + i], tree)


@tr.probe
async def outer_spawning(hold: anyio.Event, started: list[Any]) -> None:
    async def late() -> None:
        await hold.wait()
        await leaf("late")

    started.append(asyncio.get_running_loop().create_task(late()))
    await leaf("inside")


@tr.probe
async def leaf(name: str) -> str:
    await asyncio.sleep(0)
    return name


@tr.probe
def sync_leaf(name: str) -> str:
    return name


class TestJoins:
    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_child_task_outliving_parent_stays_in_parents_log(self) -> None:
        """
        A task whose probed call starts inside a probed call and ends after it returned
        still joins the parent's log, and the log completes only when it ends.
        """

        release = asyncio.Event()

        @tr.probe
        async def parent() -> asyncio.Task[str]:
            task = asyncio.get_running_loop().create_task(slow_child())
            await asyncio.sleep(0)  # the child's call starts while the parent runs
            return task

        @tr.probe
        async def slow_child() -> str:
            await release.wait()  # outlives the parent until the test releases it
            return "done"

        with capture() as logs:
            task = await parent()
            assert logs == []  # the child still runs: the log is not complete
            release.set()
            await task
        assert len(logs) == 1
        (log,) = logs
        assert [c.function.rsplit(".", 1)[-1] for c in log.calls] == ["parent", "slow_child"]
        assert log.duration_us >= log.calls[1].offset_us + log.calls[1].duration_us

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_late_child_opens_new_log_with_parent_id(self) -> None:
        """
        A call that starts after its parent's log completed opens a new log whose
        parent_id names the earlier one.
        """
        hold = anyio.Event()
        started: list[asyncio.Task[None]] = []
        with capture() as logs:
            await outer_spawning(hold, started)
            # outer_spawning returned and its spawned task has not called a probe yet
            assert len(logs) == 1
            hold.set()
            await started[0]
        assert len(logs) == 2
        first, second = logs
        assert second.parent_id == first.id
        assert second.calls[0].params == {"name": "late"} and second.calls[0].depth == 0

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_to_thread_joins(self) -> None:
        """
        asyncio.to_thread and anyio.to_thread.run_sync copy the context: calls join.
        """

        @tr.probe
        async def handler() -> None:
            await asyncio.to_thread(sync_leaf, "a")
            await anyio.to_thread.run_sync(sync_leaf, "b")

        with capture() as logs:
            await handler()
        assert [c.params.get("name") for c in logs[0].calls] == [None, "a", "b"]
        assert [c.depth for c in logs[0].calls] == [0, 1, 1]

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_propagate_into_executor(self) -> None:
        """
        run_in_executor does not copy the context; asynctrack.propagate carries it.
        """

        @tr.probe
        async def handler() -> None:
            loop = asyncio.get_running_loop()
            with ThreadPoolExecutor(2) as pool:
                await loop.run_in_executor(pool, asynctrack.propagate(sync_leaf), "p")
                futures = [pool.submit(asynctrack.propagate(sync_leaf), str(i)) for i in range(4)]
                for f in futures:
                    f.result()

        with capture() as logs:
            await handler()
        assert len(logs) == 1
        assert sorted(c.params.get("name") or "" for c in logs[0].calls) == [
            "",
            "0",
            "1",
            "2",
            "3",
            "p",
        ]

    def test_without_propagate_executor_calls_are_their_own_logs(self) -> None:
        """
        Without propagate, a pool thread has an empty context: its call is a new log.
        """

        @tr.probe
        def handler() -> None:
            with ThreadPoolExecutor(1) as pool:
                pool.submit(sync_leaf, "x").result()

        with capture() as logs:
            handler()
        assert sorted(len(log.calls) for log in logs) == [1, 1]

    def test_copy_context_run_joins(self) -> None:
        """
        contextvars.copy_context().run carries the current call into a thread.
        """

        @tr.probe
        def handler() -> None:
            ctx = contextvars.copy_context()
            th = threading.Thread(target=ctx.run, args=(sync_leaf, "t"))
            th.start()
            th.join()

        with capture() as logs:
            handler()
        assert len(logs) == 1 and len(logs[0].calls) == 2

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_parent_frames_pushed_later_are_invisible_to_child(self) -> None:
        """
        A child task copied its parent's context: calls the parent makes later are not
        its parents (frames are immutable).
        """
        depths: dict[str, int] = {}

        @tr.probe
        async def record(name: str) -> None:
            await asyncio.sleep(0.01)

        @tr.probe
        async def parent() -> None:
            task = asyncio.get_running_loop().create_task(record("child"))
            await record("sibling")
            await task

        with capture() as logs:
            await parent()
        for c in logs[0].calls:
            depths[c.params.get("name", "parent")] = c.depth
        assert depths == {"parent": 0, "child": 1, "sibling": 1}

    def test_threads_sharing_one_log_keep_their_own_fields(self) -> None:
        """
        8 threads adding calls to one log at once, switching every microsecond: each
        call's end, status, error and data land on its own call (a thread may append
        between another's append and its reading of the list's length).
        """
        per_thread = 150

        @tr.probe
        def work(t: int, i: int) -> int:
            asynctrack.add_data("who", f"{t}-{i}")
            if i % 7 == 0:
                raise Boom(f"{t}-{i}")
            return i

        def worker(t: int) -> None:
            for i in range(per_thread):
                try:
                    work(t, i)
                except Boom:
                    pass

        @tr.probe
        def root() -> None:
            threads = [
                threading.Thread(target=contextvars.copy_context().run, args=(worker, t))
                for t in range(8)
            ]
            for th in threads:
                th.start()
            for th in threads:
                th.join()

        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            with capture() as logs:
                root()
        finally:
            sys.setswitchinterval(old)
        assert len(logs) == 1
        calls = logs[0].calls
        assert len(calls) == 1 + 8 * per_thread
        seen = set()
        for call in calls[1:]:
            t, i = call.params["t"], call.params["i"]
            seen.add((t, i))
            assert call.data == {"who": f"{t}-{i}"}
            assert call.status == ("error" if i % 7 == 0 else "ok")
            assert call.error == (f"Boom: {t}-{i}" if i % 7 == 0 else None)
            assert call.depth == 1 and call.duration_us >= 0
        assert len(seen) == 8 * per_thread
        assert [c.offset_us for c in calls] == sorted(c.offset_us for c in calls)

    def test_slot_of_finds_a_call_appended_before_another(self) -> None:
        """
        The fallback lookup of a call's fields by its start (the very int object).
        """
        from asynctrack._core.layout import slot_of

        t1, t2 = time.perf_counter_ns(), time.perf_counter_ns() + 1
        raw: list[Any] = [("f", "t", "INFO"), 0, {}, None, t1, 0, "ok", None, None, None]
        raw += [("g", "t", "INFO"), 1, {}, None, t2, 0, "ok", None, 0, None]
        assert slot_of(raw, t2) == REC and slot_of(raw, t1) == 0


class TestGenerators:
    def test_generator_children_nest_at_every_resumption(self) -> None:
        """
        A generator is one call from first resumption to exhaustion; calls made
        inside it at each resumption are its children.
        """

        @tr.probe
        def gen(n: int) -> Any:
            for i in range(n):
                sync_leaf(str(i))
                yield i

        @tr.probe
        def consumer() -> list[int]:
            out = []
            for x in gen(3):
                sync_leaf("between")
                out.append(x)
            return out

        with capture() as logs:
            assert consumer() == [0, 1, 2]
        calls = logs[0].calls
        shape = [(c.function.rsplit(".", 1)[-1], c.params.get("name"), c.depth) for c in calls]
        assert shape == [
            ("consumer", None, 0),
            ("gen", None, 1),
            ("sync_leaf", "0", 2),
            ("sync_leaf", "between", 1),
            ("sync_leaf", "1", 2),
            ("sync_leaf", "between", 1),
            ("sync_leaf", "2", 2),
            ("sync_leaf", "between", 1),
        ]

    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_async_generator_driven_from_two_tasks(self) -> None:
        """
        An async generator resumed from different tasks keeps its hierarchy and is
        closed from another task without a context error.
        """

        @tr.probe
        async def agen() -> Any:
            for i in range(4):
                await leaf(f"item{i}")
                yield i

        with capture() as logs:
            g = agen()
            assert await g.__anext__() == 0
            t = asyncio.get_running_loop().create_task(g.__anext__())
            assert await t == 1
            closer = asyncio.get_running_loop().create_task(g.aclose())
            await closer
        assert len(logs) == 1
        names = [(c.params.get("name"), c.depth) for c in logs[0].calls]
        assert names == [(None, 0), ("item0", 1), ("item1", 1)]
        assert logs[0].calls[0].status == "ok"

    def test_generator_closed_early_and_thrown_into(self) -> None:
        """
        close() ends the call with status ok; an exception thrown in is recorded.
        """

        @tr.probe
        def gen() -> Any:
            try:
                yield 1
                yield 2
            except KeyError:
                yield "caught"

        with capture() as logs:
            g = gen()
            next(g)
            g.close()
            g2 = gen()
            next(g2)
            assert g2.throw(KeyError("k")) == "caught"
            with pytest.raises(ValueError, match="v"):
                g2.throw(ValueError("v"))
        assert [log.calls[0].status for log in logs] == ["ok", "error"]
        assert logs[1].calls[0].error == "ValueError: v"

    def test_generator_send_and_return_value(self) -> None:
        """
        send() values reach the generator and its return value reaches yield from.
        """

        @tr.probe
        def acc() -> Any:
            total = 0
            while True:
                x = yield total
                if x is None:
                    return total
                total += x

        def driver() -> Any:
            result = yield from acc()
            return result

        with capture():
            d = driver()
            next(d)
            d.send(2)
            d.send(3)
            with pytest.raises(StopIteration) as stop:
                d.send(None)
        assert stop.value.value == 5


class TestCancellation:
    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_cancelled_call_is_recorded_and_reraised(self) -> None:
        """
        Cancellation gives status "cancelled" and the CancelledError propagates.
        """

        started = asyncio.Event()

        @tr.probe
        async def sleeper() -> None:
            started.set()
            await asyncio.sleep(10)

        with capture() as logs:
            task = asyncio.get_running_loop().create_task(sleeper())
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert logs[0].calls[0].status == "cancelled"

    def test_trio_cancellation(self) -> None:
        """
        trio's Cancelled gives status "cancelled".
        """
        import trio

        @tr.probe
        async def sleeper() -> None:
            await trio.sleep(10)

        async def main() -> None:
            with trio.move_on_after(0.01):
                await sleeper()

        with capture() as logs:
            trio.run(main)
        assert logs[0].calls[0].status == "cancelled"
