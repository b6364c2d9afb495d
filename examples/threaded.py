"""
A threaded sync script: a thread pool downloads pages for each report, one log per report.

``ThreadPoolExecutor.submit`` does not copy the context, so the work is wrapped with
``asynctrack.propagate``: the calls made in the pool's threads join the report's log.

Run it with ``python examples/threaded.py [threaded.jsonl]`` (or set
``$ASYNCTRACK_EXAMPLE_OUT``).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import asynctrack

tr = asynctrack.get_tracker("reports")


@tr.probe
def download(url: str) -> int:
    time.sleep(0.002)  # blocking I/O
    if url.endswith("/7"):
        raise TimeoutError(f"{url} timed out")
    return len(url) * 100


@tr.probe(exc=("pool",))
def build_report(name: str, pages: int, pool: ThreadPoolExecutor) -> int:
    asynctrack.add_info("report", name)
    urls = [f"https://example.com/{name}/{i}" for i in range(pages)]
    # propagate(): each submitted call runs in a copy of this context, so its probed
    # calls are children of build_report in the same log.
    futures = [pool.submit(asynctrack.propagate(download), url) for url in urls]
    total, failed = 0, 0
    for future in futures:
        try:
            total += future.result()
        except TimeoutError:
            failed += 1
    asynctrack.add_data("failed", failed)
    return total


def main(path: str) -> None:
    asynctrack.configure(sinks=[asynctrack.FileSink(path)])
    with ThreadPoolExecutor(max_workers=4) as pool:
        for name in ("daily", "weekly", "monthly"):
            build_report(name, pages=10, pool=pool)
    # Write everything before the script ends (an exit hook would too, within
    # exit_timeout).
    asynctrack.shutdown_sync()
    print(f"3 reports written to {path}")


if __name__ == "__main__":
    default = os.environ.get("ASYNCTRACK_EXAMPLE_OUT", "threaded.jsonl")
    main(sys.argv[1] if len(sys.argv) > 1 else default)
