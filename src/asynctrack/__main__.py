"""
``python -m asynctrack``: the same command line as the ``asynctrack`` script.
"""

from __future__ import annotations

from asynctrack.cli.commands import run

if __name__ == "__main__":
    run()
