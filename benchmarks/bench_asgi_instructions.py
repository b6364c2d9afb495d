"""
Instructions per web request, tracking off vs on, split into parts (issue #20).

The app is the one of ``bench_asgi``: a FastAPI endpoint awaiting two helpers. Here it
is driven in-process, without a server or sockets: a loop calls the ASGI app directly
with a fixed ``GET /items/42`` scope, so what callgrind counts is the application,
FastAPI and asynctrack, nothing of the network or of a load generator.

Four variants, each counted whole by callgrind (all threads) for ``N1`` and ``N2``
requests; the difference divided by ``N2 - N1`` is the cost of one request, start-up
and shutdown cancelled:

- ``off``: the plain app;
- ``middleware``: ``TrackMiddleware`` and tracking on, the helpers not probed, logs going
  to a sink that discards them (so the log's hand-off and dispatch are counted, its
  encoding and writing are not);
- ``probes``: as ``middleware``, both helpers probed;
- ``file``: as ``probes``, logs written by a ``FileSink`` (the benchmark app);
- ``reference``: no asynctrack, a hand-written minimal tracer recording the same
  information in the application's thread (a ContextVar per request, a dict per call,
  one ``orjson.dumps`` per request, lines written every 512 requests; no redaction,
  value checks, trace ids, tree, thread or spill), for scale: what a tracer of this
  app costs at the least, in this interpreter.

The dispatcher's timer is set far out (``flush_interval`` of an hour): it then wakes
only when a batch is full and at the final flush, as it does under a steady load of
hundreds of requests per second, instead of every 0.5 s of a run that valgrind slows
about 50 times (which made the dispatcher's share move with the machine's load).

The parts of the tracked extra are then: middleware = middleware - off; probes =
probes - middleware; encode+write = file - probes; within those, the share of the
dispatcher thread (hand-off and dispatch) is reported apart, and the collector's share
is the change in callgrind's inclusive count of CPython's collection function. Gen0
collections per 10,000 requests are read from ``gc.get_stats()`` deltas.

    python -m benchmarks.bench_asgi_instructions           # N1 = 200, N2 = 1,200
    python -m benchmarks.bench_asgi_instructions --smoke   # run each variant once, no valgrind
    python -m benchmarks.bench_asgi_instructions --jobs 4  # four valgrind runs at a time
    python -m benchmarks.bench_asgi_instructions --src /tmp/base/src  # count another tree

``--src`` counts the ``asynctrack`` of another source tree (``git archive BASE src``
unpacked somewhere) with the same interpreter and FastAPI: the way to compare a change
with its base.

It takes a few minutes (eight runs under valgrind).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ._asgi_driver import with_driver
from ._report import machine_info, table

VARIANTS = ("off", "middleware", "probes", "file", "reference")

#: Issue #20: tracking adds at most this many instructions per request.
TARGET_EXTRA = 68_000

WORKLOAD = with_driver(
    r"""
import asyncio
import gc
import json
import sys
import tempfile

variant, n = sys.argv[1], int(sys.argv[2])
stats_out = sys.argv[3]

from typing import Any

from fastapi import FastAPI

import asynctrack
from asynctrack.integrations.asgi import TrackMiddleware

tracked = variant not in ("off", "reference")
probed = variant in ("probes", "file")
tr = asynctrack.get_tracker("bench")

if variant == "reference":
    # A hand-written minimal tracer of the same information, for scale: a ContextVar
    # per request, one dict per call (function, params, offset, duration, status),
    # one orjson.dumps per request (id, start, duration, the info, the calls), lines
    # joined and written to a file every 512 requests, all in the application's
    # thread. No redaction, no value checks, no trace ids, no tree, no thread, no
    # spill, nothing kept when a write fails.
    import contextvars
    import itertools
    import time

    import orjson

    REF_LOG: contextvars.ContextVar[Any] = contextvars.ContextVar("ref", default=None)
    REF_IDS = itertools.count()
    REF_LINES: list[bytes] = []
    REF_FILE = open(tempfile.mkdtemp() + "/ref.jsonl", "ab")
    clock = time.perf_counter_ns

    def probe(func):
        name = f"{func.__module__}.{func.__qualname__}"
        names = func.__code__.co_varnames[: func.__code__.co_argcount]

        async def wrapper(*args):
            log = REF_LOG.get()
            if log is None:
                return await func(*args)
            t = clock()
            call = {"function": name, "params": dict(zip(names, args))}
            try:
                result = await func(*args)
                call["status"] = "ok"
                return result
            except Exception as exc:
                call["status"] = "error"
                call["error"] = repr(exc)
                raise
            finally:
                call["offset_us"] = (t - log[0]) // 1000
                call["duration_us"] = (clock() - t) // 1000
                log[1].append(call)

        return wrapper

    class ReferenceMiddleware:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            t0 = clock()
            wall = time.time_ns()
            calls = []
            status = [500]

            async def observed(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            token = REF_LOG.set((t0, calls))
            try:
                await self.app(scope, receive, observed)
            finally:
                REF_LOG.reset(token)
                route = scope.get("route")
                duration = (clock() - t0) // 1000
                root = {
                    "function": f"{scope['method']} {getattr(route, 'path', '<unmatched>')}",
                    "params": {},
                    "status": "ok",
                    "offset_us": 0,
                    "duration_us": duration,
                }
                REF_LINES.append(
                    orjson.dumps(
                        {
                            "id": f"{next(REF_IDS):032x}",
                            "started_at": wall,
                            "duration_us": duration,
                            "info": {
                                "method": scope["method"],
                                "client": scope["client"][0],
                                "path": scope["path"],
                                "status": status[0],
                            },
                            "calls": [root, *calls],
                        },
                        option=orjson.OPT_APPEND_NEWLINE,
                    )
                )
                if len(REF_LINES) >= 512:
                    REF_FILE.write(b"".join(REF_LINES))
                    REF_LINES.clear()


class Discard(asynctrack.Sink):
    async def write(self, logs):
        return None


if variant != "reference":

    def probe(func):
        return tr.probe(func) if probed else func


@probe
async def load_user(user_id: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"id": user_id, "name": "alice"}


@probe
async def load_item(item_id: int, user_id: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"item_id": item_id, "price": 9.5, "owner": user_id}


app = FastAPI()


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, Any]:
    user = await load_user(7)
    result: dict[str, Any] = await load_item(item_id, user["id"])
    return result


if tracked:
    app.add_middleware(TrackMiddleware)
elif variant == "reference":
    app.add_middleware(ReferenceMiddleware)

FLUSH_INTERVAL = 3600.0
tmp = tempfile.mkdtemp()
if tracked:
    sink = asynctrack.FileSink(tmp + "/logs.jsonl") if variant == "file" else Discard()
    # No timer: the dispatcher wakes when a batch is full (512 logs) and at the flush,
    # as at a steady load, whatever the speed (valgrind runs ~50x slower).
    asynctrack.configure(
        sinks=[sink], spill_dir=tmp, max_queue=1_000_000, flush_interval=FLUSH_INTERVAL
    )

# ASGI driver


async def main():
    for _ in range(n):
        await app(dict(SCOPE), receive, send)


before = [s["collections"] for s in gc.get_stats()]
asyncio.run(main())
if tracked:
    asynctrack.flush_sync(timeout=120)
    asynctrack.shutdown_sync()
after = [s["collections"] for s in gc.get_stats()]
with open(stats_out, "w") as f:
    json.dump([a - b for a, b in zip(after, before)], f)
print(asynctrack.__file__, file=sys.stderr)
"""
)

#: CPython 3.11's collection entry point; its inclusive count is the collector's cost.
GC_FUNCTIONS = ("gc_collect_main",)


#: ``--src``: a source tree whose ``asynctrack`` the workload imports instead of the
#: installed one (to count a base commit and a change with the same interpreter).
SRC: list[str] = []


def environment() -> dict[str, str]:
    """
    A fixed hash seed, bytecode caches written (see bench_instructions.environment).
    """
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if SRC:
        env["PYTHONPATH"] = os.pathsep.join([*SRC, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def gc_inclusive(out: Path) -> int:
    """
    Sum the inclusive instructions of the collector's entry point over a run's threads.
    """
    total = 0
    for part in sorted(out.parent.glob(f"{out.name}*")):
        proc = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(part)],
            capture_output=True,
            text=True,
            check=False,
        )
        for line in proc.stdout.splitlines():
            if any(f in line for f in GC_FUNCTIONS):
                head = line.split()[0].replace(",", "")
                if head.isdigit():
                    total += int(head)
                    break
    return total


def count(python: str, variant: str, n: int, workdir: Path) -> dict[str, int]:
    """
    Run one variant under callgrind; return all-thread, main-thread and collector
    instructions and the gen0 collections.

    Raises:
        RuntimeError: valgrind failed or wrote no summary.
    """
    out = workdir / f"callgrind.{variant}.{n}"
    stats = workdir / f"gc.{variant}.{n}.json"
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
            str(stats),
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
    import json

    gen = json.loads(stats.read_text(encoding="utf-8"))
    return {
        "all": sum(per_thread.values()),
        "main": per_thread[1],
        "gc": gc_inclusive(out),
        "gen0": int(gen[0]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """
    Count, print a Markdown table, and return 0 (1 when valgrind failed).
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_asgi_instructions", description=__doc__.split("\n")[1]
    )
    parser.add_argument("--smoke", action="store_true", help="run each variant once, no valgrind")
    parser.add_argument("--quick", action="store_true", help="same as a full run")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to count")
    parser.add_argument("--n1", type=int, default=200)
    parser.add_argument("--n2", type=int, default=1_200)
    parser.add_argument("--jobs", type=int, default=1, help="valgrind runs at once")
    parser.add_argument("--src", default="", help="import asynctrack from this src directory")
    args = parser.parse_args(argv)
    if args.src:
        SRC[:] = [str(Path(args.src).resolve())]
    with tempfile.TemporaryDirectory(prefix="asynctrack-cg-asgi-") as tmp:
        workdir = Path(tmp)
        script = workdir / "workload.py"
        script.write_text(WORKLOAD, encoding="utf-8")
        # Outside valgrind first: proves each variant runs and writes bytecode caches.
        for variant in VARIANTS:
            subprocess.run(
                [args.python, str(script), variant, "20", str(workdir / "smoke.json")],
                check=True,
                env=environment(),
            )
        if args.smoke:
            print("_Smoke run: each variant ran once, without valgrind._")
            return 0
        if shutil.which("valgrind") is None:
            print("_Skipped: valgrind is not installed (`apt-get install valgrind`)._")
            return 0
        res: dict[tuple[str, int], dict[str, int]] = {}
        runs = [(v, n) for n in (args.n1, args.n2) for v in VARIANTS]
        # Counts do not depend on the load, so runs may share the machine's cores.
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            futures = {r: pool.submit(count, args.python, r[0], r[1], workdir) for r in runs}
            try:
                for r, fut in futures.items():
                    res[r] = fut.result()
            except RuntimeError as exc:
                print(f"_callgrind failed: {exc}_")
                return 1
    span = args.n2 - args.n1

    def per(variant: str, key: str) -> float:
        return (res[variant, args.n2][key] - res[variant, args.n1][key]) / span

    def gen0(variant: str) -> float:
        return (res[variant, args.n2]["gen0"] - res[variant, args.n1]["gen0"]) * 10_000 / span

    off = per("off", "all")
    rows = []
    for variant in VARIANTS:
        total, main_ = per(variant, "all"), per(variant, "main")
        rows.append(
            [
                variant,
                f"{total:,.0f}",
                f"{total - off:+,.0f}",
                f"{main_:,.0f}",
                f"{total - main_:,.0f}",
                f"{per(variant, 'gc'):,.0f}",
                f"{gen0(variant):,.0f}",
            ]
        )
    print(
        table(
            [
                "variant",
                "instr/request",
                "vs off",
                "app thread",
                "other threads",
                "collector",
                "gen0 per 10k req",
            ],
            rows,
        )
    )
    print()
    parts = [
        ["middleware (root call, info, send wrapping)", "middleware", "off"],
        ["two probed helpers", "probes", "middleware"],
        ["encode + write (FileSink)", "file", "probes"],
    ]
    split = []
    for label, a, b in parts:
        d_all = per(a, "all") - per(b, "all")
        d_main = per(a, "main") - per(b, "main")
        d_gc = per(a, "gc") - per(b, "gc")
        split.append([label, f"{d_all:,.0f}", f"{d_all - d_main:,.0f}", f"{d_gc:,.0f}"])
    extra = per("file", "all") - off
    split.append(["**tracked extra, total**", f"{extra:,.0f}", "", ""])
    print(
        table(
            ["part", "instructions", "… in other threads (hand-off, dispatch)", "… collector"],
            split,
        )
    )
    if gen0("off"):
        collections = f"{gen0('file') / gen0('off'):.2f}x (target <= 1.15x)"
    else:  # the untracked app collects nothing here: a ratio would divide by zero
        collections = f"{gen0('file'):,.0f} against {gen0('off'):,.0f} untracked"
    met = "met" if extra <= TARGET_EXTRA else "not met"
    python = dict(machine_info())["python"]
    print()
    print(
        f"Target (#20): tracking adds <= {TARGET_EXTRA:,} instructions per request: "
        f"{extra:,.0f}, {met}; the hand-written minimal tracer (`reference`) adds "
        f"{per('reference', 'all') - off:,.0f}. Gen0 collections per 10k requests, "
        f"tracked: {collections}. Callgrind, {python}, N = {args.n1:,} and {args.n2:,} "
        "requests per run, in-process ASGI driver. Method: "
        "`benchmarks/bench_asgi_instructions.py`."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
