"""
asynctrack's benchmark harness (issue #9): ``python -m benchmarks`` or ``make bench``.

Each group is a module with a ``main(argv=None) -> int`` that prints a Markdown
report; ``benchmarks.__main__`` runs every group in its own process. See
``benchmarks/RESULTS.md`` for recorded runs.
"""

from __future__ import annotations
