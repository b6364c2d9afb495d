"""
Secrets in the path of a request that no route matched.

A request for ``/reset-password/<token>/`` (a trailing slash the router redirects), or
for a token holding an encoded ``/`` (``%2F``), matches no route, so no path parameter
names its secret — yet its path is recorded. The routes of the application the request
reached (Starlette and FastAPI set ``scope["app"]``) are matched against the path as
a router would almost have matched it: with and without a trailing slash, and on the
raw path where an encoded ``/`` stays inside one segment. The values of the secret-named
parameters of any route matched that way are redacted like a matched request's (#15).
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import unquote

import asynctrack

__all__ = ["near_secrets"]

#: Routes looked at, at most: an application's route table, not a scanner's input.
_MAX_ROUTES = 1000
_MAX_DEPTH = 8


def near_secrets(scope: MutableMapping[str, Any], path: str, root: str) -> list[str]:
    """
    Return the values (decoded) of the secret-named parameters of the application's
    routes that ``path`` (app-relative, under the server's root path ``root``) nearly
    matches; empty when the application exposes no routes.
    """
    routes = _routes(scope.get("app"))
    if not routes:
        return []
    candidates = {path}
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        text = raw.decode("latin-1").partition("?")[0]
        # The raw path is the server's: the app's part follows the server's root path.
        if root and text.startswith(root):
            text = text[len(root) :]
        candidates.add(text)
    found: list[str] = []
    _walk(routes, candidates, found, depth=0)
    return found


def _walk(routes: list[Any], paths: set[str], found: list[str], depth: int) -> None:
    for route in routes:
        regex = getattr(route, "path_regex", None)
        if regex is None or not hasattr(regex, "match"):
            continue
        for path in paths:
            for candidate in {path, path.rstrip("/") or "/", path + "/"}:
                match = regex.match(candidate)
                if match is None:
                    continue
                groups = match.groupdict()
                for name, value in groups.items():
                    if isinstance(value, str) and value and asynctrack.is_redacted(name):
                        found += [value, unquote(value)]
                inner = _routes(route)
                rest = groups.get("path")
                if inner and isinstance(rest, str) and depth < _MAX_DEPTH:
                    # A mount: the rest of the path, against the mounted routes.
                    _walk(inner, {"/" + rest.lstrip("/")}, found, depth + 1)


def _routes(app: Any) -> list[Any]:
    router = getattr(app, "router", app)
    routes = getattr(router, "routes", None)
    if not isinstance(routes, Iterable):
        return []
    out: list[Any] = []
    for route in routes:
        out.append(route)
        if len(out) >= _MAX_ROUTES:
            break
    return out
