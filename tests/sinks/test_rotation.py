"""
One rule names a JSON-lines file's rotations, and every reader follows it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from asynctrack.cli.stats.files import expand_paths
from asynctrack.sinks._file import _expand
from asynctrack.sinks._rotation import rotated_name, rotations


class TestRotations:
    @given(
        numbers=st.sets(st.integers(1, 30), max_size=8),
        others=st.sets(st.sampled_from(["bak", "1x", "tmp", "01a", "²"]), max_size=3),
    )
    def test_readers_agree_on_the_rotations(self, numbers: set[int], others: set[str]) -> None:
        """
        For any set of rotation numbers present (gaps included) and unrelated files
        next to them, ``rotations`` lists exactly ``path.<n>`` by increasing number; the
        FileSink reader reads them oldest first and the CLI newest first, the same files.
        """
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / "track.jsonl"
            base.write_text("")
            for n in numbers:
                rotated_name(base, n).write_text("")
            for suffix in others:
                base.with_name(f"{base.name}.{suffix}").write_text("")
            expected = [rotated_name(base, n) for n in sorted(numbers)]
            assert rotations(base) == expected
            assert _expand(base) == [*reversed(expected), base]
            assert expand_paths(str(base)) == [str(base), *map(str, expected)]

    def test_rotated_name(self) -> None:
        """
        Rotation ``n`` of ``dir/track.jsonl`` is ``dir/track.jsonl.n``.
        """
        assert rotated_name(Path("d/track.jsonl"), 3) == Path("d/track.jsonl.3")
