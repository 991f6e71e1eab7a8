"""Find and replace the `{{ ... }}` expressions of a model body (and of its quality tests).

Only three expressions exist: `{{ ref('schema.model') }}` (or a short name), `{{ start_date }}` and
`{{ end_date }}`. Anything else, and any Jinja block (`{% ... %}`), is an error: model files are SQL,
not programs. Inside a SQL string literal (`'...'`, `"..."`) and inside a comment (`-- ...`, `/* ... */`)
braces are ordinary text, so `LIKE '{%'`, `'{{x}}'` or `-- {% if %} was removed` stay as written; only the
three expressions are replaced there too (a `tests:` header line is a comment, and its `custom_sql`
tests use `ref()`). Rendering for analysis replaces each distinct ref with a token
`__il_ref_N__` (N in order of first appearance) and each placeholder with `__il_start_date__` /
`__il_end_date__`, so the analysis of a file depends on its bytes alone and can be cached by content.
A quality test's `{model}` becomes the token `__il_model__` (outside strings and comments).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared_core.core.errors import ModelError

PLACEHOLDERS = ("start_date", "end_date")
REF_TOKEN = "__il_ref_{}__"
PLACEHOLDER_TOKEN = "__il_{}__"
MODEL_TOKEN = "__il_model__"

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
    >>> render_template("SELECT s LIKE '{%' AS x -- {% if x %}", "m.sql").rendered
    "SELECT s LIKE '{%' AS x -- {% if x %}"

    Raises:
        ModelError: an expression other than ref/start_date/end_date, or a Jinja block, outside a string
            or comment.
    """
    return _render(text, path, refs=None, line=0)


def render_fragment(text: str, path: str, *, line: int, refs: Mapping[str, int]) -> Template:
    """Render a one-line fragment of a model file (a `custom_sql` test) with the model's ref numbering.

    Args:
        text: the fragment.
        path: the model file, for error messages.
        line: the fragment's line in the file, for error messages.
        refs: the model's ref names (lower-cased) by token number; every ref of the fragment is among
            them, since the model's own rendering saw the fragment too.

    Raises:
        ModelError: as `render_template`, located at `line`.
    """
    return _render(text, path, refs=refs, line=line)


def _render(text: str, path: str, *, refs: Mapping[str, int] | None, line: int) -> Template:
    known: dict[str, int] = {}
    lines: list[int] = []
    used: set[str] = set()
    texts: list[tuple[int, int]] | None = None  # strings and comments, computed only when a brace needs it

    def fail(message: str, start: int) -> ModelError:
        if line:
            return ModelError(message, path=path, line=line)
        at_line = text.count("\n", 0, start) + 1
        col = start - (text.rfind("\n", 0, start) + 1) + 1
        return ModelError(message, path=path, line=at_line, col=col)

    parts: list[str] = []
    pos = 0
    while (match := _EXPRESSION.search(text, pos)) is not None:
        inner = match.group(1).strip() if match.group(1) is not None else None
        replacement: str | None = None
        problem: str | None = None
        if inner is None:
            problem = "Jinja blocks and comments ({% %}, {# #}) are not supported; use plain SQL with ref()"
        elif inner in PLACEHOLDERS:
            used.add(inner)
            replacement = PLACEHOLDER_TOKEN.format(inner)
        elif (ref := _REF.match(inner)) is not None:
            name = ref.group(2).lower()
            if not _REF_NAME.match(name):
                raise fail(f"invalid model name '{ref.group(2)}' in ref()", match.start())
            if refs is not None:
                if name not in refs:
                    raise fail(f"ref('{name}') in a test is not a ref of the model", match.start())
                number = refs[name]
            else:
                if name not in known:
                    known[name] = len(known)
                    lines.append(text.count("\n", 0, match.start()) + 1)
                number = known[name]
            replacement = REF_TOKEN.format(number)
        else:
            problem = (f"unknown template expression '{{{{ {inner} }}}}'; use ref('schema.model'), start_date or "
                       "end_date")
        if replacement is None:
            if texts is None:
                texts = _protected_spans(text, identifiers=False)
            if not _inside(texts, match.start()):
                raise fail(problem or "", match.start())
            parts.append(text[pos:match.start() + 2])  # text inside a string or comment: keep, look further
            pos = match.start() + 2
            continue
        parts.append(text[pos:match.start()])
        parts.append(replacement)
        pos = match.end()
    parts.append(text[pos:])
    return Template("".join(parts), tuple(known), tuple(lines), tuple(sorted(used)))


def bind_model_token(sql: str) -> str:
    """Replace `{model}` with `__il_model__` outside strings, quoted identifiers and comments.

    >>> bind_model_token("SELECT '{model}' FROM {model} -- {model}")
    "SELECT '{model}' FROM __il_model__ -- {model}"
    """
    protected = _protected_spans(sql)
    parts: list[str] = []
    pos = 0
    start = sql.find("{model}")
    while start >= 0:
        if not _inside(protected, start):
            parts += (sql[pos:start], MODEL_TOKEN)
            pos = start + len("{model}")
        start = sql.find("{model}", start + 1)
    parts.append(sql[pos:])
    return "".join(parts)


def string_spans(text: str) -> list[tuple[int, int]]:
    """The `[start, end)` spans of the string literals of `text`, in order (the quotes included).

    Strings are `'...'` and `"..."` (a backslash escapes the next character, as in Databricks SQL);
    backquoted identifiers and `/* */` comments hold none; a `--` comment line holds the strings that
    open and close on that line (a header such as `-- tests: custom_sql(... LIKE '{%')`).

    >>> string_spans("SELECT 'a', `b'` -- x LIKE '{%'")
    [(7, 10), (27, 31)]
    """
    return [(start, end) for start, end, kind in _regions(text) if kind == "string"]


def _protected_spans(text: str, *, identifiers: bool = True) -> list[tuple[int, int]]:
    """Strings, comments and (with `identifiers`) quoted identifiers: where a `{model}` or a brace is text."""
    spans: list[tuple[int, int]] = []
    for start, end, kind in _regions(text):
        if (spans and start < spans[-1][1]) or (kind == "identifier" and not identifiers):
            continue  # a string inside a comment: the comment already covers it
        spans.append((start, end))
    return spans


def _regions(text: str) -> list[tuple[int, int, str]]:
    """Strings, quoted identifiers and comments of `text` as `(start, end, kind)`, by start."""
    regions: list[tuple[int, int, str]] = []
    index, size = 0, len(text)
    while index < size:
        char = text[index]
        if char == "-" and text.startswith("--", index):
            end = text.find("\n", index)
            end = size if end < 0 else end
            regions.append((index, end, "comment"))
            regions += _line_strings(text, index + 2, end)
            index = end
        elif char == "/" and text.startswith("/*", index):
            end = text.find("*/", index + 2)
            end = size if end < 0 else end + 2
            regions.append((index, end, "comment"))
            index = end
        elif char in "'\"`":
            closing = _closing(text, index, size)
            end = size if closing is None else closing  # an unterminated quote runs to the end
            regions.append((index, end, "identifier" if char == "`" else "string"))
            index = end
        else:
            index += 1
    return regions


def _line_strings(text: str, start: int, end: int) -> list[tuple[int, int, str]]:
    """The strings that open and close within `text[start:end]` (one comment line)."""
    found: list[tuple[int, int, str]] = []
    index = start
    while index < end:
        if text[index] in "'\"":
            close = _closing(text, index, end)
            if close is None:
                break  # an apostrophe in prose: the rest of the line is plain comment
            found.append((index, close, "string"))
            index = close
        else:
            index += 1
    return found


def _closing(text: str, start: int, limit: int) -> int | None:
    """The index just past the quote that closes the one at `start`, or None before `limit`."""
    quote = text[start]
    index = start + 1
    while index < limit:
        char = text[index]
        if char == "\\" and quote != "`":
            index += 2
            continue
        if char == quote:
            return index + 1
        index += 1
    return None


def _inside(spans: list[tuple[int, int]], position: int) -> bool:
    """Whether `position` lies within one of the sorted, non-overlapping `spans`."""
    index = bisect.bisect_right(spans, (position, float("inf"))) - 1
    return index >= 0 and spans[index][0] <= position < spans[index][1]
