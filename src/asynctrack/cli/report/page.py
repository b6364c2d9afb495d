"""
The report page: one HTML file with its styles, scripts, chart library and data inside.

The data is embedded as JSON in a ``<script type="application/json">`` element,
escaped for that context: ``<``, ``>`` and ``&`` (so no ``</script>`` or ``<!--`` can
close or bend the element) and U+2028/U+2029 become ``\\uXXXX`` escapes, which
``JSON.parse`` reads back unchanged. The page's scripts run only if their hash is
in the Content-Security-Policy, which also forbids every network request.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from importlib import resources
from typing import Any

import orjson

__all__ = ["UPLOT_VERSION", "embed_json", "render_page"]

#: The chart library shipped in ``assets/`` (MIT licence, ``assets/LICENSE-uPlot.txt``).
UPLOT_VERSION = "1.6.32"

_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def _asset(name: str) -> str:
    return resources.files("asynctrack.cli.report").joinpath("assets", name).read_text("utf-8")


def _plain(value: Any) -> Any:
    """
    Return ``value`` with what strict JSON cannot hold made text (the slow path).
    """
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1 << 63:
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def embed_json(data: Any) -> str:
    """
    Return ``data`` as JSON that is safe inside a ``<script>`` element.
    """
    try:
        text = orjson.dumps(data).decode()
    except (TypeError, orjson.JSONEncodeError):
        # Keys that are not strings, ints beyond 64 bits, lone surrogates: the
        # standard library writes them (surrogates as escapes) once made plain.
        text = json.dumps(_plain(data), ensure_ascii=False, allow_nan=False)
    return text.translate(_ESCAPES)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asynctrack")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


def render_page(data: dict[str, Any]) -> str:
    """
    Return the HTML page of a report's data (see ``build.assemble``).
    """
    uplot_js = _asset(f"uplot-{UPLOT_VERSION}.min.js")
    js = _asset("report.js")
    parts = {
        "__SCRIPT_HASHES__": f"{_hash(uplot_js)} {_hash(js)}",
        "__VERSION__": html.escape(_version()),
        "__TITLE__": html.escape(str(data.get("title") or "asynctrack report")),
        "__UPLOT_CSS__": _asset(f"uplot-{UPLOT_VERSION}.min.css"),
        "__CSS__": _asset("report.css"),
        "__DATA__": embed_json(data),
        "__UPLOT_JS__": uplot_js,
        "__JS__": js,
    }
    page = _asset("template.html")
    # One pass, so text inserted for one marker is never searched for another.
    out: list[str] = []
    rest = page
    while True:
        at = rest.find("__")
        if at < 0:
            out.append(rest)
            break
        end = rest.find("__", at + 2)
        marker = rest[at : end + 2] if end >= 0 else ""
        if marker in parts:
            out.append(rest[:at])
            out.append(parts[marker])
            rest = rest[end + 2 :]
        else:
            out.append(rest[: at + 2])
            rest = rest[at + 2 :]
    return "".join(out)
