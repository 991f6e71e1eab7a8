"""Render a project's documentation site: relative paths to bytes, the same bytes for the same project.

`index.html` is the overview with the whole graph; `models/<name>.html` is each model's page, whose
graph is the whole project with the model's lineage highlighted, or, for projects of more than
`graph_limit` models, the model's lineage as far out as fits that limit. Given telemetry, a model's page also
charts its executed steps' runtime and cost.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared_core.core.docs.graph import Focus, graph_svg, layout_models, neighbourhood
from shared_core.core.docs.model_page import model_page, sibling
from shared_core.core.docs.pages import SiteInfo, index_page, model_file, plural
from shared_core.core.docs.runtime_chart import ModelRuntime, runtime_panel
from shared_core.core.project.models import Project

GRAPH_LIMIT = 60
_EMPTY = '<p class="empty">No models at this commit.</p>'


def render_site(project: Project, info: SiteInfo, *, graph_limit: int = GRAPH_LIMIT,
                telemetry: Mapping[str, ModelRuntime] | None = None) -> dict[str, bytes]:
    """Every file of the site, by path relative to its root, sorted by path.

    Args:
        project: the resolved project.
        info: the title, commit and commit date the pages show.
        graph_limit: the most models a model page's graph draws (the overview draws them all).
        telemetry: executed steps per model; a model listed here gets a runtime and cost chart on its page.

    Returns:
        `index.html` and `models/<name>.html` for every model, as UTF-8 bytes.
    """
    whole = layout_models(project, project.models)
    graph = _EMPTY
    if len(project):
        graph = graph_svg(whole, project.models, model_file, None, f"Model graph of {info.title}")
    files = {"index.html": index_page(project, info, graph)}
    dag = project.graph
    for name, model in project.models.items():
        upstream, downstream = dag.upstream(name), dag.downstream(name)
        focus = Focus(name, frozenset(upstream), frozenset(downstream), frozenset(model.upstream + dag.children(name)))
        names, steps = neighbourhood(project, name, graph_limit)
        layout = whole if steps == 0 else layout_models(project, names)
        note = ""
        if steps:
            drawn, lineage = len(names) - 1, len(upstream) + len(downstream)
            if not lineage:
                note = f"It reads no model and no model reads it; the overview shows all {len(project)}."
            else:
                shown = (f"its whole lineage ({plural(lineage, 'model')})" if drawn == lineage else
                         f"the models up to {plural(steps, 'step')} away ({drawn} of the {lineage} of its lineage)")
                note = f"Showing {shown}; the overview shows all {len(project)}."
        svg = graph_svg(layout, project.models, sibling, focus, f"Lineage of {name}")
        runtime = runtime_panel((telemetry or {}).get(name))
        files[model_file(name)] = model_page(project, model, info, svg, note, runtime)
    return {path: files[path].encode() for path in sorted(files)}
