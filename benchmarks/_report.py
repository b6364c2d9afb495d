"""
Report helpers shared by the benchmark groups: Markdown tables, number formats, target
verdicts, progress notes and a description of the machine.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata

__all__ = [
    "fmt_ns",
    "fmt_num",
    "fmt_ratio",
    "machine_info",
    "progress",
    "table",
    "verdict",
]


def progress(message: str) -> None:
    """
    Print a progress note on stderr (stdout carries only the Markdown report).
    """
    print(message, file=sys.stderr, flush=True)


# -- formatting ------------------------------------------------------------------------------


def fmt_ns(ns: float) -> str:
    """
    Format nanoseconds for a table: ``"83.4"``, ``"1,234"``.
    """
    if ns < 100:
        return f"{ns:.1f}"
    return f"{ns:,.0f}"


def fmt_num(x: float) -> str:
    """
    Format a throughput or count with thousands separators.
    """
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}"


def fmt_ratio(x: float) -> str:
    """
    Format a ratio: ``"0.93×"``, ``"27.5×"``.
    """
    return f"{x:.2f}×" if x < 10 else f"{x:.1f}×"


def verdict(ok: bool | None) -> str:
    """
    Return the table mark for a target: met, missed, or not measured.
    """
    if ok is None:
        return "n/a"
    return "met" if ok else "**MISSED**"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, right: bool = True) -> str:
    """
    Render a Markdown table; the first column left-aligned, the others right-aligned
    (left-aligned too with ``right=False``).
    """
    rows = [list(r) for r in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.rjust(widths[i]) if i and right else cell.ljust(widths[i]))
        return "| " + " | ".join(out) + " |"

    sep = ["-" * widths[0]] + ["-" * (w - 1) + (":" if right else "-") for w in widths[1:]]
    return "\n".join([line(headers), "| " + " | ".join(sep) + " |", *(line(r) for r in rows)])


# -- machine and versions ------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


_PACKAGES = (
    "asynctrack",
    "orjson",
    "aiofiles",
    "SQLAlchemy",
    "aiosqlite",
    "opentelemetry-sdk",
    "eliot",
    "structlog",
    "psutil",
    "fastapi",
    "uvicorn",
)


def machine_info() -> list[tuple[str, str]]:
    """
    Return ``(what, value)`` pairs describing this machine and the package versions.
    """
    versions = []
    for name in _PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on Linux
        load = "n/a"
    return [
        ("date", _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("cpu", f"{_cpu_model()} — {os.cpu_count()} logical cores (nproc)"),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("os", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("load average at start", load),
        ("packages", ", ".join(versions)),
    ]
