"""Canonicalize a model's SQL (Databricks dialect) and guard that it is one read-only query.

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

from shared_core.core.errors import ModelError, UnsafeSqlError
from shared_core.core.project.templating import render_template

if TYPE_CHECKING:
    from sqlglot import exp

CANONICALIZER_VERSION = "v1"
DIALECT = "databricks"

_FORBIDDEN = {
    "Drop": "DROP",
    "TruncateTable": "TRUNCATE",
    "Delete": "DELETE",
    "Alter": "ALTER",
    "Grant": "GRANT",
    "Revoke": "REVOKE",
    "Insert": "INSERT",
    "Update": "UPDATE",
    "Merge": "MERGE",
    "Create": "CREATE",
    "Command": "",
    "Use": "USE",
    "Set": "SET",
}
_QUERY_TYPES = ("Select", "Union", "Intersect", "Except", "Subquery", "Values")


@dataclass(frozen=True)
class QueryAnalysis:
    """What the planner needs from one model body; a pure function of the file's bytes."""

    canonical: str  # canonical SQL, refs still as `__il_ref_N__` tokens
    refs: tuple[str, ...]  # the ref names behind the tokens, by token number
    placeholders: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"canonical": self.canonical, "refs": list(self.refs), "placeholders": list(self.placeholders)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueryAnalysis:
        return cls(data["canonical"], tuple(data["refs"]), tuple(data["placeholders"]))


def content_key(text: str) -> str:
    """The cache key of a file's analysis: SHA-256 of its bytes and the canonicalizer version."""
    return hashlib.sha256(f"{CANONICALIZER_VERSION}\0{text}".encode()).hexdigest()


def analyze_query(text: str, path: str) -> QueryAnalysis:
    """Render, parse, guard and canonicalize one model file (header included; it is all comments).

    Args:
        text: the whole model file.
        path: repository-relative path, for error messages.

    Returns:
        The canonical SQL with ref tokens, and the refs and placeholders it uses.

    Raises:
        ModelError: the SQL does not parse (with file:line:col).
        UnsafeSqlError: the file is not exactly one read-only query.
    """
    template = render_template(text, path)
    tree = _parse_query(template.rendered, path, guard_later=True)
    _canonicalize(tree, guard=(template.rendered, path))  # its walk also does the guard's
    return QueryAnalysis(canonical_sql(tree, copy=False), template.refs, template.placeholders)


def parse_query(sql: str, path: str) -> exp.Expr:
    """Parse `sql` into exactly one read-only query.

    Raises:
        ModelError: a parse error, with the position sqlglot reports.
        UnsafeSqlError: no statement, several statements, or a statement that writes or changes state.
    """
    return _parse_query(sql, path, guard_later=False)


def _parse_query(sql: str, path: str, *, guard_later: bool) -> exp.Expr:
    """`parse_query`; with `guard_later`, a lone query is returned without the walk for forbidden
    nodes, which the caller then does in its own walk of the tree (`_canonicalize` with `guard`),
    raising the same error for the same node."""
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    try:
        # A comment after the last ';' comes back as a Semicolon "statement": it is only a comment.
        statements = [s for s in sqlglot.parse(sql, read=DIALECT) if s is not None and type(s).__name__ != "Semicolon"]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        description = str(first.get("description", exc)).split("<Token")[0].strip().rstrip(".")
        description = description.removesuffix(" but got").strip()
        highlight = first.get("highlight")
        near = f" near '{highlight}'" if highlight else ""
        raise ModelError(
            f"SQL syntax error: {description}{near}", path=path, line=int(first.get("line") or 0),
            col=int(first.get("col") or 0),
        ) from None
    except TokenError as exc:
        raise ModelError(f"SQL syntax error: {exc} (an unterminated string or quote?)", path=path) from None
    if not statements:
        raise UnsafeSqlError("the model has no SQL query; write one SELECT statement", path=path)
    lone_query = len(statements) == 1 and type(statements[0]).__name__ in _QUERY_TYPES
    for index, statement in enumerate(statements if not (guard_later and lone_query) else ()):
        keyword = _forbidden_keyword(statement)
        if keyword is not None:
            raise _forbidden_error(keyword, sql, index, path)
    if len(statements) > 1:
        raise UnsafeSqlError(
            f"{len(statements)} statements found; a model is exactly one SELECT query (remove the extra ';')",
            path=path, line=_statement_line(sql, 1),
        )
    statement = statements[0]
    if type(statement).__name__ not in _QUERY_TYPES:
        raise UnsafeSqlError(
            f"{type(statement).__name__.upper()} statement is not allowed; a model is one SELECT query",
            path=path, line=_statement_line(sql, 0),
        )
    return statement


def _forbidden_keyword(tree: exp.Expr) -> str | None:
    for node in tree.walk():
        name = type(node).__name__
        if name in _FORBIDDEN:
            return _keyword(node, name)
    return None


def _keyword(node: exp.Expr, name: str) -> str:
    return _FORBIDDEN[name] or str(node.this).split()[0].upper()


def _forbidden_error(keyword: str, sql: str, index: int, path: str) -> UnsafeSqlError:
    return UnsafeSqlError(
        f"{keyword} statement is not allowed; a model is one SELECT query and IronLayer writes the table",
        path=path, line=_statement_line(sql, index),
    )


def _statement_line(sql: str, index: int) -> int:
    """The 1-based line where statement `index` starts, 0 when unknown (only for error messages)."""
    lines = _statement_lines(sql)
    return lines[index] if index < len(lines) else 0


def _statement_lines(sql: str) -> list[int]:
    """The 1-based line of the first token of each statement (only computed on the error path)."""
    import sqlglot
    from sqlglot.tokenizer_core import TokenType

    lines: list[int] = []
    starting = True
    for token in sqlglot.tokenize(sql, read=DIALECT):
        if token.token_type == TokenType.SEMICOLON:
            starting = True
        elif starting:
            lines.append(token.line)
            starting = False
    return lines


def canonicalize_tree(tree: exp.Expr) -> None:
    """Apply the v1 normalizations (see the module docstring) to `tree`, in place."""
    _canonicalize(tree, guard=None)


def _canonicalize(tree: exp.Expr, *, guard: tuple[str, str] | None) -> None:
    """`canonicalize_tree`; with `guard` = (sql, path), first raise `parse_query`'s error for the first
    forbidden node in walk order (the order `_forbidden_keyword` walks), checked before it changes."""
    from sqlglot import exp

    # One walk collects the nodes of the later passes: the first pass changes no structure, removing
    # a paren keeps every alias and table, and the alias pass removes no table, so these are the
    # nodes (in the order) that walking again before each pass would find (aliases may come in
    # another order, but always each before the aliases inside it, which is all their pass needs).
    parens: list[exp.Paren] = []
    aliases: list[exp.Alias] = []
    tables: list[exp.Table] = []
    for node in list(tree.walk()):
        if guard is not None and type(node).__name__ in _FORBIDDEN:
            raise _forbidden_error(_keyword(node, type(node).__name__), guard[0], 0, guard[1])
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
