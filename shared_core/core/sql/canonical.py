"""Canonicalize a model's SQL (Databricks dialect), after the guard (`guard.py`) has checked it.

Canonicalization "v2" parses the rendered body with sqlglot, applies the rules of `normalize.py` and prints
the tree back in one fixed form (one line, every identifier quoted), so that edits which cannot change the
data a model produces do not change its content hash, and every edit that can does. The printed form is
then put through the same parse-normalize-print again until it no longer changes (at most
`SETTLE_ROUNDS` times): sqlglot's generator rewrites some forms it reads (`((VALUES 1))`, a derived alias
it names itself), and settling makes a query and the form sqlglot prints for it canonicalize equal. A query
built only of the common classes of `normalize.ROUND_TRIP_STABLE` is printed stably already and is not
parsed again.

The version string enters every content hash, so hashes of different versions never collide; both sides
of a diff are always canonicalized by the running version. sqlglot is imported lazily: planning from a
warm cache never pays for it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared_core.core.project.templating import render_template
from shared_core.core.sql.guard import TreeGuard, parse_statement
from shared_core.core.sql.normalize import normalize_tree
from shared_core.core.sql.quality import guard_test, header_sources_and_tests

if TYPE_CHECKING:
    from sqlglot import exp

CANONICALIZER_VERSION = "v2"
#: Enters the content key (not the content hash): analyses cached before the guard changed are not reused.
GUARD_VERSION = "g2"
DIALECT = "databricks"
#: How many times a canonical text is parsed, normalized and printed again at most before it is final.
SETTLE_ROUNDS = 3


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
    stable = normalize_tree(tree, visit=guard.visit)  # one walk: the guard sees each node before it is normalized
    relations = guard.relations
    sources, tests = header_sources_and_tests(text, path)
    numbering = {name: index for index, name in enumerate(template.refs)}
    for test, line in tests:
        relations += guard_test(test.arg, path=path, line=line, refs=numbering, sources=None).relations
    undeclared: dict[str, int] = {}
    for name, line in relations:
        if name not in sources:
            undeclared.setdefault(name, line)
    text = canonical_sql(tree, copy=False)
    return QueryAnalysis(text if stable else settle(text), template.refs, template.placeholders,
                         tuple(undeclared.items()))


def parse_query(sql: str, path: str) -> exp.Expr:
    """Parse `sql` into exactly one read-only query (statements only; see `shared_core.core.sql.guard`).

    Raises:
        ModelError: a parse error, with the position sqlglot reports.
        UnsafeSqlError: no statement, several statements, or a statement that writes or changes state.
    """
    return parse_statement(sql, path)


def canonicalize_tree(tree: exp.Expr) -> None:
    """Apply the normalization rules (`shared_core.core.sql.normalize`) to `tree`, in place."""
    normalize_tree(tree)


def canonicalize(sql: str, path: str = "query.sql") -> str:
    """The canonical form of one rendered query, without the guard's function and relation rules.

    >>> canonicalize("select Id AS Key, t.Name from T where (x = 1)")
    'SELECT `id` AS `Key`, `t`.`name` FROM `t` WHERE `x` = 1'

    Raises:
        ModelError: the SQL does not parse.
        UnsafeSqlError: it is not exactly one read-only query.
    """
    tree = parse_statement(sql, path)
    stable = normalize_tree(tree)
    text = canonical_sql(tree, copy=False)
    return text if stable else settle(text)


def settle(text: str) -> str:
    """Parse, normalize and print a canonical text again until it stays the same (`SETTLE_ROUNDS` at most).

    A text sqlglot cannot read back is final as it is: the first form is then the canonical one.
    """
    import sqlglot
    from sqlglot.errors import SqlglotError

    for _ in range(SETTLE_ROUNDS):
        try:
            tree = sqlglot.parse_one(text, read=DIALECT)
        except SqlglotError:
            return text
        normalize_tree(tree)
        again = canonical_sql(tree, copy=False)
        if again == text:
            return text
        text = again
    return text


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
