"""SQLSink: SQLAlchemy asyncio engines, table layout, row building and reading back."""
