"""
The in-process ASGI driver the web benchmarks' workloads share (issue #20).

``DRIVER`` is source text, put into each workload script in place of the line
``# ASGI driver``: a fixed ``GET /items/42`` scope, its request message, and a
``receive`` and a ``send`` that return at once, so what a workload counts is the
application, FastAPI and asynctrack, nothing of a network or a server.
"""

from __future__ import annotations

__all__ = ["DRIVER", "with_driver"]

DRIVER = r"""SCOPE = {
    "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/items/42",
    "raw_path": b"/items/42", "root_path": "", "query_string": b"",
    "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"bench")],
    "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
}
REQUEST = {"type": "http.request", "body": b"", "more_body": False}


async def receive():
    return REQUEST


async def send(message):
    return None
"""

_MARK = "# ASGI driver\n"


def with_driver(workload: str) -> str:
    """
    Return ``workload`` with :data:`DRIVER` in place of its ``# ASGI driver`` line.
    """
    if workload.count(_MARK) != 1:
        raise ValueError("a workload needs exactly one '# ASGI driver' line")
    return workload.replace(_MARK, DRIVER)
