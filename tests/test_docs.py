"""
The manual in ``docs/`` and the README: their examples run as written, and every
example shown is included from ``examples/``, never pasted.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from asynctrack.cli.commands import main

from .helpers import DOCS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', flags=re.MULTILINE)


def section(text: str, title: str) -> str:
    """
    The body of the ``## title`` section of a Markdown text.
    """
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def included() -> dict[str, set[str]]:
    """
    Every file a docs page includes with ``--8<--``, mapped to the pages that do.
    """
    found: dict[str, set[str]] = {}
    for page in sorted(DOCS.glob("*.md")):
        for path in SNIPPET.findall(page.read_text(encoding="utf-8")):
            found.setdefault(path, set()).add(page.name)
    return found


class TestQuickstart:
    def test_quickstart_runs_and_stats_read_its_output(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """
        The "Ten minutes" example writes three logs that `asynctrack stats` reads.
        """
        script = EXAMPLES / "quickstart.py"
        subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True, timeout=60)
        lines = (tmp_path / "track.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == 3
        assert main(["stats", str(tmp_path / "track.jsonl"), "--format", "json"]) == 0
        out = capsys.readouterr().out
        assert '"logs": 3' in out or '"logs":3' in out

    def test_readme_shows_the_quickstart_file(self) -> None:
        """
        The README's "Ten minutes" code block is examples/quickstart.py, byte for byte
        (a README is read where no include runs, so this test keeps the copy exact).
        """
        (code,) = re.findall(
            r"```python\n(.*?)```", section(README.read_text(encoding="utf-8"), "Ten minutes"), re.S
        )
        assert code == (EXAMPLES / "quickstart.py").read_text(encoding="utf-8")

    def test_docs_index_includes_the_quickstart(self) -> None:
        """
        The manual's front page includes the quickstart from examples/.
        """
        assert "index.md" in included()["examples/quickstart.py"]


class TestManual:
    def test_every_included_file_exists(self) -> None:
        """
        Every ``--8<--`` include of the manual names a file of the repository.
        """
        for path in included():
            assert (ROOT / path).is_file(), path

    def test_every_example_is_in_the_manual(self) -> None:
        """
        Every program in examples/ is included by some page of the manual.
        """
        shown = included()
        for example in sorted(EXAMPLES.glob("*.py")):
            assert f"examples/{example.name}" in shown, example.name

    def test_no_example_is_pasted(self) -> None:
        """
        No code block of the manual repeats an example file's text instead of
        including it (a pasted copy drifts from the file the tests run).
        """
        bodies = [p.read_text(encoding="utf-8") for p in EXAMPLES.glob("*.py")]
        for page in DOCS.glob("*.md"):
            for block in re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
                if block.startswith("--8<--"):
                    continue
                if block.count("\n") >= 3:
                    assert not any(block in body for body in bodies), page.name

    def test_every_page_is_in_the_nav(self) -> None:
        """
        Every page of docs/ is listed in mkdocs.yml's navigation, and every listed page
        exists.
        """
        config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
        listed = set(re.findall(r"^  - [^:]+: (\S+\.md)$", config, flags=re.MULTILINE))
        assert listed == {p.name for p in DOCS.glob("*.md")}

    def test_readme_is_short(self) -> None:
        """
        The README stays a front door (at most 200 lines); the manual is in docs/.
        """
        assert len(README.read_text(encoding="utf-8").splitlines()) <= 200

    def test_readme_links_point_to_pages(self) -> None:
        """
        Every docs/ page the README links to exists.
        """
        for link in re.findall(r"\]\((docs/[^)#]+)", README.read_text(encoding="utf-8")):
            assert (ROOT / link).is_file(), link

    def test_code_cites_pages_of_the_manual_only(self) -> None:
        """
        Comments and docstrings cite pages of docs/ that exist, never files outside the
        repository (the design notes and trap lists the project started from).
        """
        outside = re.compile(r"\b(DESIGN|TRAPS)(\.md)?\b")
        cited = re.compile(r"docs/([\w-]+\.md)")
        for folder in ("src", "benchmarks", "examples", "tests"):
            for path in (ROOT / folder).rglob("*.py"):
                if path == Path(__file__).resolve():
                    continue
                text = path.read_text(encoding="utf-8")
                assert not outside.search(text), path
                for page in cited.findall(text):
                    assert (DOCS / page).is_file(), (path, page)
