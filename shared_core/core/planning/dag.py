"""A small directed acyclic graph of named nodes: order, waves, cycles, upstream and downstream.

Edges point from an upstream node to the node that reads it. Every result is deterministic: the
topological order breaks ties by a caller-given key (by default the node name), exactly like
`networkx.lexicographical_topological_sort` (the tests check the two agree), and sets never leak
their iteration order. It is written out here rather than imported because importing networkx costs
0.2 s, a fifth of the whole budget of a one-change plan.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import SupportsRichComparison

from shared_core.core.errors import CycleError


class Graph:
    """An immutable DAG built from `{node: upstream nodes}`; every upstream must itself be a node."""

    def __init__(self, upstreams: Mapping[str, Iterable[str]]) -> None:
        self._up: dict[str, tuple[str, ...]] = {n: tuple(sorted(set(u))) for n, u in upstreams.items()}
        down: dict[str, list[str]] = {n: [] for n in self._up}
        for node in sorted(self._up):
            for upstream in self._up[node]:
                down[upstream].append(node)
        self._down = {n: tuple(d) for n, d in down.items()}

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted(self._up))

    def parents(self, node: str) -> tuple[str, ...]:
        """Direct upstream nodes, sorted."""
        return self._up[node]

    def children(self, node: str) -> tuple[str, ...]:
        """Direct downstream nodes, sorted."""
        return self._down[node]

    def upstream(self, node: str) -> list[str]:
        """Every transitive upstream node, sorted by name."""
        return sorted(self._reach([node], self._up) - {node})

    def downstream(self, node: str) -> list[str]:
        """Every transitive downstream node, sorted by name."""
        return sorted(self._reach([node], self._down) - {node})

    def closure_downstream(self, nodes: Iterable[str]) -> set[str]:
        """`nodes` plus everything downstream of any of them."""
        return self._reach(nodes, self._down)

    @staticmethod
    def _reach(start: Iterable[str], edges: Mapping[str, tuple[str, ...]]) -> set[str]:
        seen = set(start)
        stack = list(seen)
        while stack:
            for nxt in edges[stack.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen

    def find_cycle(self) -> list[str] | None:
        """A cycle as a path `[a, b, ..., a]` (a -> b means b reads a), or None; deterministic."""
        state: dict[str, int] = {}
        for root in sorted(self._up):
            if state.get(root):
                continue
            path: list[str] = []
            stack: list[tuple[str, int]] = [(root, 0)]
            while stack:
                node, index = stack.pop()
                if index == 0:
                    state[node] = 1
                    path.append(node)
                children = self._down[node]
                if index < len(children):
                    stack.append((node, index + 1))
                    child = children[index]
                    if state.get(child) == 1:
                        return [*path[path.index(child):], child]
                    if not state.get(child):
                        stack.append((child, 0))
                else:
                    state[node] = 2
                    path.pop()
        return None

    def topological_order(self, key: Callable[[str], SupportsRichComparison] | None = None) -> list[str]:
        """Nodes with every upstream before its downstream; among ready nodes the smallest key first.

        >>> Graph({"b": ["a"], "a": [], "c": []}).topological_order()
        ['a', 'b', 'c']

        Raises:
            CycleError: the graph has a cycle (with its path).
        """
        sort_key = key or (lambda n: n)
        indegree = {n: len(u) for n, u in self._up.items()}
        ready = [(sort_key(n), n) for n, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            _, node = heapq.heappop(ready)
            order.append(node)
            for child in self._down[node]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    heapq.heappush(ready, (sort_key(child), child))
        if len(order) != len(self._up):
            raise CycleError(self.find_cycle() or [])
        return order

    def waves(self) -> dict[str, int]:
        """`parallel_group` of every node: 0 without upstreams, else 1 + the largest upstream wave."""
        wave: dict[str, int] = {}
        for node in self.topological_order():
            wave[node] = 1 + max((wave[u] for u in self._up[node]), default=-1)
        return wave
