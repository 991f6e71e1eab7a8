"""Highlight SQL as HTML on the server: one escaped line of markup per source line, refs as links.

A small lexer rather than a parser, so that any text, even SQL that does not parse, comes out whole:
every character of the input is in the output exactly once, escaped, and only this module's own
`<span>` and `<a>` tags are added. Tokens that span lines (block comments, strings) are closed at the
end of each line and reopened on the next, so that each line stands alone (for line numbers).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator

# Words shown as keywords; anything else that is followed by `(` is shown as a function.
KEYWORDS = frozenset((
    "all", "and", "any", "anti", "array", "as", "asc", "between", "both", "by", "case", "cast", "cluster", "cross",
    "cube", "current", "default", "desc", "distinct", "distribute", "else", "end", "escape", "except", "exclude",
    "exists", "explode", "false", "filter", "first", "following", "for", "from", "full", "group", "grouping",
    "having", "if", "ilike", "in", "inner", "intersect", "interval", "is", "join", "last", "lateral", "left", "like",
    "limit", "map", "minus", "natural", "not", "null", "nulls", "offset", "on", "or", "order", "outer", "over",
    "partition", "pivot", "preceding", "qualify", "range", "recursive", "replace", "respect", "right", "rlike",
    "rollup", "row", "rows", "select", "semi", "set", "sets", "similar", "some", "sort", "struct", "table",
    "tablesample", "then", "ties", "to", "top", "true", "try_cast", "unbounded", "union", "unnest", "unpivot",
    "using", "values", "view", "when", "where", "window", "with", "within",
))
TYPES = frozenset((
    "bigint", "binary", "boolean", "bool", "char", "date", "datetime", "dec", "decimal", "double", "float", "int",
    "int64", "integer", "long", "numeric", "real", "smallint", "string", "text", "time", "timestamp",
    "timestamp_ltz", "timestamp_ntz", "tinyint", "varchar", "variant",
))

_TOKEN = re.compile(
    r"""
    (?P<template>\{\{.*?\}\}|\{%.*?%\}|\{\#.*?\#\})
    |(?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    |(?P<string>'(?:[^'\\]|\\.|'')*(?:'|\Z))
    |(?P<quoted>"(?:[^"]|"")*(?:"|\Z)|`(?:[^`]|``)*(?:`|\Z))
    |(?P<number>\b\d+(?:\.\d*)?(?:[eE][+-]?\d+)?\b|\.\d+\b)
    |(?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    |(?P<space>\s+)
    |(?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_CALL = re.compile(r"\s*\(")
_REF = re.compile(r"""(ref\s*\(\s*)(['"])([^'"]*)(\2)""")
_INNER_TEMPLATE = re.compile(r"\{\{.*?\}\}", re.DOTALL)

Link = Callable[[str], str | None]


def highlight_sql(text: str, link: Link) -> list[str]:
    """The lines of `text` as HTML, with highlighting spans; `{{ ref('x') }}` links to `link('x')` if any.

    Args:
        text: SQL, possibly with `{{ ... }}` expressions; any text is accepted.
        link: the URL of the page of a ref as written, or None to leave it unlinked.

    Returns:
        One HTML fragment per line of `text` (split on `\\n`), without the newline.

    >>> highlight_sql("SELECT 'a<b' -- hi", lambda name: None)
    ['<span class="k">SELECT</span> <span class="s">&#x27;a&lt;b&#x27;</span> <span class="c">-- hi</span>']
    """
    lines: list[str] = [""]
    for css, fragment in _fragments(text, link):
        for index, part in enumerate(fragment.split("\n")):
            if index:
                lines.append("")
            if part:
                lines[-1] += f'<span class="{css}">{part}</span>' if css else part
    return lines


def _fragments(text: str, link: Link) -> Iterator[tuple[str, str]]:
    """(css class, escaped HTML) pieces in order; the HTML never holds a tag across a newline."""
    for match in _TOKEN.finditer(text):
        kind, value = match.lastgroup or "other", match.group()
        if kind == "template":
            yield "t", _template(value, link)
        elif kind == "comment":
            yield "c", _escape(value)
        elif kind == "string":
            yield "s", _with_templates(value, link)
        elif kind == "quoted":
            yield "q", _escape(value)
        elif kind == "number":
            yield "n", _escape(value)
        elif kind == "word":
            lower = value.lower()
            if lower in KEYWORDS:
                yield "k", _escape(value)
            elif lower in TYPES:
                yield "y", _escape(value)
            elif _CALL.match(text, match.end()):
                yield "f", _escape(value)
            else:
                yield "", _escape(value)
        else:
            yield "", _escape(value)


def _template(value: str, link: Link) -> str:
    """A `{{ ... }}` expression, with the name of a ref made a link to its model's page."""
    found = _REF.search(value)
    target = link(found.group(3).strip().lower()) if found else None
    if found is None or target is None or "\n" in value:
        return _escape(value)
    return (
        _escape(value[: found.start(3)])
        + f'<a class="ref" href="{_escape(target)}">{_escape(found.group(3))}</a>'
        + _escape(value[found.end(3):])
    )


def _with_templates(value: str, link: Link) -> str:
    """A string literal whose `{{ ... }}` expressions (bound at run time) stand out inside it."""
    parts, last = [], 0
    for found in _INNER_TEMPLATE.finditer(value):
        parts.append(_escape(value[last:found.start()]))
        inner = _template(found.group(), link)
        parts.append(f'<span class="t">{inner}</span>' if "\n" not in inner else inner)
        last = found.end()
    parts.append(_escape(value[last:]))
    return "".join(parts)


def _escape(value: str) -> str:
    return html.escape(value, quote=True)
