"""
A trio program: a crawler whose nursery children join the crawl's log.

Run it with ``python examples/trio_app.py [trio.jsonl]`` (or set
``$ASYNCTRACK_EXAMPLE_OUT``).
"""

from __future__ import annotations

import os
import sys

import trio

import asynctrack

tr = asynctrack.get_tracker("crawler")


@tr.probe
async def fetch(url: str) -> str:
    await trio.sleep(0.001)  # network I/O
    if "private" in url:
        raise PermissionError(url)
    return f"<html>{url}</html>"


@tr.probe(exc=("results",))
async def crawl_page(url: str, results: dict[str, int]) -> None:
    try:
        body = await fetch(url)
    except PermissionError:
        asynctrack.add_data("skipped", True)
        return
    results[url] = len(body)


@tr.probe(exc=("urls",))
async def crawl(site: str, urls: list[str]) -> int:
    """
    One crawl: the root call of one log; the nursery's tasks inherit its context.
    """
    asynctrack.add_info("site", site)
    results: dict[str, int] = {}
    async with trio.open_nursery() as nursery:
        for url in urls:
            nursery.start_soon(crawl_page, url, results)
    asynctrack.add_data("pages", len(results))
    return sum(results.values())


async def main(path: str) -> None:
    # tracking() works under trio too: shutdown waits in a worker thread.
    async with asynctrack.tracking(sinks=[asynctrack.FileSink(path)]):
        for site in ("a.example", "b.example"):
            urls = [f"https://{site}/{p}" for p in ("", "about", "private/admin", "blog")]
            await crawl(site, urls)
    print(f"2 crawls written to {path}")


if __name__ == "__main__":
    default = os.environ.get("ASYNCTRACK_EXAMPLE_OUT", "trio.jsonl")
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else default)
