"""
How a JSON-lines file and its rotations are named: ``track.jsonl`` rotates to
``track.jsonl.1`` (the newest), ``track.jsonl.2``, …. The FileSink writes by these
names and every reader (``read_logs``, ``asynctrack stats`` / ``show`` / ``report``)
finds the rotations with :func:`rotations`, so they agree on which files belong
together.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

__all__ = ["rotated_name", "rotations"]


def rotated_name(path: Path, number: int) -> Path:
    """
    The name of rotation ``number`` (1 is the newest) of ``path``: ``path.<number>``.
    """
    return path.with_name(f"{path.name}.{number}")


def rotations(path: str | os.PathLike[str]) -> list[Path]:
    """
    The existing rotations of ``path``, newest first (``path.1``, ``path.2``, …): every
    regular file named ``path.<digits>``, ordered by number, gaps skipped.
    """
    text = os.fspath(path)
    found: list[tuple[int, Path]] = []
    for name in glob.glob(glob.escape(text) + ".*"):
        suffix = name[len(text) + 1 :]
        if suffix.isascii() and suffix.isdigit() and os.path.isfile(name):
            found.append((int(suffix), Path(name)))
    return [p for _, p in sorted(found)]
