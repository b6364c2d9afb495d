"""
Configuration files: placeholder until issue #5 lands (discover returns None).
"""

from __future__ import annotations

from typing import Any


def discover() -> dict[str, Any] | None:
    return None
