"""Draw a project's model graph as inline SVG: placed nodes that link to model pages, curved edges.

The layout comes from `layout.py`; this module sizes the nodes (labels in a monospace face, so that a
label's width is known without a browser), picks the models to draw around a model (`neighbourhood`)
and writes the SVG, marking the model in focus, its direct neighbours, its lineage and the rest, so the
stylesheet can highlight them.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from shared_core.core.docs.layout import Box, Layout, Route, layout_dag
from shared_core.core.project.models import Model, Project

KIND_CLASSES = {
    "FULL_REFRESH": "full",
    "INCREMENTAL_BY_TIME_RANGE": "incr",
    "APPEND_ONLY": "append",
    "MERGE_BY_KEY": "merge",
}
NODE_HEIGHT = 44.0
NAME_CHAR = 7.6  # advance of one character of the 12.5px monospace name (0.6 em, as every common mono face)
SCHEMA_CHAR = 6.4  # the same at 10.5px, for the schema line
LABEL_CHARS = 30  # longer names are shortened with an ellipsis (the whole name is the node's tooltip)
PADDING = 30.0
MIN_WIDTH = 112.0


@dataclass(frozen=True)
class Focus:
    """A model in focus and the names around it: direct neighbours and transitive lineage."""

    name: str
    upstream: frozenset[str]
    downstream: frozenset[str]
    near: frozenset[str]


def label(name: str) -> tuple[str, str]:
    """(schema line, name line) of a node, each shortened to `LABEL_CHARS`.

    >>> label("analytics.orders_daily"), label("orders")
    (('analytics', 'orders_daily'), ('', 'orders'))
    """
    schema, _, table = name.rpartition(".")
    return _shorten(schema), _shorten(table)


def _shorten(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def node_size(name: str) -> tuple[float, float]:
    """(width, height) of the node of `name`: its longer label line plus padding."""
    schema, table = label(name)
    return max(MIN_WIDTH, len(table) * NAME_CHAR + PADDING, len(schema) * SCHEMA_CHAR + PADDING), NODE_HEIGHT


def layout_models(project: Project, names: Iterable[str]) -> Layout:
    """The layout of the models `names` of `project` and the edges between them."""
    chosen = set(names)
    upstream = {name: [u for u in project[name].upstream if u in chosen] for name in sorted(chosen)}
    return layout_dag(upstream, {name: node_size(name) for name in chosen})


def neighbourhood(project: Project, name: str, limit: int) -> tuple[set[str], int]:
    """The models to draw around `name`: everything when the project has at most `limit` models, else its
    lineage up to the largest number of steps that keeps it within `limit` (at least one step).

    Returns:
        The names, and the number of steps (0 when the whole project is drawn).
    """
    if len(project) <= limit:
        return set(project.models), 0
    graph = project.graph
    chosen, steps = {name}, 0
    up_edge, down_edge = {name}, {name}
    while up_edge or down_edge:
        up_next = {p for n in up_edge for p in graph.parents(n)} - chosen
        down_next = {c for n in down_edge for c in graph.children(n)} - chosen
        if not up_next and not down_next:
            break
        if steps and len(chosen) + len(up_next) + len(down_next) > limit:
            break
        chosen |= up_next | down_next
        up_edge, down_edge, steps = up_next, down_next, steps + 1
    return chosen, max(steps, 1)


def graph_svg(
    layout: Layout, models: Mapping[str, Model], href: Callable[[str], str], focus: Focus | None, title: str
) -> str:
    """The SVG of `layout`; each node links to `href(name)`, and `focus` (if any) marks what it touches."""
    edges = "".join(_edge(route, focus) for route in layout.routes)
    nodes = "".join(_node(name, box, models[name], href(name), focus) for name, box in layout.boxes.items())
    width, height = _num(layout.width), _num(layout.height)
    return (
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="group" aria-label="{_esc(title)}">'
        '<defs>'
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path class="arrowhead" d="M0,1 L9,5 L0,9 z"/></marker>'
        '<marker id="arrow-lit" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path class="arrowhead lit" d="M0,1 L9,5 L0,9 z"/></marker>'
        '</defs>'
        f'<g class="edges">{edges}</g><g class="nodes">{nodes}</g></svg>'
    )


def _edge(route: Route, focus: Focus | None) -> str:
    state = ""
    if focus is not None:
        upstream, downstream = focus.upstream | {focus.name}, focus.downstream | {focus.name}
        lit = (route.source in upstream and route.target in upstream) or (
            route.source in downstream and route.target in downstream
        )
        state = " lit" if lit else " dim"
    marker = "arrow-lit" if state == " lit" else "arrow"
    return (
        f'<path class="edge{state}" data-from="{_esc(route.source)}" data-to="{_esc(route.target)}" '
        f'd="{_path(route.points)}" marker-end="url(#{marker})"/>'
    )


def _path(points: tuple[tuple[float, float], ...]) -> str:
    """An SVG path through `points`: straight where level, else an S-curve with level ends."""
    (x, y), rest = points[0], points[1:]
    parts = [f"M{_num(x)} {_num(y)}"]
    for nx, ny in rest:
        if abs(ny - y) < 0.05:
            parts.append(f"H{_num(nx)}")
        else:
            middle = (x + nx) / 2
            parts.append(f"C{_num(middle)} {_num(y)} {_num(middle)} {_num(ny)} {_num(nx)} {_num(ny)}")
        x, y = nx, ny
    return "".join(parts)


def _node(name: str, box: Box, model: Model, href: str, focus: Focus | None) -> str:
    header = model.header
    classes = ["node", f"k-{KIND_CLASSES.get(header.kind, 'full')}"]
    if header.materialization == "VIEW":
        classes.append("view")
    if focus is not None:
        if name == focus.name:
            classes.append("current")
        elif name in focus.near:
            classes.append("near")
        elif name in focus.upstream or name in focus.downstream:
            classes.append("lineage")
        else:
            classes.append("dim")
    schema, table = label(name)
    x, y, w, h = box.x, box.y, box.width, box.height
    text_x = _num(x + 18)
    if schema:
        texts = (
            f'<text class="schema" x="{text_x}" y="{_num(y + 18)}">{_esc(schema)}</text>'
            f'<text class="name" x="{text_x}" y="{_num(y + 34)}">{_esc(table)}</text>'
        )
    else:
        texts = f'<text class="name" x="{text_x}" y="{_num(y + 27)}">{_esc(table)}</text>'
    tip = f"{name} · {header.kind.lower().replace('_', ' ')} · {header.materialization.lower()}"
    if header.owner:
        tip += f" · {header.owner}"
    return (
        f'<a class="{" ".join(classes)}" href="{_esc(href)}" data-id="{_esc(name)}" '
        f'data-search="{_esc(search_text(model))}">'
        f"<title>{_esc(tip)}</title>"
        f'<rect class="box" x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(h)}" rx="9"/>'
        f'<rect class="stripe" x="{_num(x + 6)}" y="{_num(y + 9)}" width="4" height="{_num(h - 18)}" rx="2"/>'
        f"{texts}</a>"
    )


def search_text(model: Model) -> str:
    """What the search box matches for a model: name, kind, materialization, owner and tags, lower-cased."""
    header = model.header
    words = [header.name, header.kind, header.materialization, header.owner or "", *header.tags]
    return " ".join(word.lower() for word in words if word)


def _num(value: float) -> str:
    """A coordinate with at most one decimal, without trailing zeros.

    >>> _num(12.0), _num(3.25), _num(-0.01)
    ('12', '3.2', '0')
    """
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _esc(value: str) -> str:
    return html.escape(value, quote=True)
