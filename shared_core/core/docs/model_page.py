"""The page of one model: its header as properties, tests and contract, its lineage graph and its SQL.

The SQL is the file's body (the lines after the header), highlighted on the server, numbered with the
file's own line numbers; each `{{ ref(...) }}` links to the page of the model it reads.
"""

from __future__ import annotations

from urllib.parse import quote

from shared_core.core.docs.highlight import highlight_sql
from shared_core.core.docs.pages import (
    KIND_LABELS,
    SiteInfo,
    esc,
    kind_class,
    kind_pill,
    legend,
    model_link,
    page,
    plural,
    tag_pills,
)
from shared_core.core.project.headers import KNOWN_KEYS, Header, format_instant
from shared_core.core.project.models import Model, Project

_BATCH_NAMES = {"hour": "hourly", "day": "daily", "month": "monthly"}


def sibling(name: str) -> str:
    """The link from one model page to another's."""
    return f"{quote(name, safe='')}.html"


def model_page(project: Project, model: Model, info: SiteInfo, graph: str, note: str, runtime: str = "") -> str:
    """The HTML page of `model`, with `graph` (its lineage SVG), `note` (what the graph leaves out) and `runtime`
    (its runtime and cost panel, when telemetry was given)."""
    header = model.header
    schema, dot, table = model.name.rpartition(".")
    description = dict(header.raw).get("description", "").strip()
    upstream, downstream = project.graph.upstream(model.name), project.graph.downstream(model.name)
    badges = [kind_pill(model), f'<span class="pill">{esc(header.materialization.lower().replace("_", " "))}</span>']
    if header.owner:
        badges.append(f'<span class="pill">owner · {esc(header.owner)}</span>')
    crumbs = f'<a href="../index.html">Overview</a><span>/</span><span>{esc(schema or "models")}</span>'
    counts = f"{plural(len(upstream), 'model')} upstream · {plural(len(downstream), 'model')} downstream"
    body = (
        f'<nav class="crumbs" aria-label="Breadcrumb">{crumbs}</nav>'
        f'<h1><span class="schema">{esc(schema + dot)}</span>{esc(table)}</h1>'
        f'<div class="badges">{"".join(badges)}{tag_pills(header.tags)}</div>'
        + (f'<p class="lede">{esc(description)}</p>' if description else "")
        + f'<p class="path">{esc(model.path)}</p>'
        '<section class="panel"><div class="panel-head"><h2>Lineage</h2>'
        f'<div class="aside"><span>{esc(counts)}</span>{legend()}</div></div>'
        f'<div class="graph">{graph}</div>'
        + (f'<p class="note">{esc(note)}</p>' if note else "")
        + "</section>"
        + runtime
        + f'<div class="columns"><section class="panel">{_sql(project, model)}</section>'
        f"<aside>{_aside(project, model)}</aside></div>"
    )
    return page(info, title=f"{model.name} · {info.title}", body=body, root="../")


def _sql(project: Project, model: Model) -> str:
    lines = model.text.split("\n")
    first = model.header.body_line
    body = lines[first - 1:]
    while body and not body[-1].strip():
        body.pop()
    targets = dict(zip(model.refs, model.ref_targets, strict=True))

    def link(ref: str) -> str | None:
        target = targets.get(ref)
        return sibling(target) if target is not None and target in project else None

    highlighted = highlight_sql("\n".join(body), link)
    numbered = "\n".join(
        f'<span class="ln" aria-hidden="true">{number}</span>{line}'
        for number, line in enumerate(highlighted, start=first)
    ) if body else ""
    count = plural(len(body), "line")
    return (
        f'<div class="panel-head"><h2>SQL</h2><div class="aside"><span>{esc(count)}</span></div></div>'
        f'<pre class="sql"><code>{numbered}</code></pre>'
    )


def _aside(project: Project, model: Model) -> str:
    header = model.header
    panels = [_panel("Properties", _props(_properties(header)))]
    if header.is_incremental or header.cron:
        panels.append(_panel("Schedule", _props(_schedule(header))))
    panels.append(_panel(f"Tests ({len(header.tests)})", _tests(header)))
    if header.contract_columns or header.contract_mode != "DISABLED":
        panels.append(_panel(f"Contract · {header.contract_mode.lower()}", _contract(header)))
    if header.sources:
        items = [f'<li><code class="grow">{esc(source)}</code></li>' for source in header.sources]
        panels.append(_panel(f"Sources ({len(header.sources)})", _list(items, "")))
    children = project.graph.children(model.name)
    panels.append(_panel(f"Upstream ({len(model.upstream)})", _links(project, model.upstream, "No upstream models.")))
    panels.append(_panel(f"Downstream ({len(children)})", _links(project, children, "Nothing reads this model.")))
    extra = [(key, value) for key, value in header.raw if key not in KNOWN_KEYS]
    if extra:
        rows = [(key, f"<code>{esc(value)}</code>") for key, value in extra]
        panels.append(_panel("Other header keys", _props(rows)))
    return "".join(panels)


def _panel(title: str, content: str) -> str:
    return f'<section class="panel"><div class="panel-head"><h2>{esc(title)}</h2></div>{content}</section>'


def _props(rows: list[tuple[str, str]]) -> str:
    """A definition list; the values are HTML already escaped by the caller."""
    return '<dl class="props">' + "".join(f"<dt>{esc(key)}</dt><dd>{value}</dd>" for key, value in rows) + "</dl>"


def _list(items: list[str], empty: str) -> str:
    return '<ul class="list">' + ("".join(items) or f'<li class="none">{esc(empty)}</li>') + "</ul>"


def _properties(header: Header) -> list[tuple[str, str]]:
    rows = [
        ("Kind", esc(KIND_LABELS.get(header.kind, header.kind))),
        ("Materialization", f"<code>{esc(header.materialization)}</code>"),
    ]
    if header.unique_key:
        rows.append(("Unique key", f"<code>{esc(', '.join(header.unique_key))}</code>"))
    if header.partition_by:
        rows.append(("Partition by", f"<code>{esc(', '.join(header.partition_by))}</code>"))
    if header.incremental_strategy:
        rows.append(("Strategy", esc(header.incremental_strategy)))
    rows.append(("Owner", esc(header.owner) if header.owner else '<span class="muted">none</span>'))
    if header.dependencies:
        rows.append(("Also after", f"<code>{esc(', '.join(header.dependencies))}</code>"))
    return rows


def _schedule(header: Header) -> list[tuple[str, str]]:
    rows = []
    if header.time_column:
        rows.append(("Time column", f"<code>{esc(header.time_column)}</code>"))
    if header.is_incremental:
        rows.append(("Batch", esc(_BATCH_NAMES.get(header.batch, header.batch))))
    if header.start is not None:
        start = format_instant(header.start)
        rows.append(("Start", esc(start[:10] if start.endswith("T00:00:00Z") else start)))
    if header.lookback:
        rows.append(("Lookback", esc(plural(header.lookback, "batch", "batches"))))
    rows.append(("Cron", f"<code>{esc(header.cron)}</code>" if header.cron else '<span class="muted">none</span>'))
    return rows


def _tests(header: Header) -> str:
    items = []
    for test in header.tests:
        arg = " ".join(highlight_sql(test.arg, lambda _: None)) if test.kind == "custom_sql" else esc(test.arg)
        items.append(
            f'<li><code class="test grow sql">{esc(test.kind)}({arg})</code>'
            f'<span class="pill {test.severity.lower()}">{esc(test.severity.lower())}</span></li>'
        )
    return _list(items, "No quality tests.")


def _contract(header: Header) -> str:
    if not header.contract_columns:
        return _list([], "No columns declared.")
    rows = "".join(
        f"<tr><td><code>{esc(column.name)}</code></td><td><code>{esc(column.type)}</code></td>"
        f'<td class="muted">{"not null" if column.not_null else ""}</td></tr>'
        for column in header.contract_columns
    )
    head = "<thead><tr><th>Column</th><th>Type</th><th></th></tr></thead>"
    return f'<table class="contract">{head}<tbody>{rows}</tbody></table>'


def _links(project: Project, names: tuple[str, ...], empty: str) -> str:
    items = [
        f'<li><i class="dot {kind_class(project[name])}"></i>'
        f'<span class="grow">{model_link(name, sibling(name))}</span></li>'
        for name in names
    ]
    return _list(items, empty)
