"""
asynctrack's benchmarks (issue #9): ``python -m benchmarks`` or ``make bench``.

Each group is a module with a ``main(argv=None) -> int`` that prints a Markdown
report; ``benchmarks.__main__`` runs every group in its own process. Timing is done by
pyperf (``_timing.py``), instruction counts by callgrind (``bench_instructions.py``).
``benchmarks/RESULTS.md`` keeps the latest recorded run of each group per machine.
"""

from __future__ import annotations
