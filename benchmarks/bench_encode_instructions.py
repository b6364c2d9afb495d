"""
Instructions per log to encode it and write it with a FileSink, counted with callgrind.

The dispatcher thread's share of a web request (issue #20) depends on wall-clock timers
(``flush_interval``, thread switches) that run about 50 times slower under valgrind;
this group drives the dispatcher's per-log work directly instead, without timers, so
its count repeats from run to run.

The workload makes ``N`` logs shaped like the web benchmark's (a root call with four
info values and two probed helpers, three calls in all) with real probes, collected in
process (``asynctrack.testing.capture``: no pipeline, no thread), then:

- ``build``: nothing more;
- ``encode``: encodes them with ``encode_logs`` in batches of 512 (the FileSink's
  encoder);
- ``file``: writes them with ``FileSink.write`` in batches of 512 (encoding, the
  executor thread's ``os.write``, the file's checks), in one asyncio loop.

Each variant is counted whole (all threads) for ``N1`` and ``N2`` logs, and

    per log = ((I(variant, N2) - I(build, N2)) - (I(variant, N1) - I(build, N1))) / (N2 - N1)

so making the logs, start-up and exit cancel out.

    python -m benchmarks.bench_encode_instructions            # N1 = 1,024, N2 = 5,120
    python -m benchmarks.bench_encode_instructions --smoke    # run each variant once
    python -m benchmarks.bench_encode_instructions --src /tmp/base/src  # another tree

It takes about a minute (six runs under valgrind).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ._report import machine_info, table
from .bench_asgi_instructions import SRC, environment

VARIANTS = ("build", "encode", "file")
BATCH = 512

WORKLOAD = r"""
import asyncio
import os
import sys
import tempfile

variant, n = sys.argv[1], int(sys.argv[2])

import asynctrack
from asynctrack._core.encode import encode_logs
from asynctrack.testing import capture

web = asynctrack.get_tracker("asynctrack.asgi")
tr = asynctrack.get_tracker("bench")


@tr.probe
def load_user(user_id):
    return {"id": user_id, "name": "alice"}


@tr.probe
def load_item(item_id, user_id):
    return {"item_id": item_id, "price": 9.5, "owner": user_id}


@web.probe(fname="GET /items/{item_id}")
def request():
    asynctrack.add_info("method", "GET")
    asynctrack.add_info("client", "127.0.0.1")
    user = load_user(7)
    load_item(42, user["id"])
    asynctrack.add_info("path", "/items/42")
    asynctrack.add_info("status", 200)


with capture() as logs:
    for _ in range(n):
        request()
assert len(logs) == n
batches = [logs[i : i + BATCH] for i in range(0, n, BATCH)]

if variant == "encode":
    for batch in batches:
        encode_logs(batch)
elif variant == "file":

    async def write():
        sink = asynctrack.FileSink(os.path.join(tempfile.mkdtemp(), "logs.jsonl"))
        await sink.open()
        for batch in batches:
            await sink.write(batch)
        await sink.close()

    asyncio.run(write())
""".replace("BATCH", str(BATCH))


def count(python: str, variant: str, n: int, workdir: Path) -> int:
    """
    Run one variant under callgrind; return its instructions, all threads.

    Raises:
        RuntimeError: valgrind failed or wrote no summary.
    """
    out = workdir / f"callgrind.{variant}.{n}"
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={out}",
            python,
            str(workdir / "workload.py"),
            variant,
            str(n),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=environment(),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"valgrind exited with {proc.returncode}: {proc.stderr[-2000:]}")
    total = 0
    for part in workdir.glob(f"{out.name}-*"):
        for line in part.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("summary:"):
                total += int(line.split()[1])
    if not total:
        raise RuntimeError(f"no summary line in {out}-*")
    return total


def per_log(res: dict[tuple[str, int], int], variant: str, n1: int, n2: int) -> float:
    """
    Instructions per log that ``variant`` adds to making the logs, from the counts
    ``res[variant, n]`` (making the logs, start-up and exit cancel).
    """
    high = res[variant, n2] - res["build", n2]
    low = res[variant, n1] - res["build", n1]
    return (high - low) / (n2 - n1)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Count, print a Markdown table, and return 0 (1 when valgrind failed).
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_encode_instructions", description=__doc__.split("\n")[1]
    )
    parser.add_argument("--smoke", action="store_true", help="run each variant once, no valgrind")
    parser.add_argument("--quick", action="store_true", help="same as a full run")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to count")
    parser.add_argument("--n1", type=int, default=2 * BATCH)
    parser.add_argument("--n2", type=int, default=10 * BATCH)
    parser.add_argument("--src", default="", help="import asynctrack from this src directory")
    args = parser.parse_args(argv)
    if args.src:
        SRC[:] = [str(Path(args.src).resolve())]
    with tempfile.TemporaryDirectory(prefix="asynctrack-cg-encode-") as tmp:
        workdir = Path(tmp)
        script = workdir / "workload.py"
        script.write_text(WORKLOAD, encoding="utf-8")
        # Outside valgrind first: proves each variant runs and writes bytecode caches.
        for variant in VARIANTS:
            subprocess.run([args.python, str(script), variant, "20"], check=True, env=environment())
        if args.smoke:
            print("_Smoke run: each variant ran once, without valgrind._")
            return 0
        if shutil.which("valgrind") is None:
            print("_Skipped: valgrind is not installed (`apt-get install valgrind`)._")
            return 0
        res: dict[tuple[str, int], int] = {}
        try:
            for n in (args.n1, args.n2):
                for variant in VARIANTS:
                    res[variant, n] = count(args.python, variant, n, workdir)
        except RuntimeError as exc:
            print(f"_callgrind failed: {exc}_")
            return 1

    def per(variant: str) -> float:
        return per_log(res, variant, args.n1, args.n2)

    rows = [
        ["encode (`encode_logs`, batches of 512)", f"{per('encode'):,.0f}"],
        ["encode + write (`FileSink.write`, batches of 512)", f"{per('file'):,.0f}"],
        ["… of which writing (`file` − `encode`)", f"{per('file') - per('encode'):,.0f}"],
    ]
    python = dict(machine_info())["python"]
    print(table([f"instructions per 3-call log, callgrind, {python}", "instructions"], rows))
    print()
    print(
        f"N = {args.n1:,} and {args.n2:,} logs per run, all threads; making the logs "
        "cancelled by the `build` variant. Method: `benchmarks/bench_encode_instructions.py`."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
