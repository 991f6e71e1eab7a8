"""Template expressions: refs, placeholders and what is refused."""

from __future__ import annotations

import pytest

from shared_core.core.errors import ModelError
from shared_core.core.project.templating import bind_model_token, render_template, string_spans


def test_refs_are_numbered_by_first_appearance_and_deduplicated() -> None:
    template = render_template(
        'SELECT * FROM {{ref("B.Y")}} JOIN {{ ref( \'a.x\' ) }}\nJOIN {{ ref("b.y") }}', "m.sql"
    )
    assert template.refs == ("b.y", "a.x")
    assert template.ref_lines == (1, 1)
    assert template.rendered == "SELECT * FROM __il_ref_0__ JOIN __il_ref_1__\nJOIN __il_ref_0__"


def test_placeholders() -> None:
    template = render_template("WHERE d >= '{{ start_date }}' AND d < '{{end_date}}'", "m.sql")
    assert template.placeholders == ("end_date", "start_date")
    assert template.rendered == "WHERE d >= '__il_start_date__' AND d < '__il_end_date__'"


@pytest.mark.parametrize(
    ("text", "message", "line", "col"),
    [
        ("SELECT 1\nFROM {{ source('x') }}", "unknown template expression '{{ source('x') }}'", 2, 6),
        ("{% if x %}SELECT 1{% endif %}", "Jinja blocks and comments", 1, 1),
        ("SELECT {# note #} 1", "Jinja blocks and comments", 1, 8),
        ("SELECT * FROM {{ ref('a b') }}", "invalid model name 'a b' in ref()", 1, 15),
        ("SELECT {{ var('x') }}", "unknown template expression", 1, 8),
    ],
)
def test_unsupported_expressions_are_refused(text: str, message: str, line: int, col: int) -> None:
    with pytest.raises(ModelError) as caught:
        render_template(text, "models/m.sql")
    assert message in str(caught.value)
    assert (caught.value.line, caught.value.col) == (line, col)


@pytest.mark.parametrize(
    "text",
    [
        "SELECT '{%' AS a, \"{# x #}\" AS b, '{{ nope }}' AS c, 'it''s {%' AS d",
        "SELECT s FROM t WHERE s LIKE '{{%' OR s LIKE '%}}'",
        "-- tests: custom_sql(SELECT * FROM {model} WHERE s LIKE '{%')\nSELECT 1 AS s",
        "SELECT 'a\\'{%' AS escaped",
    ],
)
def test_braces_inside_strings_are_text(text: str) -> None:
    template = render_template(text, "m.sql")
    assert template.rendered == text
    assert template.refs == () and template.placeholders == ()


def test_expressions_inside_strings_are_still_replaced_next_to_literal_braces() -> None:
    template = render_template("WHERE x = '{{%' || '{{ start_date }}' -- don't {{ ref('a.b') }}", "m.sql")
    assert template.rendered == "WHERE x = '{{%' || '__il_start_date__' -- don't __il_ref_0__"
    assert template.refs == ("a.b",) and template.placeholders == ("start_date",)


@pytest.mark.parametrize(
    ("text", "col"),
    [("SELECT '{%' AS a, {% raw %}", 19), ("SELECT `{%}` AS a", 9), ("SELECT 1 /* a */ {# b #}", 18)],
)
def test_blocks_outside_strings_and_comments_even_in_identifiers_are_refused(text: str, col: int) -> None:
    with pytest.raises(ModelError, match="Jinja blocks") as caught:
        render_template(text, "m.sql")
    assert caught.value.col == col


@pytest.mark.parametrize(
    "text",
    [
        "-- note {% x %}\nSELECT 1",
        "SELECT 1 /* {{ config(materialized='table') }} {# old #} */",
        "SELECT a -- {% if var('x') %} was removed\nFROM t",
        "-- name: a.b\n-- description: renders {{ whatever }} in {% docs %}\nSELECT 1",
    ],
)
def test_template_markers_in_comments_are_text(text: str) -> None:
    """A comment never runs: a Jinja block or an unknown expression inside one is text, as in a string."""
    template = render_template(text, "m.sql")
    assert template.rendered == text and template.refs == () and template.placeholders == ()


def test_model_token_is_bound_only_outside_strings_identifiers_and_comments() -> None:
    sql = "SELECT '{model}', `{model}` FROM {model} JOIN {model} AS x /* {model} */ -- {model}"
    assert bind_model_token(sql) == (
        "SELECT '{model}', `{model}` FROM __il_model__ JOIN __il_model__ AS x /* {model} */ -- {model}"
    )


def test_string_spans_cover_code_strings_and_strings_closed_within_a_comment_line() -> None:
    text = "SELECT 'a', \"b\" -- it's open\n/* 'c' */ SELECT 'd'"
    assert [text[start:end] for start, end in string_spans(text)] == ["'a'", '"b"', "'d'"]
