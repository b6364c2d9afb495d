"""
What the dispatcher's wake-ups cost the application's thread on another core (#20).

A thread that wants the GIL while an asyncio thread holds it waits on a condition
variable; the asyncio thread gives the GIL up and takes it back at every turn of its
event loop, signalling the waiter each time, and usually wins it back first. So each
time the dispatcher wakes, the application's thread pays, in its own CPU time, for the
dispatcher's wait. This benchmark shows it without a server: the FastAPI app of
``bench_asgi`` driven in-process by 8 concurrent "connections" (tasks sending requests
back to back), tracked with ``TrackMiddleware``, two probed helpers and a sink, and
reports the CPU time of the application's thread per request (``time.thread_time``),
the whole process's, and the voluntary context switches of the other threads, for:

- ``off``: untracked;
- ``idle``: tracked, the dispatcher never woken during the run (a batch larger than
  the run and a timer of an hour): the floor;
- ``every batch``: woken at every batch of 512 (asynctrack 0.1's rule);
- ``default``: woken once eight batches are queued (``Intake.wake_every``);
- and the same with the whole process pinned to one core, where no wake-up can run
  beside the application (the way ``bench_asgi`` pins its servers, which therefore
  does not see this cost).

Both sinks are measured: ``FileSink`` (logs queued as lines) and a sink discarding
``Log`` objects (as ``SQLSink`` and the others are fed). The collector stays on.

    python -m benchmarks.bench_wakeups            # 20,000 requests per run, best of 3
    python -m benchmarks.bench_wakeups --quick    # 5,000
    python -m benchmarks.bench_wakeups --smoke    # proves it runs
    python -m benchmarks.bench_wakeups --src /tmp/base/src   # another tree
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._asgi_driver import with_driver
from ._report import machine_info, table

WORKLOAD = with_driver(
    r"""
import asyncio, glob, json, os, sys, tempfile, threading, time
from typing import Any

from fastapi import FastAPI

import asynctrack
from asynctrack.integrations.asgi import TrackMiddleware

mode, sink_kind, out = sys.argv[1], sys.argv[2], sys.argv[5]
n, reps = int(sys.argv[3]), int(sys.argv[4])
if sys.argv[6] == "pinned":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
tracked = mode != "off"
tr = asynctrack.get_tracker("bench")


class Discard(asynctrack.Sink):
    async def write(self, logs):
        return None


async def load_user(user_id: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"id": user_id, "name": "alice"}


async def load_item(item_id: int, user_id: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"item_id": item_id, "price": 9.5, "owner": user_id}


if tracked:
    load_user, load_item = tr.probe(load_user), tr.probe(load_item)
app = FastAPI()


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, Any]:
    user = await load_user(7)
    return await load_item(item_id, user["id"])


if tracked:
    app.add_middleware(TrackMiddleware)
    tmp = tempfile.mkdtemp()
    sink = asynctrack.FileSink(tmp + "/logs.jsonl") if sink_kind == "file" else Discard()
    batch = 10_000_000 if mode == "idle" else 512
    asynctrack.configure(
        sinks=[sink], spill_dir=tmp, batch_size=batch, max_queue=20_000_000,
        flush_interval=3600 if mode == "idle" else 0.5,
    )
    if mode == "every-batch":
        intake = asynctrack._core.runtime.RUNTIME.pipeline.intake
        intake.wake_every = intake._wake_at = 512

# ASGI driver


async def connection(k):
    for _ in range(k):
        await app(dict(SCOPE), receive, send)
        await asyncio.sleep(0)


async def run(total):
    await asyncio.gather(*(connection(total // 8) for _ in range(8)))


def switches():
    mine = threading.get_native_id()
    total = 0
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/status"):
        if int(path.split("/")[-2]) == mine:
            continue
        try:
            for line in open(path):
                if line.startswith("voluntary_ctxt_switches"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


asyncio.run(run(2_000))  # warm-up
best = None
for _ in range(reps):
    s0, t0 = switches(), time.perf_counter_ns()
    c0, p0 = time.thread_time_ns(), time.process_time_ns()
    asyncio.run(run(n))
    row = {
        "wall_us": (time.perf_counter_ns() - t0) / n / 1000,
        "app_us": (time.thread_time_ns() - c0) / n / 1000,
        "process_us": (time.process_time_ns() - p0) / n / 1000,
        "switches_per_1k": (switches() - s0) * 1000 / n,
    }
    if best is None or row["app_us"] < best["app_us"]:
        best = row
with open(out, "w") as f:
    json.dump(best, f)
"""
)

MODES = ("off", "idle", "every-batch", "default")
SINKS = ("file", "objects")
#: ``--src``: a source tree whose ``asynctrack`` the workload imports instead.
SRC: list[str] = []


def run(mode: str, sink: str, n: int, reps: int, where: str, workdir: Path) -> dict[str, Any]:
    """
    Run one configuration in a fresh interpreter; return its best repetition.
    """
    out = workdir / f"{mode}.{sink}.{where}.json"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if SRC:
        env["PYTHONPATH"] = os.pathsep.join([*SRC, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    subprocess.run(
        [
            sys.executable,
            str(workdir / "workload.py"),
            mode,
            sink,
            str(n),
            str(reps),
            str(out),
            where,
        ],
        check=True,
        env=env,
    )
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="5,000 requests per run")
    parser.add_argument("--smoke", action="store_true", help="proves it runs")
    parser.add_argument("--src", default="", help="import asynctrack from this src directory")
    args = parser.parse_args(argv)
    if args.src:
        SRC[:] = [str(Path(args.src).resolve())]
    n, reps = (400, 1) if args.smoke else (5_000, 3) if args.quick else (20_000, 3)
    rows = []
    with tempfile.TemporaryDirectory(prefix="asynctrack-wakeups-") as tmp:
        workdir = Path(tmp)
        (workdir / "workload.py").write_text(WORKLOAD, encoding="utf-8")
        for where in ("unpinned", "pinned"):
            base = run("off", "file", n, reps, where, workdir)
            rows.append(_row(where, "off", "", base, base))
            for sink in SINKS:
                for mode in MODES[1:]:
                    r = run(mode, sink, n, reps, where, workdir)
                    rows.append(_row(where, mode, sink, r, base))
    print(
        table(
            [
                "cores",
                "dispatcher",
                "sink",
                "app thread CPU µs/req",
                "vs off",
                "process CPU µs/req",
                "other threads' switches per 1k req",
            ],
            rows,
        )
    )
    print()
    print(
        f"In-process FastAPI app (bench_asgi's), 8 concurrent connections, {n:,} requests "
        f"per run, best of {reps} by the application thread's CPU time; collector on. "
        "`pinned`: the process on one core. Method: `benchmarks/bench_wakeups.py`."
    )
    print()
    print(table(["machine", ""], [list(pair) for pair in machine_info()]))
    return 0


def _row(where: str, mode: str, sink: str, r: dict[str, Any], base: dict[str, Any]) -> list[str]:
    return [
        where,
        mode,
        sink,
        f"{r['app_us']:.1f}",
        f"{r['app_us'] / base['app_us']:.2f}×",
        f"{r['process_us']:.1f}",
        f"{r['switches_per_1k']:,.0f}",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
