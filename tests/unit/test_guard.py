"""The guard for tenant SQL: the allow-lists, scopes, refs, declared sources, tests, and what rendering runs."""

from __future__ import annotations

import hashlib

import pytest
from sqlglot import exp

from shared_core.core.errors import ModelError, UnsafeSqlError
from shared_core.core.project.check import check_sources
from shared_core.core.project.headers import parse_header, parse_instant
from shared_core.core.project.models import ModelSource, load_project
from shared_core.core.sql.allowlist import (
    ALLOWED_ENGINE_FUNCTIONS,
    ALLOWED_FUNCTIONS,
    TABLE_ENGINE_FUNCTIONS,
    TABLE_FUNCTIONS,
)
from shared_core.core.sql.canonical import GUARD_VERSION, analyze_query, content_key
from shared_core.core.sql.render import render_query, render_test_query
from shared_core.ports import InlineAnalyzer

HEAD = "-- name: mart.m\n-- kind: FULL_REFRESH\n"
UPSTREAM = ModelSource("models/raw/a.sql", "-- name: raw.a\n-- kind: FULL_REFRESH\nSELECT 1 AS id\n")


def model(text: str) -> ModelSource:
    return ModelSource("models/m.sql", text)


def test_every_allowed_function_is_a_sqlglot_function_class() -> None:
    for name in ALLOWED_FUNCTIONS:
        assert issubclass(getattr(exp, name), exp.Func), name
    assert not {"Anonymous", "AnonymousAggFunc", "Func", "AggFunc"} & ALLOWED_FUNCTIONS
    assert TABLE_FUNCTIONS <= ALLOWED_FUNCTIONS
    assert TABLE_ENGINE_FUNCTIONS <= ALLOWED_ENGINE_FUNCTIONS


@pytest.mark.parametrize("name", [
    "read_text", "read_blob", "read_csv", "read_csv_auto", "read_parquet", "read_json", "read_json_auto", "glob",
    "getenv", "current_setting", "duckdb_settings", "duckdb_extensions", "pragma_version", "version", "query",
    "query_table", "sniff_csv", "parquet_metadata", "getvariable", "nextval", "currval", "current_user",
    "current_database", "current_schema", "to_file", "http_get", "ai_query", "input_file_name",
])
def test_dangerous_functions_are_refused_wherever_they_stand(name: str) -> None:
    assert name not in ALLOWED_ENGINE_FUNCTIONS
    for sql in (f"SELECT {name}('x') AS v", f"SELECT * FROM {name}('x')", f"SELECT 1 AS v WHERE {name}() IS NULL"):
        with pytest.raises(ModelError):  # refused by the guard, or not even SQL in the Databricks dialect
            analyze_query(HEAD + sql, "models/m.sql")


@pytest.mark.parametrize(
    ("sql", "undeclared"),
    [
        ("WITH a AS (SELECT 1 AS x) SELECT * FROM a", ()),
        ("WITH a AS (SELECT 1 AS x), b AS (SELECT * FROM a) SELECT * FROM b", ()),
        ("WITH b AS (SELECT * FROM a), a AS (SELECT 1 AS x) SELECT * FROM b", ("a",)),  # a later CTE is not in scope
        ("WITH t AS (SELECT * FROM t) SELECT * FROM t", ("t",)),  # not RECURSIVE: the inner t is a table
        ("WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r", ()),
        ("SELECT * FROM (WITH a AS (SELECT 1 AS x) SELECT * FROM a) AS s JOIN a ON true", ("a",)),
        ("SELECT * FROM raw.src AS s WHERE s.id IN (SELECT id FROM raw.other)", ("raw.src", "raw.other")),
        ("SELECT * FROM cat.raw.src", ("cat.raw.src",)),
        ("SELECT * FROM range(3) AS r(x) CROSS JOIN UNNEST(ARRAY(1, 2)) AS u(y)", ()),
        ("SELECT * FROM {{ ref('raw.a') }} AS a JOIN raw.b USING (id)", ("raw.b",)),
    ],
)
def test_relations_that_are_not_refs_or_ctes_in_scope_are_recorded(sql: str, undeclared: tuple[str, ...]) -> None:
    analysis = analyze_query(HEAD + sql, "models/m.sql")
    assert tuple(name for name, _ in analysis.undeclared) == undeclared


def test_declared_sources_are_not_undeclared_and_lines_point_at_the_read() -> None:
    text = HEAD + "-- sources: raw.src\nSELECT *\nFROM raw.src\nJOIN raw.other USING (id)\n"
    assert analyze_query(text, "models/m.sql").undeclared == (("raw.other", 6),)


def test_relations_read_by_custom_sql_tests_count_too() -> None:
    text = HEAD + "-- tests: custom_sql(SELECT * FROM {model} JOIN raw.ids USING (id))\nSELECT 1 AS id\n"
    assert analyze_query(text, "models/m.sql").undeclared == (("raw.ids", 3),)


def test_the_model_token_is_a_relation_only_in_tests() -> None:
    with pytest.raises(UnsafeSqlError, match="names starting with '__il_' are reserved"):
        analyze_query(HEAD + "SELECT * FROM __il_model__", "models/m.sql")


def test_refs_past_the_models_refs_are_refused_when_rendering() -> None:
    text = HEAD + "SELECT * FROM {{ ref('raw.a') }} JOIN __il_ref_1__ USING (id)\n"
    project = load_project([model(text), UPSTREAM])
    with pytest.raises(UnsafeSqlError, match="relation __il_ref_1__ cannot be read"):
        render_query(project["mart.m"], dialect="duckdb")


def test_rendering_refuses_undeclared_relations_and_accepts_declared_ones() -> None:
    undeclared = load_project([model(HEAD + "SELECT *\nFROM raw.src\n")])["mart.m"]
    with pytest.raises(UnsafeSqlError) as caught:
        render_query(undeclared, dialect="duckdb")
    assert str(caught.value) == "models/m.sql:4: undeclared relation raw.src in mart.m; declare it with `-- sources: raw.src`"
    declared = load_project([model(HEAD + "-- sources: raw.src\nSELECT * FROM raw.src -- read it\n")])["mart.m"]
    assert render_query(declared, dialect="duckdb") == "SELECT * FROM raw.src"


def test_custom_sql_tests_are_generated_from_the_tree() -> None:
    text = (HEAD + "-- tests: custom_sql(SELECT * FROM {model} AS m LEFT JOIN {{ ref('raw.a') }} AS a ON m.id = a.id "
            "WHERE a.id IS NULL OR m.note = '{model}' -- ; DROP TABLE x)\nSELECT id, 'x' AS note FROM {{ ref('raw.a') }}\n")
    project = load_project([model(text), UPSTREAM])
    (test,) = project["mart.m"].header.tests
    assert render_test_query(project["mart.m"], test, dialect="duckdb") == (
        "SELECT count(*) FROM (SELECT * FROM mart.m AS m LEFT JOIN raw.a AS a ON m.id = a.id "
        "WHERE a.id IS NULL OR m.note = '{model}') AS __il_test"
    )


def test_custom_sql_tests_bind_the_batch_window_and_need_one() -> None:
    text = (HEAD.replace("FULL_REFRESH", "INCREMENTAL_BY_TIME_RANGE\n-- time_column: d\n-- start: 2024-01-01")
            + "-- tests: custom_sql(SELECT * FROM {model} WHERE d < '{{ start_date }}')\nSELECT CURRENT_DATE AS d\n")
    found = load_project([model(text)])["mart.m"]
    (test,) = found.header.tests
    with pytest.raises(ModelError, match="runs without a batch window"):
        render_test_query(found, test, dialect="duckdb")
    sql = render_test_query(found, test, dialect="duckdb", start=parse_instant("2024-01-02"),
                            end=parse_instant("2024-01-03"))
    assert sql == "SELECT count(*) FROM (SELECT * FROM mart.m WHERE d < '2024-01-02') AS __il_test"


def test_sources_are_metadata_and_never_change_the_content_hash() -> None:
    bare = load_project([model(HEAD + "SELECT * FROM raw.src\n")])["mart.m"]
    declared = load_project([model(HEAD + "-- sources: raw.src, raw.more\nSELECT * FROM raw.src\n")])["mart.m"]
    assert bare.content_hash(analyze_query(bare.text, bare.path)) == declared.content_hash(
        analyze_query(declared.text, declared.path))
    assert declared.header.sources == ("raw.more", "raw.src")
    assert declared.header.meta_fields()["sources"] == "raw.more,raw.src"
    assert "sources" not in declared.header.data_fields()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-- sources: orders", "invalid source 'orders'; write schema.table"),
        ("-- sources: raw.orders, raw/x.csv", "invalid source 'raw/x.csv'"),
        ("-- sources: information_schema.tables", "schema 'information_schema' is reserved"),
        ("-- sources: raw.pg_settings", "'pg_settings' is an engine system table name"),
        ("-- sources: raw.__il_stage_x", "names starting with '__il_' are reserved"),
    ],
)
def test_invalid_sources_are_refused_at_their_line(line: str, message: str) -> None:
    with pytest.raises(ModelError) as caught:
        parse_header(HEAD + line + "\nSELECT 1\n", "models/m.sql")
    assert caught.value.line == 3 and message in str(caught.value)


@pytest.mark.parametrize("name", ["_ironlayer.x", "information_schema.t", "pg_catalog.t", "system.t", "temp.t",
                                  "a.__il_stage_b", "_ironlayer"])
def test_models_cannot_be_named_into_reserved_schemas(name: str) -> None:
    with pytest.raises(ModelError, match=f"model name '{name}' is not allowed"):
        parse_header(f"-- name: {name}\n-- kind: FULL_REFRESH\nSELECT 1\n", "models/m.sql")


def test_a_source_that_is_a_model_must_be_a_ref() -> None:
    text = HEAD + "-- sources: raw.a\nSELECT * FROM raw.a\n"
    with pytest.raises(ModelError) as caught:
        load_project([model(text), UPSTREAM])
    assert str(caught.value) == ("models/m.sql:3: source 'raw.a' is a model of this project; read it with "
                                 "{{ ref('raw.a') }} instead of declaring it")


def test_check_reports_every_undeclared_relation_with_the_fix() -> None:
    files = [
        model(HEAD + "SELECT *\nFROM raw.src JOIN raw.a USING (id)\n"),
        ModelSource("models/n.sql", "-- name: mart.n\n-- kind: FULL_REFRESH\n-- sources: raw.src\nSELECT * FROM raw.src\n"),
        UPSTREAM,
    ]
    project, errors = check_sources(files, InlineAnalyzer())
    assert project is not None
    assert [str(e) for e in errors] == [
        "models/m.sql:4: undeclared relation raw.src in mart.m; declare it with `-- sources: raw.src`",
        "models/m.sql:4: raw.a in mart.m is a model read by its name; read it with {{ ref('raw.a') }}",
    ]


def test_the_guard_version_enters_the_content_key() -> None:
    assert GUARD_VERSION == "g2"
    assert content_key("SELECT 1") == hashlib.sha256(b"v2\0g2\0SELECT 1").hexdigest()


@pytest.mark.parametrize(
    ("sql", "problem", "keyword"),
    [
        ("SELECT * FROM raw.a JOIN raw.b ON", "ON without a join condition", " ON"),
        ("SELECT * FROM raw.a JOIN raw.b ON WHERE x = 1", "ON without a join condition", " ON"),
        ("SELECT * FROM raw.a LEFT JOIN raw.b ON LEFT JOIN raw.c ON a.k = c.k", "ON without a join condition", " ON"),
        ("SELECT * FROM (SELECT * FROM raw.a JOIN raw.b ON) AS x", "ON without a join condition", " ON"),
        ("SELECT * FROM raw.a JOIN raw.b USING", "USING without a parenthesized column list", " USING"),
        ("SELECT x FROM raw.a GROUP BY", "GROUP BY without columns", " GROUP"),
        ("SELECT x FROM raw.a GROUP BY HAVING x > 1", "GROUP BY without columns", " GROUP"),
        ("SELECT sum(x) OVER (PARTITION BY) AS s FROM raw.a", "PARTITION BY without columns", "PARTITION"),
    ],
)
def test_a_dangling_clause_is_a_syntax_error_not_a_cross_join(sql: str, problem: str, keyword: str) -> None:
    """sqlglot reads `JOIN b ON` as `ON TRUE` and drops an empty PARTITION BY; IronLayer refuses both."""
    with pytest.raises(ModelError) as caught:
        analyze_query(HEAD + sql, "models/m.sql")
    col = sql.index(keyword) + 1 + keyword.startswith(" ")  # 1-based, at the keyword's first letter
    assert (caught.value.line, caught.value.col) == (3, col)
    assert f"SQL syntax error: {problem}" in str(caught.value)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM raw.a JOIN raw.b",  # an inner join without condition is every pair of rows, as written
    "SELECT * FROM raw.a CROSS JOIN raw.b",
    "SELECT * FROM raw.a JOIN raw.b ON LEFT(raw.a.k, 1) = raw.b.k",
    "SELECT * FROM raw.a AS semi JOIN raw.b ON semi.k = raw.b.k",
    "SELECT * FROM raw.a JOIN raw.b ON (raw.a.k = raw.b.k) -- ON\nWHERE 1 = 1",
    "SELECT * FROM raw.a JOIN raw.b USING (k)",
    "SELECT k FROM raw.a GROUP BY ALL",
    "SELECT k, sum(x) OVER (PARTITION BY k ORDER BY x) AS s FROM raw.a",
])
def test_complete_clauses_are_accepted(sql: str) -> None:
    assert analyze_query(HEAD + sql, "models/m.sql").canonical
