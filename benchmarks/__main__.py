"""
Run every benchmark group, each in its own process, and print one Markdown report.

``python -m benchmarks`` (what ``make bench`` runs) measures every group;
``--quick`` shortens each, ``--smoke`` only proves they run, ``--only calls,pipeline``
picks groups, and ``--record`` adds the report to ``benchmarks/RESULTS.md`` as a new
dated section above the previous ones (the history that makes regressions visible).

A group whose module is not there (yet) is skipped with a note; a group that fails
is reported and makes the exit status 1, the others still run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ._harness import machine_info, progress, table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
MARKER = "<!-- new results go below this line, newest first -->"

#: (short name, module, what it measures); each module has ``main()``.
GROUPS: tuple[tuple[str, str, str], ...] = (
    ("calls", "bench_calls", "per-call cost of probes and other tracers"),
    ("pipeline", "bench_pipeline", "hand-off, sink throughput, dispatcher CPU, memory"),
    ("sql", "bench_sql", "SQLSink rows/s vs raw sqlite3.executemany"),
    ("stats", "bench_stats", "statistics queries"),
    ("report", "bench_report", "HTML report next to stats"),
    ("asgi", "bench_asgi", "ASGI app, tracking off vs on"),
)
GROUP_TIMEOUT_S = 1200.0

# Runs one group's main() in a fresh interpreter, with or without an argv parameter.
_BOOT = """
import importlib, inspect, sys
name, flags = sys.argv[1], sys.argv[2:]
main = importlib.import_module("benchmarks." + name).main
sys.argv = ["benchmarks." + name, *flags]
try:
    takes_argv = bool(inspect.signature(main).parameters)
except (TypeError, ValueError):
    takes_argv = False
rc = main(flags) if takes_argv else main()
sys.exit(rc if isinstance(rc, int) else 0)
"""


def run_group(
    module: str, flags: Sequence[str], *, timeout: float = GROUP_TIMEOUT_S
) -> tuple[str, int | None]:
    """
    Run one group in a subprocess; return its Markdown output and exit status.

    Args:
        module: the module name inside ``benchmarks`` (``"bench_calls"``).
        flags: command-line options for the group.
        timeout: seconds before the group is stopped.

    Returns:
        ``(text, status)``; status is ``None`` when the module does not exist (the text
        is then a note saying it was skipped).
    """
    source = HERE / f"{module}.py"
    if not source.is_file():
        return f"_Skipped: `benchmarks/{module}.py` is not there._", None
    note = ""
    code = source.read_text(encoding="utf-8")
    # Groups built on _harness.parse_args take every option; ask the others' source.
    harness = "from ._harness import" in code and "parse_args" in code
    unsupported = [f for f in flags if not harness and f'"{f}"' not in code]
    if "--smoke" in unsupported:
        return f"_Skipped: `{module}` has no `--smoke` mode._", None
    if unsupported:
        # A group without --quick runs its default measurement rather than failing.
        flags = [f for f in flags if f not in unsupported]
        note = f"_`{module}` has no {', '.join(unsupported)}: it ran with its defaults._\n\n"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONHASHSEED", "0")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _BOOT, module, *flags],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=None,  # progress notes go straight to the terminal
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout if isinstance(exc.stdout, str) else ""
        return f"{partial}\n_Stopped after {timeout:.0f} s._", 124
    text = note + proc.stdout.rstrip()
    if proc.returncode != 0:
        text += f"\n\n_`{module}` exited with status {proc.returncode}._"
    return text, proc.returncode


def header(mode: str, groups: Sequence[str] | None = None) -> str:
    """
    Return the section title (date, mode, the groups when not all) and the machine table.
    """
    info = machine_info()
    date = dict(info)["date"]
    which = f" — groups: {', '.join(groups)}" if groups else ""
    lines = [
        f"## {date} — {mode} run{which}",
        "",
        table(["machine", ""], [list(p) for p in info], right=False),
    ]
    return "\n".join(lines)


def record(report: str, path: Path = RESULTS) -> None:
    """
    Insert ``report`` as the newest section of the results file, keeping the history.
    """
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if MARKER in old:
        head, _, history = old.partition(MARKER)
        text = f"{head}{MARKER}\n\n{report.strip()}\n\n{history.lstrip()}"
    else:
        intro = (
            "# Benchmark results\n\n"
            "Produced by `python -m benchmarks --record` (`make bench` prints the same "
            "report without recording it). Each section is one run on one machine; "
            "compare ratios, not absolute figures, across machines.\n\n"
        )
        text = f"{intro}{MARKER}\n\n{report.strip()}\n\n{old.strip()}\n"
    path.write_text(text.rstrip() + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the selected groups and print (and optionally record) the report.
    """
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="shorter runs")
    mode.add_argument("--smoke", action="store_true", help="tiny runs: prove they work")
    names = [g[0] for g in GROUPS]
    parser.add_argument(
        "--only", default="", help=f"comma-separated groups among {', '.join(names)}"
    )
    parser.add_argument(
        "--record", action="store_true", help=f"add the report to {RESULTS.relative_to(ROOT)}"
    )
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"--only: unknown group(s) {unknown}; choose among {names}")
    mode_flags = ["--smoke"] if args.smoke else ["--quick"] if args.quick else []
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"

    subset = [n for n in names if n in chosen] if len(chosen) < len(names) else None
    parts = [header(mode_name, subset)]
    failed = False
    started = time.monotonic()
    for name, module, what in GROUPS:
        if name not in chosen:
            continue
        progress(f"== {name}: {what}")
        t0 = time.monotonic()
        text, status = run_group(module, mode_flags)
        failed |= status not in (0, None)
        parts.append(f"### Group `{name}` — {what}\n\n{text}\n\n_{time.monotonic() - t0:.0f} s._")
    parts.append(f"_Total: {time.monotonic() - started:.0f} s._")
    report = "\n\n".join(parts)
    print(report)
    if args.record:
        record(report)
        progress(f"recorded in {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
