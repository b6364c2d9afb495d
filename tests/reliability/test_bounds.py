"""
Bounds (issue #7, item 12): huge, cyclic and hostile values are recorded at a bounded
size with a truncation marker, and never raise into the application.

Documented limits (``configure`` defaults): a string keeps ``max_string`` = 1,000
characters plus a marker ``…[+N chars]``; bytes their ``repr`` of the first 1,000 bytes
plus ``…[+N bytes]``; a container ``max_items`` = 100 entries plus one marker entry;
nesting ``max_depth`` = 6 levels, deeper containers become ``"<dict of N items>"``; a
log keeps ``max_calls_per_log`` = 10,000 calls and counts the rest in ``dropped_calls``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import asynctrack
from asynctrack.sinks import FileSink
from tests.conftest import Configure

tr = asynctrack.get_tracker("rel.bounds")

MAX_STRING = 1000
MARKER = len("…[+99999999999 chars]")


class RaisingRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr failed")


class SlowRepr:
    def __repr__(self) -> str:
        time.sleep(0.2)
        return "SlowRepr()"


class HugeRepr:
    def __repr__(self) -> str:
        return "H" * 10_000_000


@tr.probe
def take(value: Any) -> str:
    return "ok"


@tr.probe
def many(n: int) -> None:
    for i in range(n):
        take(i)


def recorded(tmp_path: Path, *values: Any) -> list[tuple[Any, int]]:
    """
    Pass each value to a probe, write the logs to a file; return (recorded value, line size).
    """
    out = tmp_path / "out.jsonl"
    asynctrack.configure(sinks=[FileSink(out)], spill_dir=tmp_path)
    for value in values:
        assert take(value) == "ok"
    asynctrack.flush_sync(timeout=30)
    lines = out.read_bytes().split(b"\n")[:-1]
    return [(json.loads(line)["calls"][0]["params"]["value"], len(line)) for line in lines]


class TestBounds:
    def test_huge_values_are_cut_with_markers(self, tmp_path: Path) -> None:
        """
        A 50 MB string, 10 MB of bytes, a 10 MB repr and a million-item list: each is
        recorded at its documented size with a truncation marker; each line < 10 KB.
        """
        out = recorded(
            tmp_path, "x" * 50_000_000, b"\0" * 10_000_000, HugeRepr(), list(range(10**6))
        )
        (text, n1), (raw, n2), (rep, n3), (items, n4) = out
        assert text == "x" * MAX_STRING + f"…[+{50_000_000 - MAX_STRING} chars]"
        assert raw.endswith(f"…[+{10_000_000 - MAX_STRING} bytes]")
        assert len(raw) <= 4 * MAX_STRING + 3 + MARKER
        assert rep == "H" * MAX_STRING + f"…[+{10_000_000 - MAX_STRING} chars]"
        assert items == [*range(100), f"…[+{10**6 - 100} items]"]
        assert max(n1, n2, n3, n4) < 10_000

    def test_cyclic_and_failing_values(self, tmp_path: Path) -> None:
        """
        A dict containing itself stops at the depth limit; a __repr__ that raises
        becomes a placeholder; the application sees no exception.
        """
        cyclic: dict[str, Any] = {"name": "loop"}
        cyclic["self"] = cyclic
        nested: list[Any] = []
        nested.append(nested)
        (c, _), (r, _), (n, _) = recorded(tmp_path, cyclic, RaisingRepr(), nested)
        depth, node = 0, c
        while isinstance(node, dict):
            node, depth = node["self"], depth + 1
        assert depth == 6 and node == "<dict of 2 items>"
        assert r == "<unrepresentable RaisingRepr>"
        assert json.dumps(n).count("[") == 6

    def test_calls_per_log_are_capped(self, configured: Configure, tmp_path: Path) -> None:
        """
        A log whose root makes 15,000 probed calls keeps 10,000 and counts the rest.
        """
        out = tmp_path / "out.jsonl"
        configured(FileSink(out))
        many(15_000)
        asynctrack.flush_sync(timeout=30)
        (line,) = out.read_text().splitlines()
        log = json.loads(line)
        assert len(log["calls"]) == 10_000
        assert log["dropped_calls"] == 15_001 - 10_000


def converts_within(code: str, seconds: float) -> subprocess.CompletedProcess[str]:
    """
    Run ``code`` (which converts a hostile value and prints the JSON size) in a subprocess.
    """
    prelude = "import json, time\nfrom asynctrack._core.values import convert\n"
    try:
        return subprocess.run(
            [sys.executable, "-c", prelude + textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"conversion still running after {seconds} s") from None


class TestHostileValues:
    """
    Values whose conversion cost must stay bounded: the node budget per value, the
    slow-repr memory and the ReDoS-safe URL scrub.
    """

    def test_long_string_with_a_url_converts_quickly(self) -> None:
        """
        A 1 MB string holding a URL converts in well under a second (no ReDoS).
        """
        proc = converts_within(
            """
            t0 = time.perf_counter()
            out = convert("postgresql://app:pw@db/x " + "y" * 1_000_000)
            print(time.perf_counter() - t0, len(json.dumps(out)))
            """,
            5,
        )
        seconds, size = proc.stdout.split()
        assert float(seconds) < 1.0 and int(size) < 2 * MAX_STRING

    def test_wide_self_referencing_dict_is_bounded(self) -> None:
        """
        A dict of 100 keys all pointing to itself converts quickly to a bounded size.
        """
        proc = converts_within(
            """
            d = {}
            for i in range(100):
                d[str(i)] = d
            t0 = time.perf_counter()
            out = convert(d)
            print(time.perf_counter() - t0, len(json.dumps(out)))
            """,
            5,
        )
        seconds, size = proc.stdout.split()
        assert float(seconds) < 1.0 and int(size) < 1_000_000

    def test_slow_repr_is_paid_at_most_once_per_type(self, configured: Configure) -> None:
        """
        A __repr__ taking 0.2 s does not slow every probed call that receives it.
        """
        configured(asynctrack.MemorySink())
        t0 = time.perf_counter()
        for _ in range(10):
            take(SlowRepr())
        assert time.perf_counter() - t0 < 1.0
