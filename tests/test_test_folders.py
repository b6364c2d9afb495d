"""
The test folders mirror the package (docs/development.md, "Where a test goes"): each
folder holding tests names a subpackage of ``src/asynctrack`` (without the leading
underscore of a private one) or is the reliability gauntlet, and is a package itself.
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "src" / "asynctrack"
#: Folders that cut across the package on purpose.
CROSS_CUTTING = {Path("reliability")}


def _mirrored() -> set[Path]:
    """
    The test folder each subpackage maps to: ``_core`` -> ``core``, ``sinks/_sql`` ->
    ``sinks/sql``.
    """
    out = set()
    for init in PACKAGE.rglob("__init__.py"):
        rel = init.parent.relative_to(PACKAGE)
        if rel.parts:
            out.add(Path(*(part.lstrip("_") for part in rel.parts)))
    return out


def _test_folders() -> set[Path]:
    return {p.parent.relative_to(TESTS) for p in TESTS.rglob("test_*.py")} - {Path()}


class TestFolders:
    def test_each_folder_mirrors_a_subpackage(self) -> None:
        """
        A folder of tests is named after the subpackage its tests cover.
        """
        mirrored = _mirrored()
        for folder in sorted(_test_folders()):
            if folder.parts[:1] and Path(folder.parts[0]) in CROSS_CUTTING:
                continue
            assert folder in mirrored, (
                f"tests/{folder} mirrors no subpackage of src/asynctrack "
                f"(choose among {sorted(str(m) for m in mirrored)})"
            )

    def test_each_folder_is_a_package(self) -> None:
        """
        Every folder of tests has an ``__init__.py``, so files of the same name in two
        folders do not clash and ``tests.<folder>`` imports work.
        """
        for folder in sorted(_test_folders()):
            path = TESTS / folder
            while path != TESTS:
                assert (path / "__init__.py").is_file(), f"tests/{path.relative_to(TESTS)}"
                path = path.parent

    def test_the_rule_sees_the_folders(self) -> None:
        """
        The two checks above look at real folders: the layers are all mirrored.
        """
        assert {Path("core"), Path("delivery"), Path("config"), Path("sinks")} <= _test_folders()
        assert {Path("core"), Path("sinks/sql"), Path("cli/report")} <= _mirrored()
