"""
Throughput and latency of a small FastAPI app under uvicorn, tracking off vs on (issue #6).

The app: one handler awaiting two helpers. *off* is the plain app; *on* adds
``TrackMiddleware``, ``@tr.probe`` on both helpers and a ``FileSink`` (one log of three
calls per request, written by the background dispatcher). Both servers run at the same
time, each a single uvicorn process pinned to core 0; the load generator (``wrk``
when installed, else a small asyncio keep-alive client) is pinned to core 1 and loads
one server at a time, alternating over several rounds (the order flips each round), so
drift of a shared machine hits both alike. Each server counts its garbage collections
with ``gc.callbacks``, read through an untracked ``/_stats`` endpoint around each round.

Run: ``python -m benchmarks.bench_asgi [--rounds 5] [--seconds 5] [--smoke]``.
Targets: requests/s on >= 0.95 x off, p99 latency on <= 1.5 x off.
"""

from __future__ import annotations

import argparse
import asyncio
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
    """

    def __init__(self) -> None:
        self.requests = 0
        self.gc = [0, 0, 0]
        self.gc_ns = 0
        self.gc_max_ns = 0
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
        return {
            "requests": self.requests,
            "gc": self.gc,
            "gc_ns": self.gc_ns,
            "gc_max_ns": self.gc_max_ns,
            # All threads of the process (the dispatcher's included).
            "cpu_ns": time.process_time_ns(),
        }


def build_app(mode: str, out: str) -> Any:
    """
    Return the FastAPI app for ``mode`` ``"on"`` or ``"off"``.
    """
    from fastapi import FastAPI

    import asynctrack
    from asynctrack.integrations.asgi import TrackMiddleware

    tracked = mode == "on"
    tr = asynctrack.get_tracker("bench")
    counts = Counts()
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
            yield
            return
        async with asynctrack.tracking(sinks=[asynctrack.FileSink(out)]):
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


def serve(mode: str, port: int, out: str) -> None:
    import uvicorn

    os.sched_setaffinity(0, {SERVER_CORE})
    uvicorn.run(
        build_app(mode, out),
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--smoke", action="store_true", help="1 round of 1 s: proves it runs")
    parser.add_argument("--python-load", action="store_true", help="do not use wrk")
    parser.add_argument("--serve", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.out)
        return 0
    if args.load:
        os.sched_setaffinity(0, {LOAD_CORE})
        print(json.dumps(asyncio.run(_python_load(args.load, args.seconds, args.connections))))
        return 0
    if args.smoke:
        args.rounds, args.seconds = 1, 1.0
    if len(os.sched_getaffinity(0)) < 2:
        progress("warning: fewer than 2 cores available; server and load share a core")
    use_wrk = shutil.which("wrk") is not None and not args.python_load
    load = run_wrk if use_wrk else run_python_load
    progress(f"load generator: {'wrk' if use_wrk else 'asyncio client'}")

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "track.jsonl")
        ports = {"off": free_port(), "on": free_port()}
        servers = {}
        for mode, port in ports.items():
            cmd = [sys.executable, "-m", "benchmarks.bench_asgi", "--serve", mode]
            servers[mode] = subprocess.Popen([*cmd, "--port", str(port), "--out", out])
        results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        gcs: dict[str, list[int]] = {"off": [0, 0, 0], "on": [0, 0, 0]}
        gc_ms = {"off": 0.0, "on": 0.0}
        gc_max_ms = {"off": 0.0, "on": 0.0}
        served = {"off": 0, "on": 0}
        try:
            for mode, port in ports.items():
                wait_up(port, servers[mode])
                load(port, min(2.0, args.seconds), args.connections)  # warm-up
            for r in range(args.rounds):
                order = ["off", "on"] if r % 2 == 0 else ["on", "off"]
                for mode in order:
                    before = get_stats(ports[mode])
                    result = load(ports[mode], args.seconds, args.connections)
                    after = get_stats(ports[mode])
                    result["requests"] = after["requests"] - before["requests"]
                    result["cpu_us"] = (
                        (after["cpu_ns"] - before["cpu_ns"]) / 1e3 / max(result["requests"], 1)
                    )
                    results[mode].append(result)
                    for g in range(3):
                        gcs[mode][g] += after["gc"][g] - before["gc"][g]
                    gc_ms[mode] += (after["gc_ns"] - before["gc_ns"]) / 1e6
                    gc_max_ms[mode] = max(gc_max_ms[mode], after["gc_max_ns"] / 1e6)
                    progress(
                        f"  round {r + 1}/{args.rounds} {mode}: {result['rps']:,.0f} req/s, "
                        f"p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms, "
                        f"server CPU {result['cpu_us']:.0f} µs/req"
                    )
            for mode in ports:
                served[mode] = get_stats(ports[mode])["requests"]
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

    def med(mode: str, key: str) -> float:
        return statistics.median(x[key] for x in results[mode])

    def paired(key: str) -> float:
        return statistics.median(
            on[key] / off[key] for on, off in zip(results["on"], results["off"], strict=True)
        )

    rps_ratio, p50_ratio, p99_ratio = paired("rps"), paired("p50"), paired("p99")
    capacity = 1 / paired("cpu_us")
    print("## ASGI: FastAPI under uvicorn, tracking off vs on\n")
    print(table(["", ""], machine_info()))
    print(
        f"\nOne uvicorn worker (h11, asyncio) per mode pinned to core {SERVER_CORE}; "
        f"{'wrk' if use_wrk else 'an asyncio keep-alive client'} pinned to core {LOAD_CORE}, "
        f"{args.connections} connections, GET {PATH}; {args.rounds} rounds x "
        f"{args.seconds:g} s per mode, alternating. *on* = TrackMiddleware + 2 probed "
        "helpers + FileSink (3 calls per log).\n"
    )
    rows = []
    for mode in ("off", "on"):
        total = sum(x["requests"] for x in results[mode])
        per_10k = [f"{1e4 * n / max(total, 1):.1f}" for n in gcs[mode]]
        rows.append(
            [
                mode,
                fmt_num(med(mode, "rps")),
                f"{med(mode, 'cpu_us'):.0f}",
                f"{med(mode, 'p50'):.2f}",
                f"{med(mode, 'p99'):.2f}",
                " / ".join(per_10k),
                f"{1e3 * gc_ms[mode] / max(total, 1):.1f}",
                f"{gc_max_ms[mode]:.2f}",
            ]
        )
    print(
        table(
            [
                "tracking",
                "req/s (median)",
                "server CPU µs/req",
                "p50 ms",
                "p99 ms",
                "gc gen0/1/2 per 10k req",
                "gc µs per req",
                "max gc pause ms",
            ],
            rows,
        )
    )
    print()
    print(
        table(
            ["on / off (median of per-round ratios)", "ratio", "target", ""],
            [
                ["requests/s", fmt_ratio(rps_ratio), ">= 0.95×", verdict(rps_ratio >= 0.95)],
                [
                    "requests per server CPU second",
                    fmt_ratio(capacity),
                    ">= 0.95×",
                    verdict(capacity >= 0.95),
                ],
                ["p50 latency", fmt_ratio(p50_ratio), "", ""],
                ["p99 latency", fmt_ratio(p99_ratio), "<= 1.5×", verdict(p99_ratio <= 1.5)],
            ],
        )
    )
    print(
        "\nRequests/s and latency are wall-clock figures and move with whatever else runs "
        "on the server's core; server CPU per request (all threads, the dispatcher's "
        "included) does not, and is the steadier measure of tracking's cost on a shared "
        "machine."
    )
    print(
        f"\nLogs written by the *on* server: {written:,} for {served['on']:,} requests "
        "(warm-up included)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
