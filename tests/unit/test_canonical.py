"""Canonicalization (v2) and the safety guard: pinned canonical strings, change classes and rejected statements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlglot

from shared_core.core.errors import ModelError, UnsafeSqlError
from shared_core.core.planning.diff import diff_projects
from shared_core.core.project.models import ModelSource, load_project
from shared_core.core.project.templating import render_template
from shared_core.core.sql.analysis import InlineAnalyzer
from shared_core.core.sql.canonical import (
    CANONICALIZER_VERSION,
    analyze_query,
    canonical_sql,
    canonicalize,
    canonicalize_tree,
    content_key,
    parse_query,
    resolve_canonical,
    settle,
)
from shared_core.core.sql.normalize import normalize_tree

FIXTURES = Path(__file__).parents[1] / "fixtures"
CASES = json.loads((FIXTURES / "canonical_v2.json").read_text("utf-8"))
V1_CASES = json.loads((FIXTURES / "canonical_v1.json").read_text("utf-8"))  # the record of v1, never edited
PAIRS = json.loads((FIXTURES / "change_classification.json").read_text("utf-8"))


def _canonical(sql: str) -> str:
    """The canonicalizer alone, without the guard's function and relation rules."""
    return canonicalize(render_template(sql, "m.sql").rendered, "m.sql")


@pytest.mark.parametrize("case", CASES, ids=[c["why"] for c in CASES])
def test_canonical_form_is_pinned(case: dict[str, str]) -> None:
    if case.get("guard") == "refused":  # user-defined functions: one form, but `analyze_query` refuses the model
        with pytest.raises(UnsafeSqlError, match="is not allowed"):
            analyze_query(case["sql"], "m.sql")
    else:
        assert analyze_query(case["sql"], "m.sql").canonical == case["canonical"]
    assert _canonical(case["sql"]) == case["canonical"]


@pytest.mark.parametrize("case", CASES, ids=[c["why"] for c in CASES])
def test_canonical_form_is_a_fixed_point(case: dict[str, str]) -> None:
    once = _canonical(case["sql"])
    assert _canonical(once) == once
    if case.get("guard") != "refused":
        assert analyze_query(once, "m.sql").canonical == once


@pytest.mark.parametrize("case", CASES, ids=[c["why"] for c in CASES])
def test_sqlglot_printed_forms_canonicalize_equal(case: dict[str, str]) -> None:
    rendered = render_template(case["sql"], "m.sql").rendered
    for pretty in (False, True):
        printed = sqlglot.transpile(rendered, read="databricks", write="databricks", pretty=pretty)[0]
        assert _canonical(printed) == case["canonical"], printed


def _fixture_queries() -> list[str]:
    sqls = [case["sql"] for case in CASES] + [pair[key] for pair in PAIRS for key in ("old", "new")]
    return [render_template(sql, "m.sql").rendered for sql in sqls]


def test_the_round_trip_stable_classes_need_no_settling() -> None:
    """A query of `ROUND_TRIP_STABLE` classes only is not parsed a second time: settling must change nothing."""
    skipped = 0
    for sql in _fixture_queries():
        tree = parse_query(sql, "m.sql")
        stable = normalize_tree(tree)
        text = canonical_sql(tree)
        if stable:
            skipped += 1
            assert settle(text) == text, sql
        assert canonicalize(sql) == settle(text)
    assert skipped > len(_fixture_queries()) // 2  # most queries skip the second parse


def test_every_v1_case_is_carried_into_v2_and_every_change_is_explained() -> None:
    by_sql = {case["sql"]: case for case in CASES}
    for old in V1_CASES:
        new = by_sql[old["sql"]]
        assert (new["canonical"] != old["canonical"]) == ("changed_from_v1" in new), old["why"]
    assert [c["why"] for c in CASES if "changed_from_v1" in c] == [
        "a column aliased to its own lower-case name; an alias in another case is kept",
    ]


@pytest.mark.parametrize("pair", PAIRS, ids=[p["why"] for p in PAIRS])
def test_change_classification(pair: dict[str, str]) -> None:
    header = "-- name: s.m\n-- kind: FULL_REFRESH\n"
    base = load_project([ModelSource("models/m.sql", header + pair["old"])])
    target = load_project([ModelSource("models/m.sql", header + pair["new"])])
    changes, _ = diff_projects(base, target, InlineAnalyzer())
    assert [(c.name, c.change) for c in changes] == [("s.m", pair["change"])]


def test_the_pairs_cover_both_classes_and_the_issue_cases() -> None:
    assert {p["change"] for p in PAIRS} == {"modified", "cosmetic"}
    modified = " ".join(p["old"] for p in PAIRS if p["change"] == "modified")
    for needle in ("named_struct('OrderId'", "struct(1 AS Key)", "to_json(struct(*))", "map('Key'"):
        assert needle in modified


def test_canonical_sql_prints_a_normalized_tree() -> None:
    tree = parse_query("select A AS Key from T", "m.sql")
    canonicalize_tree(tree)
    assert canonical_sql(tree) == "SELECT `a` AS `Key` FROM `t`"


def test_version_is_v2_and_enters_the_content_key() -> None:
    assert CANONICALIZER_VERSION == "v2"
    assert content_key("SELECT 1") != content_key("SELECT 1 ")
    assert content_key("SELECT 1") == content_key("SELECT 1")


def test_refs_and_placeholders_are_reported() -> None:
    analysis = analyze_query(
        "SELECT * FROM {{ ref('b.y') }} JOIN {{ ref('a.x') }} USING (k) JOIN {{ ref('b.y') }} z USING (k) "
        "WHERE d < '{{ end_date }}'",
        "m.sql",
    )
    assert analysis.refs == ("b.y", "a.x")
    assert analysis.placeholders == ("end_date",)
    assert resolve_canonical(analysis, ("s.b_y", "s.a_x")).startswith("SELECT * FROM `s`.`b_y` JOIN `s`.`a_x`")


@pytest.mark.parametrize(
    ("sql", "keyword", "line"),
    [
        ("DROP TABLE sales.orders", "DROP", 1),
        ("TRUNCATE TABLE t", "TRUNCATE", 1),
        ("DELETE FROM t WHERE 1 = 1", "DELETE", 1),
        ("ALTER TABLE t ADD COLUMN c INT", "ALTER", 1),
        ("GRANT SELECT ON t TO analysts", "GRANT", 1),
        ("REVOKE SELECT ON t FROM analysts", "REVOKE", 1),
        ("INSERT INTO t SELECT 1", "INSERT", 1),
        ("UPDATE t SET a = 1", "UPDATE", 1),
        ("MERGE INTO t USING s ON t.k = s.k WHEN MATCHED THEN DELETE", "MERGE", 1),
        ("CREATE TABLE t AS SELECT 1", "CREATE", 1),
        ("-- name: a.b\n-- kind: FULL_REFRESH\nSELECT 1;\n\nDROP TABLE x", "DROP", 5),
    ],
)
def test_unsafe_statements_are_rejected_with_their_line(sql: str, keyword: str, line: int) -> None:
    with pytest.raises(UnsafeSqlError) as caught:
        analyze_query(sql, "models/m.sql")
    assert caught.value.line == line
    assert f"models/m.sql:{line}: {keyword} statement is not allowed" in str(caught.value)


def test_two_selects_are_rejected_at_the_second() -> None:
    with pytest.raises(UnsafeSqlError) as caught:
        analyze_query("SELECT 1;\nSELECT 2", "m.sql")
    assert str(caught.value) == "m.sql:2: 2 statements found; a model is exactly one SELECT query (remove the extra ';')"


def test_empty_body_is_rejected() -> None:
    with pytest.raises(UnsafeSqlError, match="has no SQL query"):
        analyze_query("-- name: a.b\n-- kind: FULL_REFRESH\n", "m.sql")


def test_parse_error_names_file_line_and_column() -> None:
    with pytest.raises(ModelError) as caught:
        analyze_query("-- name: a.b\n-- kind: FULL_REFRESH\nSELECT a\nFROM WHERE x", "models/m.sql")
    assert caught.value.line == 4
    assert caught.value.col > 0
    assert str(caught.value).startswith(f"models/m.sql:4:{caught.value.col}: SQL syntax error")
    assert "WHERE" in str(caught.value)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("SELECT a FROM t WHERE x = 1", "SELECT a FROM t WHERE x = 2"),
        ("SELECT a FROM t", "SELECT b FROM t"),
        ("SELECT a FROM t WHERE s = 'x'", "SELECT a FROM t WHERE s = 'X'"),
        ("SELECT a FROM t JOIN u ON t.k = u.k", "SELECT a FROM t LEFT JOIN u ON t.k = u.k"),
        ("SELECT (a + b) * c FROM t", "SELECT a + b * c FROM t"),
        ("SELECT a AS x FROM t", "SELECT a AS y FROM t"),
    ],
)
def test_logic_changes_change_the_canonical_form(left: str, right: str) -> None:
    assert analyze_query(left, "m.sql").canonical != analyze_query(right, "m.sql").canonical


def test_a_ref_aliased_to_its_own_name_resolves_like_the_bare_ref() -> None:
    aliased = analyze_query("SELECT orders.id FROM {{ ref('sales.orders') }} AS orders", "m.sql")
    bare = analyze_query("SELECT orders.id FROM {{ ref('orders') }}", "m.sql")
    other = analyze_query("SELECT o.id FROM {{ ref('sales.orders') }} AS o", "m.sql")
    assert resolve_canonical(aliased, ("sales.orders",)) == resolve_canonical(bare, ("sales.orders",))
    assert resolve_canonical(aliased, ("sales.orders",)) == "SELECT `orders`.`id` FROM `sales`.`orders`"
    assert resolve_canonical(other, ("sales.orders",)).endswith("FROM `sales`.`orders` AS `o`")
