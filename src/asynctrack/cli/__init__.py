"""
The ``asynctrack`` command line: ``stats``, ``show`` and ``demo``.

``main(argv)`` runs one command and returns its exit code; ``run()`` is the console
script's entry point.
"""

from __future__ import annotations

from asynctrack.cli.commands import main, run

__all__ = ["main", "run"]
