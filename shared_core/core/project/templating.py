"""Find and replace the `{{ ... }}` expressions of a model body.

Only three expressions exist: `{{ ref('schema.model') }}` (or a short name), `{{ start_date }}` and
`{{ end_date }}`. Anything else, and any Jinja block (`{% ... %}`), is an error: model files are SQL,
not programs. Rendering for analysis replaces each distinct ref with a token `__il_ref_N__` (N in
order of first appearance) and each placeholder with `__il_start_date__` / `__il_end_date__`, so the
analysis of a file depends on its bytes alone and can be cached by content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared_core.core.errors import ModelError

PLACEHOLDERS = ("start_date", "end_date")
REF_TOKEN = "__il_ref_{}__"
PLACEHOLDER_TOKEN = "__il_{}__"

_EXPRESSION = re.compile(r"\{\{(.*?)\}\}|\{%|\{#", re.DOTALL)
_REF = re.compile(r"""^\s*ref\s*\(\s*(['"])\s*([^'"]*?)\s*\1\s*\)\s*$""")
_REF_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")


@dataclass(frozen=True)
class Template:
    """A model body with its expressions replaced by tokens."""

    rendered: str
    refs: tuple[str, ...]  # distinct ref names, lower-cased, in order of first appearance
    ref_lines: tuple[int, ...]  # 1-based line of the first appearance of each ref
    placeholders: tuple[str, ...]  # the placeholders used, sorted


def render_template(text: str, path: str) -> Template:
    """Replace the template expressions of `text` with analysis tokens.

    >>> t = render_template("SELECT * FROM {{ ref('raw.orders') }} WHERE d >= '{{ start_date }}'", "m.sql")
    >>> t.rendered, t.refs
    ("SELECT * FROM __il_ref_0__ WHERE d >= '__il_start_date__'", ('raw.orders',))

    Raises:
        ModelError: an expression other than ref/start_date/end_date, or a Jinja block.
    """
    refs: dict[str, int] = {}
    lines: list[int] = []
    used: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        line = text.count("\n", 0, match.start()) + 1
        col = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
        if match.group(1) is None:
            raise ModelError(
                "Jinja blocks and comments ({% %}, {# #}) are not supported; use plain SQL with ref()",
                path=path, line=line, col=col,
            )
        inner = match.group(1).strip()
        if inner in PLACEHOLDERS:
            used.add(inner)
            return PLACEHOLDER_TOKEN.format(inner)
        ref = _REF.match(inner)
        if ref is None:
            raise ModelError(
                f"unknown template expression '{{{{ {inner} }}}}'; use ref('schema.model'), start_date or end_date",
                path=path, line=line, col=col,
            )
        name = ref.group(2).lower()
        if not _REF_NAME.match(name):
            raise ModelError(f"invalid model name '{ref.group(2)}' in ref()", path=path, line=line, col=col)
        if name not in refs:
            refs[name] = len(refs)
            lines.append(line)
        return REF_TOKEN.format(refs[name])

    rendered = _EXPRESSION.sub(replace, text)
    return Template(rendered, tuple(refs), tuple(lines), tuple(sorted(used)))
