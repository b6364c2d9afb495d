"""
Run every benchmark group, each in its own process, and print one Markdown report.

``python -m benchmarks`` (what ``make bench`` runs) measures every group;
``--quick`` shortens each, ``--smoke`` only proves they run, ``--only calls,pipeline``
picks groups, and ``--record`` writes the report into ``benchmarks/RESULTS.md``, which
keeps the latest run of each group per machine (the history lives in git:
``git log -p benchmarks/RESULTS.md``).

A group whose module is not there (yet) is skipped with a note; a group that fails
is reported and makes the exit status 1, the others still run.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ._report import machine_info, progress, table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"

#: (short name, module, what it measures); each module has ``main()``.
GROUPS: tuple[tuple[str, str, str], ...] = (
    ("instructions", "bench_instructions", "instructions per tracked nested call (callgrind)"),
    ("calls", "bench_calls", "per-call cost of probes and other tracers"),
    ("pipeline", "bench_pipeline", "hand-off, sink throughput, dispatcher CPU, memory"),
    ("sql", "bench_sql", "SQLSink rows/s vs raw sqlite3.executemany"),
    ("stats", "bench_stats", "statistics queries"),
    ("report", "bench_report", "HTML report next to stats"),
    ("asgi", "bench_asgi", "ASGI app, tracking off vs on"),
    (
        "encode-instructions",
        "bench_encode_instructions",
        "instructions per log to encode and write it with a FileSink (callgrind)",
    ),
    (
        "asgi-instructions",
        "bench_asgi_instructions",
        "instructions per web request, tracking off vs on, by part (callgrind)",
    ),
    ("gc", "bench_gc", "garbage collections per web request, tracking off vs on"),
    (
        "wakeups",
        "bench_wakeups",
        "what the dispatcher's wake-ups cost the application's thread on another core",
    ),
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
    # Groups built on _timing.parse_args take every option; ask the others' source.
    harness = "from ._timing import" in code and "parse_args" in code
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


INTRO = """# Benchmark results

The latest run of each benchmark group on each machine, written by
`python -m benchmarks --record`; earlier runs are in git (`git log -p
benchmarks/RESULTS.md`). `make bench` prints the same report without recording it.

**Method.** Each group runs in its own process. Per-call, per-log and per-row costs are
timed with pyperf (calibrated loops, warm-ups, several worker processes, median of the
values; runs recorded before issue #16 used the earlier in-process harness, interleaved
rounds with per-round ratios, as their notes say); a group's variants run in one run,
so compare their ratios, which hold across machines better than nanoseconds. The
`instructions` group counts instructions per tracked nested call with valgrind's
callgrind, which the CPU frequency does not move and the load moves little (compare
runs made back to back; see `benchmarks/bench_instructions.py`). The `stats` and
`report` groups time whole commands over a million logs in child processes (three
runs, the median, with CPU time and peak memory). Target
verdicts marked "(estimate)" scale this machine's figure by a reference operation
measured in the same run (the reference machine of issue #9: plain call 17 ns,
`functools.wraps` 80 ns, `deque.append` 12 ns, `json.dumps` 230,000 logs/s). Machines
shared with other work give wide ranges: mind the load average of each run.
"""

_MACHINE = re.compile(r"^<!-- machine: (.*?) -->$", re.MULTILINE)
_GROUP = re.compile(r"^<!-- group: (\S+) -->$", re.MULTILINE)


def machine_key(info: Sequence[tuple[str, str]]) -> str:
    """
    Name a machine by its CPU, Python and OS (not the kernel release or the date).
    """
    d = dict(info)
    system = d["os"].split(" ", 1)[0]
    arch = d["os"].rsplit("(", 1)[-1].rstrip(")")
    return f"{d['cpu']} | {d['python']} | {system} {arch}"


def parse_results(text: str) -> dict[str, tuple[str, dict[str, str]]]:
    """
    Split a results file into machines: key -> (machine table, group -> section).
    """
    machines: dict[str, tuple[str, dict[str, str]]] = {}
    starts = list(_MACHINE.finditer(text))
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        body = text[m.end() : end]
        groups = list(_GROUP.finditer(body))
        head = body[: groups[0].start() if groups else len(body)].strip()
        sections = {}
        for j, g in enumerate(groups):
            g_end = groups[j + 1].start() if j + 1 < len(groups) else len(body)
            sections[g.group(1)] = body[g.end() : g_end].strip()
        machines[m.group(1)] = (head, sections)
    return machines


def render_results(machines: dict[str, tuple[str, dict[str, str]]]) -> str:
    """
    Write the results file: the introduction, then each machine and its groups.
    """
    parts = [INTRO.strip()]
    for key, (head, sections) in machines.items():
        parts.append(f"<!-- machine: {key} -->\n{head}")
        for name in [g[0] for g in GROUPS] + sorted(set(sections) - {g[0] for g in GROUPS}):
            if name in sections:
                parts.append(f"<!-- group: {name} -->\n{sections[name]}")
    return "\n\n".join(parts).rstrip() + "\n"


def record(
    info: Sequence[tuple[str, str]],
    mode: str,
    sections: dict[str, str],
    path: Path = RESULTS,
) -> None:
    """
    Put this run's group sections into the results file, replacing the same groups of
    the same machine and keeping its other groups and the other machines.
    """
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    machines = parse_results(old)
    key = machine_key(info)
    date = dict(info)["date"]
    head = "\n\n".join(
        [
            f"## {dict(info)['cpu']}, {dict(info)['python']}",
            f"Machine of the latest recorded run ({date}):",
            table(["machine", ""], [list(p) for p in info], right=False),
        ]
    )
    _, kept = machines.get(key, ("", {}))
    for name, text in sections.items():
        kept[name] = f"{text}\n\n_Run of {date}, {mode}._"
    machines[key] = (head, kept)
    path.write_text(render_results(machines), encoding="utf-8")


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
    info = machine_info()
    parts = [header(mode_name, subset)]
    sections: dict[str, str] = {}
    failed = False
    started = time.monotonic()
    for name, module, what in GROUPS:
        if name not in chosen:
            continue
        progress(f"== {name}: {what}")
        t0 = time.monotonic()
        text, status = run_group(module, mode_flags)
        failed |= status not in (0, None)
        section = f"### Group `{name}` — {what}\n\n{text}\n\n_{time.monotonic() - t0:.0f} s._"
        parts.append(section)
        if status == 0:
            sections[name] = section
    parts.append(f"_Total: {time.monotonic() - started:.0f} s._")
    print("\n\n".join(parts))
    if args.record:
        record(info, mode_name, sections)
        progress(f"recorded in {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
