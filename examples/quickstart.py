"""
The ten-minute example: three checkouts, one log each, in track.jsonl.

Run it with ``python examples/quickstart.py``, then ``asynctrack stats track.jsonl``.
"""

import asyncio

import asynctrack

tr = asynctrack.get_tracker("shop.views")


@tr.probe
async def checkout(cart_id: int, card: str) -> float:
    asynctrack.add_info("user", "alice")
    total = await price(cart_id)
    asynctrack.add_data("total", total)
    return total


@tr.probe
async def price(cart_id: int) -> float:
    await asyncio.sleep(0.01)
    return 99.5


async def main() -> None:
    async with asynctrack.tracking(sinks=[asynctrack.FileSink("track.jsonl")]):
        await asyncio.gather(*(checkout(i, card="4111 1111") for i in range(3)))


asyncio.run(main())
