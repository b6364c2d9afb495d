"""
Usage snippets for ``configure()``: the right options type-check, a misspelt option or
a wrong type does not. mypy runs with ``warn_unused_ignores``, so each
``# type: ignore[...]`` below must match a real error: removing the check from
``configure`` fails the type check.
"""

from __future__ import annotations

import asynctrack


def good() -> None:
    asynctrack.configure(level="INFO", levels={"shop.db": "DEBUG"}, max_queue=10)
    asynctrack.configure(sinks=[asynctrack.MemorySink()], on_full="block", block_timeout=0.5)
    asynctrack.configure_from_file("track.toml", level=asynctrack.DEBUG)


def misspelt() -> None:
    asynctrack.configure(levle="INFO")  # type: ignore[call-arg]
    asynctrack.configure_from_file("track.toml", max_quue=1)  # type: ignore[call-arg]


def wrong_type() -> None:
    asynctrack.configure(max_queue="10")  # type: ignore[arg-type]
    asynctrack.configure(on_full="wait")  # type: ignore[arg-type]
    asynctrack.configure(fsync_spill="yes")  # type: ignore[arg-type]
    asynctrack.configure(sinks=asynctrack.MemorySink())  # type: ignore[arg-type]
    asynctrack.configure_from_file("track.toml", flush_interval="1s")  # type: ignore[arg-type]


async def lifespan() -> None:
    async with asynctrack.tracking(batch_sise=1):  # type: ignore[call-arg]
        pass
