"""
The garbage collector on the web path, tracking off vs on, without a server (issue #20).

The app is the one of ``bench_asgi``: a FastAPI endpoint awaiting two helpers, driven
in-process the way ``bench_asgi_instructions`` does (a loop calling the ASGI app with a
fixed ``GET /items/42`` scope), in the same four variants: ``off``, ``middleware``
(``TrackMiddleware``, logs discarded), ``probes`` (both helpers probed) and ``file``
(logs written by a ``FileSink``: the benchmark app).

Why concurrency matters. CPython 3.11 runs a gen0 collection when the allocations of
container objects minus their deallocations since the last one pass 700 — whether or not
they form cycles. A server runs requests interleaved: with 8 connections, 8 requests are
in flight at once, each holding its coroutines, closures, scope and (tracked) its call
records until it ends. When ``8 x`` the objects one request holds at its deepest
``await`` crosses the threshold, every round of 8 requests costs a collection; below it,
almost none do. So the figures are:

- **gen0/1/2 per 10k requests** with requests run in rounds of K concurrent tasks
  (K = 1, 8, 32), and the collector's time per request and longest pause
  (``gc.callbacks``, wall-clock: noisy on a shared machine);
- **in flight**: container allocations a request holds at its deepest ``await`` (inside
  the second helper), counted with ``gc.get_count()`` — the figure that decides where the
  threshold falls — and tracked objects among them (``gc.get_objects()``);
- **per buffered log**: container allocations, and tracked objects, left per finished
  request while its log waits for the dispatcher;
- **cyclic garbage**: objects per request that only the collector can free (collector off,
  ``gc.DEBUG_SAVEALL``, then a collection), with the commonest types.

    python -m benchmarks.bench_gc            # 8,000 requests per variant and K
    python -m benchmarks.bench_gc --quick    # 2,000
    python -m benchmarks.bench_gc --smoke    # each variant once, tiny
    python -m benchmarks.bench_gc --src /tmp/base/src   # measure another tree
    python -m benchmarks.bench_gc --model    # the untracked app holding extra objects

``--src`` imports the ``asynctrack`` of another source tree (``git archive BASE src``
unpacked somewhere): the way to compare a change with its base.
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

VARIANTS = ("off", "middleware", "probes", "file")
CONCURRENCY = (1, 8, 32)

#: Issue #20: gen0 collections per 10k requests with tracking <= 1.15x without.
TARGET_RATIO = 1.15

WORKLOAD = with_driver(
    r"""
import asyncio
import collections
import gc
import json
import sys
import tempfile
import time

variant, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
levels = [int(k) for k in sys.argv[4].split(",")]

from typing import Any

from fastapi import FastAPI

import asynctrack
from asynctrack.integrations.asgi import TrackMiddleware

# "model-E-D": the untracked app, each request holding E extra objects across its
# awaits and leaving D objects in a buffer emptied every 200 requests (--model).
model = variant.startswith("model-")
held_n, left_n = (int(x) for x in variant.split("-")[1:]) if model else (0, 0)
tracked = variant != "off" and not model
probed = variant in ("probes", "file")
BUFFER = []


class Held:
    __slots__ = ()
tr = asynctrack.get_tracker("bench")
HOOK = []


class Discard(asynctrack.Sink):
    async def write(self, logs):
        return None


def probe(func):
    return tr.probe(func) if probed else func


@probe
async def load_user(user_id: int) -> dict[str, Any]:
    await asyncio.sleep(0)
    return {"id": user_id, "name": "alice"}


@probe
async def load_item(item_id: int, user_id: int) -> dict[str, Any]:
    if HOOK:
        HOOK[0]()
    await asyncio.sleep(0)
    return {"item_id": item_id, "price": 9.5, "owner": user_id}


app = FastAPI()


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, Any]:
    held = [Held() for _ in range(held_n)] if model else None
    user = await load_user(7)
    result: dict[str, Any] = await load_item(item_id, user["id"])
    if model:
        BUFFER.extend(Held() for _ in range(left_n))
        if len(BUFFER) >= 200 * left_n:
            BUFFER.clear()
        del held
    return result


if tracked:
    app.add_middleware(TrackMiddleware)

tmp = tempfile.mkdtemp()


def configure(**extra):
    if tracked:
        sink = asynctrack.FileSink(tmp + "/logs.jsonl") if variant == "file" else Discard()
        asynctrack.configure(sinks=[sink], spill_dir=tmp, max_queue=1_000_000, **extra)


# ASGI driver


async def rounds(k, requests):
    loop = asyncio.get_running_loop()
    for _ in range(max(1, requests // k)):
        tasks = [loop.create_task(app(dict(SCOPE), receive, send)) for _ in range(k)]
        await asyncio.gather(*tasks)


def name(o):
    t = type(o)
    s = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    if t.__name__ in ("function", "coroutine", "method"):
        s += " " + o.__qualname__
    elif t.__name__ == "cell":
        try:
            s += " of " + type(o.cell_contents).__qualname__
        except ValueError:
            pass
    return s


class Pauses:
    def __init__(self):
        self.ns = self.max_ns = self._t = 0

    def __call__(self, phase, info):
        if phase == "start":
            self._t = time.perf_counter_ns()
        else:
            pause = time.perf_counter_ns() - self._t
            self.ns += pause
            self.max_ns = max(self.max_ns, pause)


async def collections_per_level(result):
    pauses = Pauses()
    for k in levels:
        await rounds(k, min(n, 2_000))  # warm-up
        gc.collect()
        before = [s["collections"] for s in gc.get_stats()]
        gc.callbacks.append(pauses)
        pauses.ns = pauses.max_ns = 0
        done = max(1, n // k) * k
        await rounds(k, n)
        gc.callbacks.remove(pauses)
        after = [s["collections"] for s in gc.get_stats()]
        result["levels"][str(k)] = {
            "per_10k": [(a - b) * 10_000 / done for a, b in zip(after, before)],
            "gc_us_per_request": pauses.ns / 1e3 / done,
            "max_pause_ms": pauses.max_ns / 1e6,
        }


async def in_flight(result):
    # Collector off; rounds first so free lists are as warm as in a running server.
    gc.collect()
    gc.disable()
    await rounds(1, 50)
    seen = []
    HOOK.append(lambda: seen.append(gc.get_count()[0]))
    c0 = gc.get_count()[0]
    await rounds(1, 1)
    result["in_flight_allocations"] = seen[-1] - c0
    snap = {}
    HOOK[0] = lambda: snap.update(objs=gc.get_objects())
    before = gc.get_objects()
    known = {id(o) for o in before}
    await rounds(1, 1)
    grown = collections.Counter(name(o) for o in snap["objs"] if id(o) not in known)
    result["in_flight_tracked"] = sum(grown.values())
    result["in_flight_types"] = grown.most_common(12)
    del before, known, snap
    HOOK.clear()
    # Left per finished request while its log waits for the dispatcher (which is
    # told to wait: no batch is written during this count).
    m = min(200, n)
    await rounds(1, 20)
    objs0, c0 = len(gc.get_objects()), gc.get_count()[0]
    await rounds(1, m)
    objs1, c1 = len(gc.get_objects()), gc.get_count()[0]
    result["left_allocations"] = (c1 - c0) / m
    result["left_tracked"] = (objs1 - objs0) / m
    gc.enable()


async def garbage(result):
    m = min(500, n)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    await rounds(8, m)
    if tracked:
        await asyncio.to_thread(asynctrack.flush_sync, 60)
    gc.collect()
    found = collections.Counter(name(o) for o in gc.garbage)
    result["garbage_per_request"] = len(gc.garbage) / m
    result["garbage_types"] = found.most_common(8)
    gc.set_debug(0)
    gc.garbage.clear()
    gc.enable()


async def main():
    result = {"levels": {}}
    configure()
    await collections_per_level(result)
    if model:
        return result
    if tracked:
        asynctrack.shutdown_sync()
    # A batch as large as the queue and an interval longer than the run: the logs stay.
    configure(batch_size=100_000, flush_interval=3_600)
    await in_flight(result)
    if tracked:
        asynctrack.shutdown_sync()
    configure()
    await garbage(result)
    if tracked:
        asynctrack.shutdown_sync()
    return result


result = asyncio.run(main())
with open(out, "w") as f:
    json.dump(result, f)
"""
)

#: ``--src``: a source tree whose ``asynctrack`` the workload imports instead.
SRC: list[str] = []


def run(python: str, variant: str, n: int, levels: Sequence[int], workdir: Path) -> Any:
    """
    Run the workload for one variant in a fresh interpreter; return its JSON result.
    """
    out = workdir / f"gc.{variant}.json"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if SRC:
        env["PYTHONPATH"] = os.pathsep.join([*SRC, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    subprocess.run(
        [
            python,
            str(workdir / "workload.py"),
            variant,
            str(n),
            str(out),
            ",".join(map(str, levels)),
        ],
        check=True,
        env=env,
    )
    return json.loads(out.read_text(encoding="utf-8"))


#: --model: extra objects held per request in flight, and left per request until the
#: buffer is emptied (as a buffered log's until the dispatcher writes it).
MODEL_HELD = (0, 6, 12, 18)
MODEL_LEFT = (0, 2, 5)


def model(python: str, n: int) -> int:
    """
    Print gen0 collections per 10k requests of the untracked app holding extra objects.
    """
    rows = []
    with tempfile.TemporaryDirectory(prefix="asynctrack-gc-") as tmp:
        workdir = Path(tmp)
        (workdir / "workload.py").write_text(WORKLOAD, encoding="utf-8")
        for held in MODEL_HELD:
            for left in MODEL_LEFT:
                r = run(python, f"model-{held}-{left}", n, (8, 32), workdir)
                k8, k32 = (r["levels"][k]["per_10k"][0] for k in ("8", "32"))
                rows.append([str(held), str(left), f"{k8:,.0f}", f"{k32:,.0f}"])
    print(
        table(
            [
                "extra objects held in flight",
                "left per request (buffered)",
                "gen0 per 10k, K = 8",
                "K = 32",
            ],
            rows,
        )
    )
    print(
        "\nThe untracked app (`off`), each request holding extra objects across its "
        "awaits and leaving some in a buffer emptied every 200 requests: where a "
        "tracked request's objects start to cost collections. Method: "
        "`benchmarks/bench_gc.py --model`."
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """
    Measure each variant, print Markdown tables, return 0.
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_gc", description=(__doc__ or "").split("\n")[1]
    )
    parser.add_argument("--smoke", action="store_true", help="tiny runs: prove it works")
    parser.add_argument("--quick", action="store_true", help="2,000 requests per level")
    parser.add_argument("--n", type=int, default=8_000, help="requests per variant and level")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to run")
    parser.add_argument("--src", default="", help="import asynctrack from this src directory")
    parser.add_argument(
        "--model",
        action="store_true",
        help="the untracked app holding extra objects per request: where collections start",
    )
    args = parser.parse_args(argv)
    if args.src:
        SRC[:] = [str(Path(args.src).resolve())]
    n = 64 if args.smoke else 2_000 if args.quick else args.n
    if args.model:
        return model(args.python, n)
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="asynctrack-gc-") as tmp:
        workdir = Path(tmp)
        (workdir / "workload.py").write_text(WORKLOAD, encoding="utf-8")
        for variant in VARIANTS:
            res[variant] = run(args.python, variant, n, CONCURRENCY, workdir)
    if args.smoke:
        print("_Smoke run: a few requests per variant; the figures mean nothing._\n")
    rows = []
    for variant in VARIANTS:
        r = res[variant]
        for k in CONCURRENCY:
            lv = r["levels"][str(k)]
            rows.append(
                [
                    variant,
                    str(k),
                    " / ".join(f"{x:,.1f}" for x in lv["per_10k"]),
                    f"{lv['gc_us_per_request']:.1f}",
                    f"{lv['max_pause_ms']:.2f}",
                ]
            )
    print(
        table(
            ["variant", "K", "gen0 / gen1 / gen2 per 10k req", "gc µs per req", "max pause ms"],
            rows,
        )
    )
    print()
    rows = []
    for variant in VARIANTS:
        r = res[variant]
        rows.append(
            [
                variant,
                f"{r['in_flight_allocations']:,}",
                f"{r['in_flight_tracked']:,}",
                f"{r['left_allocations']:.1f}",
                f"{r['left_tracked']:.1f}",
                f"{r['garbage_per_request']:.2f}",
            ]
        )
    print(
        table(
            [
                "variant",
                "in flight: allocations",
                "… tracked",
                "per buffered log: allocations",
                "… tracked",
                "cyclic garbage per req",
            ],
            rows,
        )
    )
    print()
    off8 = res["off"]["levels"]["8"]["per_10k"][0]
    on8 = res["file"]["levels"]["8"]["per_10k"][0]
    ratio = on8 / off8 if off8 else float("inf") if on8 else 1.0
    verdict = "met" if ratio <= TARGET_RATIO else "not met"
    python = dict(machine_info())["python"]
    print(
        f"Gen0 collections per 10k requests at K = 8, tracked (file) / untracked: "
        f"{on8:,.1f} / {off8:,.1f} = {ratio:.2f}x (target <= {TARGET_RATIO}x): {verdict}. "
        f"{python}, {n:,} requests per variant and K, in-process ASGI driver, requests in "
        "rounds of K tasks. In flight = container allocations (gc.get_count) a request "
        "holds at its deepest await. Method: `benchmarks/bench_gc.py`."
    )
    types = res["file"]["in_flight_types"]
    print()
    print(
        "Tracked objects in flight (file), commonest new types: "
        + ", ".join(f"{t} × {c}" for t, c in types if c > 0)
        + "."
    )
    if res["file"]["garbage_types"]:
        print(
            "\nCyclic garbage (file): "
            + ", ".join(f"{t} × {c}" for t, c in res["file"]["garbage_types"])
            + "."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
