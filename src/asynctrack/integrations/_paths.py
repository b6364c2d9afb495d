"""
Paths and names of web requests, shared by the ASGI and WSGI middlewares: the query
string parsed, the path relative to the server's root path, the route template of a
matched request, and the redaction of secret path parameters (see docs/web.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import asynctrack

__all__ = [
    "METHODS",
    "PENDING",
    "PLACEHOLDER",
    "REDACTED",
    "UNMATCHED",
    "app_path",
    "method_name",
    "parse_query",
    "redact_path",
    "redact_values",
    "route_template",
    "secret_values",
    "template_parts",
]

Scope = MutableMapping[str, Any]

#: The name of a request no route matched: one per method, however many paths (#15).
UNMATCHED = "<unmatched>"
#: The name of a request not routed yet (seen only in a log written incomplete).
PENDING = "<pending>"
REDACTED = "[REDACTED]"
#: Methods named as they are; any other (a client can send any token) is ``OTHER``.
METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "WEBSOCKET"}
)
PLACEHOLDER = re.compile(r"\{([^{}:]+)(?::[^{}]*)?\}")


def parse_query(raw: bytes | str) -> Any:
    """
    Parse a query string into ``{name: value}`` (a list for repeated names).

    A dict rather than the raw string, so that the value of ``?token=...`` is redacted
    like any parameter named ``token``.
    """
    try:
        text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
        parsed: dict[str, Any] = {}
        for key, value in parse_qsl(text, keep_blank_values=True):
            old = parsed.get(key)
            if old is None:
                parsed[key] = value
            elif isinstance(old, list):
                old.append(value)
            else:
                parsed[key] = [old, value]
        return parsed
    except Exception:
        return "<unparsable query string>"


def method_name(method: str) -> str:
    return method if method in METHODS else "OTHER"


def app_path(scope: Scope, root: str) -> str:
    """
    Return the request's path relative to the server's ``root_path`` (``root``).

    ASGI servers include ``root_path`` in ``path`` (``uvicorn --root-path /api``
    gives ``/api/health``); routes and ``exclude_paths`` are relative to the app.
    ``root`` is read before the app runs: Starlette's mounts extend the scope's.
    """
    path: str = scope.get("path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def secret_values(params: Any) -> list[str]:
    """
    Return the text of the path parameters whose names are on the redaction list.
    """
    if type(params) is not dict:
        if not isinstance(params, Mapping):
            return []
    elif not params:
        return []
    out = []
    for name, value in params.items():
        if isinstance(name, str) and asynctrack.is_redacted(name):
            text = str(value).strip("/")
            if text:
                out.append(text)
    return out


def redact_path(path: str, template: str, secrets: list[str]) -> str:
    """
    Replace in ``path`` the segments of ``template``'s redacted placeholders.

    Segments are aligned with the template when both have as many (a placeholder's
    raw text, whatever its convertor); values are matched segment by segment otherwise
    (``{rest:path}`` parameters, parameters of enclosing mounts).
    """
    count, named = template_parts(template)
    if named:
        segments = path.split("/")
        if len(segments) == count:
            for i, names in named:
                if any(asynctrack.is_redacted(name) for name in names):
                    segments[i] = REDACTED
            path = "/".join(segments)
    return redact_values(path, secrets)


#: Route template -> its segment count and the placeholder names of each segment that
#: has any. Parsed once per template rather than per request; bounded, because a
#: ``route`` hook may return templates built from the request.
_TEMPLATES: dict[str, tuple[int, tuple[tuple[int, tuple[str, ...]], ...]]] = {}


def template_parts(template: str) -> tuple[int, tuple[tuple[int, tuple[str, ...]], ...]]:
    hit = _TEMPLATES.get(template)
    if hit is None:
        parts = template.split("/")
        named = tuple(
            (i, tuple(m[1] for m in PLACEHOLDER.finditer(part)))
            for i, part in enumerate(parts)
            if "{" in part
        )
        hit = (len(parts), tuple(x for x in named if x[1]))
        if len(_TEMPLATES) < 4096 and len(template) <= 512:
            _TEMPLATES[template] = hit
    return hit


def redact_values(path: str, secrets: list[str]) -> str:
    """
    Replace each run of whole segments of ``path`` that spells a secret value.
    """
    if not secrets:
        return path
    segments = path.split("/")
    for secret in sorted(secrets, key=len, reverse=True):
        wanted = secret.split("/")
        n = len(wanted)
        out: list[str] = []
        i = 0
        while i < len(segments):
            if segments[i : i + n] == wanted:
                out.append(REDACTED)
                i += n
            else:
                out.append(segments[i])
                i += 1
        segments = out
    return "/".join(segments)


def route_template(scope: Scope, root_path: str) -> str | None:
    """
    Return the matched route's path template, with the prefixes of enclosing mounts.
    """
    route = scope.get("route")
    if route is None:
        return None
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str) or not template:
        return None
    # Starlette's Mount extends root_path by the part of the path it matched.
    mounted = scope.get("root_path", "")
    prefix = ""
    if isinstance(mounted, str) and mounted != root_path and mounted.startswith(root_path):
        prefix = mounted[len(root_path) :]
    if not prefix:
        return template
    if hasattr(route, "routes"):
        # The route is itself a mount (of a non-routing app such as StaticFiles): its
        # own template already covers the last prefix segment.
        own = getattr(route, "path", "")
        if isinstance(own, str) and prefix.endswith(own):
            return prefix[: len(prefix) - len(own)] + template
        return prefix + "/{path:path}"
    return prefix + template
