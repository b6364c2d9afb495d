"""
``python -m asynctrack._config``: print the reference table of the options, or write
it into (``--write FILE``) or check it against (``--check FILE``) the manual's page,
between its marker comments::

    python -m asynctrack._config --write docs/configuration.md
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from asynctrack._config.reference import splice, table


def main(argv: Sequence[str] | None = None) -> int:
    """
    Print the reference table, or write it into (or check it against) a Markdown file.
    """
    parser = argparse.ArgumentParser(
        prog="python -m asynctrack._config",
        description="Print the reference table of the options of configure().",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", help="replace the table between the markers")
    group.add_argument("--check", metavar="FILE", help="fail if the table there is not current")
    args = parser.parse_args(argv)
    path = args.write or args.check
    if path is None:
        sys.stdout.write(table())
        return 0
    old = Path(path).read_text(encoding="utf-8")
    try:
        new = splice(old, table())
    except ValueError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != old:
            print(
                f"{path}: the options table is out of date; run {parser.prog} --write {path}",
                file=sys.stderr,
            )
            return 1
        return 0
    if new != old:
        Path(path).write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
