"""
Tests of extension: Tracker subclasses (``extend_log``, ``filter_call``), processors,
and the examples of the "Customising" documentation.
"""

from __future__ import annotations

import contextvars
import logging
import re
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

import asynctrack
from asynctrack import Call, Log, MemorySink, Tracker
from asynctrack._core.runtime import RUNTIME
from tests.conftest import Configure
from tests.helpers import docs_page

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class InfoTracker(Tracker):
    """
    Adds where and in which context the log completed; drops cache calls.
    """

    def extend_log(self, log: Log) -> None:
        log.info["thread"] = threading.get_ident()
        log.info["request_id"] = REQUEST_ID.get()
        log.info["calls_seen"] = len(log.calls)

    def filter_call(self, call: Call) -> bool:
        assert call.tracker == self.name  # asked of the tracker that recorded the call
        return not call.function.endswith("cache_get")


class TestTrackerSubclass:
    def test_extend_log_adds_info_in_the_completing_thread(self, configured: Configure) -> None:
        """
        extend_log runs once per completed log, in the thread that completed it, before
        hand-off: its info reaches the sink.
        """
        sink = MemorySink()
        configured(sink, tracker_class=InfoTracker)
        tr = asynctrack.get_tracker("shop")
        f = tr.probe(lambda: None)
        idents: list[int] = []

        def worker() -> None:
            idents.append(threading.get_ident())
            REQUEST_ID.set("req-7")
            f()

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        asynctrack.flush_sync()
        (log,) = sink.logs
        assert log.info["thread"] == idents[0]
        assert log.info["request_id"] == "req-7"

    @pytest.mark.anyio
    async def test_extend_log_runs_in_the_completing_task(self, configured: Configure) -> None:
        """
        Under asyncio and trio, extend_log sees the context of the task that completed
        the log, and has run by the time the probed coroutine returns.
        """
        seen: list[Log] = []

        def remember(log: Log) -> Log:
            seen.append(log)
            return log

        sink = MemorySink()
        configured(sink, tracker_class=InfoTracker, processors=[remember])
        tr = asynctrack.get_tracker("shop")

        @tr.probe
        async def handler(n: int) -> int:
            REQUEST_ID.set(f"req-{n}")
            await anyio.lowlevel.checkpoint()
            return n

        async def request(n: int) -> None:
            await handler(n)
            assert seen[-1].calls[0].params == {"n": n}

        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(request, n)
        await asynctrack.flush()
        assert sorted(log.info["request_id"] for log in sink.logs) == ["req-0", "req-1", "req-2"]

    def test_filter_call_leaves_calls_out(self, configured: Configure) -> None:
        """
        Calls for which filter_call returns False are left out; the others keep their
        seq and depth, and extend_log sees the filtered log.
        """
        sink = MemorySink()
        configured(sink, tracker_class=InfoTracker)
        shop = asynctrack.get_tracker("shop")
        cache = asynctrack.get_tracker("shop.cache")

        @cache.probe
        def cache_get(key: str) -> None:
            pass

        @shop.probe
        def load(n: int) -> None:
            cache_get(f"k{n}")

        @shop.probe
        def page() -> None:
            cache_get("page")
            load(1)

        page()
        asynctrack.flush_sync()
        (log,) = sink.logs
        assert [(c.seq, c.depth, c.function.rsplit(".", 1)[1]) for c in log.calls] == [
            (0, 0, "page"),
            (2, 1, "load"),
        ]
        assert log.info["calls_seen"] == 2

    def test_filtering_every_call_drops_the_log(self, configured: Configure) -> None:
        """
        A log whose calls are all filtered out is dropped, and counted as dropped.
        """
        sink = MemorySink()
        configured(sink, tracker_class=InfoTracker)
        asynctrack.get_tracker("shop").probe(fname="cache_get")(lambda: None)()
        asynctrack.flush_sync()
        assert sink.logs == []
        assert asynctrack.stats().dropped == 1

    def test_existing_trackers_switch_class(self, configured: Configure) -> None:
        """
        Trackers created before configure(tracker_class=...) become instances of it
        (probes hold them), and return to Tracker when the option is removed.
        """
        tr = asynctrack.get_tracker("early")
        configured(MemorySink(), tracker_class=InfoTracker)
        assert type(tr) is InfoTracker
        assert type(asynctrack.get_tracker("late")) is InfoTracker
        configured(MemorySink())
        assert type(tr) is Tracker

    def test_hook_errors_are_counted_and_reported_once(
        self, configured: Configure, caplog: pytest.LogCaptureFixture
    ) -> None:
        """
        An exception in extend_log or filter_call never reaches the application: it is
        counted in stats().hook_errors, reported once, and the log is still written.
        """

        class Broken(Tracker):
            def extend_log(self, log: Log) -> None:
                raise KeyError("host")

            def filter_call(self, call: Call) -> bool:
                raise ValueError("no filter today")

        sink = MemorySink()
        configured(sink, tracker_class=Broken)
        f = asynctrack.get_tracker("shop").probe(lambda n: n)
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            assert [f(n) for n in range(3)] == [0, 1, 2]
            asynctrack.flush_sync()
        assert len(sink.logs) == 3
        assert all(len(log.calls) == 1 for log in sink.logs)
        assert asynctrack.stats().hook_errors == 6
        messages = [r.getMessage() for r in caplog.records]
        assert sum("Broken.extend_log raised KeyError('host')" in m for m in messages) == 1
        assert sum("Broken.filter_call raised ValueError" in m for m in messages) == 1

    def test_no_hook_costs_nothing(self, configured: Configure) -> None:
        """
        With neither hooks overridden nor processors, nothing runs at completion.
        """
        configured(MemorySink())
        assert RUNTIME.postprocess is None
        configured(MemorySink(), tracker_class=InfoTracker)
        assert RUNTIME.postprocess is not None


class TestProcessors:
    def test_applied_in_order_and_altering(self, configured: Configure) -> None:
        """
        Processors run in order, each on the previous one's result; one may return a
        different Log.
        """

        def first(log: Log) -> Log:
            log.info["order"] = ["first"]
            return log

        def second(log: Log) -> Log:
            d = log.to_dict()
            d["info"]["order"].append("second")
            d["info"]["user"] = "anonymous"
            return Log.from_dict(d)

        sink = MemorySink()
        configured(sink, processors=[first, second])
        asynctrack.get_tracker("shop").probe(lambda: None)()
        asynctrack.flush_sync()
        (log,) = sink.logs
        assert log.info == {"order": ["first", "second"], "user": "anonymous"}

    def test_returning_none_drops_and_counts(self, configured: Configure) -> None:
        """
        A processor returning None drops the log (later processors do not see it);
        stats().dropped counts it.
        """
        later: list[Log] = []

        def only_errors(log: Log) -> Log | None:
            return log if log.calls[0].status == "error" else None

        def record(log: Log) -> Log:
            later.append(log)
            return log

        sink = MemorySink()
        configured(sink, processors=[only_errors, record])
        tr = asynctrack.get_tracker("shop")

        @tr.probe
        def op(fail: bool) -> None:
            if fail:
                raise RuntimeError("no")

        op(False)
        with pytest.raises(RuntimeError):
            op(True)
        op(False)
        asynctrack.flush_sync()
        assert [log.calls[0].error for log in sink.logs] == ["RuntimeError: no"]
        assert later == sink.logs
        assert asynctrack.stats().dropped == 2

    def test_failing_processor_keeps_the_log(
        self, configured: Configure, caplog: pytest.LogCaptureFixture
    ) -> None:
        """
        A processor that raises, or returns something else than a Log, is skipped for
        that log: counted in hook_errors, reported once, the next processor still runs.
        """

        def boom(log: Log) -> Log:
            raise ZeroDivisionError("oops")

        def wrong(log: Log) -> str:
            return "not a log"

        def tag(log: Log) -> Log:
            log.info["tagged"] = True
            return log

        sink = MemorySink()
        configured(sink, processors=[boom, wrong, tag])
        f = asynctrack.get_tracker("shop").probe(lambda: None)
        with caplog.at_level(logging.WARNING, logger="asynctrack"):
            f()
            f()
            asynctrack.flush_sync()
        assert [log.info for log in sink.logs] == [{"tagged": True}] * 2
        assert asynctrack.stats().hook_errors == 4
        messages = [r.getMessage() for r in caplog.records]
        assert sum("raised ZeroDivisionError('oops')" in m for m in messages) == 1
        assert sum("returned str, not a Log or None" in m for m in messages) == 1


class TestExamples:
    @pytest.mark.parametrize("name", ["custom_tracker.py", "custom_sink.py"])
    def test_example_runs(self, name: str, tmp_path: Path) -> None:
        """
        The examples of the "Customising" section run as written.
        """
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / name)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip()

    @pytest.mark.parametrize(
        ("name", "page"),
        [("custom_tracker.py", "configuration.md"), ("custom_sink.py", "sinks.md")],
    )
    def test_documentation_shows_the_example(self, name: str, page: str) -> None:
        """
        The manual's code block for each example is the example file itself, included
        from examples/ when the docs are built (so it cannot drift from the file).
        """
        blocks = re.findall(r"```python\n(.*?)```", docs_page(page), flags=re.DOTALL)
        assert f'--8<-- "examples/{name}"\n' in blocks
        assert (EXAMPLES / name).is_file()
