"""
The report page in a real browser: headless Chromium (Debian's ``chromium``) driven
by Playwright. It loads from ``file://`` with no console error and no request, its
charts have a size, its tables sort, its waterfalls have a bar per call, and markup
in logs stays text. Screenshots of both themes are saved under
``build/test-artifacts/report/`` (or ``$ASYNCTRACK_ARTIFACTS/report/``).

Without Chromium or Playwright these tests skip, saying why; with
``ASYNCTRACK_REQUIRE_BROWSER=1`` (CI) they fail instead.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from asynctrack._core.encode import encode_logs
from asynctrack.cli.commands import main
from tests.cli.report.test_report import HOSTILE, LOGS, hostile_logs

CHROMIUM = os.environ.get("ASYNCTRACK_CHROMIUM", "/usr/bin/chromium")
#: Flags for a sandboxed container: no GPU, no background traffic, no first-run UI.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = Path(os.environ.get("ASYNCTRACK_ARTIFACTS", ROOT / "build" / "test-artifacts"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium, or a skip (a failure under ASYNCTRACK_REQUIRE_BROWSER=1)."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "Playwright is not installed (pip install -e '.[dev]')"
    if reason is None and not os.access(CHROMIUM, os.X_OK):
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if reason is not None:
        if os.environ.get("ASYNCTRACK_REQUIRE_BROWSER") == "1":
            pytest.fail(f"ASYNCTRACK_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Opened:
    """A page loaded from a report file, with everything that went wrong on it."""

    def __init__(self, browser: Any, path: Path) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.problems: list[str] = []
        self.url = path.resolve().as_uri()
        page = self.page
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("dialog", lambda d: (self.problems.append(f"dialog: {d.message}"), d.dismiss()))
        page.on(
            "request",
            lambda r: self.problems.append(f"request: {r.url}") if r.url != self.url else None,
        )
        page.goto(self.url)
        page.wait_for_selector("html[data-ready=true]")

    def data(self) -> dict[str, Any]:
        """The page's embedded data, as the page parsed it."""
        text = self.page.text_content("#report-data")
        return dict(orjson.loads(text))


def write_page(tmp_path: Path, logs: Any, name: str = "report.html") -> Path:
    """Write logs to a JSON-lines file and the report of it next to it."""
    source = tmp_path / (name + ".jsonl")
    source.write_bytes(logs if isinstance(logs, bytes) else encode_logs(logs))
    out = tmp_path / name
    assert main(["report", str(source), "-o", str(out)]) == 0
    return out


@pytest.fixture
def opened(browser: Any, tmp_path: Path) -> Iterator[Opened]:
    """The report of the test logs, open in the browser."""
    page = Opened(browser, write_page(tmp_path, LOGS))
    try:
        yield page
    finally:
        page.page.close()


def screenshot(page: Any, name: str) -> None:
    folder = ARTIFACTS / "report"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True)


class TestPage:
    def test_loads_cleanly_with_sized_charts_in_both_themes(self, opened: Opened) -> None:
        """No console error, no request, every chart and the heatmap drawn, in each theme."""
        page = opened.page
        page.click("#table-slowest tbody tr")
        for theme in ("light", "dark"):
            if page.get_attribute("html", "data-theme") != theme:
                page.click("#theme-toggle")
            assert page.get_attribute("html", "data-theme") == theme
            for chart in ("chart-requests", "chart-latency", "chart-function"):
                box = page.locator(f"#{chart} canvas").bounding_box()
                assert box is not None and box["width"] > 100 and box["height"] > 100, chart
            heat = page.locator("#table-heat").bounding_box()
            assert heat is not None and heat["width"] > 0 and heat["height"] > 0
            screenshot(page, f"report-{theme}.png")
        assert opened.problems == []

    def test_function_table_sorts(self, opened: Opened) -> None:
        """Clicking a header sorts by it, descending first, then ascending."""
        page = opened.page
        rows = opened.data()["functions"]
        p95 = 6  # row layout: name, calls, errors, total, max, p50, p95, p99, share

        def names() -> list[str]:
            return list(page.eval_on_selector_all(
                "#table-functions tbody tr td:first-child", "cells => cells.map(c => c.textContent)"
            ))  # fmt: skip

        page.click("#table-functions th button:text-is('p95')")
        header = page.locator("#table-functions th", has_text="p95")
        assert header.get_attribute("aria-sort") == "descending"
        expected = sorted(rows, key=lambda r: r[0])
        expected.sort(key=lambda r: r[p95], reverse=True)
        assert names() == [r[0] for r in expected]
        page.click("#table-functions th button:text-is('p95')")
        assert header.get_attribute("aria-sort") == "ascending"
        expected = sorted(rows, key=lambda r: r[0])
        expected.sort(key=lambda r: r[p95])
        assert names() == [r[0] for r in expected]
        page.click("#table-functions th button:text-is('function')")
        assert names() == sorted(r[0] for r in rows)
        assert opened.problems == []

    def test_slow_request_shows_its_waterfall(self, opened: Opened) -> None:
        """Selecting a request draws one bar per call, its continuations' calls included."""
        page = opened.page
        data = opened.data()

        def bars(log: dict[str, Any]) -> int:
            own = len(log["calls"])
            return own + sum(bars(c) for c in data["continuations"].get(log["id"], []))

        for index in (0, 1, len(data["slowest"]) - 1):
            page.click(f"#table-slowest tbody tr[data-index='{index}']")
            expected = bars(data["slowest"][index])
            assert page.locator("#waterfall .wf-bar").count() == expected
        page.click("#table-slowest tbody tr[data-index='0']")
        assert page.locator("#waterfall .wf-sep").count() == 2  # two continuations
        page.click("#table-failed tbody tr[data-index='0']")
        assert page.locator("#waterfall .wf-bar").count() == bars(data["failedRequests"][0])
        assert page.locator("#waterfall .wf-detail dt", has_text="error").count() == 1
        assert opened.problems == []

    def test_selecting_a_function_updates_its_chart(self, opened: Opened) -> None:
        """Choosing a function (list or table row) redraws its chart and table view."""
        page = opened.page
        data = opened.data()
        names = list(data["functionSeries"])
        for name in (names[1], names[-1]):
            page.select_option("#function-select", name)
            assert page.get_attribute("#chart-function", "data-function") == name
            calls = page.eval_on_selector_all(
                "#table-function tbody tr td:nth-child(2)", "cells => cells.map(c => c.textContent)"
            )
            series = data["functionSeries"][name]["calls"]
            assert [int(c.replace(",", "")) for c in calls] == series
        page.click(f"#table-functions tbody tr:has(td[title='{names[0]}'])")
        assert page.get_attribute("#chart-function", "data-function") == names[0]
        assert page.input_value("#function-select") == names[0]
        assert opened.problems == []

    def test_parent_links_nest_the_waterfall(self, browser: Any, tmp_path: Path) -> None:
        """
        Calls nest by their ``parent`` link, a continuation under the call it was spawned
        from; the failing call's traceback is shown.
        """
        started = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC).isoformat(timespec="microseconds")

        def call(seq: int, parent: int | None, depth: int, **extra: Any) -> dict[str, Any]:
            return {
                "seq": seq, "parent": parent, "depth": depth, "function": f"f{seq}",
                "tracker": "t", "level": "DEFAULT", "params": {}, "data": {},
                "offset_us": 10 * seq, "duration_us": 100 - seq, "status": "ok",
                "error": None, "traceback": None, **extra,
            }  # fmt: skip

        calls = [
            call(0, None, 0),
            call(1, 0, 1),
            call(2, 0, 1),  # concurrent siblings: depth order alone would nest 3 under 2
            call(3, 1, 2, status="error", error="KeyError: 'x'",
                 traceback=[["app/x.py", 12, "f3"]]),
        ]  # fmt: skip
        log = {
            "id": "a" * 32, "trace_id": "b" * 32, "parent_id": None, "parent_seq": None,
            "started_at": started, "duration_us": 100, "complete": True,
            "info": {"user": "u"}, "calls": calls,
        }  # fmt: skip
        later = dt.datetime(2026, 6, 1, 12, 0, 1, tzinfo=dt.UTC).isoformat(timespec="microseconds")
        continuation = {
            **log, "id": "c" * 32, "parent_id": log["id"], "parent_seq": 1,
            "started_at": later, "duration_us": 50, "calls": [call(0, None, 0)],
        }  # fmt: skip
        continuation["calls"][0]["function"] = "g0"
        lines = orjson.dumps(log) + b"\n" + orjson.dumps(continuation) + b"\n"
        opened = Opened(browser, write_page(tmp_path, lines))
        page = opened.page
        page.click(f"#table-slowest tbody tr[data-id='{'a' * 32}']")
        labels = page.eval_on_selector_all(
            "#waterfall .wf-label", "ls => ls.map(l => [l.textContent, l.style.paddingLeft])"
        )
        order = [(text.split()[0], pad) for text, pad in labels]
        # f2 and f1 are siblings; the continuation spawned from f1 follows f1's subtree.
        assert order == [
            ("f0", "0rem"), ("f1", "0.9rem"), ("f3", "1.8rem"), ("g0", "1.8rem"), ("f2", "0.9rem")
        ]  # fmt: skip
        assert page.locator("#waterfall .wf-sep").count() == 1
        assert "app/x.py:12 in f3" in page.text_content("#waterfall .wf-detail")
        assert opened.problems == []


class TestHostile:
    def test_markup_in_logs_renders_as_text_and_nothing_runs(
        self, browser: Any, tmp_path: Path
    ) -> None:
        """
        Functions, params, info and errors holding ``</script>``, ``<img onerror>`` and
        comments show as the same text; no script runs, no element is injected.
        """
        opened = Opened(browser, write_page(tmp_path, hostile_logs()))
        page = opened.page
        cells = page.eval_on_selector_all(
            "#table-functions tbody td.name", "cells => cells.map(c => c.textContent)"
        )
        assert set(HOSTILE) <= set(cells)
        users = page.eval_on_selector_all(
            "#table-groups tbody td:first-child", "cells => cells.map(c => c.textContent)"
        )
        assert set(HOSTILE) == set(users)
        rows = page.locator("#table-failed tbody tr")
        assert rows.count() == len(HOSTILE)
        for i in range(len(HOSTILE)):
            rows.nth(i).click()
            detail = page.text_content("#waterfall")
            log = opened.data()["failedRequests"][i]
            value = log["calls"][0]["function"]
            assert value in detail
            assert f"ValueError: {value}" in detail or value in detail
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("img").count() == 0
        assert page.locator("script").count() == 3
        screenshot(page, "report-hostile.png")
        assert opened.problems == []
