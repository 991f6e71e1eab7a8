"""Property tests of the content hash: cosmetic edits never change it, real edits always do.

Queries come from a small grammar of our own (CTEs, select lists with functions, arithmetic and
aliases, plain tables and `ref()`s, inner and left joins, WHERE clauses with literals, AND/OR groups,
IN lists and IS NULL, GROUP BY). Each query is rendered twice:

- plainly: upper-case keywords, single spaces, `AS` everywhere, full ref names, header in fixed order;
- as a cosmetic variant: random whitespace and line breaks, `--` and `/* */` comments, random keyword,
  function-name and identifier case (not the case of column aliases, which name the table's columns),
  backquoted identifiers, optional `AS`, `INNER` / `OUTER` join
  words, redundant parentheses (around atoms, whole conditions and projections), self-aliases
  (`t.id AS id`, `FROM sales.orders AS orders`), a trailing `;`, ref() spelled with other quotes,
  spacing, case or the short model name, and a header with shuffled lines, other key case and
  spacing and edited metadata (owner, tags, description, an unknown key).

Three cosmetic edits are deliberately not generated because the canonicalizer mishandles them today
(each is marked "known gap" below): a ref() aliased to its own table name, a comment after the final
`;`, and a comment between GROUP and BY.

The canonicalizer promises (module docstring of `shared_core.core.sql.canonical`) that the variant has the
content hash of the plain rendering, and that changing one literal, one column name or the case of one
column alias changes it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shared_core.core.project.models import ModelSource, load_project
from shared_core.core.sql.canonical import analyze_query

COLUMNS = ("id", "amount", "status", "customer_id", "price", "qty", "country", "email", "created_at", "score")
TABLES = ("sales.orders", "crm.accounts", "web.visits")
REFS = {"raw.orders": "orders", "raw.customers": "customers", "lookup.country_codes": "country_codes"}
ALIASES = ("a", "b", "c", "d")
CTE_NAMES = ("base_rows", "filtered")
SCALAR_FUNCS = ("UPPER", "LOWER", "ABS", "TRIM")
AGGREGATES = ("COUNT", "SUM", "MAX", "MIN")
COMPARISONS = ("=", "<>", "<", ">=", ">")
ARITHMETIC = ("+", "-", "*")
MODEL = "test.model"
STUBS = tuple(
    ModelSource(f"models/{name}.sql", f"-- name: {name}\n-- kind: FULL_REFRESH\nSELECT 1 AS x\n") for name in REFS
)
PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example]
)

# --------------------------------------------------------------------------------------------------
# The grammar: plain tuples, so hypothesis can print and shrink them.
#   expr:  ("col", qualifier | None, name) | ("lit", "int" | "str", value) | ("star",)
#          | ("func", NAME, (expr, ...)) | ("arith", op, expr, expr)
#   cond:  ("cmp", op, expr, expr) | ("in", col, (lit, ...)) | ("null", col, negated)
#          | ("and", (cond, ...)) | ("or", (cond, ...))
#   source: ("table", name, alias | None) | ("ref", model, alias | None) | ("cte", name, alias | None)
#   select: (distinct, ((expr, alias | None), ...), source, ((side, source, cond), ...), cond | None, (col, ...))
#   query: (((cte_name, select), ...), select)
# --------------------------------------------------------------------------------------------------

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789 _-", min_size=0, max_size=8)


def _column(qualifiers: tuple[str, ...]) -> st.SearchStrategy[tuple[Any, ...]]:
    qualifier = st.sampled_from(qualifiers) if qualifiers else st.none()
    return st.tuples(st.just("col"), qualifier, st.sampled_from(COLUMNS))


literals = st.one_of(
    st.tuples(st.just("lit"), st.just("int"), st.integers(0, 10_000).map(str)),
    st.tuples(st.just("lit"), st.just("str"), words),
)


def _expression(qualifiers: tuple[str, ...]) -> st.SearchStrategy[tuple[Any, ...]]:
    column = _column(qualifiers)
    atom = st.one_of(column, literals)
    return st.one_of(
        column,
        column,
        literals,
        st.tuples(st.just("func"), st.sampled_from(SCALAR_FUNCS), st.tuples(column)),
        st.tuples(st.just("func"), st.just("COALESCE"), st.tuples(column, atom)),
        st.tuples(st.just("func"), st.sampled_from(AGGREGATES), st.tuples(column)),
        st.tuples(st.just("func"), st.just("COUNT"), st.tuples(st.just(("star",)))),
        st.tuples(st.just("arith"), st.sampled_from(ARITHMETIC), column, atom),
    )


def _condition(qualifiers: tuple[str, ...]) -> st.SearchStrategy[tuple[Any, ...]]:
    column = _column(qualifiers)
    leaf = st.one_of(
        st.tuples(st.just("cmp"), st.sampled_from(COMPARISONS), column, literals),
        st.tuples(st.just("cmp"), st.sampled_from(COMPARISONS), column, column),
        st.tuples(st.just("in"), column, st.lists(literals, min_size=1, max_size=3).map(tuple)),
        st.tuples(st.just("null"), column, st.booleans()),
    )
    group = st.tuples(st.just("or"), st.lists(leaf, min_size=2, max_size=3).map(tuple))
    return st.one_of(
        leaf,
        st.tuples(st.just("and"), st.lists(st.one_of(leaf, leaf, group), min_size=2, max_size=4).map(tuple)),
    )


@st.composite
def selects(draw: st.DrawFn, ctes: tuple[str, ...] = ()) -> tuple[Any, ...]:
    kinds = ["table", "ref"] + (["cte"] if ctes else [])
    n_joins = draw(st.integers(0, 2))
    aliases = ALIASES[: n_joins + 1]

    def source(alias: str | None) -> tuple[Any, ...]:
        kind = draw(st.sampled_from(kinds))
        pool = {"table": TABLES, "ref": tuple(REFS), "cte": ctes}[kind]
        return (kind, draw(st.sampled_from(pool)), alias)

    aliased = n_joins > 0 or draw(st.booleans())
    qualifiers = aliases if aliased else ()
    main = source(aliases[0] if aliased else None)
    joins = tuple(
        (
            draw(st.sampled_from(("", "LEFT"))),
            source(aliases[i]),
            ("cmp", "=", ("col", aliases[i], draw(st.sampled_from(COLUMNS))), ("col", aliases[i - 1],
                                                                            draw(st.sampled_from(COLUMNS)))),
        )
        for i in range(1, n_joins + 1)
    )
    projections = tuple(
        draw(
            st.lists(
                st.tuples(_expression(qualifiers), st.one_of(st.none(), st.sampled_from((*COLUMNS, "total", "n")))),
                min_size=1,
                max_size=4,
            )
        )
    )
    where = draw(_condition(qualifiers))  # always present: every query has a literal or a column to edit
    group_by = tuple(draw(st.lists(_column(qualifiers), max_size=2)))
    return (draw(st.booleans()), projections, main, joins, where, group_by)


@st.composite
def queries(draw: st.DrawFn) -> tuple[Any, ...]:
    names = CTE_NAMES[: draw(st.integers(0, 2))]
    ctes = tuple((name, draw(selects(names[:index]))) for index, name in enumerate(names))
    return (ctes, draw(selects(names)))


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


class PlainStyle:
    """Upper-case keywords, single spaces, every optional word written, no comments."""

    def kw(self, word: str) -> str:
        return word

    def ident(self, name: str) -> str:
        return name

    def name(self, name: str) -> str:
        """A column alias: its case is the column's name, so only its quoting may vary."""
        return name

    def sep(self) -> str:
        return " "

    def chance(self, probability: float) -> bool:
        return False

    def ref(self, model: str) -> str:
        return "{{ ref('" + model + "') }}"

    def terminator(self) -> str:
        return ""

    def header(self) -> str:
        return f"-- name: {MODEL}\n-- kind: FULL_REFRESH\n-- owner: data-team\n-- tags: core\n"


_WHITESPACE = (" ", "  ", "\n", "\n    ", "\t", " \n\t ", "\r\n")
_COMMENT_TEXT = "abcdefghijklmnopqrstuvwxyz XYZ0123456789.,;!?()'\"=<>-_[]"


class CosmeticStyle(PlainStyle):
    """Every edit the canonicalizer promises to ignore, drawn from `rnd`."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd

    def _case(self, text: str) -> str:
        choice = self.rnd.randrange(4)
        if choice == 0:
            return text.upper()
        if choice == 1:
            return text.lower()
        if choice == 2:
            return text.capitalize()
        return "".join(c.upper() if self.rnd.random() < 0.5 else c.lower() for c in text)

    def kw(self, word: str) -> str:
        return self._case(word)

    def ident(self, name: str) -> str:
        cased = self._case(name)
        return f"`{cased}`" if self.rnd.random() < 0.25 else cased

    def name(self, name: str) -> str:
        return f"`{name}`" if self.rnd.random() < 0.25 else name

    def _comment(self) -> str:
        text = "".join(self.rnd.choice(_COMMENT_TEXT) for _ in range(self.rnd.randrange(12)))
        if self.rnd.random() < 0.5:
            return f"/* {text.replace('*/', '')} */"
        return f"-- {text}\n"

    def sep(self) -> str:
        parts = [self.rnd.choice(_WHITESPACE)]
        while self.rnd.random() < 0.15:
            parts += [self._comment(), self.rnd.choice(_WHITESPACE)]
        return "".join(parts)

    def chance(self, probability: float) -> bool:
        return self.rnd.random() < probability

    def terminator(self) -> str:
        # Known gap, left out: a comment after the final ';' becomes a second (Semicolon) statement and
        # the model is rejected with "2 statements found".
        return self.rnd.choice(("", "", " ;", ";", "\n;\n")) if self.rnd.random() < 0.5 else self.sep()

    def ref(self, model: str) -> str:
        name = REFS[model] if self.rnd.random() < 0.4 else model
        quote = self.rnd.choice("'\"")

        def pad() -> str:
            return self.rnd.choice(("", " ", "  "))

        return "{{" + pad() + "ref(" + pad() + quote + self._case(name) + quote + pad() + ")" + pad() + "}}"

    def header(self) -> str:
        lines = [
            ("name", self._case(MODEL)),
            ("kind", self._case("FULL_REFRESH")),
            ("owner", self.rnd.choice(("data-team", "finance", "someone else"))),
            ("tags", ", ".join(self.rnd.sample(["core", "pii", "daily", "gold"], self.rnd.randrange(1, 4)))),
        ]
        if self.rnd.random() < 0.5:
            lines.append(("description", "".join(self.rnd.choice("abc XYZ.,()") for _ in range(20))))
        if self.rnd.random() < 0.5:
            lines.append(("jira", f"DATA-{self.rnd.randrange(1000)}"))
        self.rnd.shuffle(lines)

        def pad() -> str:
            return self.rnd.choice(("", " ", "   "))

        leading = self.rnd.choice(("", "\n", "\n\n"))
        return leading + "".join(f"--{pad()}{self._case(key)}{pad()}:{pad()}{value}{pad()}\n" for key, value in lines)


@dataclass
class Renderer:
    """Renders a query as tokens; optionally edits the k-th column name or literal (in render order)."""

    style: PlainStyle
    edit: tuple[str, int, Callable[[str], str]] | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"col": 0, "lit": 0, "alias": 0})

    def _counted(self, kind: str, value: str) -> str:
        index = self.counts[kind]
        self.counts[kind] += 1
        if self.edit is not None and self.edit[0] == kind and self.edit[1] == index:
            return self.edit[2](value)
        return value

    def _wrap(self, tokens: list[str], probability: float) -> list[str]:
        """Redundant parentheses, one or two levels, in the variant only."""
        while self.style.chance(probability):
            tokens = ["(", *tokens, ")"]
            probability /= 3
        return tokens

    def expr(self, node: tuple[Any, ...], *, atom_parens: bool = True) -> list[str]:
        kind = node[0]
        if kind == "col":
            name = self.style.ident(self._counted("col", node[2]))
            tokens = [f"{self.style.ident(node[1])}.{name}" if node[1] else name]
        elif kind == "lit":
            value = self._counted("lit", node[2])
            tokens = [value if node[1] == "int" else f"'{value}'"]
        elif kind == "star":
            return ["*"]
        elif kind == "func":
            args: list[str] = []
            for index, arg in enumerate(node[2]):
                if index:
                    args.append(",")
                args += self.expr(arg)
            tokens = [self.style.kw(node[1]) + "(", *args, ")"]
        else:  # arith: never wrapped, parentheses around it inside a comparison are kept by design
            return [*self.expr(node[2]), node[1], *self.expr(node[3])]
        return self._wrap(tokens, 0.12) if atom_parens else tokens

    def cond(self, node: tuple[Any, ...]) -> list[str]:
        kind = node[0]
        if kind == "cmp":
            return [*self.expr(node[2]), node[1], *self.expr(node[3])]
        if kind == "in":
            items: list[str] = []
            for index, literal in enumerate(node[2]):
                if index:
                    items.append(",")
                items += self.expr(literal, atom_parens=False)
            return [*self.expr(node[1]), self.style.kw("IN"), "(", *items, ")"]
        if kind == "null":
            return [*self.expr(node[1]), self.style.kw("IS"), *([self.style.kw("NOT")] if node[2] else []),
                    self.style.kw("NULL")]
        tokens: list[str] = []
        for index, part in enumerate(node[1]):
            if index:
                tokens.append(self.style.kw(kind.upper()))
            inner = self.cond(part)
            tokens += ["(", *inner, ")"] if part[0] == "or" else inner  # needed parentheses: in both forms
        return tokens

    def source(self, node: tuple[Any, ...]) -> list[str]:
        kind, name, alias = node
        if kind == "ref":
            tokens = [self.style.ref(name)]
        else:
            tokens = [".".join(self.style.ident(part) for part in name.split("."))]
        if alias is None and kind != "ref" and self.style.chance(0.3):
            # a table aliased to its own name; known gap, left out: through ref() the alias is compared
            # with the `__il_ref_N__` token, not the model name, so the hash changes
            alias = name.split(".")[-1]
        if alias is not None:
            tokens += [*self._as(), self.style.ident(alias)]
        return tokens

    def _as(self) -> list[str]:
        return [] if self.style.chance(0.5) else [self.style.kw("AS")]

    def select(self, node: tuple[Any, ...]) -> list[str]:
        distinct, projections, main, joins, where, group_by = node
        tokens = [self.style.kw("SELECT"), *([self.style.kw("DISTINCT")] if distinct else [])]
        for index, (expression, alias) in enumerate(projections):
            if index:
                tokens.append(",")
            tokens += self._wrap(self.expr(expression), 0.1)
            if alias is not None:
                tokens += [*self._as(), self.style.name(self._counted("alias", alias))]
            elif expression[0] == "col" and self.style.chance(0.3):
                tokens += [*self._as(), self.style.name(expression[2])]  # a column aliased to its own name
        tokens += [self.style.kw("FROM"), *self.source(main)]
        for side, source, on in joins:
            if side == "LEFT":
                words = ["LEFT", "OUTER", "JOIN"] if self.style.chance(0.5) else ["LEFT", "JOIN"]
            else:
                words = ["INNER", "JOIN"] if self.style.chance(0.5) else ["JOIN"]
            tokens += [*map(self.style.kw, words), *self.source(source), self.style.kw("ON"),
                       *self._wrap(self.cond(on), 0.3)]
        tokens += [self.style.kw("WHERE"), *self._wrap(self.cond(where), 0.3)]
        if group_by:
            tokens += [self.style.kw("GROUP"), self.style.kw("BY")]  # no comment between them (see report)
            for index, column in enumerate(group_by):
                if index:
                    tokens.append(",")
                tokens += self.expr(column, atom_parens=False)
        return tokens

    def query(self, node: tuple[Any, ...]) -> str:
        ctes, main = node
        tokens: list[str] = []
        for index, (name, select) in enumerate(ctes):
            tokens += [self.style.kw("WITH")] if index == 0 else [","]
            tokens += [self.style.ident(name), self.style.kw("AS"), "(", *self.select(select), ")"]
        tokens += self.select(main)
        body = tokens[0]
        for token in tokens[1:]:
            separator = self.style.sep()
            if token.upper() == "BY" and ("--" in separator or "/*" in separator):
                separator = " "  # known gap: sqlglot rejects a comment between GROUP and BY
            body += separator + token
        return self.style.header() + self.style.sep().lstrip(" \t") + body + self.style.terminator() + "\n"


def render(query: tuple[Any, ...], style: PlainStyle, edit: tuple[str, int, Callable[[str], str]] | None = None
           ) -> tuple[str, dict[str, int]]:
    renderer = Renderer(style, edit)
    text = renderer.query(query)
    return text, renderer.counts


def content_hash(text: str) -> str:
    project = load_project([*STUBS, ModelSource("models/test/model.sql", text)])
    model = project[MODEL]
    return model.content_hash(analyze_query(model.text, model.path))


def canonical(text: str) -> str:
    return analyze_query(text, "models/test/model.sql").canonical


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(query=queries(), style_seed=st.integers(0, 2**32 - 1))
def test_cosmetic_edits_never_change_the_content_hash(query: tuple[Any, ...], style_seed: int) -> None:
    plain, _ = render(query, PlainStyle())
    variant, _ = render(query, CosmeticStyle(random.Random(style_seed)))
    assert content_hash(variant) == content_hash(plain), (
        f"plain:\n{plain}\nvariant:\n{variant}\ncanonical plain:   {canonical(plain)}\n"
        f"canonical variant: {canonical(variant)}"
    )


def _other_literal(kind_and_value: tuple[str, str], how: int) -> str:
    kind, value = kind_and_value
    if kind == "int":
        return str(int(value) + 1 + how)
    swapped = value.swapcase()
    if how == 0 and swapped != value:
        return swapped  # string literals are case-sensitive data
    return value + ("x", " ", "0")[how % 3]


def _literals(node: Any) -> list[tuple[str, str]]:
    """Every literal of a query tree, in render order."""
    found: list[tuple[str, str]] = []

    def walk(item: Any) -> None:
        if isinstance(item, tuple) and item and item[0] == "lit" and len(item) == 3:
            found.append((item[1], item[2]))
        elif isinstance(item, tuple):
            for child in item:
                walk(child)

    walk(node)
    return found


@PROPERTY_SETTINGS
@given(query=queries().filter(_literals), style_seed=st.integers(0, 2**32 - 1), data=st.data())
def test_changing_a_literal_always_changes_the_content_hash(
    query: tuple[Any, ...], style_seed: int, data: st.DataObject
) -> None:
    plain, counts = render(query, PlainStyle())
    literals = _literals(query)
    assert len(literals) == counts["lit"] > 0
    index = data.draw(st.integers(0, len(literals) - 1), label="literal")
    new = _other_literal(literals[index], data.draw(st.integers(0, 2), label="how"))
    assert new != literals[index][1]
    edited, _ = render(query, CosmeticStyle(random.Random(style_seed)), ("lit", index, lambda _: new))
    assert content_hash(edited) != content_hash(plain), f"plain:\n{plain}\nedited:\n{edited}"


@PROPERTY_SETTINGS
@given(query=queries(), style_seed=st.integers(0, 2**32 - 1), data=st.data())
def test_renaming_a_column_always_changes_the_content_hash(
    query: tuple[Any, ...], style_seed: int, data: st.DataObject
) -> None:
    plain, counts = render(query, PlainStyle())
    assert counts["col"] > 0
    index = data.draw(st.integers(0, counts["col"] - 1), label="column")
    new_name = data.draw(st.sampled_from((*COLUMNS, "renamed_col")), label="new name")

    def rename(old: str) -> str:
        return new_name if new_name != old else "renamed_col"

    edited, _ = render(query, CosmeticStyle(random.Random(style_seed)), ("col", index, rename))
    assert content_hash(edited) != content_hash(plain), f"plain:\n{plain}\nedited:\n{edited}"


@PROPERTY_SETTINGS
@given(query=queries(), style_seed=st.integers(0, 2**32 - 1), data=st.data())
def test_changing_the_case_of_an_alias_always_changes_the_content_hash(
    query: tuple[Any, ...], style_seed: int, data: st.DataObject
) -> None:
    """An alias names a column of the table (and a key of every `to_json(struct(*))` over it): its case is data."""
    plain, counts = render(query, PlainStyle())
    assume(counts["alias"] > 0)
    index = data.draw(st.integers(0, counts["alias"] - 1), label="alias")
    edited, _ = render(query, CosmeticStyle(random.Random(style_seed)), ("alias", index, str.capitalize))
    assert content_hash(edited) != content_hash(plain), f"plain:\n{plain}\nedited:\n{edited}"


@settings(max_examples=60, deadline=None)
@given(query=queries())
def test_plain_rendering_is_one_valid_query(query: tuple[Any, ...]) -> None:
    """The grammar itself: every plain rendering is one query; canonicalizing twice changes nothing."""
    plain, counts = render(query, PlainStyle())
    sql = canonical(plain)
    assert sql.startswith(("SELECT", "WITH")) and "\n" not in sql
    assert canonical(sql) == sql
    assert counts["col"] >= 1
