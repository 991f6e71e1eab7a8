"""The guard for tenant SQL: a model body or a `custom_sql` test is one read-only query, or it is refused.

Model files are tenant input and hostile until proven otherwise. Every model body and every `custom_sql`
test goes through this one guard (sqlglot AST, Databricks dialect), at `check`, at `plan` and again when
the executor renders what it runs, so nothing `check` calls valid fails later for a safety reason:

- exactly one statement, and it is a query (SELECT, WITH ... SELECT, a set operation, VALUES); nothing
  anywhere in it writes, changes a setting or talks to the engine (DROP, INSERT, SELECT ... INTO, COPY,
  ATTACH, SET, PRAGMA, ...);
- every function, including those sqlglot does not know, is on the allow-list (`allowlist.py`); in FROM
  only the row generators (UNNEST, EXPLODE, RANGE, GENERATE_SERIES) stand as tables;
- every relation is a `{{ ref() }}` of the model, a CTE in scope, the test's `{model}`, or a declared
  external source (`-- sources: schema.table`); relation names are plain identifiers (never a file path
  or URL) and never name the engine's or IronLayer's own schemas (`RESERVED_SCHEMAS`) or system tables
  (`duckdb_*`, `pg_*`, `sqlite_*`, `pragma_*`).

The declaration rule has one exception: analysis for planning (`strict=False`) records undeclared
relations instead of refusing them, because plans of repositories written before `sources:` existed must
keep their bytes; `check` reports them as errors and the executor refuses them, so such a model can be
planned but never checked clean or run. Every other rule holds in every mode.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from shared_core.core.errors import ModelError, UnsafeSqlError
from shared_core.core.sql.allowlist import (
    ALLOWED_ENGINE_FUNCTIONS,
    ALLOWED_FUNCTIONS,
    BARE_ENGINE_FUNCTIONS,
    TABLE_ENGINE_FUNCTIONS,
    TABLE_FUNCTIONS,
)

if TYPE_CHECKING:
    from sqlglot import exp
    from sqlglot.tokenizer_core import Token, TokenType

DIALECT = "databricks"

#: Schemas (or catalogs) that belong to the engine or to IronLayer: no model lives there, no SQL reads them.
RESERVED_SCHEMAS = frozenset({"_ironlayer", "information_schema", "pg_catalog", "system", "temp"})
#: Table-name prefixes of the engine's system views, reachable from any schema in DuckDB.
SYSTEM_PREFIXES = ("duckdb_", "pg_", "sqlite_", "pragma_")
#: Names IronLayer gives its own staging tables and tokens.
INTERNAL_PREFIX = "__il_"

_PLAIN = re.compile(r"^[a-z_][a-z0-9_]*$")
_REF_TOKEN = re.compile(r"^__il_ref_(\d+)__$")
_MODEL_TOKEN = "__il_model__"

# Statement nodes refused anywhere in the tree, with the keyword their message names ("" = the command's).
FORBIDDEN = {
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
    "Into": "SELECT ... INTO",
    "Copy": "COPY",
    "Attach": "ATTACH",
    "Detach": "DETACH",
    "Pragma": "PRAGMA",
    "Install": "INSTALL",
    "Export": "EXPORT",
    "Describe": "DESCRIBE",
    "Show": "SHOW",
    "Transaction": "BEGIN",
    "Commit": "COMMIT",
    "Rollback": "ROLLBACK",
    "Cache": "CACHE",
    "Uncache": "UNCACHE",
    "Refresh": "REFRESH",
    "Kill": "KILL",
    "LoadData": "LOAD DATA",
    "Analyze": "ANALYZE",
    "Summarize": "SUMMARIZE",
    "Declare": "DECLARE",
    "QueryTransform": "TRANSFORM ... USING",  # runs a command or script on the cluster (Hive script transform)
}
QUERY_TYPES = ("Select", "Union", "Intersect", "Except", "Subquery", "Values")


def reserved_name_problem(name: str, *, reading: bool = False) -> str | None:
    """Why the dotted, lower-case `name` may not be a model (or, with `reading`, be read), or None.

    >>> reserved_name_problem("_ironlayer.committed_batches")
    "schema '_ironlayer' is reserved for the engine and IronLayer"
    >>> reserved_name_problem("main.duckdb_tables", reading=True), reserved_name_problem("main.duckdb_x")
    ("'duckdb_tables' is an engine system table name (duckdb_, pg_, sqlite_, pragma_)", None)
    """
    parts = name.split(".")
    for part in parts:
        if part in RESERVED_SCHEMAS:
            return f"schema '{part}' is reserved for the engine and IronLayer"
        if part.startswith(INTERNAL_PREFIX):
            return f"names starting with '{INTERNAL_PREFIX}' are reserved for IronLayer's own tables"
    if reading and parts[-1].startswith(SYSTEM_PREFIXES):
        return f"'{parts[-1]}' is an engine system table name ({', '.join(SYSTEM_PREFIXES)})"
    return None


def parse_statement(sql: str, path: str, *, subject: str = "model", line: int = 0, guard_later: bool = False
                    ) -> exp.Expr:
    """Parse `sql` into exactly one read-only query (no function or relation checks: see `TreeGuard`).

    Args:
        sql: rendered SQL (template expressions already replaced by tokens).
        path: the model file, for error messages.
        subject: "model" or "test" (a `custom_sql` test), for the wording of errors.
        line: the line every error names (a test sits on one header line); 0 = the statement's own line.
        guard_later: return a lone query without walking it for forbidden nodes; the caller's own walk
            (`TreeGuard.visit` on every node) raises the same error for the same node.

    Raises:
        ModelError: a parse error, with the position sqlglot reports.
        UnsafeSqlError: no statement, several statements, or a statement that writes or changes state.
    """
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.errors import ParseError, TokenError

    what = "a model is exactly one SELECT query" if subject == "model" else (
        "a custom_sql test is exactly one SELECT query returning the failing rows")
    prefix = "SQL syntax error" if subject == "model" else "SQL syntax error in a custom_sql test"
    try:
        dialect = Dialect.get_or_raise(DIALECT)
        tokens = dialect.tokenize(sql)
        # A comment after the last ';' comes back as a Semicolon "statement": it is only a comment.
        statements = [s for s in dialect.parser().parse(tokens, sql)
                      if s is not None and type(s).__name__ != "Semicolon"]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        description = str(first.get("description", exc)).split("<Token")[0].strip().rstrip(".")
        description = description.removesuffix(" but got").strip()
        highlight = first.get("highlight")
        near = f" near '{highlight}'" if highlight else ""
        raise ModelError(
            f"{prefix}: {description}{near}", path=path, line=line or int(first.get("line") or 0),
            col=0 if line else int(first.get("col") or 0),
        ) from None
    except TokenError as exc:
        raise ModelError(f"SQL syntax error: {exc} (an unterminated string or quote?)", path=path, line=line) from None
    if not statements:
        message = ("the model has no SQL query; write one SELECT statement" if subject == "model"
                   else "the custom_sql test has no SQL query; write one SELECT returning the failing rows")
        raise UnsafeSqlError(message, path=path, line=line)
    lone_query = len(statements) == 1 and type(statements[0]).__name__ in QUERY_TYPES
    for index, statement in enumerate(statements if not (guard_later and lone_query) else ()):
        for node in statement.walk():
            if type(node).__name__ in FORBIDDEN:
                raise forbidden_error(node, sql, index, path, subject=subject, line=line)
    if len(statements) > 1:
        raise UnsafeSqlError(
            f"{len(statements)} statements found; {what} (remove the extra ';')",
            path=path, line=line or _statement_line(sql, 1),
        )
    statement = statements[0]
    if type(statement).__name__ not in QUERY_TYPES:
        raise UnsafeSqlError(
            f"{type(statement).__name__.upper()} statement is not allowed; {what}",
            path=path, line=line or _statement_line(sql, 0),
        )
    dangling = dangling_clause(tokens)
    if dangling is not None:
        token, problem = dangling
        raise ModelError(f"{prefix}: {problem} near '{token.text}'", path=path, line=line or token.line,
                         col=0 if line else token.col - len(token.text) + 1)
    return statement


#: Tokens that end a clause or start the next one: a keyword followed by one of them has nothing to act on.
_CLAUSE_STARTS = frozenset({
    "R_PAREN", "SEMICOLON", "COMMA", "WHERE", "GROUP_BY", "HAVING", "ORDER_BY", "LIMIT", "QUALIFY", "WINDOW",
    "JOIN", "INNER", "OUTER", "CROSS", "SEMI", "ANTI", "NATURAL", "FULL", "LEFT", "RIGHT", "UNION", "INTERSECT",
    "EXCEPT", "ON", "USING", "CLUSTER_BY", "SORT_BY", "DISTRIBUTE_BY", "LATERAL",
})
#: Keywords that need an operand, with what is missing when they have none.
_NEEDS_OPERAND = {
    "ON": "ON without a join condition (write the condition, or CROSS JOIN for every pair of rows)",
    "GROUP_BY": "GROUP BY without columns",
    "PARTITION_BY": "PARTITION BY without columns",
}


_TOKEN_SETS: list[tuple[frozenset[TokenType], frozenset[TokenType], TokenType, frozenset[TokenType],
                        frozenset[TokenType]]] = []


def _token_sets() -> tuple[frozenset[TokenType], frozenset[TokenType], TokenType, frozenset[TokenType],
                           frozenset[TokenType]]:
    """The token types `dangling_clause` looks for, made once (sqlglot is imported lazily)."""
    if not _TOKEN_SETS:
        from sqlglot.tokenizer_core import TokenType

        types = TokenType.__members__
        _TOKEN_SETS.append((
            frozenset(types[name] for name in (*_NEEDS_OPERAND, "USING")),
            frozenset(types[name] for name in _CLAUSE_STARTS),
            types["USING"],
            frozenset((types["L_PAREN"], types["STRING"])),
            frozenset((types["DOT"], types["L_PAREN"])),
        ))
    return _TOKEN_SETS[0]


def dangling_clause(tokens: Sequence[Token]) -> tuple[Token, str] | None:
    """The first keyword with nothing after it that it needs, and what is missing; None when there is none.

    sqlglot reads `JOIN b ON` as `JOIN b ON TRUE` (every pair of rows) and drops an empty `PARTITION BY`
    (one window over everything): a condition or column list left out must be an error, not a new meaning.

    >>> from sqlglot.dialects.dialect import Dialect
    >>> dangling_clause(Dialect.get_or_raise("databricks").tokenize("SELECT * FROM a JOIN b ON WHERE x"))[1][:33]
    'ON without a join condition (writ'
    """
    needs, clause_starts, using, opening, operand_tails = _token_sets()
    last = len(tokens) - 1
    for index, token in enumerate(tokens):
        kind = token.token_type
        if kind not in needs:
            continue
        following = tokens[index + 1] if index < last else None
        if kind is using:  # a join's column list; `TRANSFORM (...) USING 'script'` is the guard's to refuse
            if following is None or following.token_type not in opening:
                return token, "USING without a parenthesized column list"
            continue
        problem = _NEEDS_OPERAND[kind.name]
        if following is None:
            return token, problem
        after = tokens[index + 2].token_type if index + 1 < last else None
        if following.token_type in clause_starts and after not in operand_tails:
            return token, problem  # `ON LEFT(a, 1) = b` and `ON semi.k = a.k` are operands, not clauses
    return None


def forbidden_error(node: exp.Expr, sql: str, index: int, path: str, *, subject: str = "model", line: int = 0
                    ) -> UnsafeSqlError:
    """The error for a statement node that writes or changes state, at the line of statement `index`."""
    name = type(node).__name__
    keyword = FORBIDDEN[name] or str(node.this).split()[0].upper()
    what = ("a model is one SELECT query and IronLayer writes the table" if subject == "model"
            else "a custom_sql test is one SELECT query returning the failing rows")
    return UnsafeSqlError(f"{keyword} statement is not allowed; {what}", path=path,
                          line=line or _statement_line(sql, index))


def _statement_line(sql: str, index: int) -> int:
    """The 1-based line where statement `index` starts, 0 when unknown (only for error messages)."""
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
    return lines[index] if index < len(lines) else 0


class TreeGuard:
    """Checks every node of one parsed query: statements, functions and relations (see the module docstring).

    `visit` is called on each node in walk order (the canonicalizer calls it from its own walk, so the
    tree is walked once); `check` walks a tree itself. With `sources=None` (planning) relations that are
    not refs, CTEs or the test's `{model}` are collected in `relations` instead of refused; otherwise each
    must be one of `sources`.
    """

    def __init__(
        self, *, path: str, sql: str, refs: int, sources: Collection[str] | None = None, model: str = "",
        subject: str = "model", line: int = 0,
    ) -> None:
        self.path = path
        self.sql = sql
        self.refs = refs
        self.sources = sources
        self.model = model
        self.subject = subject
        self.line = line
        self.relations: list[tuple[str, int]] = []  # external relations read: (name, line), in walk order

    def check(self, tree: exp.Expr) -> None:
        """Visit every node of `tree`.

        Raises:
            UnsafeSqlError: at the first node that breaks a rule.
        """
        for node in tree.walk():
            self.visit(node)

    def visit(self, node: exp.Expr) -> None:
        """Check one node (its children are visited on their own).

        Raises:
            UnsafeSqlError: the node breaks a rule.
        """
        kind = _KINDS.get(type(node))
        if kind is None:
            kind = _KINDS[type(node)] = _kind_of(type(node))
        if kind == _OTHER:
            return
        if kind == _FORBIDDEN:
            raise forbidden_error(node, self.sql, 0, self.path, subject=self.subject, line=self.line)
        if kind == _FUNCTION:
            self._function(node)  # type: ignore[arg-type]  # _kind_of checked the class
        elif kind == _TABLE:
            self._relation(node)  # type: ignore[arg-type]
        elif not node.args.get("table"):  # a column
            identifier = node.this
            if (type(identifier).__name__ == "Identifier" and not identifier.quoted
                    and identifier.name.lower() in BARE_ENGINE_FUNCTIONS):
                raise self._error(f"{identifier.name} reads the engine's state and is not allowed; if it is a "
                                  "column, qualify it with its table", node)

    def _function(self, node: exp.Func) -> None:
        from sqlglot import exp

        if isinstance(node, exp.Anonymous):
            label, allowed = node.name.upper(), node.name.lower() in ALLOWED_ENGINE_FUNCTIONS
            in_from = node.name.lower() in TABLE_ENGINE_FUNCTIONS
        else:
            label, allowed = type(node).sql_name(), type(node).__name__ in ALLOWED_FUNCTIONS
            in_from = type(node).__name__ in TABLE_FUNCTIONS
        if not allowed:
            raise self._error(
                f"function {label} is not allowed; tenant SQL may call only the pure functions of IronLayer's "
                "allow-list (nothing that reads files, the network, the environment or engine settings); read "
                "data through {{ ref() }} or a declared source", node,
            )
        if isinstance(node.parent, exp.Table) and node.arg_key == "this" and not in_from:
            raise self._error(
                f"table function {label} is not allowed in FROM; only UNNEST, EXPLODE, RANGE and GENERATE_SERIES "
                "generate rows there, and tables are read through {{ ref() }} or a declared source", node,
            )

    def _relation(self, table: exp.Table) -> None:
        from sqlglot import exp

        if isinstance(table.this, exp.Func):
            return  # a table function: `_function` checks it when the walk reaches it
        parts = table.parts
        if not parts or not all(isinstance(p, exp.Identifier) and _PLAIN.match(p.name.lower()) for p in parts):
            shown = table.sql(dialect=DIALECT, comments=False)
            raise self._error(
                f"relation {shown} is not a table name; tenant SQL never reads files or URLs, and reads tables "
                "through {{ ref() }} or a declared source", table,
            )
        name = ".".join(p.name.lower() for p in parts)
        if len(parts) == 1:
            token = _REF_TOKEN.match(name)
            if token is not None and (self.sources is None or int(token.group(1)) < self.refs):
                return  # a ref (checked against the model's refs wherever they are bound)
            if name == _MODEL_TOKEN and self.subject == "test":
                return
            if _cte_in_scope(table, name):
                return
        problem = reserved_name_problem(name, reading=True)
        if problem is not None:
            raise self._error(f"relation {name} cannot be read: {problem}", table)
        if self.sources is None:
            self.relations.append((name, self._line(table)))
        elif name not in self.sources:
            raise undeclared_error(name, self.model, self.path, self._line(table))

    def _line(self, node: exp.Expr) -> int:
        if self.line:
            return self.line
        for candidate in node.walk():
            line = candidate.meta.get("line") if candidate._meta else None
            if line:
                return int(line)
        return 0

    def _error(self, message: str, node: exp.Expr) -> UnsafeSqlError:
        where = "" if self.subject == "model" else "in a custom_sql test: "
        return UnsafeSqlError(where + message, path=self.path, line=self._line(node))


_OTHER, _FORBIDDEN, _FUNCTION, _TABLE, _COLUMN = range(5)
_KINDS: dict[type, int] = {}  # node class -> what the guard checks on it (the walk visits every node)


def _kind_of(cls: type) -> int:
    from sqlglot import exp

    if cls.__name__ in FORBIDDEN:
        return _FORBIDDEN
    if issubclass(cls, exp.Func):
        return _FUNCTION
    if issubclass(cls, exp.Table):
        return _TABLE
    return _COLUMN if issubclass(cls, exp.Column) else _OTHER


def undeclared_error(relation: str, model: str, path: str, line: int, *, is_model: bool = False) -> UnsafeSqlError:
    """The error for a relation that is neither a ref, a CTE nor a declared source.

    >>> str(undeclared_error("raw.src", "analytics.x", "models/x.sql", 4))
    'models/x.sql:4: undeclared relation raw.src in analytics.x; declare it with `-- sources: raw.src`'
    >>> str(undeclared_error("dim_users", "", "models/x.sql", 9))
    'models/x.sql:9: undeclared relation dim_users; a source is read by its schema: write schema.dim_users and \
declare it with `-- sources: schema.dim_users`'
    """
    in_model = f" in {model}" if model else ""
    if is_model:
        return UnsafeSqlError(f"{relation}{in_model} is a model read by its name; read it with "
                              f"{{{{ ref('{relation}') }}}}", path=path, line=line)
    if "." not in relation:  # a source is declared as schema.table: name the schema rather than guess it
        return UnsafeSqlError(f"undeclared relation {relation}{in_model}; a source is read by its schema: write "
                              f"schema.{relation} and declare it with `-- sources: schema.{relation}`",
                              path=path, line=line)
    return UnsafeSqlError(f"undeclared relation {relation}{in_model}; declare it with `-- sources: {relation}`",
                          path=path, line=line)


def _cte_in_scope(table: exp.Table, name: str) -> bool:
    """Whether the unqualified `name` at `table` refers to a CTE visible there (a WITH of an enclosing query).

    A CTE sees the CTEs before it in its WITH (and itself when the WITH is RECURSIVE); a query body sees
    all CTEs of its WITH. Anything else with that name is a real relation.
    """
    from sqlglot import exp

    child: exp.Expr = table
    node = table.parent
    while node is not None:
        if isinstance(node, exp.With):
            ctes = node.expressions
            index = next((i for i, cte in enumerate(ctes) if cte is child), len(ctes))
            visible = ctes[: index + 1] if node.args.get("recursive") else ctes[:index]
            if any(cte.alias_or_name.lower() == name for cte in visible):
                return True
        else:
            with_ = node.args.get("with_")
            if (isinstance(with_, exp.With) and with_ is not child
                    and any(cte.alias_or_name.lower() == name for cte in with_.expressions)):
                return True
        child, node = node, node.parent
    return False
