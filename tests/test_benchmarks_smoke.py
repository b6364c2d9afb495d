"""
Smoke tests of the benchmark harness: every group runs in its tiny mode and prints
a Markdown table with numbers. No timing is asserted here (speed lives in benchmarks/).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

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
        assert re.search(r"Pipeline during the tracked runs: [\d,]+ logs written", out)

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

    def test_record_puts_the_newest_run_first_and_keeps_history(
        self, bench: ModuleType, tmp_path: Path
    ) -> None:
        """
        record() inserts each report above the previous ones, keeping them all.
        """
        path = tmp_path / "RESULTS.md"
        bench.record("## first run\n\nold figures", path)
        bench.record("## second run\n\nnew figures", path)
        text = path.read_text(encoding="utf-8")
        assert text.startswith("# Benchmark results")
        assert text.count(bench.MARKER) == 1
        assert text.index("## second run") < text.index("## first run")
        assert "old figures" in text
        assert "new figures" in text


class TestHarness:
    def test_measure_interleaves_and_brackets_blocks(self, bench: ModuleType) -> None:
        """
        measure() runs every variant once per round, inside its enter/leave hooks,
        and reports ns per operation from the variant's own timing.
        """
        from benchmarks._harness import Settings, Variant, measure, paired_ratio

        events: list[str] = []

        def fixed(ns_per_iter: int, tag: str) -> Variant:
            def run(n: int) -> int:
                events.append(tag)
                return ns_per_iter * n

            return Variant(
                tag,
                run,
                per_iter=2,
                enter=lambda: events.append(f"enter {tag}"),
                leave=lambda: events.append(f"leave {tag}"),
            )

        results = measure([fixed(100, "a"), fixed(300, "b")], Settings(3, 2, 1e-6, "smoke"))
        assert results["a"].median == 50.0
        assert results["b"].median == 150.0
        assert len(results["a"].rounds) == 3
        assert paired_ratio(results, "b", "a") == 3.0
        # Each block is bracketed, and the order alternates between rounds.
        assert events.count("enter a") == events.count("leave a") == 3
        starts = [e.split()[1] for e in events if e.startswith("enter")]
        assert starts == ["a", "b", "b", "a", "b", "a"]

    def test_table_renders_markdown(self, bench: ModuleType) -> None:
        """
        table() renders a header, an alignment row and one row per item.
        """
        from benchmarks._harness import table

        text = table(["name", "ns"], [["x", "1.0"], ["longer", "22"]])
        lines = text.splitlines()
        assert lines[0].startswith("| name")
        assert set(lines[1].replace("|", "").replace(" ", "")) <= {"-", ":"}
        assert len(lines) == 4
        assert lines[3].startswith("| longer")
