"""Validate every model of a project and collect every problem, not just the first.

`check` is the whole truth about what the files say: everything `plan` or `apply` would refuse for a reason
visible in the model files is reported, all of it in one run, in file order. A file whose header is invalid
still has its SQL checked, and a model whose upstream is invalid still has its own refs and SQL checked:

- the bytes: a model file that is not UTF-8 text;
- the header and the `{{ }}` expressions (headers, refs, `dependencies`, declared sources, the DAG);
- the SQL of the body and of every `custom_sql` test: syntax (a dangling `ON` too), the guard's rules and
  undeclared relations (`-- sources:`), exactly as the executor applies them before it runs anything;
- `{{ start_date }}` / `{{ end_date }}` in a model that runs without a batch window (not incremental).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from shared_core.core.errors import ModelError
from shared_core.core.project.headers import Header, parse_header, split_header
from shared_core.core.project.models import ModelSource, Project, ScannedSource, resolve_leniently
from shared_core.core.project.templating import Template, render_template
from shared_core.core.sql.analysis import QueryAnalyzer
from shared_core.core.sql.canonical import QueryAnalysis, content_key
from shared_core.core.sql.guard import undeclared_error

_WINDOW = re.compile(r"\{\{\s*(start_date|end_date)\s*\}\}")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*){0,2}$")


def check_files(
    files: Sequence[tuple[str, bytes]], analyzer: QueryAnalyzer, *, default_start: datetime | None = None,
) -> tuple[Project | None, list[ModelError]]:
    """`check_sources` for model files as bytes: a file that is not UTF-8 text is one more problem.

    Args:
        files: `(path, bytes)` of every model file.
        analyzer: parses and guards the SQL (may cache by content).
        default_start: the project's `[defaults] start`.

    Returns:
        As `check_sources`.
    """
    errors: list[ModelError] = []
    sources: list[ModelSource] = []
    for path, data in files:
        try:
            sources.append(ModelSource(path, data.decode("utf-8")))
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            errors.append(ModelError(f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8",
                                     path=path, line=line))
    project, found = check_sources(sources, analyzer, default_start=default_start)
    return project, sorted(errors + found, key=lambda e: (e.path, e.line))


def check_sources(
    sources: Sequence[ModelSource], analyzer: QueryAnalyzer, *, default_start: datetime | None = None,
) -> tuple[Project | None, list[ModelError]]:
    """Check headers, templates, refs, the DAG and every query and custom_sql test (parse and guard).

    The rules are those the executor applies before it runs anything, declared sources included, so a
    project this calls valid never fails later for a reason visible in its files.

    Returns:
        The project of the valid models (None when none could be resolved into a DAG) and every problem
        found, in file and line order.
    """
    errors: list[ModelError] = []
    scanned: list[tuple[ModelSource, ScannedSource]] = []
    headers: dict[str, Header] = {}
    declared: dict[str, str] = {}  # the name each file declares, even when its header is invalid
    unreadable: set[str] = set()
    renderable: list[ModelSource] = []
    for source in sorted(sources, key=lambda s: s.path):
        header: Header | None = None
        template: Template | None = None
        try:
            header = headers[source.path] = parse_header(source.text, source.path)
        except ModelError as exc:
            errors.append(exc)
        name = header.name if header is not None else _declared_name(source.text)
        if name:
            declared[source.path] = name
        try:
            template = render_template(source.text, source.path)
            renderable.append(source)
        except ModelError as exc:
            errors.append(exc)
        if header is None or template is None:
            unreadable.update([name] if name else [])  # refs to it are not reported again
        else:
            scanned.append((source, ScannedSource(header, template.refs, template.ref_lines, content_key(source.text))))
    project, found = resolve_leniently(scanned, unreadable=unreadable, default_start=default_start)
    errors += found
    analyses = _analyze(renderable, analyzer, errors)
    names = set(declared.values())
    for source in renderable:
        analysis = analyses.get(source.path)
        if analysis is None:
            continue
        header = headers.get(source.path)
        for relation, line in analysis.undeclared:
            errors.append(undeclared_error(relation, declared.get(source.path, ""), source.path, line,
                                           is_model=relation in names))
        if header is not None and not header.is_incremental and analysis.placeholders:
            errors.append(_window_error(source, header))
    errors.sort(key=lambda e: (e.path, e.line))
    return project, errors


def _analyze(sources: list[ModelSource], analyzer: QueryAnalyzer, errors: list[ModelError]) -> dict[str, QueryAnalysis]:
    """The analysis of each file by path; the SQL problems go to `errors` (every file is analyzed)."""
    files = [(content_key(s.text), s.path, s.text) for s in sources]
    try:
        by_key = analyzer.analyze_many(files)
    except ModelError:
        by_key = {}
        for item in files:  # the batch stops at the first problem: find them all, one file at a time
            try:
                by_key.update(analyzer.analyze_many([item]))
            except ModelError as exc:
                errors.append(exc)
    return {path: by_key[key] for key, path, _ in files if key in by_key}


def _window_error(source: ModelSource, header: Header) -> ModelError:
    match = _WINDOW.search(source.text)
    placeholder = match.group(1) if match else "start_date"
    line = source.text.count("\n", 0, match.start()) + 1 if match else header.body_line
    return ModelError(
        f"{{{{ {placeholder} }}}} in {header.name}, a {header.kind} model, which runs without a batch window; "
        "only INCREMENTAL_BY_TIME_RANGE and APPEND_ONLY models read start_date/end_date: make the model "
        "incremental (with a time_column) or remove the window",
        path=source.path, line=line,
    )


def _declared_name(text: str) -> str:
    """The model name a file with an invalid header declares, if it declares a valid one ("" otherwise)."""
    for key, value, _ in split_header(text)[0]:
        if key == "name" and _NAME.match(value.strip().lower()):
            return value.strip().lower()
    return ""
