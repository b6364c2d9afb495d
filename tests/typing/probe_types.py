"""
Usage snippets that must type-check: ``probe`` keeps the decorated signature.
"""

from __future__ import annotations

import asynctrack

tr = asynctrack.get_tracker(__name__)


@tr.probe
def add(a: int, b: int = 1) -> int:
    return a + b


@tr.probe(level=asynctrack.INFO, fname="typing.mul", exc=("secret",))
async def mul(a: int, secret: str) -> int:
    return a * 2


async def use() -> int:
    total: int = add(1, b=2)
    total += await mul(3, "s")
    asynctrack.add_info("user", "alice")
    asynctrack.add_data("rows", total, depth=None)
    await tr.flush(timeout=1.0)
    return total


def use_sync() -> None:
    add(2)
    tr.flush_sync(timeout=1.0)
