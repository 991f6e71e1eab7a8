"""Approval pages: the plan's content is all there, everything is escaped, and the form posts what it should."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast

import pytest

from functions.http.approval_page import (
    SECURITY_HEADERS,
    format_sql_for_review,
    render_approval_page,
    render_error_page,
    render_result_page,
    unified_sql_diff,
)
from functions.http.errors import status_of
from shared_core.core.errors import (
    ApprovalError,
    ExpiredTokenError,
    InvalidTokenError,
    ReusedTokenError,
    WrongActionError,
    WrongPlanError,
)
from shared_core.core.planning.plan import ChangeKind, Kind, Materialization, ModelChange, Plan, RunType, Step
from shared_core.core.planning.plan_codec import load_plan
from shared_core.core.project.models import ModelSource, Project, load_project
from shared_core.core.sql.canonical import analyze_query, resolve_canonical
from tests.plans import stub_plan

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden"
SCENARIOS = sorted(p.name for p in GOLDEN.iterdir() if (p / "plan.json").is_file())
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvY3RvIn0.c2ln"
ACTION_URL = "/api/plans/4dc799f753c2/approval"
XSS = "<script>alert(1)</script>"


class Page(HTMLParser):
    """The parts of a page the tests look at: text, tags with attributes, and the form's fields."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.open: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all_text(self) -> str:
        return "".join(self.text)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def load_golden(name: str) -> Plan:
    return load_plan((GOLDEN / name / "plan.json").read_text(), name)


def project(root: Path) -> Project:
    sources = [ModelSource(str(p.relative_to(root)), p.read_text()) for p in sorted(root.rglob("*.sql"))]
    return load_project(sources)


def canonical(proj: Project, name: str) -> str:
    model = proj[name]
    return resolve_canonical(analyze_query(model.text, model.path), model.ref_targets)


def golden_sql_diffs(name: str) -> dict[str, tuple[str, str]]:
    """Old and new canonical SQL, laid out for review, of every modified model of a golden scenario."""
    plan = load_golden(name)
    base, target = project(GOLDEN / name / "base"), project(GOLDEN / name / "target")
    return {
        m.name: (format_sql_for_review(canonical(base, m.name)), format_sql_for_review(canonical(target, m.name)))
        for m in plan.changes("modified")
    }


def render(plan: Plan, **kwargs: Any) -> str:
    args: dict[str, Any] = {"token": TOKEN, "action_url": ACTION_URL, "sql_diffs": {}}
    args.update(kwargs)
    return render_approval_page(plan, **args)


def test_logic_change_page_shows_the_whole_plan() -> None:
    plan = load_golden("logic_change")
    html = render(plan, sql_diffs=golden_sql_diffs("logic_change"), expires_at=datetime(2024, 3, 16, 6, tzinfo=UTC))
    text = Page(html).all_text()
    expected = [
        "Review plan 4dc799f753c2",
        plan.plan_id,
        "17b78e1ff700 → 5ff4fa74ce15",
        "2024-03-15T06:00:00Z",
        "2 modified, 0 added, 0 removed, 0 cosmetic, 0 metadata",
        "7 models to run in 8 steps, 4 waves, 151 batches",
        "Approving runs the 8 steps below",
        "It expires at 2024-03-16 06:00 UTC.",
        "Model changes (2)",
        "~raw.customersmodifiedSQL logic changed",
        "Steps (8)",
        "1raw.customersFULL_REFRESH · TABLEfull refreshwhole tableSQL logic changed",
        "stage.ordersINCREMENTAL_BY_TIME_RANGE · TABLEbackfill[2024-01-01, 2024-03-15)74 days",
        "[2024-03-10, 2024-03-11)1 day",
        "4mart.order_log",
        "upstream changed: stage.customers, stage.orders",
        "SQL changes (2)",
        "--- raw.orders @ 17b78e1ff700",
        "+++ raw.orders @ 5ff4fa74ce15",
        "+WHERE",
        "+  `status` <> 'test'",
        "+  NOT `email` IS NULL",
    ]
    for fragment in expected:
        assert fragment in text, fragment
    assert "SQL not shown" not in text


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_golden_plan_renders(scenario: str) -> None:
    plan = load_golden(scenario)
    html = render(plan)
    page = Page(html)
    text = page.all_text()
    assert html.startswith("<!DOCTYPE html>")
    for model in plan.models:
        assert model.name in text
        assert model.reason in text
    for step in plan.steps:
        assert step.model in text
    rows = 2 if plan.models and plan.steps else 1 if plan.models or plan.steps else 0
    assert len(page.find("tr")) == len(plan.models) + len(plan.steps) + rows
    waves = [int(t) for t in text.split() if t.isdigit()]  # the wave column counts 1..waves among other numbers
    assert plan.summary.waves == 0 or plan.summary.waves in waves
    shown = [m.name for m in plan.models if m.change in ("modified", "added")]
    assert ("SQL not shown for: " + ", ".join(shown)) in text if shown else "SQL not shown" not in text
    assert render(plan) == html  # same inputs, same bytes


@pytest.mark.parametrize(("change", "symbol"), [("added", "+"), ("modified", "~"), ("removed", "-"), ("cosmetic", "=")])
def test_change_symbols(change: ChangeKind, symbol: str) -> None:
    plan = stub_plan(models=[ModelChange("m.x", change, None, None, "r")])
    cells = Page(render(plan)).find("td", title=change)
    assert len(cells) == 1
    assert f'title="{change}">{symbol}</td>' in render(plan)


def test_empty_plan_says_nothing_runs() -> None:
    text = Page(render(load_golden("cosmetic_change"))).all_text()
    assert "This plan has no steps: approving changes nothing in the warehouse." in text
    assert "Nothing to run." in text


def test_added_models_show_their_whole_sql() -> None:
    plan = load_golden("new_incremental_model")
    added = [m.name for m in plan.changes("added")]
    assert added
    target = project(GOLDEN / "new_incremental_model" / "target")
    sql = {name: (None, format_sql_for_review(canonical(target, name))) for name in added}
    page = Page(render(plan, sql_diffs=sql))
    text = page.all_text()
    assert "SQL not shown" not in text and f"SQL changes ({len(added)})" in text
    for name in added:
        for line in sql[name][1].splitlines():
            assert "+" + line in text
    assert text.count("New model: its whole SQL.") == len(added)


def test_tests_and_contract_changes_are_shown_and_need_approval_without_steps() -> None:
    plan = load_golden("cosmetic_change")
    checks = {"m.z": {"tests": ["not_null(id)@BLOCK", "not_null(id)@BLOCK,unique(id)@BLOCK"]},
              "m.a": {"contract": ["", f"STRICT id:INT:NOT_NULL{XSS}"]}}
    html = render(plan, checks=checks)
    text = Page(html).all_text()
    assert "it changes tests or contracts: approving deploys them for the runs to come; nothing is rebuilt now" in text
    assert "Tests and contracts (2)" in text
    assert "m.ztestsnot_null(id)@BLOCKnot_null(id)@BLOCK,unique(id)@BLOCK" in text
    assert f"m.acontract(none)STRICT id:INT:NOT_NULL{XSS}" in text
    assert XSS not in html  # escaped like every other value
    assert "Deciding needs you to be signed in" in text


def test_header_only_change_says_sql_unchanged() -> None:
    plan = load_golden("header_data_change")
    name = plan.changes("modified")[0].name
    text = Page(render(plan, sql_diffs={name: ("SELECT 1", "SELECT 1")})).all_text()
    assert "Canonical SQL unchanged; the change is in the header." in text


def test_diff_only_for_given_models_in_plan_order() -> None:
    plan = load_golden("logic_change")
    diffs = {"zz.extra": ("SELECT 1", "SELECT 2"), "raw.orders": ("SELECT 1", "SELECT 3")}
    text = Page(render(plan, sql_diffs=diffs)).all_text()
    assert text.index("--- raw.orders") < text.index("--- zz.extra")
    assert "SQL not shown for: raw.customers." in text


def test_unified_sql_diff_labels() -> None:
    lines = unified_sql_diff("m.x", "SELECT\n  a\nFROM t", "SELECT\n  a,\n  b\nFROM t", base="1" * 40, target="2" * 40)
    assert lines[:2] == ["--- m.x @ 111111111111", "+++ m.x @ 222222222222"]
    assert lines[3:] == [" SELECT", "-  a", "+  a,", "+  b", " FROM t"]
    assert unified_sql_diff("m.x", "SELECT 1", "SELECT 1") == []


def test_format_sql_for_review_keeps_unparsable_text() -> None:
    assert format_sql_for_review("SELECT (") == "SELECT ("
    assert format_sql_for_review("SELECT 1; SELECT 2") == "SELECT 1; SELECT 2"


# --- escaping ---


def hostile_plan() -> Plan:
    """Markup in every text a plan holds, vocabulary fields included: `load_plan` refuses those, but the page must
    not depend on it (`cast` puts the text where the types allow only the vocabulary)."""
    step = Step(model=XSS, kind=cast(Kind, XSS), materialization=cast(Materialization, XSS),
                run_type=cast(RunType, XSS), start=XSS, end=XSS, batch=cast(Any, XSS), batches=1, reset=False,
                model_hash=XSS, depends_on=(), reason=XSS)
    change = ModelChange(f"m.{XSS}", cast(ChangeKind, 'modified" onmouseover="alert(1)'), None, None, f"because {XSS}")
    return stub_plan('"><script>alert(1)</script>' + "a" * 40, base=XSS, target="<img src=x onerror=alert(1)>",
                     as_of=XSS, models=[change], steps=[step])


def test_everything_is_escaped() -> None:
    html = render(
        hostile_plan(),
        token='"><script>alert(1)</script>',
        action_url='/api/x" onclick="alert(1)',
        sql_diffs={f"m.{XSS}": (f"SELECT '{XSS}'", f"SELECT '</pre>{XSS}'")},
        advice={XSS: [XSS, {XSS: XSS}], "n": 3},
    )
    lowered = html.lower()
    assert "<script" not in lowered
    assert "<img" not in lowered
    assert html.count("<pre") == html.count("</pre>") == 1  # the diff and nothing else
    page = Page(html)
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    text = page.all_text()
    assert f"because {XSS}" in text  # shown to the reviewer as text, not run
    assert f"+SELECT '</pre>{XSS}'" in text
    assert page.find("input", name="token")[0]["value"] == '"><script>alert(1)</script>'
    assert page.find("form")[0]["action"] == '/api/x" onclick="alert(1)'


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "//evil.example/x", "http://evil.example/x", "data:text/html,x"]
)
def test_form_target_must_be_this_site_or_https(url: str) -> None:
    with pytest.raises(ValueError):
        render(load_golden("logic_change"), action_url=url)


def test_script_in_reason_and_sql_is_escaped_exactly() -> None:
    golden = load_golden("logic_change")
    plan = dataclasses.replace(golden, models=(dataclasses.replace(golden.models[0], reason=XSS), *golden.models[1:]))
    html = render(plan, sql_diffs={"raw.orders": ("SELECT 1", f"SELECT '{XSS}'")})
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "+SELECT &#x27;&lt;script&gt;alert(1)&lt;/script&gt;&#x27;" in html
    assert XSS not in html


@pytest.mark.parametrize(
    ("title", "message", "status"),
    [(XSS, XSS, 410), ("ok", f"approved {XSS}", 200)],
)
def test_result_page_escapes(title: str, message: str, status: int) -> None:
    html = render_result_page(title, message, status=status)
    assert "<script" not in html.lower()
    assert message in Page(html).all_text()


# --- the form ---


def test_form_posts_token_and_decision() -> None:
    page = Page(render(load_golden("logic_change")))
    (form,) = page.find("form")
    assert form["method"] == "post"
    assert form["action"] == ACTION_URL
    (token,) = page.find("input", name="token")
    assert token == {"type": "hidden", "name": "token", "value": TOKEN}
    assert [b["value"] for b in page.find("button", name="decision", type="submit")] == ["approve", "reject"]
    (comment,) = page.find("textarea", name="comment")
    assert comment["maxlength"] == "2000"
    assert len(page.find("input")) == 1  # nothing else is posted but the token, the decision and the comment


@pytest.mark.parametrize(
    ("decisions", "buttons"),
    [(("approve", "reject"), ["approve", "reject"]), (("reject",), ["reject"]), (("approve", "drop"), ["approve"])],
)
def test_form_offers_only_granted_decisions(decisions: tuple[str, ...], buttons: list[str]) -> None:
    page = Page(render(load_golden("logic_change"), decisions=decisions))
    assert [b["value"] for b in page.find("button", name="decision")] == buttons


def test_pages_are_self_contained() -> None:
    for html in (render(load_golden("logic_change")), render_result_page("t", "m", status=401)):
        page = Page(html)
        assert not [t for t, a in page.tags if t in ("script", "link", "img", "iframe", "object", "embed")]
        assert "http://" not in html
        assert "https://" not in html
        assert page.find("meta", name="referrer")[0]["content"] == "no-referrer"


# --- result and error pages ---

RESULTS = [
    (200, "Plan approved", False),
    (401, "This approval link is not valid", True),
    (403, "This approval link is for another plan", True),
    (410, "This approval link has expired", True),
]


@pytest.mark.parametrize(("status", "title", "is_error"), RESULTS)
def test_result_pages(status: int, title: str, is_error: bool) -> None:
    text = Page(render_result_page(title, "what happened; what to do", status=status)).all_text()
    assert title in text
    assert str(status) in text
    assert "what happened; what to do" in text
    assert ("Nothing was approved or rejected." in text) is is_error


@pytest.mark.parametrize(
    ("error", "title", "note"),
    [
        (InvalidTokenError("x; ask for a new link"), "This approval link is not valid", "could not be verified"),
        (ExpiredTokenError("x; ask for a new link"), "This approval link has expired", "can no longer be used"),
        (ReusedTokenError("x; see the status"), "This approval link was already used", "can no longer be used"),
        (WrongPlanError("x; open the link"), "This approval link is for another plan", "does not grant this"),
        (WrongActionError("x; ask"), "This approval link does not allow that decision", "does not grant this"),
        (ApprovalError("decision 'x' is unknown"), "This approval request failed", "malformed"),
    ],
)
def test_error_pages(error: ApprovalError, title: str, note: str) -> None:
    html = render_error_page(error)
    text = Page(html).all_text()
    assert f"<title>{title} · IronLayer</title>" in html
    assert str(status_of(error)) in text
    assert str(error)[:1].upper() + str(error)[1:] in text  # shown as a sentence
    assert note in text
    assert "Nothing was approved or rejected." in text


def test_security_headers() -> None:
    csp = {d.split()[0]: d.split(None, 1)[1] for d in SECURITY_HEADERS["Content-Security-Policy"].split("; ")}
    assert csp["default-src"] == "'none'"
    assert csp["style-src"] == "'unsafe-inline'"
    assert csp["form-action"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"
    assert SECURITY_HEADERS["Referrer-Policy"] == "no-referrer"
    assert SECURITY_HEADERS["Cache-Control"] == "no-store"


# --- advice ---


def test_advice_is_shown_as_given_and_marked_advisory() -> None:
    advice = {"summary": "Backfill is large", "risks": ["long run", "cost"], "cost": {"dbu": 12.5}}
    text = Page(render(load_golden("logic_change"), advice=advice)).all_text()
    for fragment in ("Advice", "not part of it", "Backfill is large", "long run", "cost", "dbu", "12.5"):
        assert fragment in text
    assert "Advice" not in Page(render(load_golden("logic_change"))).all_text()
