"""Template expressions: refs, placeholders and what is refused."""

from __future__ import annotations

import pytest

from shared_core.core.errors import ModelError
from shared_core.core.project.templating import render_template


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
