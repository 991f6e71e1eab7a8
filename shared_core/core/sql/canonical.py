"""Canonicalize a model's SQL (Databricks dialect), after the guard (`guard.py`) has checked it.

Canonicalization "v1" parses the rendered body with sqlglot and prints it back in one fixed form, so
edits that cannot change the result do not change the content hash. Exactly these differences vanish:

1. comments (`--`, `/* */`) and all whitespace and line breaks;
2. keyword case (`select` = `SELECT`), optional keywords (`AS` before an alias, `INNER` in
   `INNER JOIN`, `OUTER` in `LEFT OUTER JOIN`, a trailing `;`) and function-name case;
3. identifier case and quoting (`Orders` = `orders` = `` `orders` ``): Databricks resolves identifiers
   case-insensitively, quoted or not;
4. redundant parentheses: around a single column, literal, function call or parenthesized expression;
   around a whole WHERE / HAVING / QUALIFY / JOIN ... ON condition, a projection or an alias; around a
   comparison or NOT that is an operand of AND / OR, around an AND inside AND or OR, and around an
   OR inside OR;
   parentheses that can change precedence (`(a OR b) AND c`, `(a + b) * c`) are kept;
5. redundant aliases: a column aliased to its own name (`t.id AS id`) and a table aliased to its own
   name (`FROM sales.orders AS orders`, `FROM {{ ref('sales.orders') }} AS orders`).

String literals, numbers, operators and everything else are kept exactly. The version string enters
every content hash, so a future "v2" can never collide with v1 hashes. sqlglot is imported lazily:
planning from a warm cache never pays for it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared_core.core.project.templating import render_template
from shared_core.core.sql.guard import TreeGuard, parse_statement
from shared_core.core.sql.quality import guard_test, header_sources_and_tests

if TYPE_CHECKING:
    from sqlglot import exp

CANONICALIZER_VERSION = "v1"
#: Enters the content key (not the content hash): analyses cached before the guard changed are not reused.
GUARD_VERSION = "g1"
DIALECT = "databricks"


@dataclass(frozen=True)
class QueryAnalysis:
    """What the planner needs from one model body; a pure function of the file's bytes."""

    canonical: str  # canonical SQL, refs still as `__il_ref_N__` tokens
    refs: tuple[str, ...]  # the ref names behind the tokens, by token number
    placeholders: tuple[str, ...]
    # relations read (by the body or a custom_sql test) that are neither refs nor declared sources:
    # (name, line); `check` reports them and the executor refuses them
    undeclared: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:  # Any: the JSON form kept in the analysis cache
        return {"canonical": self.canonical, "refs": list(self.refs), "placeholders": list(self.placeholders),
                "undeclared": [list(item) for item in self.undeclared]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueryAnalysis:  # Any: parsed JSON of the analysis cache
        undeclared = tuple((str(name), int(line)) for name, line in data.get("undeclared", ()))
        return cls(data["canonical"], tuple(data["refs"]), tuple(data["placeholders"]), undeclared)


def content_key(text: str) -> str:
    """The cache key of a file's analysis: SHA-256 of its bytes, the canonicalizer and the guard version."""
    return hashlib.sha256(f"{CANONICALIZER_VERSION}\0{GUARD_VERSION}\0{text}".encode()).hexdigest()


def analyze_query(text: str, path: str) -> QueryAnalysis:
    """Render, parse, guard and canonicalize one model file (header included; it is all comments).

    The body and every `custom_sql` test of the header pass the guard (`shared_core.core.sql.guard`);
    relations that are not declared are recorded in `undeclared`, not refused (see the guard's docstring).

    Args:
        text: the whole model file.
        path: repository-relative path, for error messages.

    Returns:
        The canonical SQL with ref tokens, the refs and placeholders it uses, and its undeclared relations.

    Raises:
        ModelError: the SQL does not parse (with file:line:col), or the `sources`/`tests` header is invalid.
        UnsafeSqlError: the body or a test is not exactly one read-only query over allowed functions and
            relations.
    """
    template = render_template(text, path)
    tree = parse_statement(template.rendered, path, guard_later=True)
    guard = TreeGuard(path=path, sql=template.rendered, refs=len(template.refs))
    _canonicalize(tree, guard=guard)  # its walk also does the guard's
    relations = guard.relations
    sources, tests = header_sources_and_tests(text, path)
    numbering = {name: index for index, name in enumerate(template.refs)}
    for test, line in tests:
        relations += guard_test(test.arg, path=path, line=line, refs=numbering, sources=None).relations
    undeclared: dict[str, int] = {}
    for name, line in relations:
        if name not in sources:
            undeclared.setdefault(name, line)
    return QueryAnalysis(canonical_sql(tree, copy=False), template.refs, template.placeholders,
                         tuple(undeclared.items()))


def parse_query(sql: str, path: str) -> exp.Expr:
    """Parse `sql` into exactly one read-only query (statements only; see `shared_core.core.sql.guard`).

    Raises:
        ModelError: a parse error, with the position sqlglot reports.
        UnsafeSqlError: no statement, several statements, or a statement that writes or changes state.
    """
    return parse_statement(sql, path)


def canonicalize_tree(tree: exp.Expr) -> None:
    """Apply the v1 normalizations (see the module docstring) to `tree`, in place."""
    _canonicalize(tree, guard=None)


def _canonicalize(tree: exp.Expr, *, guard: TreeGuard | None) -> None:
    """`canonicalize_tree`; with `guard`, each node is first shown to `guard.visit` (which raises for a
    node that breaks a rule), before this walk changes it."""
    from sqlglot import exp

    # One walk collects the nodes of the later passes: the first pass changes no structure, removing
    # a paren keeps every alias and table, and the alias pass removes no table, so these are the
    # nodes (in the order) that walking again before each pass would find (aliases may come in
    # another order, but always each before the aliases inside it, which is all their pass needs).
    parens: list[exp.Paren] = []
    aliases: list[exp.Alias] = []
    tables: list[exp.Table] = []
    for node in list(tree.walk()):
        if guard is not None:
            guard.visit(node)
        node.comments = None
        if isinstance(node, exp.Identifier):
            node.set("this", node.name.lower())
            node.set("quoted", False)
        elif isinstance(node, exp.Anonymous):
            node.set("this", node.name.upper())
        elif isinstance(node, exp.Join):
            kind = node.args.get("kind")
            if kind == "INNER" or (kind == "OUTER" and node.args.get("side")):
                node.set("kind", None)
        if isinstance(node, exp.Paren):
            parens.append(node)
        elif isinstance(node, exp.Alias):
            aliases.append(node)
        elif isinstance(node, exp.Table):
            tables.append(node)
    for paren in reversed(parens):
        if _redundant_paren(paren):
            paren.replace(paren.this)
    for alias in aliases:
        inner = alias.this
        if isinstance(inner, exp.Column) and inner.name and inner.name == alias.alias:
            alias.replace(inner)
    for table in tables:
        table_alias = table.args.get("alias")
        if table_alias is not None and not table_alias.columns and table_alias.name == table.name:
            table.set("alias", None)


def _redundant_paren(paren: exp.Paren) -> bool:
    from sqlglot import exp

    inner = paren.this
    if isinstance(inner, (exp.Column, exp.Literal, exp.Paren, exp.Null, exp.Boolean, exp.Star, exp.Case)):
        return True
    if isinstance(inner, exp.Func) and _is_call(inner):
        return True
    parent = paren.parent
    if isinstance(parent, (exp.Where, exp.Having, exp.Qualify, exp.Alias, exp.Paren)):
        return True
    if isinstance(parent, exp.Connector) and isinstance(inner, (exp.Predicate, exp.Not)):
        return True  # comparisons and NOT bind tighter than AND and OR
    if isinstance(parent, exp.Or) and isinstance(inner, (exp.And, exp.Or)):
        return True  # AND binds tighter than OR, and OR is associative
    if isinstance(parent, exp.And) and isinstance(inner, exp.And):
        return True  # AND is associative
    if isinstance(parent, exp.Join) and paren.arg_key == "on":
        return True
    return isinstance(parent, exp.Select) and paren.arg_key == "expressions"


def _is_call(node: exp.Func) -> bool:
    """Whether `node` prints as a self-delimited call `NAME(...)` (in sqlglot, AND/OR are Funcs too)."""
    from sqlglot import exp

    if isinstance(node, (exp.Binary, exp.Unary, exp.Connector, exp.Predicate)):
        return False
    text = node.sql(dialect=DIALECT)
    head, paren, _ = text.partition("(")
    if not paren or not head or not text.endswith(")") or not head.replace("_", "").replace(".", "").isalnum():
        return False
    depth = 0
    for index, char in enumerate(text[len(head):]):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and index < len(text) - len(head) - 1:
            return False  # the first call closes before the end: `f(a) + g(b)`
    return True


def canonical_sql(tree: exp.Expr, *, copy: bool = True) -> str:
    """Print a canonicalized tree in the one canonical text form (one line, quoted identifiers).

    With `copy=False` the generator works on `tree` itself instead of a deep copy (which costs more
    than the printing); the text is the same, but `tree` may be changed, so only pass it for a tree
    that is printed once and then dropped.
    """
    return tree.sql(dialect=DIALECT, identify=True, comments=False, copy=copy)


def resolve_canonical(analysis: QueryAnalysis, targets: tuple[str, ...]) -> str:
    """Substitute the resolved model names for the ref tokens of a canonical query.

    >>> resolve_canonical(QueryAnalysis("SELECT * FROM `__il_ref_0__`", ("orders",), ()), ("sales.orders",))
    'SELECT * FROM `sales`.`orders`'
    """
    sql = analysis.canonical
    for index, target in enumerate(targets):
        quoted = ".".join(f"`{part}`" for part in target.split("."))
        token = f"`__il_ref_{index}__`"
        # A ref aliased to its own table name is the same relation without the alias (rule 5).
        sql = _drop_self_alias(sql, token, target.rsplit(".", 1)[-1])
        sql = sql.replace(token, quoted)
    return sql


def _drop_self_alias(sql: str, token: str, name: str) -> str:
    r"""`re.sub(re.escape(token) + " AS `" + re.escape(name) + r"`(?![\w`.])", token, sql)`, without re.

    The pattern differs for every model, and compiling it cost more than all the rest of a plan's
    hashing; this scan replaces the same matches (`\w` is `str.isalnum()` or `_`).

    >>> _drop_self_alias("FROM `__il_ref_0__` AS `o` JOIN `__il_ref_0__` AS `o_2`", "`__il_ref_0__`", "o")
    'FROM `__il_ref_0__` JOIN `__il_ref_0__` AS `o_2`'
    """
    needle = f"{token} AS `{name}`"
    start = sql.find(needle)
    if start < 0:
        return sql
    parts: list[str] = []
    done = 0
    while start >= 0:
        end = start + len(needle)
        following = sql[end:end + 1]
        if following and (following.isalnum() or following in "_`."):
            start = sql.find(needle, start + 1)  # no match here; look further, as the regex would
            continue
        parts += (sql[done:start], token)
        done = end
        start = sql.find(needle, end)
    parts.append(sql[done:])
    return "".join(parts)
