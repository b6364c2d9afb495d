"""
Throughput, tail latency and collector of a small FastAPI app under uvicorn, tracking
off vs on, at two loads (issues #6, #20).

The app: one handler awaiting two helpers. *off* is the plain app; *on* adds
``TrackMiddleware``, ``@tr.probe`` on both helpers and a ``FileSink`` (one log of three
calls per request, written by the background dispatcher). Both servers run at the same
time, each a single uvicorn process pinned to core 0; the load generator (``wrk``
when installed, else a small asyncio keep-alive client) is pinned to core 1 and loads
one server at a time. Each round loads both servers at each load — 8 connections
(moderate: the untracked p99 is a few ms, so a pause shows) and 32 (queueing hides
pauses) — alternating which mode goes first, so drift of a shared machine hits both
alike. Each server counts its garbage collections with ``gc.callbacks`` (per
generation, total and longest pause), and the *on* server reads the dispatcher's
longest stretch holding the GIL (``asynctrack.stats().longest_hold_ms``), through an
untracked ``/_stats`` endpoint read around each round.

Run: ``python -m benchmarks.bench_asgi [--rounds 5] [--seconds 5] [--loads 8,32]
[--smoke]``. Targets (#20): requests/s on >= 0.88 x off, requests per server CPU
second >= 0.88 x, p99 <= 1.5 x at 8 connections and <= 1.3 x at 32, gen0 collections
per request <= 1.15 x, longest collector pause no longer than off's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ._report import fmt_num, fmt_ratio, machine_info, progress, table, verdict

SERVER_CORE = 0
LOAD_CORE = 1
PATH = "/items/42"


# -- the server ----------------------------------------------------------------------------


class Counts:
    """
    Requests served and garbage collections (per generation, total and longest pause).

    The longest pause, and the dispatcher's longest stretch, are those since the last
    read: each ``/_stats`` read starts them again, so a round reports its own.
    """

    def __init__(self, tracked: bool) -> None:
        self.requests = 0
        self.gc = [0, 0, 0]
        self.gc_ns = 0
        self.gc_max_ns = 0
        self.tracked = tracked
        self._start = 0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.gc[info["generation"]] += 1
            self._start = time.perf_counter_ns()
        else:
            pause = time.perf_counter_ns() - self._start
            self.gc_ns += pause
            self.gc_max_ns = max(self.gc_max_ns, pause)

    def as_dict(self) -> dict[str, Any]:
        hold_ms = -1.0  # not measured: untracked, or a tree from before #20 (--src)
        if self.tracked:
            import asynctrack

            hold_ms = getattr(asynctrack.stats(), "longest_hold_ms", -1.0)
            with contextlib.suppress(ImportError):
                from asynctrack._core import slices

                # Private, for this benchmark only: start the dispatcher's longest
                # stretch again, so that each round reports its own (stats() keeps
                # the longest since the pipeline started).
                slices.active().longest_ns = 0
        result = {
            "requests": self.requests,
            "gc": list(self.gc),
            "gc_ns": self.gc_ns,
            "gc_max_ns": self.gc_max_ns,
            "hold_ms": hold_ms,
            # All threads of the process (the dispatcher's included).
            "cpu_ns": time.process_time_ns(),
        }
        self.gc_max_ns = 0
        return result


def build_app(mode: str, out: str, freeze: bool = False) -> Any:
    """
    Return the FastAPI app for ``mode`` ``"on"`` or ``"off"``.

    With ``freeze``, the server calls ``gc.freeze()`` once started (both modes alike):
    the objects of start-up (FastAPI, pydantic, the modules) leave the collector's
    generations, so a full collection scans only what requests created since.
    """
    from fastapi import FastAPI

    import asynctrack
    from asynctrack.integrations.asgi import TrackMiddleware

    tracked = mode == "on"
    tr = asynctrack.get_tracker("bench")
    counts = Counts(tracked)
    gc.callbacks.append(counts.on_gc)

    def probe(func: Any) -> Any:
        return tr.probe(func) if tracked else func

    @probe
    async def load_user(user_id: int) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"id": user_id, "name": "alice"}

    @probe
    async def load_item(item_id: int, user_id: int) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"item_id": item_id, "price": 9.5, "owner": user_id}

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if not tracked:
            if freeze:
                gc.freeze()
            yield
            return
        async with asynctrack.tracking(sinks=[asynctrack.FileSink(out)]):
            if freeze:
                gc.freeze()
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, Any]:
        counts.requests += 1
        user = await load_user(7)
        result: dict[str, Any] = await load_item(item_id, user["id"])
        return result

    @app.get("/_stats")
    async def stats() -> dict[str, Any]:
        return counts.as_dict()

    if tracked:
        app.add_middleware(TrackMiddleware, exclude_paths=["/_stats"])
    return app


def serve(mode: str, port: int, out: str, freeze: bool = False) -> None:
    import uvicorn

    os.sched_setaffinity(0, {SERVER_CORE})
    uvicorn.run(
        build_app(mode, out, freeze),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


# -- load generators ---------------------------------------------------------------------------


def run_wrk(port: int, seconds: float, connections: int) -> dict[str, float]:
    """
    Load with wrk (one thread, pinned to the load core); return rps, p50 and p99 (ms).
    """
    cmd = ["taskset", "-c", str(LOAD_CORE), "wrk", "-t1", f"-c{connections}"]
    cmd += [f"-d{seconds:g}s", "--latency", f"http://127.0.0.1:{port}{PATH}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    rps = float(found.group(1))
    lat = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        lat[pct] = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    if errors:
        raise RuntimeError(f"wrk reported errors:\n{out}")
    return {"rps": rps, "p50": lat["50"], "p99": lat["99"]}


def run_python_load(port: int, seconds: float, connections: int) -> dict[str, float]:
    """
    Load with the built-in asyncio client in a subprocess pinned to the load core.
    """
    cmd = [sys.executable, "-m", "benchmarks.bench_asgi", "--load", str(port)]
    cmd += ["--seconds", str(seconds), "--connections", str(connections)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out)
    return result


async def _python_load(port: int, seconds: float, connections: int) -> dict[str, float]:
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    latencies: list[int] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter_ns()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"unexpected response: {head[:40]!r}")
                match = re.search(rb"content-length: (\d+)", head, re.I)
                await reader.readexactly(int(match.group(1)) if match else 0)
                latencies.append(time.perf_counter_ns() - t0)
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2] / 1e6,
        "p99": latencies[int(len(latencies) * 0.99)] / 1e6,
    }


# -- the driver ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get_stats(port: int) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /_stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    result: dict[str, Any] = json.loads(data.split(b"\r\n\r\n", 1)[1])
    return result


def wait_up(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {server.returncode}")
        try:
            get_stats(port)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start")


def measure(load: Any, port: int, seconds: float, connections: int) -> dict[str, float]:
    """
    One round of one mode at one load: the load's figures and the server's counts.
    """
    before = get_stats(port)  # also starts the longest pause and stretch again
    result: dict[str, float] = load(port, seconds, connections)
    after = get_stats(port)
    n = after["requests"] - before["requests"]
    result["requests"] = n
    result["cpu_us"] = (after["cpu_ns"] - before["cpu_ns"]) / 1e3 / max(n, 1)
    for g in range(3):
        result[f"gen{g}"] = after["gc"][g] - before["gc"][g]
    result["gc_ns"] = after["gc_ns"] - before["gc_ns"]
    result["gc_max_ms"] = after["gc_max_ns"] / 1e6
    result["hold_ms"] = after["hold_ms"]
    return result


MODES = ("off", "on")
#: The p99 target (on / off) per load; the other targets are the same at every load.
P99_TARGET = {8: 1.5, 32: 1.3}
RATIO_TARGET = 0.88
GEN0_TARGET = 1.15

Rounds = dict[tuple[int, str], list[dict[str, float]]]


def report(results: Rounds, loads: list[int], args: Any, use_wrk: bool) -> None:
    """
    Print the Markdown tables: figures per load and mode, then ratios and targets.
    """

    def med(key: tuple[int, str], field: str) -> float:
        return statistics.median(x[field] for x in results[key])

    def paired(conns: int, ratio: Any) -> float | None:
        pairs = zip(results[(conns, "on")], results[(conns, "off")], strict=True)
        values = [v for on, off in pairs if (v := ratio(on, off)) is not None]
        return statistics.median(values) if values else None

    def gen0_ratio(on: dict[str, float], off: dict[str, float]) -> float | None:
        if not off["gen0"] or not on["requests"] or not off["requests"]:
            return None
        return (on["gen0"] / on["requests"]) / (off["gen0"] / off["requests"])

    print("## ASGI: FastAPI under uvicorn, tracking off vs on, at two loads\n")
    print(table(["", ""], machine_info()))
    print(
        f"\nOne uvicorn worker (h11, asyncio) per mode pinned to core {SERVER_CORE}; "
        f"{'wrk' if use_wrk else 'an asyncio keep-alive client'} pinned to core {LOAD_CORE}, "
        f"GET {PATH} at {' and '.join(map(str, loads))} connections; {args.rounds} rounds x "
        f"{args.seconds:g} s per mode and load, the mode that goes first alternating. "
        "*on* = TrackMiddleware + 2 probed helpers + FileSink (3 calls per log). Medians "
        "over the rounds; collections summed over them; the longest collector pause "
        "(gc callbacks in the server, any thread) and the dispatcher's longest stretch "
        "holding the GIL (its CPU time between two releases, `stats().longest_hold_ms`) "
        "are the longest of any round."
        + (" Both servers called `gc.freeze()` once started." if args.gc_freeze else "")
        + "\n"
    )
    rows = []
    for conns in loads:
        for mode in MODES:
            key = (conns, mode)
            total = sum(x["requests"] for x in results[key])
            gens = [sum(x[f"gen{g}"] for x in results[key]) for g in range(3)]
            gc_ns = sum(x["gc_ns"] for x in results[key])
            hold = max(x["hold_ms"] for x in results[key])
            rows.append(
                [
                    str(conns),
                    mode,
                    fmt_num(med(key, "rps")),
                    f"{med(key, 'cpu_us'):.0f}",
                    f"{med(key, 'p50'):.2f}",
                    f"{med(key, 'p99'):.2f}",
                    " / ".join(f"{1e4 * n / max(total, 1):.1f}" for n in gens),
                    f"{gc_ns / 1e3 / max(total, 1):.1f}",
                    f"{max(x['gc_max_ms'] for x in results[key]):.2f}",
                    ("n/a" if hold < 0 else f"{hold:.2f}") if mode == "on" else "",
                ]
            )
    headers = ["connections", "tracking", "req/s", "server CPU µs/req", "p50 ms", "p99 ms"]
    headers += ["gc gen0/1/2 per 10k req", "gc µs per req", "longest gc pause ms"]
    print(table([*headers, "longest dispatcher stretch ms"], rows))
    print()

    def row(name: str, conns: int, value: float | None, target: str, ok: Any) -> list[str]:
        if value is None:
            return [name, str(conns), "n/a", target, verdict(None)]
        return [name, str(conns), fmt_ratio(value), target, verdict(ok(value)) if target else ""]

    rows = []
    for conns in loads:
        rps = paired(conns, lambda on, off: on["rps"] / off["rps"])
        cpu = paired(conns, lambda on, off: off["cpu_us"] / on["cpu_us"])
        p50 = paired(conns, lambda on, off: on["p50"] / off["p50"])
        p99 = paired(conns, lambda on, off: on["p99"] / off["p99"])
        gen0 = paired(conns, gen0_ratio)
        off_pause = max(x["gc_max_ms"] for x in results[(conns, "off")])
        on_pause = max(x["gc_max_ms"] for x in results[(conns, "on")])
        pause = on_pause / off_pause if off_pause else None
        p99_target = P99_TARGET.get(conns)
        at_least = f">= {RATIO_TARGET:.2f}×"
        rows += [
            row("requests/s", conns, rps, at_least, lambda v: v >= RATIO_TARGET),
            row(
                "requests per server CPU second", conns, cpu, at_least, lambda v: v >= RATIO_TARGET
            ),
            row("p50 latency", conns, p50, "", None),
            row(
                "p99 latency",
                conns,
                p99,
                f"<= {p99_target:.1f}×" if p99_target else "",
                lambda v, t=p99_target: t is None or v <= t,
            ),
            row(
                "gen0 collections per request",
                conns,
                gen0,
                f"<= {GEN0_TARGET:.2f}×",
                lambda v: v <= GEN0_TARGET,
            ),
            row("longest collector pause", conns, pause, "<= 1.00×", lambda v: v <= 1.0),
        ]
    print(
        table(
            ["on / off (median of per-round ratios)", "connections", "ratio", "target (#20)", ""],
            rows,
        )
    )
    print(
        "\nRequests/s and latency are wall-clock figures and move with whatever else runs "
        "on the server's core; server CPU per request (all threads, the dispatcher's "
        "included) does not, and is the steadier measure of tracking's cost on a shared "
        "machine. The longest pauses are single events: one busy moment of the machine "
        "sets them, so read them over several runs."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--loads", default="8,32", help="connections of each load, comma-separated (8,32)"
    )
    parser.add_argument("--smoke", action="store_true", help="1 round of 1 s: proves it runs")
    parser.add_argument("--python-load", action="store_true", help="do not use wrk")
    parser.add_argument(
        "--src", default="", help="serve asynctrack from this src directory (a base tree)"
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="both servers call gc.freeze() once started (a remedy for long full collections)",
    )
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.out, args.gc_freeze)
        return 0
    if args.load:
        os.sched_setaffinity(0, {LOAD_CORE})
        print(json.dumps(asyncio.run(_python_load(args.load, args.seconds, args.connections))))
        return 0
    if args.smoke:
        args.rounds, args.seconds = 1, 1.0
    loads = [int(x) for x in args.loads.split(",")]
    if len(os.sched_getaffinity(0)) < 2:
        progress("warning: fewer than 2 cores available; server and load share a core")
    use_wrk = shutil.which("wrk") is not None and not args.python_load
    load = run_wrk if use_wrk else run_python_load
    progress(f"load generator: {'wrk' if use_wrk else 'asyncio client'}")

    results: Rounds = {(c, m): [] for c in loads for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "track.jsonl")
        ports = {mode: free_port() for mode in MODES}
        servers = {}
        env = dict(os.environ)
        if args.src:
            src = str(Path(args.src).resolve())
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
        for mode, port in ports.items():
            cmd = [sys.executable, "-m", "benchmarks.bench_asgi", "--serve", mode]
            cmd += ["--port", str(port), "--out", out]
            if args.gc_freeze:
                cmd.append("--gc-freeze")
            servers[mode] = subprocess.Popen(cmd, env=env)
        try:
            for mode, port in ports.items():
                wait_up(port, servers[mode])
                load(port, min(2.0, args.seconds), max(loads))  # warm-up
            for r in range(args.rounds):
                for i, conns in enumerate(loads):
                    order = MODES if (r + i) % 2 == 0 else MODES[::-1]
                    for mode in order:
                        result = measure(load, ports[mode], args.seconds, conns)
                        results[(conns, mode)].append(result)
                        progress(
                            f"  round {r + 1}/{args.rounds} {conns} conn. {mode}: "
                            f"{result['rps']:,.0f} req/s, p50 {result['p50']:.2f} ms, "
                            f"p99 {result['p99']:.2f} ms, server CPU "
                            f"{result['cpu_us']:.0f} µs/req, longest gc pause "
                            f"{result['gc_max_ms']:.2f} ms"
                            + (
                                f", dispatcher {result['hold_ms']:.2f} ms"
                                if result["hold_ms"] >= 0
                                else ""
                            )
                        )
            served = get_stats(ports["on"])["requests"]
        finally:
            for server in servers.values():
                server.send_signal(signal.SIGTERM)
            for server in servers.values():
                try:
                    server.wait(30)
                except subprocess.TimeoutExpired:
                    server.kill()
        with open(out, "rb") as f:
            written = sum(1 for _ in f)

    report(results, loads, args, use_wrk)
    print(
        f"\nLogs written by the *on* server: {written:,} for {served:,} requests "
        "(warm-up included)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
