"""
Hypothesis strategies for random call trees (used by the hierarchy property tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st


@dataclass
class Node:
    """
    One probed call: what it does before and after its children, and whether it fails.
    """

    children: list[Node] = field(default_factory=list)
    concurrent: bool = False
    checkpoints: int = 0
    data: bool = False
    fails: bool = False

    def paths(self, prefix: str = "0") -> list[str]:
        out = [prefix]
        for i, child in enumerate(self.children):
            out += child.paths(f"{prefix}.{i}")
        return out

    def find(self, path: str) -> Node:
        node = self
        for part in path.split(".")[1:]:
            node = node.children[int(part)]
        return node


def trees(max_depth: int = 3, max_children: int = 3) -> st.SearchStrategy[Node]:
    """
    Random call trees of at most ``max_depth`` levels below the root.
    """
    leaf = st.builds(
        Node,
        checkpoints=st.integers(0, 2),
        data=st.booleans(),
        fails=st.booleans(),
    )

    def extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
        return st.builds(
            Node,
            children=st.lists(children, max_size=max_children),
            concurrent=st.booleans(),
            checkpoints=st.integers(0, 2),
            data=st.booleans(),
            fails=st.booleans(),
        )

    return st.recursive(leaf, extend, max_leaves=8)
