"""
Instructions per tracked nested call, counted with valgrind's callgrind.

Wall-clock figures on a shared machine move by ±30 %; instruction counts do not (they
depend on neither the load nor the CPU's frequency), so this is the figure that tells
whether a change made the per-call path cheaper or dearer.

The method: one workload runs ``N`` root calls of a probed chain ``a -> b -> c``
(three tracked calls) or ``a -> b`` (two), with the pipeline running and a
``MemorySink``, and is counted whole by callgrind, interpreter start-up and exit
included. ``I(depth, N)`` is the total instruction count. Then

    per nested call = ((I(3, N2) - I(2, N2)) - (I(3, N1) - I(2, N1))) / (N2 - N1)

The difference between depths keeps one nested call per root call and cancels
start-up, configuration, the root call and its log's hand-off; the difference between
``N`` cancels whatever is left that does not grow with ``N``.

Callgrind counts each thread apart (``--separate-threads=yes``): the total includes the
dispatcher thread's share (writing the log to the sink), the application thread's
figure is what the caller's thread pays. The dispatcher's share depends a little on
the machine's load, because its timer and the interpreter's thread switches are
wall-clock based and run about 50 times slower under valgrind; the application
thread's figure depends on it much less.

    python -m benchmarks.bench_instructions            # N1 = 2,000, N2 = 10,000
    python -m benchmarks.bench_instructions --smoke    # run the workload once, no valgrind

It takes one to two minutes (four runs under valgrind).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ._report import machine_info, table

#: The per-call figure measured before the package was split into layers (#16); a
#: change to the hot path should stay within 3 % of the latest recorded figure.
REFERENCE = 13_826

WORKLOAD = """
import sys

import asynctrack

depth, n = int(sys.argv[1]), int(sys.argv[2])
tr = asynctrack.get_tracker("bench")


@tr.probe
def c(x):
    return x + 1


@tr.probe
def b(x):
    return c(x) if depth >= 3 else x


@tr.probe
def a(x):
    return b(x)


asynctrack.configure(sinks=[asynctrack.MemorySink()], max_queue=1_000_000)
for i in range(n):
    a(i)
asynctrack.flush_sync(timeout=60)
asynctrack.shutdown_sync()
"""


def environment() -> dict[str, str]:
    """
    The workload's environment: a fixed hash seed, and bytecode caches written.

    With ``PYTHONDONTWRITEBYTECODE`` set, a module changed since its cache was written is
    compiled again in every run: about 220 million more instructions per run, which the
    differences cancel but which is noise all the same.
    """
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def count(python: str, depth: int, n: int, workdir: Path) -> tuple[int, int]:
    """
    Run the workload under callgrind; return its instruction count, all threads and
    the main (application) thread.

    Raises:
        RuntimeError: valgrind failed or wrote no summary.
    """
    out = workdir / f"callgrind.{depth}.{n}"
    script = workdir / "workload.py"
    script.write_text(WORKLOAD, encoding="utf-8")
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}",
            python,
            str(script),
            str(depth),
            str(n),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=environment(),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"valgrind exited with {proc.returncode}: {proc.stderr[-2000:]}")
    per_thread: dict[int, int] = {}
    for part in workdir.glob(f"{out.name}-*"):
        for line in part.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("summary:"):
                per_thread[int(part.name.rsplit("-", 1)[1])] = int(line.split()[1])
    if 1 not in per_thread:
        raise RuntimeError(f"no summary line for the main thread in {out}-01")
    return sum(per_thread.values()), per_thread[1]


def per_nested_call(counts: dict[tuple[int, int], int], n1: int, n2: int) -> float:
    """
    Instructions per nested tracked call from the four counts ``I(depth, n)``.
    """
    low = counts[3, n1] - counts[2, n1]
    high = counts[3, n2] - counts[2, n2]
    return (high - low) / (n2 - n1)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Count, print a Markdown table, and return 0 (1 when valgrind failed).
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_instructions", description=__doc__.split("\n")[1]
    )
    parser.add_argument("--smoke", action="store_true", help="run the workload once, no valgrind")
    parser.add_argument("--quick", action="store_true", help="same as a full run (it is short)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to count")
    parser.add_argument("--n1", type=int, default=2_000)
    parser.add_argument("--n2", type=int, default=10_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="asynctrack-cg-") as tmp:
        workdir = Path(tmp)
        if args.smoke:
            script = workdir / "workload.py"
            script.write_text(WORKLOAD, encoding="utf-8")
            subprocess.run([args.python, str(script), "3", "100"], check=True)
            print("_Smoke run: the workload ran once, without valgrind._")
            return 0
        if shutil.which("valgrind") is None:
            print("_Skipped: valgrind is not installed (`apt-get install valgrind`)._")
            return 0
        counts: dict[tuple[int, int], int] = {}
        main_thread: dict[tuple[int, int], int] = {}
        # One run outside valgrind first writes up-to-date bytecode caches, so that every
        # counted run starts from the same state (see environment()).
        script = workdir / "workload.py"
        script.write_text(WORKLOAD, encoding="utf-8")
        subprocess.run([args.python, str(script), "3", "100"], check=True, env=environment())
        try:
            for n in (args.n1, args.n2):
                for depth in (3, 2):
                    counts[depth, n], main_thread[depth, n] = count(args.python, depth, n, workdir)
        except RuntimeError as exc:
            print(f"_callgrind failed: {exc}_")
            return 1
    figure = per_nested_call(counts, args.n1, args.n2)
    app = per_nested_call(main_thread, args.n1, args.n2)
    python = dict(machine_info())["python"]
    rows = [
        ["instructions per tracked nested call (all threads)", f"{figure:,.0f}"],
        ["… in the application's thread", f"{app:,.0f}"],
        ["… in the dispatcher thread (its share of the log)", f"{figure - app:,.0f}"],
        ["reference, all threads (before #16's layout)", f"{REFERENCE:,}"],
        ["change", f"{(figure / REFERENCE - 1) * 100:+.1f} %"],
    ]
    print(table(["callgrind, " + python, "instructions"], rows))
    print()
    print(
        f"Counts I(depth, N) for N = {args.n1:,} and {args.n2:,}: "
        + ", ".join(f"I({d}, {n:,}) = {v:,}" for (d, n), v in sorted(counts.items()))
        + ". Method: `benchmarks/bench_instructions.py`."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
