"""
No import cycle between asynctrack's modules, counting imports inside functions.

The ``acyclic`` contract of ``.importlinter`` allows no edge (its ``ignore_imports``
list is empty), and the module graph built here, imports inside functions included,
has no strongly connected component of more than one module.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

grimp = pytest.importorskip("grimp", reason="the dev extra installs import-linter (grimp)")

CONFIG = Path(__file__).resolve().parent.parent / ".importlinter"


def allowed_edges() -> set[tuple[str, str]]:
    """
    The ``importer -> imported`` edges the acyclic contract ignores.
    """
    parser = configparser.ConfigParser(comment_prefixes=("#",), inline_comment_prefixes=None)
    parser.read(CONFIG, encoding="utf-8")
    lines = parser["importlinter:contract:acyclic"].get("ignore_imports", "").splitlines()
    edges = set()
    for line in lines:
        if "->" in line:
            importer, imported = (part.strip() for part in line.split("->"))
            edges.add((importer, imported))
    return edges


def import_graph() -> dict[str, set[str]]:
    """
    Module -> modules it imports, for every module of asynctrack (imports under
    ``if TYPE_CHECKING:`` excluded: they never run).
    """
    graph = grimp.build_graph("asynctrack", exclude_type_checking_imports=True, cache_dir=None)
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """
    The strongly connected components of more than one module (Tarjan, iterative).
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


class TestImportCycles:
    def test_no_cycle(self) -> None:
        """
        The module import graph, imports inside functions included, has no cycle.
        """
        assert cycles(import_graph()) == []

    def test_acyclic_contract_allows_no_edge(self) -> None:
        """
        The acyclic contract ignores no import: no cycle is tolerated, even listed.
        """
        assert allowed_edges() == set()

    @given(
        st.dictionaries(st.sampled_from("abcdefg"), st.sets(st.sampled_from("abcdefg"), max_size=3))
    )
    def test_cycle_finder_agrees_with_topological_sort(self, graph: dict[str, set[str]]) -> None:
        """
        For any small graph, the finder reports no cycle exactly when the graph can be
        sorted topologically (ignoring self-imports, which Python cannot express).
        """
        graph = {node: targets - {node} for node, targets in graph.items()}
        for targets in list(graph.values()):
            for target in targets:
                graph.setdefault(target, set())
        remaining = {node: set(targets) for node, targets in graph.items()}
        while True:
            leaves = [node for node, targets in remaining.items() if not targets]
            if not leaves:
                break
            for leaf in leaves:
                del remaining[leaf]
                for targets in remaining.values():
                    targets.discard(leaf)
        found = cycles(graph)
        assert (found == []) == (remaining == {})
        # Every node left after peeling the leaves is on a cycle or leads to one.
        assert {m for component in found for m in component} <= set(remaining)

    def test_cycle_finder_finds_a_cycle(self) -> None:
        """
        The finder reports a three-module cycle and nothing for a chain.
        """
        assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
        assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
