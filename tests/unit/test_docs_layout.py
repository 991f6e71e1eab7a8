"""The graph layout of the documentation site: columns by longest path, no overlaps, clean edge routes."""

from __future__ import annotations

import itertools

import pytest

from shared_core.core.docs.graph import layout_models
from shared_core.core.docs.layout import COLUMN_GAP, NODE_GAP, Layout, layout_dag
from shared_core.core.errors import CycleError
from shared_core.core.project.models import Project
from tests.docs_projects import generated_project, shop_project

PROJECTS = {
    "shop-v1": lambda: shop_project("v1"),
    "shop-v2": lambda: shop_project("v2"),
    "generated-200": lambda: generated_project(200, 7),
    "generated-200-other": lambda: generated_project(200, 2024),
}


@pytest.fixture(params=sorted(PROJECTS), scope="module")
def laid_out(request: pytest.FixtureRequest) -> tuple[Project, Layout]:
    project = PROJECTS[request.param]()
    return project, layout_models(project, project.models)


def test_no_two_nodes_overlap(laid_out: tuple[Project, Layout]) -> None:
    project, layout = laid_out
    assert sorted(layout.boxes) == sorted(project.models)
    columns: dict[int, list[tuple[float, float]]] = {}
    for box in layout.boxes.values():
        assert box.width > 0 and box.height > 0
        assert box.x >= 0 and box.y >= 0
        assert box.x + box.width <= layout.width and box.y + box.height <= layout.height
        columns.setdefault(box.column, []).append((box.y, box.y + box.height))
    for spans in columns.values():
        spans.sort()
        for (_, bottom), (top, _) in itertools.pairwise(spans):
            assert top - bottom >= NODE_GAP - 1e-6
    extents = {box.column: (box.x, box.x + box.width) for box in layout.boxes.values()}
    assert all((box.x, box.x + box.width) == extents[box.column] for box in layout.boxes.values())
    for column in range(1, len(extents)):
        assert extents[column][0] - extents[column - 1][1] >= COLUMN_GAP - 1e-6


def test_a_model_sits_one_column_after_its_latest_upstream(laid_out: tuple[Project, Layout]) -> None:
    project, layout = laid_out
    waves = project.graph.waves()
    assert {name: box.column for name, box in layout.boxes.items()} == waves
    assert len(layout.routes) == sum(len(model.upstream) for model in project.models.values())


def test_edges_run_from_the_right_side_of_the_upstream_to_the_left_side_of_the_reader_around_every_node(
    laid_out: tuple[Project, Layout],
) -> None:
    _, layout = laid_out
    columns: dict[float, tuple[float, list[tuple[float, float]]]] = {}  # left -> (right, node spans)
    for box in layout.boxes.values():
        columns.setdefault(box.x, (box.x + box.width, []))[1].append((box.y, box.y + box.height))
    through = 0
    for route in layout.routes:
        source, target = layout.boxes[route.source], layout.boxes[route.target]
        assert route.points[0] == (source.x + source.width, source.center_y)
        assert route.points[-1] == (target.x, target.center_y)
        xs = [x for x, _ in route.points]
        assert xs == sorted(xs)
        inner = route.points[1:-1]  # a level run through each column between: its left and right side
        assert len(inner) == 2 * (target.column - source.column - 1)
        for (left, y), (right, level) in zip(inner[::2], inner[1::2], strict=True):
            assert level == y and columns[left][0] == right
            assert all(not (top - 1 < y < bottom + 1) for top, bottom in columns[left][1]), route
            through += 1
    if len(layout.boxes) > 100:
        assert through > 100  # the generated graphs have many long edges


def test_the_layout_depends_on_the_graph_alone() -> None:
    upstream = {"d": ["b", "a"], "a": [], "c": ["a"], "b": ["a"], "e": ["c", "d"]}
    sizes = {name: (80.0 + 10 * index, 40.0) for index, name in enumerate("abcde")}
    shuffled = {name: list(reversed(upstream[name])) for name in reversed(list(upstream))}
    assert layout_dag(upstream, sizes) == layout_dag(shuffled, dict(reversed(list(sizes.items()))))


def test_the_order_within_a_column_follows_the_upstream_order() -> None:
    """By name, `x` would come before `y` and the two edges would cross; the barycenter order uncrosses them."""
    layout = layout_dag({"a": [], "b": [], "x": ["b"], "y": ["a"]}, dict.fromkeys("abxy", (60.0, 30.0)))
    assert layout.boxes["a"].y < layout.boxes["b"].y
    assert layout.boxes["y"].y < layout.boxes["x"].y
    assert layout.boxes["y"].center_y == layout.boxes["a"].center_y  # straight edges where they can be


def test_a_cycle_is_refused() -> None:
    with pytest.raises(CycleError):
        layout_dag({"a": ["b"], "b": ["a"]}, dict.fromkeys("ab", (10.0, 10.0)))


def test_an_empty_graph_has_an_empty_layout() -> None:
    layout = layout_dag({}, {})
    assert layout.boxes == {} and layout.routes == () and layout.width > 0 and layout.height > 0
