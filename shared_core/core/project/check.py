"""Validate every model of a project and collect every problem, not just the first."""

from __future__ import annotations

from collections.abc import Sequence

from shared_core.core.errors import ModelError
from shared_core.core.project.headers import parse_header
from shared_core.core.project.models import ModelSource, Project, load_project
from shared_core.core.project.templating import render_template
from shared_core.core.sql.analysis import QueryAnalyzer
from shared_core.core.sql.guard import undeclared_error


def check_sources(sources: Sequence[ModelSource], analyzer: QueryAnalyzer) -> tuple[Project | None, list[ModelError]]:
    """Check headers, templates, refs, the DAG and every query and custom_sql test (parse and guard).

    The rules are those the executor applies before it runs anything, declared sources included, so a
    project this calls valid never fails later for a safety reason.

    Returns:
        The project (None when it could not be resolved) and the problems found, in file order.
    """
    errors: list[ModelError] = []
    for source in sorted(sources, key=lambda s: s.path):
        try:
            parse_header(source.text, source.path)
            render_template(source.text, source.path)
        except ModelError as exc:
            errors.append(exc)
    if errors:
        return None, errors
    try:
        project = load_project(sources)
    except ModelError as exc:
        return None, [exc]
    models = sorted(project.models.values(), key=lambda m: m.path)
    files = [(m.key, m.path, m.text) for m in models]
    try:
        analyses = analyzer.analyze_many(files)
    except ModelError:
        analyses = {}
        for item in files:
            try:
                analyses.update(analyzer.analyze_many([item]))
            except ModelError as exc:
                errors.append(exc)
    for model in models:
        analysis = analyses.get(model.key)
        for relation, line in analysis.undeclared if analysis is not None else ():
            errors.append(undeclared_error(relation, model.name, model.path, line, is_model=relation in project))
    errors.sort(key=lambda e: (e.path, e.line))
    return project, errors
