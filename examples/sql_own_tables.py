"""
The SQL sink writing into your own SQLAlchemy tables (ORM models' ``__table__``).

``columns`` maps the info key ``user`` to the ``user_name`` column of the logs table;
the tables are checked when the sink is created and again when it opens. Run it with
``python examples/sql_own_tables.py``: it writes ``own.db`` and reads the log back.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import asynctrack


class Base(DeclarativeBase):
    pass


class Activity(Base):
    __tablename__ = "activity"
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    parent_id: Mapped[str | None] = mapped_column(sa.String(32))
    started_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True), index=True)
    duration_us: Mapped[int] = mapped_column(sa.BigInteger)
    complete: Mapped[bool]
    dropped_calls: Mapped[int] = mapped_column(default=0)
    info: Mapped[dict] = mapped_column(sa.JSON)
    user_name: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    # optional (0.2): written when present
    trace_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    parent_seq: Mapped[int | None]
    remote_parent: Mapped[str | None] = mapped_column(sa.String(16))


class ActivityCall(Base):
    __tablename__ = "activity_call"
    log_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    depth: Mapped[int]
    function: Mapped[str] = mapped_column(sa.String(255), index=True)
    tracker: Mapped[str] = mapped_column(sa.String(255))
    level: Mapped[str] = mapped_column(sa.String(16))
    params: Mapped[dict] = mapped_column(sa.JSON)
    data: Mapped[dict] = mapped_column(sa.JSON)
    offset_us: Mapped[int] = mapped_column(sa.BigInteger)
    duration_us: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(sa.String(16))
    error: Mapped[str | None] = mapped_column(sa.Text)
    parent_seq: Mapped[int | None]  # optional (0.2): Call.parent
    traceback: Mapped[list | None] = mapped_column(sa.JSON)  # optional (0.2)


tr = asynctrack.get_tracker("shop")


@tr.probe
def checkout(cart_id: int) -> None:
    asynctrack.add_info("user", "alice")


async def main() -> None:
    sink = asynctrack.SQLSink(
        "sqlite+aiosqlite:///own.db",
        logs_table=Activity.__table__,
        calls_table=ActivityCall.__table__,
        columns={"user": "user_name"},
    )
    async with asynctrack.tracking(sinks=[sink]):
        checkout(42)
    async with sink:  # read the logs back
        async for log in sink.read_logs():
            print(log.info["user"], log.calls[0].function)


asyncio.run(main())
