"""
A small FastAPI shop tracked by asynctrack: one log per request in an SQLite database.

Run it with uvicorn (the database is ``$ASYNCTRACK_EXAMPLE_DB``, default ``track.db``)::

    uvicorn fastapi_app:app --app-dir examples
    curl -H 'x-user: alice' localhost:8000/items/42
    asynctrack stats sqlite:///track.db --by user

or ``python examples/fastapi_app.py [port]``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel

import asynctrack
from asynctrack.integrations.asgi import TrackMiddleware

DB = os.environ.get("ASYNCTRACK_EXAMPLE_DB", "track.db")

tr = asynctrack.get_tracker("shop")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Configure when the server starts (in each worker process), flush and close the
    # database when it stops: uvicorn runs this on SIGTERM and Ctrl-C.
    async with asynctrack.tracking(sinks=[asynctrack.SQLSink(f"sqlite+aiosqlite:///{DB}")]):
        yield


app = FastAPI(lifespan=lifespan)
app.add_middleware(TrackMiddleware, exclude_paths=["/health"])


class Item(BaseModel):
    item_id: int
    qty: int = 1


PRICES = {i: round(1.5 * i, 2) for i in range(1, 100)}
CARTS: dict[int, dict[int, int]] = {}


async def current_user(x_user: Annotated[str, Header()] = "anonymous") -> str:
    """
    A dependency: who is calling, recorded in the request's log.
    """
    asynctrack.add_info("user", x_user)
    return x_user


@tr.probe
async def load_item(item_id: int) -> dict[str, float | int]:
    await asyncio.sleep(0.001)  # a database query
    if item_id not in PRICES:
        raise KeyError(item_id)
    return {"item_id": item_id, "price": PRICES[item_id]}


@tr.probe(exc=("card_number",))
async def charge(amount: float, card_number: str) -> str:
    await asyncio.sleep(0.002)  # a payment provider
    if amount > 100:
        raise RuntimeError("payment declined")
    return "ch_" + card_number[-4:]


@app.get("/items/{item_id}")
@tr.probe
async def get_item(
    item_id: int, user: Annotated[str, Depends(current_user)]
) -> dict[str, float | int]:
    try:
        return await load_item(item_id)
    except KeyError:
        raise HTTPException(status_code=404, detail="no such item") from None


@app.post("/carts/{cart_id}/items")
@tr.probe
async def add_to_cart(
    cart_id: int, item: Item, user: Annotated[str, Depends(current_user)]
) -> dict[int, int]:
    await load_item(item.item_id)
    cart = CARTS.setdefault(cart_id, {})
    cart[item.item_id] = cart.get(item.item_id, 0) + item.qty
    asynctrack.add_data("cart_size", len(cart))
    return cart


@app.post("/carts/{cart_id}/checkout")
@tr.probe
async def checkout(
    cart_id: int, card_number: Annotated[str, Header()], user: Annotated[str, Depends(current_user)]
) -> dict[str, float | str]:
    cart = CARTS.pop(cart_id, {})
    total = round(sum(PRICES[i] * q for i, q in cart.items()), 2)
    asynctrack.add_data("total", total)
    return {"total": total, "charge": await charge(total, card_number)}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]) if len(sys.argv) > 1 else 8000)
