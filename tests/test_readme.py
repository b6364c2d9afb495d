"""
The README's examples run as written.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from asynctrack.cli.commands import main

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}\n")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end], re.S)


class TestReadme:
    def test_quickstart_runs_and_stats_read_its_output(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        The "Ten minutes" example writes three logs that `asynctrack stats` reads.
        """
        (code,) = python_blocks("Ten minutes")
        script = tmp_path / "quickstart.py"
        script.write_text(code, encoding="utf-8")
        subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True, timeout=60)
        lines = (tmp_path / "track.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == 3
        assert main(["stats", str(tmp_path / "track.jsonl"), "--format", "json"]) == 0
        out = capsys.readouterr().out
        assert '"logs": 3' in out or '"logs":3' in out
