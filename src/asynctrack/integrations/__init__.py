"""
Framework glue built on asynctrack's public API.

* :mod:`asynctrack.integrations.asgi` — :class:`~asynctrack.integrations.asgi.TrackMiddleware`,
  a pure ASGI middleware for Starlette, FastAPI, Quart, Litestar and plain ASGI apps.
* :mod:`asynctrack.integrations.wsgi` — the same for WSGI apps (Flask, Django, Pyramid).
* :mod:`asynctrack.integrations.httpx` — :class:`~asynctrack.integrations.httpx.TrackTransport`,
  outgoing httpx requests as calls, carrying W3C ``traceparent``.
* :mod:`asynctrack.integrations.sqlalchemy` — ``instrument(engine)``: statements as calls.

Nothing here is imported by ``import asynctrack``.
"""

from __future__ import annotations
