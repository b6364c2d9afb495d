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


#: How a call is started by its parent (``Spawn.kind``). Async parents use them all;
#: a sync parent (in a thread or a generator) maps the async-only ones to sync ones.
SPAWN_KINDS = ("call", "task", "group", "thread", "agen", "gen", "late")
_SYNC_KIND = {"task": "call", "group": "thread", "agen": "gen", "late": "call"}


@dataclass
class Spawn:
    """
    One probed call of a call graph spread over tasks, threads and generators.

    ``kind`` says how its parent starts it: a plain call, a task awaited by the parent,
    a member of a concurrent group (``gather`` / ``TaskGroup`` / a trio nursery), a
    thread running a copy of the context (``propagate``), a probed generator or async
    generator, or ``late``: a fire-and-forget task that runs only after the request's
    log is complete, and so opens a continuation.
    """

    kind: str = "call"
    children: list[Spawn] = field(default_factory=list)
    fails: bool = False

    def normalized(self, sync: bool = False, late: bool = False) -> Spawn:
        """
        Return the tree with kinds that fit where each call runs: sync parents start
        only sync calls, and no ``late`` call below another (its continuation would
        race with its parent's).
        """
        kind = self.kind
        if sync:
            kind = _SYNC_KIND.get(kind, kind)
        if kind == "late" and late:
            kind = "task"
        runs_sync = sync or kind in ("thread", "gen")
        return Spawn(
            kind,
            [c.normalized(runs_sync, late or kind == "late") for c in self.children],
            self.fails,
        )

    def walk(self, path: str = "0") -> list[tuple[str, Spawn]]:
        out = [(path, self)]
        for i, child in enumerate(self.children):
            out += child.walk(f"{path}.{i}")
        return out


def spawn_trees(max_leaves: int = 10) -> st.SearchStrategy[Spawn]:
    """
    Random call graphs over every way of starting a call (see :class:`Spawn`).
    """
    kinds = st.sampled_from(SPAWN_KINDS)
    leaf = st.builds(Spawn, kind=kinds, fails=st.booleans())

    def extend(children: st.SearchStrategy[Spawn]) -> st.SearchStrategy[Spawn]:
        return st.builds(
            Spawn, kind=kinds, children=st.lists(children, max_size=4), fails=st.booleans()
        )

    return st.builds(
        lambda t: Spawn("call", t.children, t.fails).normalized(),
        st.recursive(leaf, extend, max_leaves=max_leaves),
    )
