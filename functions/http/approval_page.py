"""The approval link's HTML pages: the plan to review with its decision form, and the outcome or error pages.

Pure functions from values to one self-contained HTML string: no JavaScript, no external assets, one
small inline style sheet. Every value that comes from a plan, a model, advice, a token or an error
message is passed through `html.escape`, so a model name, reason or SQL text can never inject markup.
The handler sends each page with `SECURITY_HEADERS`, whose CSP allows nothing but the inline style and
form posts to the same origin.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape

from shared_core.core.errors import (
    ApprovalError,
    ExpiredTokenError,
    InvalidTokenError,
    ReusedTokenError,
    WrongActionError,
    WrongPlanError,
)
from shared_core.core.planning.plan import ModelChange, Plan, Step

SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
CONTENT_TYPE = "text/html; charset=utf-8"

_SYMBOLS = {"added": "+", "modified": "~", "removed": "-", "cosmetic": "=", "metadata": "="}
_RUN_TYPES = {"full_refresh": "full refresh", "merge": "merge", "backfill": "backfill", "incremental": "incremental"}
_ERROR_TITLES: Sequence[tuple[type[ApprovalError], str]] = (
    (InvalidTokenError, "This approval link is not valid"),
    (ExpiredTokenError, "This approval link has expired"),
    (ReusedTokenError, "This approval link was already used"),
    (WrongPlanError, "This approval link is for another plan"),
    (WrongActionError, "This approval link does not allow that decision"),
)
_STATUS_NOTES = {
    400: "The request was incomplete or malformed.",
    401: "The link could not be verified (it may be cut short, altered, or not an IronLayer approval link), "
         "or you are not signed in.",
    403: "The link is genuine, but it does not grant this, or you may not decide this plan.",
    404: "There is no such plan, or it is not visible to this link.",
    409: "The plan was already decided, is no longer waiting for approval, or is stale.",
    410: "The link can no longer be used.",
    503: "IronLayer could not complete the decision right now; the link still works. Try again in a minute.",
}

_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--add:#dafbe1;--del:#ffebe9;--hunk:#ddf4ff}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:var(--fg);background:#fff}
main{max-width:1100px;margin:0 auto;padding:24px 24px 48px}
h1{font-size:24px;margin:4px 0 4px}
h2{font-size:18px;margin:32px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h1 code{font-size:22px}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
.brand{margin:0;color:var(--muted);font-weight:600;letter-spacing:.04em;text-transform:uppercase;font-size:12px}
.muted{color:var(--muted)}.small{font-size:13px}.pad{padding:0 12px}
.note{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:10px 14px;margin:16px 0}
.note p{margin:4px 0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:16px 0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0}dl.facts p{margin:0}dl.facts ul{margin:0;padding-left:20px}
table{border-collapse:collapse;width:100%;margin:8px 0}
th,td{text-align:left;vertical-align:top;padding:6px 10px;border-bottom:1px solid var(--line)}
th{background:var(--bg);font-weight:600;font-size:13px}
td.sym{font:600 15px ui-monospace,Menlo,Consolas,monospace;width:2em;text-align:center}
.sym-added{color:#1a7f37}.sym-modified{color:#9a6700}.sym-removed{color:#cf222e}.sym-cosmetic,.sym-metadata{color:#59636e}
tr.wave-start td{border-top:2px solid var(--line)}
details{border:1px solid var(--line);border-radius:6px;margin:10px 0}
summary{padding:8px 12px;background:var(--bg);cursor:pointer;font-weight:600}
pre{margin:0;padding:8px 0;overflow-x:auto}
pre.diff span{display:block;padding:0 12px;white-space:pre-wrap;word-break:break-word}
pre.diff .add{background:var(--add)}pre.diff .del{background:var(--del)}
pre.diff .hunk{background:var(--hunk);color:var(--muted)}pre.diff .file{color:var(--muted);font-weight:600}
form{margin-top:32px;padding:16px;border:1px solid var(--line);border-radius:6px;background:var(--bg)}
label{display:block;font-weight:600;margin-bottom:4px}
textarea{width:100%;min-height:72px;font:inherit;padding:6px 8px;border:1px solid var(--line);border-radius:6px}
.buttons{display:flex;gap:12px;margin-top:12px}
button{font-family:inherit;font-size:15px;font-weight:600;
  padding:10px 22px;border-radius:6px;border:1px solid transparent;cursor:pointer}
button.approve{background:#1f883d;color:#fff}button.reject{background:#fff;color:#cf222e;border-color:#cf222e}
.status{display:inline-block;font:600 13px ui-monospace,Menlo,Consolas,monospace;padding:2px 8px;border-radius:12px}
.status.ok{background:var(--add);color:#1a7f37}.status.err{background:var(--del);color:#cf222e}
"""


def render_approval_page(
    plan: Plan,
    *,
    token: str,
    action_url: str,
    sql_diffs: Mapping[str, tuple[str | None, str]],
    checks: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
    advice: Mapping[str, object] | None = None,
    decisions: Sequence[str] = ("approve", "reject"),
    expires_at: datetime | None = None,
) -> str:
    """The page a reviewer reads before deciding: summary, model changes, steps, tests and contracts, SQL, the form.

    Args:
        plan: the plan (as `load_plan` returns it).
        token: the approval token, posted back in a hidden field with the chosen decision.
        action_url: where the form posts (same origin; the CSP's `form-action 'self'` enforces it).
        sql_diffs: model name -> (old SQL, new SQL) for the models whose SQL to show: the modified ones
            (as a diff) and the added ones (old None: the whole SQL); pass readable text (see
            `format_sql_for_review`). Models are shown in the plan's order, any others after them by name.
        checks: model name -> {"tests" and/or "contract": [old, new]}: the quality tests and contracts that
            change (they change what runs, so they need approval even when nothing is rebuilt).
        advice: optional advisory notes stored beside the plan; shown as given, marked as not binding.
        decisions: the buttons to offer: the decisions the token grants (`ApprovalClaims.permits`).
        expires_at: when the link expires, to tell the reviewer.

    Returns:
        A complete HTML document.

    Raises:
        ValueError: `action_url` is neither a same-site path (`/...`) nor an `https://` URL.
    """
    if not (action_url.startswith("/") and not action_url.startswith("//")) and not action_url.startswith("https://"):
        raise ValueError(f"action_url {action_url[:80]!r} must be a path on this site or an https:// URL")
    plan_id = plan.plan_id
    short = plan_id[:12]
    parts = [
        '<header><p class="brand">IronLayer</p>',
        f"<h1>Review plan <code>{_e(short)}</code></h1>",
        f'<p class="muted mono small">{_e(plan_id)}</p></header>',
        _render_facts(plan),
        _render_intro(plan, expires_at, bool(checks)),
        _render_models(plan.models),
        _render_steps(plan.steps),
        _render_checks(plan, checks or {}),
        _render_sql(plan, sql_diffs),
    ]
    if advice:
        parts.append(_render_advice(advice))
    parts.append(_render_form(token=token, action_url=action_url, decisions=decisions))
    return _document(f"Review plan {short}", "".join(parts))


def render_result_page(title: str, message: str, *, status: int) -> str:
    """A page for an outcome (2xx) or an error (4xx/5xx): what happened, and what to do next.

    >>> "&lt;b&gt;" in render_result_page("Oops", "<b>", status=410)
    True
    """
    ok = 200 <= status < 300
    badge = f'<span class="status {"ok" if ok else "err"}">{_e(status)}</span>'
    parts = [
        '<header><p class="brand">IronLayer</p>',
        f"<h1>{_e(title)}</h1></header>",
        f"<p>{badge}</p>",
        f"<p>{_e(message)}</p>",
    ]
    if not ok:
        note = _STATUS_NOTES.get(status, "The request could not be completed.")
        parts.append(f'<div class="note"><p>{_e(note)}</p><p><strong>Nothing was approved or rejected.</strong></p>')
        parts.append("</div>")
    return _document(title, "".join(parts))


def render_error_page(error: ApprovalError) -> str:
    """The page for an approval error: a title for its kind, its message, and its status (`errors.status_of`).

    >>> from shared_core.core.errors import ExpiredTokenError
    >>> "has expired" in render_error_page(ExpiredTokenError("expired at X; ask for a new link"))
    True
    """
    from functions.http.errors import status_of

    title = next((text for kind, text in _ERROR_TITLES if isinstance(error, kind)), "This approval request failed")
    message = str(error)
    return render_result_page(title, message[:1].upper() + message[1:], status=status_of(error))


def unified_sql_diff(name: str, old: str, new: str, *, base: str = "", target: str = "") -> list[str]:
    """The unified diff of two SQL texts, line by line, labelled with the model and the commits.

    >>> unified_sql_diff("m", "SELECT 1", "SELECT 2")[2:]
    ['@@ -1 +1 @@', '-SELECT 1', '+SELECT 2']
    """
    return list(
        difflib.unified_diff(
            old.splitlines(),
            new.splitlines(),
            fromfile=f"{name} @ {base[:12]}" if base else f"{name} (old)",
            tofile=f"{name} @ {target[:12]}" if target else f"{name} (new)",
            lineterm="",
        )
    )


def format_sql_for_review(sql: str, *, dialect: str = "databricks") -> str:
    """Canonical SQL (one line) laid out one clause per line, so a line diff shows what changed.

    Imports sqlglot lazily; text that does not parse is returned unchanged.

    >>> print(format_sql_for_review("SELECT `a`, `b` FROM `t` WHERE `a` > 1"))
    SELECT
      `a`,
      `b`
    FROM `t`
    WHERE
      `a` > 1
    """
    import sqlglot
    from sqlglot.errors import SqlglotError

    try:
        trees = sqlglot.parse(sql, read=dialect)
    except SqlglotError:
        return sql
    if len(trees) != 1 or trees[0] is None:
        return sql
    return trees[0].sql(dialect=dialect, pretty=True, comments=False)


def _render_facts(plan: Plan) -> str:
    summary = plan.summary
    counts = summary.to_dict()
    base, target = plan.base, plan.target
    changes = ", ".join(
        f"{counts[kind]} {kind}" for kind in ("modified", "added", "removed", "cosmetic", "metadata")
    )
    work = (
        f"{summary.models_to_run} models to run in {summary.steps} steps, "
        f"{summary.waves} waves, {summary.batches} batches"
    )
    rows = [
        (
            "Base → target",
            f'<code title="{_e(base)}">{_e(base[:12])}</code> → <code title="{_e(target)}">{_e(target[:12])}</code>',
        ),
        ("As of", f"<code>{_e(plan.as_of)}</code>"),
        ("Models", _e(changes)),
        ("Work", _e(work)),
    ]
    return '<dl class="facts">' + "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows) + "</dl>"


def _render_intro(plan: Plan, expires_at: datetime | None, checks_changed: bool) -> str:
    steps = plan.steps
    if steps:
        what = f"Approving runs the {len(steps)} steps below against the warehouse."
    elif checks_changed:
        what = ("This plan has no steps, but it changes tests or contracts: approving deploys them for the runs "
                "to come; nothing is rebuilt now.")
    else:
        what = "This plan has no steps: approving changes nothing in the warehouse."
    when = f" It expires at {expires_at.strftime('%Y-%m-%d %H:%M UTC')}." if expires_at is not None else ""
    return (
        f'<div class="note"><p>{_e(what)} Read the plan, then approve or reject it at the bottom of this page.</p>'
        f'<p class="small muted">This link decides once: after you approve or reject, it no longer works.'
        f"{_e(when)} Deciding needs you to be signed in, as an identity this tenant registered with the operator "
        "role or higher; the link alone only shows the plan.</p></div>"
    )


def _render_models(models: Sequence[ModelChange]) -> str:
    if not models:
        return '<h2>Model changes</h2><p class="muted">No model changed.</p>'
    rows = []
    for model in models:
        change = model.change
        rows.append(
            f'<tr><td class="sym sym-{_e(change)}" title="{_e(change)}">{_e(_SYMBOLS.get(change, "?"))}</td>'
            f'<td class="mono">{_e(model.name)}</td><td>{_e(change)}</td>'
            f"<td>{_e(model.reason)}</td></tr>"
        )
    head = "<tr><th></th><th>Model</th><th>Change</th><th>Reason</th></tr>"
    return f"<h2>Model changes ({len(models)})</h2><table>{head}{''.join(rows)}</table>"


def _render_steps(steps: Sequence[Step]) -> str:
    if not steps:
        return '<h2>Steps</h2><p class="muted">Nothing to run.</p>'
    rows = []
    previous: int | None = None
    for step in steps:
        wave = step.parallel_group
        first = wave != previous
        previous = wave
        wave_cell = f"{_e(wave + 1)}" if first else ""
        run = _RUN_TYPES.get(step.run_type, step.run_type)
        if step.reset:
            run += " (from empty)"
        rows.append(
            f'<tr class="{"wave-start" if first else ""}"><td>{wave_cell}</td>'
            f'<td><span class="mono">{_e(step.model)}</span><br>'
            f'<span class="small muted">{_e(step.kind)} · {_e(step.materialization)}</span></td>'
            f"<td>{_e(run)}</td><td>{_render_range(step)}</td><td>{_e(step.reason)}</td></tr>"
        )
    head = "<tr><th>Wave</th><th>Model</th><th>Run</th><th>Range</th><th>Reason</th></tr>"
    note = (
        '<p class="small muted">Steps in one wave run in parallel; a wave starts when the one before it succeeded.</p>'
    )
    return f"<h2>Steps ({len(steps)})</h2>{note}<table>{head}{''.join(rows)}</table>"


def _render_range(step: Step) -> str:
    start, end = step.start, step.end
    if start is None or end is None:
        return '<span class="muted">whole table</span>'
    batch = step.batch or ""
    batches = step.batches
    unit = f"{batch}{'' if batches == 1 else 's'}" if batch else "batches"
    return (
        f'<span class="mono">[{_e(_instant(start, batch))}, {_e(_instant(end, batch))})</span><br>'
        f'<span class="small muted">{_e(batches)} {_e(unit)}</span>'
    )


def _instant(text: str, batch: str) -> str:
    """Midnight instants of day or month batches read better as plain dates."""
    return text[:10] if batch != "hour" and text.endswith("T00:00:00Z") else text


def _render_checks(plan: Plan, checks: Mapping[str, Mapping[str, Sequence[str]]]) -> str:
    if not checks:
        return ""
    order = [m.name for m in plan.models if m.name in checks]
    order += sorted(name for name in checks if name not in order)
    rows = []
    for name in order:
        for part in ("tests", "contract"):
            if part in checks[name]:
                old, new = checks[name][part]
                rows.append(f'<tr><td class="mono">{_e(name)}</td><td>{_e(part)}</td>'
                            f'<td class="mono">{_e(old) if old else _NONE}</td>'
                            f'<td class="mono">{_e(new) if new else _NONE}</td></tr>')
    head = "<tr><th>Model</th><th>What</th><th>Before</th><th>After</th></tr>"
    note = ('<p class="small muted">Quality tests and contracts decide what runs and what is published; they need '
            "approval like a SQL change, even when no model is rebuilt.</p>")
    return f"<h2>Tests and contracts ({len(order)})</h2>{note}<table>{head}{''.join(rows)}</table>"


_NONE = '<span class="muted">(none)</span>'


def _render_sql(plan: Plan, sql_diffs: Mapping[str, tuple[str | None, str]]) -> str:
    models = plan.models
    order = [m.name for m in models if m.name in sql_diffs]
    order += sorted(name for name in sql_diffs if name not in order)
    missing = [m.name for m in models if m.change in ("modified", "added") and m.name not in sql_diffs]
    if not order and not missing:
        return ""
    base, target = plan.base, plan.target
    parts = [f"<h2>SQL changes ({len(order)})</h2>"]
    for name in order:
        old, new = sql_diffs[name]
        if old is None:
            body = (f'<p class="small muted pad">New model: its whole SQL.</p><pre class="diff">'
                    f'{"".join(_diff_line("+" + line) for line in new.splitlines())}</pre>')
        elif lines := unified_sql_diff(name, old, new, base=base, target=target):
            body = '<pre class="diff">' + "".join(_diff_line(line) for line in lines) + "</pre>"
        else:
            body = '<p class="small muted pad">Canonical SQL unchanged; the change is in the header.</p>'
        parts.append(f'<details open><summary class="mono">{_e(name)}</summary>{body}</details>')
    if missing:
        parts.append(f'<p class="small muted">SQL not shown for: {_e(", ".join(missing))}.</p>')
    return "".join(parts)


def _diff_line(line: str) -> str:
    if line.startswith(("---", "+++")):
        kind = "file"
    elif line.startswith("@@"):
        kind = "hunk"
    elif line.startswith("+"):
        kind = "add"
    elif line.startswith("-"):
        kind = "del"
    else:
        kind = "ctx"
    return f'<span class="{kind}">{_e(line) or " "}</span>'


def _render_advice(advice: Mapping[str, object]) -> str:
    return (
        '<h2>Advice</h2><p class="small muted">Advisory notes stored beside the plan; they are not part of it '
        f"and do not change what runs.</p>{_render_value(advice, 0)}"
    )


def _render_value(value: object, depth: int) -> str:
    if value is None or isinstance(value, str | int | float | bool):
        return f"<p>{_e(value)}</p>"
    if depth < 3 and isinstance(value, Mapping):
        items = "".join(f"<dt>{_e(key)}</dt><dd>{_render_value(item, depth + 1)}</dd>" for key, item in value.items())
        return f'<dl class="facts">{items}</dl>'
    if depth < 3 and isinstance(value, list | tuple):
        return "<ul>" + "".join(f"<li>{_render_value(item, depth + 1)}</li>" for item in value) + "</ul>"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return f"<pre>{_e(text)}</pre>"


def _render_form(*, token: str, action_url: str, decisions: Sequence[str]) -> str:
    buttons = "".join(
        f'<button type="submit" class="{_e(decision)}" name="decision" value="{_e(decision)}">'
        f"{_e(decision.capitalize())}</button>"
        for decision in decisions
        if decision in ("approve", "reject")
    )
    return (
        f'<form method="post" action="{_e(action_url)}" autocomplete="off">'
        f'<input type="hidden" name="token" value="{_e(token)}">'
        '<label for="comment">Comment (optional)</label>'
        '<textarea id="comment" name="comment" maxlength="2000" '
        'placeholder="Why you approve or reject"></textarea>'
        f'<div class="buttons">{buttons}</div></form>'
    )


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_e(title)} · IronLayer</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _e(value: object) -> str:
    return escape(str(value), quote=True)
