"""
Smoke tests of the benchmark harness: every group runs in its tiny mode and prints
a Markdown table with numbers. No timing is asserted here (speed lives in benchmarks/).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")


def _run(*args: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _row(text: str, label: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells
    raise AssertionError(f"no table row {label!r} in:\n{text}")


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """
    The ``benchmarks.__main__`` module, imported from the repository root.
    """
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks.__main__ as runner

    return runner


@pytest.mark.slow
class TestGroupsSmoke:
    def test_calls_prints_per_call_table(self) -> None:
        """
        bench_calls --smoke prints ns/call for plain, wraps and every probe variant.
        """
        out = _run("-m", "benchmarks.bench_calls", "--smoke")
        for label in (
            "plain call (no decorator)",
            "functools.wraps pass-through",
            "asynctrack probe, tracking off",
            "asynctrack probe, inside a silenced subtree",
            "asynctrack probe, suppressed (below threshold)",
            "asynctrack probe, tracked (pipeline on)",
        ):
            cells = _row(out, label)
            assert NUMBER.match(cells[1]), cells  # sync ns/call
            assert NUMBER.match(cells[4]), cells  # async ns/call
        assert "probed async call / probed sync call" in out
        assert "Pipeline during the tracked runs: every log was written" in out

    def test_pipeline_prints_its_tables(self) -> None:
        """
        bench_pipeline --smoke prints hand-off, sink throughput, end-to-end and memory rows.
        """
        out = _run("-m", "benchmarks.bench_pipeline", "--smoke")
        assert NUMBER.match(_row(out, "deque.append (reference)")[1])
        assert NUMBER.match(_row(out, "asynctrack hand-off (Intake.put), live dispatcher")[1])
        assert NUMBER.match(_row(out, "FileSink.write (encode + write to disk)")[1])
        file_row = _row(out, "FileSink")
        assert NUMBER.match(file_row[1])  # logs/s
        assert file_row[8] == "2,000/2,000"  # every log written, none lost
        assert NUMBER.match(_row(out, "100 %")[1])  # RSS at the end of the memory run

    def test_sql_prints_rows_per_second(self) -> None:
        """
        bench_sql --smoke (SQLite only) prints rows/s for the raw driver and SQLSink.
        """
        out = _run("-m", "benchmarks.bench_sql", "--smoke", "--no-postgres", "--no-mysql")
        assert "### SQLite (800 rows)" in out
        for label in ("sqlite3.executemany, one transaction", "SQLSink.write, batches of 512"):
            cells = _row(out, label)
            assert NUMBER.match(cells[2]), cells  # rows/s
        assert _row(out, "sqlite3.executemany, one transaction")[3] == "1.00"
        assert "PostgreSQL" not in out

    def test_gc_prints_collections_and_objects_per_request(self) -> None:
        """
        bench_gc --smoke prints collections per concurrency level and in-flight objects.
        """
        out = _run("-m", "benchmarks.bench_gc", "--smoke")
        assert _row(out, "off")[1] == "1"  # the first row: untracked, one at a time
        for cell in _row(out, "file")[1:]:
            assert NUMBER.match(cell.split(" / ")[0]), cell
        assert "Gen0 collections per 10k requests at K = 8" in out

    def test_wakeups_prints_each_dispatcher_rule_pinned_and_not(self) -> None:
        """
        bench_wakeups --smoke prints the application thread's CPU per request for each
        wake-up rule and sink, on one core and on all.
        """
        out = _run("-m", "benchmarks.bench_wakeups", "--smoke")
        rows = [
            [c.strip() for c in line.strip("|").split("|")]
            for line in out.splitlines()
            if line.startswith(("| unpinned", "| pinned"))
        ]
        assert len(rows) == 14  # off, then 3 rules x 2 sinks, on all cores and on one
        assert {(r[0], r[1], r[2]) for r in rows} >= {
            ("unpinned", "default", "file"),
            ("pinned", "every-batch", "objects"),
        }
        for row in rows:
            assert float(row[3]) > 0 and row[4].endswith("×"), row

    def test_asgi_prints_both_loads_and_the_targets(self) -> None:
        """
        bench_asgi --smoke loads both servers at 8 and 32 connections and prints, per
        load and mode, the figures with the longest pauses, then the #20 targets.
        """
        out = _run("-m", "benchmarks.bench_asgi", "--smoke")
        rows = [
            [c.strip() for c in line.strip().strip("|").split("|")]
            for line in out.splitlines()
            if line.startswith(("| 8 ", "| 32 "))
        ]
        assert [(r[0], r[1]) for r in rows] == [
            ("8", "off"),
            ("8", "on"),
            ("32", "off"),
            ("32", "on"),
        ]
        for r in rows:
            assert all(NUMBER.match(c) for c in (r[2], r[3], r[5], r[8])), r
        assert all(NUMBER.match(r[9]) for r in rows if r[1] == "on")
        assert "| p99 latency" in out and "<= 1.5×" in out and "<= 1.3×" in out
        assert re.search(r"Logs written by the \*on\* server: ([\d,]+) for \1 requests", out)

    def test_runner_runs_a_chosen_group(self) -> None:
        """
        python -m benchmarks --smoke --only calls prints the machine table and that group.
        """
        out = _run("-m", "benchmarks", "--smoke", "--only", "calls")
        assert "| python" in out
        assert "### Group `calls`" in out
        assert "### Group `pipeline`" not in out
        assert NUMBER.match(_row(out, "asynctrack probe, tracked (pipeline on)")[1])


class TestRunner:
    def test_missing_group_is_skipped_with_a_note(self, bench: ModuleType) -> None:
        """
        A group whose module does not exist is skipped with a note, not an error.
        """
        text, status = bench.run_group("bench_does_not_exist", ["--smoke"])
        assert status is None
        assert "Skipped" in text
        assert "bench_does_not_exist" in text

    def test_unknown_group_name_is_rejected(self, bench: ModuleType) -> None:
        """
        --only with an unknown group exits with a usage error naming it.
        """
        with pytest.raises(SystemExit) as info:
            bench.main(["--only", "nope"])
        assert info.value.code == 2

    def test_record_keeps_the_latest_run_of_each_group_per_machine(
        self, bench: ModuleType, tmp_path: Path
    ) -> None:
        """
        record() replaces a group's section for the same machine, keeps the machine's
        other groups, and keeps other machines apart.
        """
        path = tmp_path / "RESULTS.md"

        def info(cpu: str, date: str) -> list[tuple[str, str]]:
            return [("date", date), ("cpu", cpu), ("python", "CPython 3.11.7"),
                    ("os", "Linux 6.1 (x86_64)")]  # fmt: skip

        bench.record(info("A", "d1"), "full", {"calls": "calls old", "sql": "sql old"}, path)
        bench.record(info("B", "d2"), "full", {"calls": "calls on B"}, path)
        bench.record(info("A", "d3"), "quick", {"calls": "calls new"}, path)
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# Benchmark results")
        machines = bench.parse_results(text)
        assert len(machines) == 2
        (a_key,) = [k for k in machines if k.startswith("A ")]
        head, sections = machines[a_key]
        assert "d3" in head and "d1" not in head
        assert sections["calls"].startswith("calls new") and "quick" in sections["calls"]
        assert sections["sql"].startswith("sql old") and "d1" in sections["sql"]
        assert "calls old" not in text
        assert "calls on B" in text

    def test_machine_key_ignores_the_kernel_release_and_the_date(self, bench: ModuleType) -> None:
        """
        Two runs on one machine after a kernel update are the same machine.
        """
        a = [("date", "x"), ("cpu", "C"), ("python", "P"), ("os", "Linux 6.1 (x86_64)")]
        b = [("date", "y"), ("cpu", "C"), ("python", "P"), ("os", "Linux 6.18 (x86_64)")]
        assert bench.machine_key(a) == bench.machine_key(b)


class TestInstructions:
    @given(
        base=st.integers(0, 10**9),
        root=st.integers(0, 10**5),
        nested=st.integers(0, 10**5),
        depth_fixed=st.integers(0, 10**6),
        n1=st.integers(1, 10**4),
        extra=st.integers(1, 10**4),
    )
    def test_formula_recovers_the_nested_call_cost(
        self, base: int, root: int, nested: int, depth_fixed: int, n1: int, extra: int
    ) -> None:
        """
        For counts that grow linearly (start-up, a per-depth constant, per-root and
        per-nested-call costs), the formula returns exactly the nested call's cost.
        """
        from benchmarks.bench_instructions import per_nested_call

        def total(depth: int, n: int) -> int:
            return base + depth * depth_fixed + n * (root + (depth - 1) * nested)

        n2 = n1 + extra
        counts = {(d, n): total(d, n) for d in (2, 3) for n in (n1, n2)}
        assert per_nested_call(counts, n1, n2) == nested

    @pytest.mark.slow
    def test_smoke_runs_the_workload(self) -> None:
        """
        bench_instructions --smoke runs the counted workload once, without valgrind.
        """
        out = _run("-m", "benchmarks.bench_instructions", "--smoke")
        assert "Smoke run" in out


class TestEncodeInstructions:
    def test_per_log_cancels_making_the_logs(self) -> None:
        """
        For counts linear in N, per_log returns exactly what the variant adds per log.
        """
        from benchmarks.bench_encode_instructions import per_log

        def total(variant: str, n: int) -> int:
            return (
                9_000_000
                + n * 170_000
                + {"build": 0, "encode": 500_000 + n * 30_000}.get(variant, 0)
            )

        res = {(v, n): total(v, n) for v in ("build", "encode") for n in (1024, 5120)}
        assert per_log(res, "encode", 1024, 5120) == 30_000

    @pytest.mark.slow
    def test_smoke_runs_each_variant(self) -> None:
        """
        bench_encode_instructions --smoke runs the build, encode and file variants once.
        """
        out = _run("-m", "benchmarks.bench_encode_instructions", "--smoke")
        assert "Smoke run" in out


MEASURE_SCRIPT = """
import json, sys
from benchmarks._timing import Variant, measure, parse_args, ratio

events = []

def fixed(ns_per_iter, tag):
    def run(n):
        events.append(tag)
        return ns_per_iter * n
    return Variant(tag, run, per_iter=2, enter=lambda: events.append("enter " + tag),
                   leave=lambda: events.append("leave " + tag))

args = parse_args("test", sys.argv[1:], module="unused")
results = measure([fixed(100, "a"), fixed(300, "b")], args.settings)
print(json.dumps({"a": results["a"].median, "b": results["b"].median,
                  "ratio": ratio(results, "b", "a"), "events": events,
                  "mode": args.settings.mode}))
"""


class TestTiming:
    def test_measure_brackets_runs_and_reports_ns_per_operation(self, tmp_path: Path) -> None:
        """
        measure() (pyperf, smoke mode: in process, one value) runs each variant inside
        its enter/leave hooks and reports ns per operation from the variant's own timing.
        """
        script = tmp_path / "measure.py"
        script.write_text(MEASURE_SCRIPT, encoding="utf-8")
        out = json.loads(_run(str(script), "--smoke").splitlines()[-1])
        assert out["mode"] == "smoke"
        assert out["a"] == 50.0
        assert out["b"] == 150.0
        assert out["ratio"] == 3.0
        events = out["events"]
        assert events[0] == "enter a" and events[-1] == "leave b"
        assert events.count("enter a") == events.count("leave a") >= 1
        assert "b" in events[events.index("enter b") : events.index("leave b")]

    def test_options_of_pyperf_pass_through(self, tmp_path: Path) -> None:
        """
        A group takes pyperf's own options besides --quick/--smoke/--clock (here --help
        lists both), so pyperf's JSON output and rigour settings are available.
        """
        script = tmp_path / "measure.py"
        script.write_text(MEASURE_SCRIPT, encoding="utf-8")
        text = _run(str(script), "--help")
        for option in ("--clock", "--rigorous", "--processes", "--output"):
            assert option in text, option


class TestReport:
    def test_table_renders_markdown(self, bench: ModuleType) -> None:
        """
        table() renders a header, an alignment row and one row per item.
        """
        from benchmarks._report import table

        text = table(["name", "ns"], [["x", "1.0"], ["longer", "22"]])
        lines = text.splitlines()
        assert lines[0].startswith("| name")
        assert set(lines[1].replace("|", "").replace(" ", "")) <= {"-", ":"}
        assert len(lines) == 4
        assert lines[3].startswith("| longer")
