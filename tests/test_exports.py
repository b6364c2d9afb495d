"""
The public surface: __all__ matches the real public names, import stays cheap.
"""

from __future__ import annotations

import subprocess
import sys

import asynctrack


class TestExports:
    def test_all_matches_public_names(self) -> None:
        """
        Every name in __all__ resolves, and every public attribute is in __all__.
        """
        for name in asynctrack.__all__:
            assert getattr(asynctrack, name) is not None
        public = {
            n
            for n in dir(asynctrack)
            if not n.startswith("_")
            and n != "annotations"  # from __future__ import annotations
            and not isinstance(getattr(asynctrack, n), type(sys))
        }
        assert public <= set(asynctrack.__all__), public - set(asynctrack.__all__)
        assert asynctrack.__all__ == sorted(asynctrack.__all__, key=lambda s: (not s.isupper(), s))

    def test_public_objects_show_public_module(self) -> None:
        """
        Exported classes present themselves as asynctrack.X.
        """
        for name in (
            "Log",
            "Call",
            "Tracker",
            "Sink",
            "MemorySink",
            "FileSink",
            "ConfigError",
            "Level",
        ):
            assert getattr(asynctrack, name).__module__ == "asynctrack", name

    def test_import_loads_no_database_stack(self) -> None:
        """
        import asynctrack loads neither SQLAlchemy nor aiosqlite nor aiofiles, nor the
        OTLP sink's httpx and protobuf.
        """
        heavy = "('sqlalchemy', 'aiosqlite', 'aiofiles', 'httpx', 'google.protobuf')"
        code = f"import sys, asynctrack; print(sorted(m for m in {heavy} if m in sys.modules))"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "[]"
