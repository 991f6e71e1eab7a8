"""Lay out a DAG for drawing, left to right: layers, order within layers, coordinates and edge routes.

A Sugiyama-style layout, deterministic to the byte: nodes go to the column of their longest path from a
root (the planner's wave), an edge that spans several columns passes through a virtual point in each
column between, the order within each column comes from barycenter sweeps (the ordering with the fewest
crossings is kept), and each column's vertical positions are the least-squares fit to the mean position
of the neighbours under the order and spacing constraints (isotonic regression, solved exactly by pool
adjacent violators), so nodes never overlap and long edges run straight where they can.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared_core.core.planning.dag import Graph

COLUMN_GAP = 84.0  # horizontal room between columns, where edges curve
NODE_GAP = 14.0  # vertical room between two nodes of a column
POINT_GAP = 8.0  # vertical room next to an edge's virtual point
MARGIN = 16.0
SWEEPS = 6
ROUNDS = 8


@dataclass(frozen=True)
class Box:
    """A placed node: top-left corner, size, and column."""

    x: float
    y: float
    width: float
    height: float
    column: int

    @property
    def center_y(self) -> float:
        return self.y + self.height / 2


@dataclass(frozen=True)
class Route:
    """An edge from `source` (upstream) to `target`, as points from the source's right side to the target's left."""

    source: str
    target: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Layout:
    """Placed nodes by name, edge routes (sorted by source, target), and the drawing's size."""

    boxes: dict[str, Box]
    routes: tuple[Route, ...]
    width: float
    height: float


def layout_dag(upstream: Mapping[str, Sequence[str]], sizes: Mapping[str, tuple[float, float]]) -> Layout:
    """Place the nodes of a DAG and route its edges.

    Args:
        upstream: every node with the nodes it reads (each of them a node too).
        sizes: (width, height) of every node. Nodes of a column are drawn as wide as the widest.

    Returns:
        The layout; the same input always gives the same layout.

    Raises:
        CycleError: the graph has a cycle.

    >>> layout = layout_dag({"a": [], "b": ["a"], "c": ["a", "b"]}, dict.fromkeys("abc", (60.0, 30.0)))
    >>> [(name, box.column) for name, box in layout.boxes.items()]
    [('a', 0), ('b', 1), ('c', 2)]
    >>> len(layout.routes[1].points)  # a -> c passes column 1 through a virtual point (two points)
    4
    """
    waves = Graph(upstream).waves()
    names = sorted(upstream)
    grid = _Grid(names, waves, {name: sizes[name][1] for name in names})
    for name in names:
        for parent in sorted(set(upstream[name])):
            grid.add_edge(parent, name)
    grid.order()
    centers = grid.positions()
    columns = max(waves.values(), default=-1) + 1
    widths = [0.0] * columns
    for name in names:
        widths[waves[name]] = max(widths[waves[name]], sizes[name][0])
    lefts = [MARGIN + sum(widths[:c]) + COLUMN_GAP * c for c in range(columns)]
    top = min((centers[v] - grid.height[v] / 2 for v in range(len(centers))), default=0.0)
    shift = MARGIN - top
    boxes = {}
    for index, name in enumerate(names):
        column = waves[name]
        height = grid.height[index]
        boxes[name] = Box(lefts[column], centers[index] + shift - height / 2, widths[column], height, column)
    routes = []
    for source, target, via in grid.chains:
        start, end = boxes[source], boxes[target]
        points = [(start.x + start.width, start.center_y)]
        for point in via:
            column = grid.layer[point]
            level = centers[point] + shift
            points += [(lefts[column], level), (lefts[column] + widths[column], level)]
        points.append((end.x, end.center_y))
        routes.append(Route(source, target, tuple(points)))
    bottom = max((box.y + box.height for box in boxes.values()), default=0.0)
    width = (lefts[-1] + widths[-1] + MARGIN) if columns else 2 * MARGIN
    return Layout(boxes, tuple(routes), width, max(bottom + MARGIN, 2 * MARGIN))


class _Grid:
    """The layered graph: real nodes 0..n-1 (by name), virtual points after them, unit-span edges."""

    def __init__(self, names: Sequence[str], waves: Mapping[str, int], heights: Mapping[str, float]) -> None:
        self.index = {name: i for i, name in enumerate(names)}
        self.layer = [waves[name] for name in names]
        self.height = [heights[name] for name in names]
        self.real = len(names)
        self.up: list[list[int]] = [[] for _ in names]
        self.down: list[list[int]] = [[] for _ in names]
        self.chains: list[tuple[str, str, list[int]]] = []
        self.rows: list[list[int]] = []

    def add_edge(self, source: str, target: str) -> None:
        previous, via = self.index[source], []
        for layer in range(self.layer[previous] + 1, self.layer[self.index[target]]):
            point = len(self.layer)
            self.layer.append(layer)
            self.height.append(0.0)
            self.up.append([])
            self.down.append([])
            self._link(previous, point)
            via.append(point)
            previous = point
        self._link(previous, self.index[target])
        self.chains.append((source, target, via))

    def _link(self, upper: int, lower: int) -> None:
        self.down[upper].append(lower)
        self.up[lower].append(upper)

    def order(self) -> None:
        """Order every column: a pass by upstream positions, then barycenter sweeps; the fewest crossings win."""
        columns = max(self.layer, default=-1) + 1
        rows: list[list[int]] = [[] for _ in range(columns)]
        for vertex in range(len(self.layer)):
            if self.layer[vertex] == 0:
                rows[0].append(vertex)
        for column in range(1, columns):
            members = [v for v in range(len(self.layer)) if self.layer[v] == column]
            rows[column] = self._sorted(members, rows[column - 1], self.up)
        best, best_crossings = [list(row) for row in rows], self._crossings(rows)
        for sweep in range(SWEEPS):
            if sweep % 2 == 0:
                for column in range(1, columns):
                    rows[column] = self._sorted(rows[column], rows[column - 1], self.up)
            else:
                for column in range(columns - 2, -1, -1):
                    rows[column] = self._sorted(rows[column], rows[column + 1], self.down)
            crossings = self._crossings(rows)
            if crossings < best_crossings:
                best, best_crossings = [list(row) for row in rows], crossings
        self.rows = best

    @staticmethod
    def _sorted(members: Sequence[int], fixed: Sequence[int], neighbours: Sequence[Sequence[int]]) -> list[int]:
        """`members` by the mean position of their neighbours in `fixed`; those without keep their place."""
        where = {vertex: i for i, vertex in enumerate(fixed)}
        keys = []
        for rank, vertex in enumerate(members):
            near = [where[n] for n in neighbours[vertex] if n in where]
            scale = len(fixed) / max(len(members), 1)
            keys.append((sum(near) / len(near) if near else rank * scale, rank, vertex))
        return [vertex for *_, vertex in sorted(keys)]

    def _crossings(self, rows: Sequence[Sequence[int]]) -> int:
        """Edge crossings between neighbouring columns (counted with a sorted insertion per edge)."""
        total = 0
        for upper, lower in itertools.pairwise(rows):
            where = {vertex: i for i, vertex in enumerate(lower)}
            ends = sorted((i, where[child]) for i, vertex in enumerate(upper) for child in self.down[vertex])
            seen: list[int] = []
            for _, end in ends:  # an edge crosses every earlier edge that ends below it
                total += len(seen) - bisect.bisect_right(seen, end)
                bisect.insort(seen, end)
        return total

    def positions(self) -> list[float]:
        """The vertical center of every vertex: rounds of least-squares fits to the neighbours' positions."""
        center = [0.0] * len(self.layer)
        for row in self.rows:
            offsets = self._offsets(row)
            middle = offsets[-1] / 2 if offsets else 0.0
            for vertex, offset in zip(row, offsets, strict=True):
                center[vertex] = offset - middle
        for round_ in range(ROUNDS):
            if round_ == ROUNDS - 1:
                neighbours = [up + down for up, down in zip(self.up, self.down, strict=True)]
                order: Sequence[int] = range(len(self.rows))
            elif round_ % 2 == 0:
                neighbours, order = self.up, range(1, len(self.rows))
            else:
                neighbours, order = self.down, range(len(self.rows) - 2, -1, -1)
            for column in order:
                row = self.rows[column]
                wanted = [
                    sum(center[n] for n in neighbours[v]) / len(neighbours[v]) if neighbours[v] else center[v]
                    for v in row
                ]
                for vertex, value in zip(row, _fit(wanted, self._offsets(row)), strict=True):
                    center[vertex] = value
        return center

    def _offsets(self, row: Sequence[int]) -> list[float]:
        """The least distance from the first vertex's center to each vertex's center."""
        offsets, total = [], 0.0
        for i, vertex in enumerate(row):
            if i:
                before = row[i - 1]
                both_real = vertex < self.real and before < self.real
                total += (self.height[before] + self.height[vertex]) / 2 + (NODE_GAP if both_real else POINT_GAP)
            offsets.append(total)
        return offsets


def _fit(wanted: Sequence[float], offsets: Sequence[float]) -> list[float]:
    """Positions closest to `wanted` (least squares) with position[i] - position[0] >= offsets[i] pairwise.

    With z[i] = position[i] - offsets[i] the constraints say z is non-decreasing: an isotonic regression.

    >>> _fit([10.0, 0.0], [0.0, 4.0])
    [3.0, 7.0]
    """
    blocks: list[list[float]] = []  # [sum of targets, count]
    for target, offset in zip(wanted, offsets, strict=True):
        blocks.append([target - offset, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    values: list[float] = []
    for total, count in blocks:
        values += [total / count] * int(count)
    return [value + offset for value, offset in zip(values, offsets, strict=True)]
