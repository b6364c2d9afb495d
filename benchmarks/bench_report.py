"""
``asynctrack report`` on 1,000,000 logs x 3 calls (50 functions, 2,000 users), next to
``asynctrack stats`` (plain and ``--by user``) on the same data.

The data is ``bench_stats``'s: a JSON-lines file, a SQLite database and PostgreSQL
tables (MariaDB with ``--backends ...,mysql``). Each command runs in its own process,
:data:`~bench_stats.REPEATS` times (median reported): wall time, client CPU time, peak
memory, and for ``report`` the size of the page. Targets (issue #18): the report takes
at most twice ``stats --by user`` on the same source (the report shows per-user
figures too), and the page is at most 3 MB.

Like ``bench_stats``, it times whole commands in child processes with its own loop,
not pyperf (see docs/performance.md).

Run it alone, it is heavy::

    python benchmarks/bench_report.py                 # full size
    python benchmarks/bench_report.py --logs 20000    # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time

try:
    from benchmarks import bench_stats as _data
except ImportError:  # run as a script: python benchmarks/bench_report.py
    import bench_stats as _data  # type: ignore[no-redef]

#: The report may take this many times ``stats --by user``; the page this many bytes.
TIME_FACTOR = 2.0
MAX_PAGE = 3 << 20


def measure(command: list[str]) -> tuple[float, float, int, float]:
    """
    Run ``asynctrack COMMAND`` in a child process, ``REPEATS`` times; return the median
    run's (wall seconds, peak MB, exit code, client CPU seconds).
    """
    cmd = [sys.executable, "-m", "asynctrack", *command]
    runs = []
    for _ in range(_data.REPEATS):
        out = subprocess.run(
            [sys.executable, "-S", "-c", _data._LAUNCHER, *cmd],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        runs.append((float(out[0]), int(out[1]) / 1024, int(out[2]), float(out[3])))
    runs.sort()
    return runs[len(runs) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=1_000_000, help="logs to generate (1e6)")
    parser.add_argument("--backends", default="postgresql,sqlite,file", help="comma-separated")
    parser.add_argument("--workdir", help="where to put the file, database and pages")
    parser.add_argument(
        "--reuse", action="store_true", help="keep the data already in --workdir (time only)"
    )
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    workdir = args.workdir or tempfile.mkdtemp(prefix="asynctrack-bench-report-")
    os.makedirs(workdir, exist_ok=True)
    sources: dict[str, str] = {}
    print(f"{args.logs:,} logs x 3 calls, {_data.FUNCTIONS} functions, {_data.USERS} users")
    for backend in backends:
        start = time.perf_counter()
        if backend == "file":
            path = os.path.join(workdir, "track.jsonl")
            if not (args.reuse and os.path.exists(path)):
                _data.write_jsonl(path, args.logs)
            sources[backend] = path
        elif backend == "sqlite":
            path = os.path.join(workdir, "track.db")
            if not (args.reuse and os.path.exists(path)):
                if os.path.exists(path):
                    os.unlink(path)
                _data.write_sqlite(path, args.logs)
            sources[backend] = f"sqlite:///{path}"
        elif backend in ("postgresql", "mysql"):
            url = _data.POSTGRES_URL if backend == "postgresql" else _data.MYSQL_URL
            asyncio.run(_data._server(url, args.logs))
            sources[backend] = url
        else:
            parser.error(f"unknown backend {backend!r}")
        print(f"  generated {backend} in {time.perf_counter() - start:.1f} s", flush=True)
    os.sync()  # time the commands, not the write-back of the generated data
    print(f"load average before timing: {os.getloadavg()[0]:.1f}")
    print()
    print("| backend | command | time | cpu | peak MB | page | verdict |")
    print("|---|---|---|---|---|---|---|")
    failed = False
    try:
        for backend, source in sources.items():
            prefix = ["--table-prefix", _data.PREFIX] if "://" in source else []
            base: dict[str, float] = {}
            for label, extra in (("stats", []), ("stats --by user", ["--by", "user"])):
                elapsed, peak, code, cpu = measure(
                    ["stats", source, *prefix, *extra, "--format", "json"]
                )
                base[label] = elapsed
                failed |= code != 0
                print(
                    f"| {backend} | {label} | {elapsed:.2f} s | {cpu:.2f} s | {peak:.0f} "
                    f"| - | {'ok' if code == 0 else f'exit {code}'} |",
                    flush=True,
                )
            page = os.path.join(workdir, f"report-{backend}.html")
            elapsed, peak, code, cpu = measure(["report", source, *prefix, "-o", page])
            size = os.path.getsize(page) if code == 0 else 0
            ratio = elapsed / base["stats --by user"] if base["stats --by user"] else 0.0
            ok = code == 0 and ratio <= TIME_FACTOR and size <= MAX_PAGE
            failed |= not ok
            print(
                f"| {backend} | report | {elapsed:.2f} s | {cpu:.2f} s | {peak:.0f} "
                f"| {size / 1024:.0f} kB | {'ok' if ok else 'MISSED'} ({ratio:.2f}x stats "
                f"--by user{'' if code == 0 else f', exit {code}'}) |",
                flush=True,
            )
        print(f"\nload average after timing: {os.getloadavg()[0]:.1f}")
    finally:
        for backend in ("postgresql", "mysql"):
            if backend in sources:
                asyncio.run(_data._server(sources[backend], 0, drop_only=True))
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
