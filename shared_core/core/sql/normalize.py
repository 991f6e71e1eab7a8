"""The rewrite rules of canonicalization on a sqlglot tree (Databricks dialect): what is folded and what is kept.

A rule may only fold a difference that cannot reach the data a model produces. IronLayer runs the SQL that
sqlglot generates from the parsed tree, never the tenant's text, so whatever the generator normalizes (keyword
case, optional keywords, spacing, `!=` for `<>`, `IFNULL` for `COALESCE`) never reaches the engine. Beyond
that, exactly these differences are folded:

1. comments;
2. the case and quoting of identifiers that only *refer* to something: catalog, schema and table names,
   table and CTE aliases, column references, `USING` columns, window names and lambda variables. Databricks
   resolves them case-insensitively, quoted or not, and an unaliased column takes its *stored* name;
3. the case of function names and of window-frame keywords (`rows between 1 preceding` = `ROWS BETWEEN
   1 PRECEDING`); `INNER` in `INNER JOIN`, `OUTER` in `LEFT OUTER JOIN`, `ASC` in `ORDER BY`, and
   `x NOT LIKE p` written as `NOT x LIKE p`;
4. redundant parentheses: around a single column, literal, function call or parenthesized expression;
   around a whole WHERE / HAVING / QUALIFY / JOIN ... ON condition, a projection or an alias; around a
   comparison or NOT that is an operand of AND / OR, around an AND inside AND or OR, and around an OR
   inside OR (parentheses that can change precedence, `(a OR b) AND c`, are kept);
5. a column aliased to its own lower-case name (`t.id AS id`) and a table aliased to its own name.

Names that end up in data are kept exactly, case included: column aliases at every level (they are the
table's column names, and `SELECT *`, `struct(*)` and `to_json` carry them on), struct field names
(`struct(x AS Key)`, `named_struct('Key', x)`), the column lists of derived tables and CTEs (`AS t(Key)`),
the names an UNPIVOT creates, the field of a struct read as an unaliased projection (`payload.OrderId`
names its column `OrderId`), and every literal (strings, numbers as written, map keys, JSON path keys).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlglot import exp

DIALECT = "databricks"
_FRAME_KEYS = ("kind", "start", "start_side", "end", "end_side")

#: Node classes whose printed form parses back to the same normalized tree. A query built only of these needs
#: no settling (`canonical.settle`: a second parse, as costly as the first); any other class (VALUES, UNNEST,
#: PIVOT, ANY, ARRAY, JSON functions, ...) settles. Leaving out a class only costs time, never correctness,
#: and a class listed wrongly could only keep two spellings apart (a rebuild), never merge two queries:
#: `tests/unit/test_canonical.py` checks the list against every query of the fixtures.
ROUND_TRIP_STABLE = frozenset({
    "Select", "From", "Join", "Where", "Group", "Having", "Qualify", "Order", "Ordered", "Limit", "With", "CTE",
    "Subquery", "Union", "Distinct", "Column", "Identifier", "Star", "Table", "TableAlias", "Alias", "Literal",
    "Boolean", "Null", "Paren", "Tuple", "And", "Or", "Not", "EQ", "NEQ", "GT", "GTE", "LT", "LTE", "Is", "In",
    "Between", "Like", "ILike", "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Case", "If", "Cast", "TryCast",
    "DataType", "DataTypeParam", "Count", "Sum", "Avg", "Min", "Max", "Coalesce", "Greatest", "Least", "Lower",
    "Upper", "Trim", "Round", "Abs", "Floor", "Ceil", "Length", "Substring", "DateTrunc", "TimestampTrunc",
    "DateDiff", "CurrentDate", "CurrentTimestamp", "RowNumber", "Rank", "DenseRank", "Lag", "Lead", "FirstValue",
    "LastValue", "Window", "WindowSpec", "Anonymous",
})


def normalize_tree(tree: exp.Expr, *, visit: Callable[[exp.Expr], None] | None = None) -> bool:
    """Apply the rules of the module docstring to `tree`, in place.

    Args:
        tree: a parsed query.
        visit: called with each node before the walk changes it (the guard's check), in walk order.

    Returns:
        Whether every node is of a `ROUND_TRIP_STABLE` class (the printed tree needs no settling).
    """
    from sqlglot import exp

    # One walk collects the nodes of the later passes: the first pass changes no structure, removing
    # a paren keeps every alias and table, and the alias pass removes no table, so these are the
    # nodes (in the order) that walking again before each pass would find (aliases may come in
    # another order, but always each before the aliases inside it, which is all their pass needs).
    parens: list[exp.Paren] = []
    aliases: list[exp.Alias] = []
    tables: list[exp.Table] = []
    negated: list[exp.Like | exp.ILike] = []
    names = _Names()  # the walk is breadth-first: a lambda or an UNPIVOT comes before the identifiers inside it
    kinds = _KINDS
    stable = True
    for node in list(tree.walk()):
        if visit is not None:
            visit(node)
        if node.comments:
            node.comments = None
        kind = kinds.get(type(node))
        if kind is None:
            kind = kinds[type(node)] = _kind_of(type(node))
        if kind < 0:
            stable = False
            kind = -kind
        if kind == _OTHER:
            continue
        if kind == _IDENTIFIER:
            if names.is_reference(node):  # type: ignore[arg-type]  # _kind_of checked the class
                lowered = node.name.lower()
                if lowered != node.name:
                    node.set("this", lowered)
            if node.args.get("quoted"):
                node.set("quoted", False)
        elif kind == _ANONYMOUS:
            node.set("this", node.name.upper())
        elif kind == _JOIN:
            join_kind = node.args.get("kind")
            if join_kind == "INNER" or (join_kind == "OUTER" and node.args.get("side")):
                node.set("kind", None)
        elif kind == _WINDOW_SPEC:
            for key in _FRAME_KEYS:
                value = node.args.get(key)
                if isinstance(value, str):
                    node.set(key, value.upper())
        elif kind == _ORDERED:
            if node.args.get("desc") is False:
                node.set("desc", None)  # ASC is the default (and so are its NULLS FIRST)
        elif kind == _LIKE:
            if node.args.get("negate") and _plain_pattern(node):  # type: ignore[arg-type]
                negated.append(node)  # type: ignore[arg-type]
        elif kind == _LAMBDA:
            names.lambdas = True
        elif kind == _PIVOT:
            names.unpivots = names.unpivots or bool(node.args.get("unpivot"))
        elif kind == _PAREN:
            parens.append(node)  # type: ignore[arg-type]
        elif kind == _ALIAS:
            aliases.append(node)  # type: ignore[arg-type]
        elif kind == _TABLE:
            tables.append(node)  # type: ignore[arg-type]
    for like in negated:
        like.set("negate", None)
        wrapper = exp.Not()
        like.replace(wrapper)
        wrapper.set("this", like)
    for paren in reversed(parens):
        if _redundant_paren(paren):
            paren.replace(paren.this)
    for alias in aliases:
        inner = alias.this
        # The column's name is folded by now and the alias is kept: equal only for `x AS x` in lower case.
        if isinstance(inner, exp.Column) and inner.name and inner.name == alias.alias:
            alias.replace(inner)
    for table in tables:
        table_alias = table.args.get("alias")
        if table_alias is not None and not table_alias.columns and table_alias.name == table.name:
            table.set("alias", None)
    return stable


(_OTHER, _IDENTIFIER, _ANONYMOUS, _JOIN, _WINDOW_SPEC, _ORDERED, _LIKE, _LAMBDA, _PIVOT, _PAREN, _ALIAS,
 _TABLE) = range(1, 13)
_KINDS: dict[type, int] = {}  # node class -> what the walk does with it; negative: not ROUND_TRIP_STABLE


def _kind_of(cls: type) -> int:
    from sqlglot import exp

    sign = 1 if cls.__name__ in ROUND_TRIP_STABLE else -1
    for base, kind in ((exp.Identifier, _IDENTIFIER), (exp.Anonymous, _ANONYMOUS), (exp.Join, _JOIN),
                       (exp.WindowSpec, _WINDOW_SPEC), (exp.Ordered, _ORDERED), (exp.Like, _LIKE),
                       (exp.ILike, _LIKE), (exp.Lambda, _LAMBDA), (exp.Pivot, _PIVOT), (exp.Paren, _PAREN),
                       (exp.Alias, _ALIAS), (exp.Table, _TABLE)):
        if issubclass(cls, base):
            return sign * kind
    return sign * _OTHER


# What an identifier is, by the class of its parent: always a reference (its case folds) in these positions,
# never elsewhere, except as noted in `_Names.is_reference`.
_REFERENCE_KEYS: dict[str, frozenset[str]] = {
    "Table": frozenset({"this", "db", "catalog"}),
    "TableAlias": frozenset({"this"}),  # the alias; its column list names columns
    "Join": frozenset({"using"}),
    "Window": frozenset({"this", "alias"}),  # `WINDOW w AS (...)` and `OVER w`
    "Lambda": frozenset({"expressions"}),
}
_PARENTS: dict[type, str] = {}  # parent class -> "Column", a key of _REFERENCE_KEYS, or ""


def _parent_kind(cls: type) -> str:
    kind = _PARENTS.get(cls)
    if kind is None:
        from sqlglot import exp

        kind = _PARENTS[cls] = next(
            (name for name in ("Column", *_REFERENCE_KEYS) if issubclass(cls, getattr(exp, name))), "")
    return kind


class _Names:
    """Decides, identifier by identifier, whether a name only refers (foldable) or names data (kept)."""

    def __init__(self) -> None:
        self.lambdas = False  # the walk met a lambda: a bare identifier may be one of its variables
        self.unpivots = False  # ... an UNPIVOT: the columns in it name values
        self._relations: dict[int, set[str]] = {}  # id(select) -> the names its relations are qualified by

    def is_reference(self, node: exp.Identifier) -> bool:
        """Whether the identifier only refers to something (its case may be folded) rather than naming data."""
        parent = node.parent
        kind = _parent_kind(type(parent))
        if kind == "Column":
            if self.unpivots and _in_unpivot(parent):  # type: ignore[arg-type]
                return False  # UNPIVOT turns these names into values
            return not (node.arg_key == "this" and self._names_struct_field(parent))  # type: ignore[arg-type]
        if kind:
            return node.arg_key in _REFERENCE_KEYS[kind]
        return self.lambdas and _is_lambda_variable(node)

    def _names_struct_field(self, column: exp.Column) -> bool:
        """Whether `column` is an unaliased projection `s.Field` whose qualifier is no relation: a struct field.

        Databricks names such a column with the field as written (`SELECT payload.OrderId` gives a column
        `OrderId`), while a column read through a relation (`o.order_id`) keeps its stored name.
        """
        if not column.args.get("table"):
            return False
        from sqlglot import exp

        child: exp.Expr = column
        parent = column.parent
        while isinstance(parent, exp.Paren):
            child, parent = parent, parent.parent
        if not (isinstance(parent, exp.Select) and child.arg_key == "expressions"):
            return False
        qualifier = column.table.lower()
        if column.args.get("db"):
            qualifier = f"{column.db.lower()}.{qualifier}"
        relations = self._relations.get(id(parent))
        if relations is None:
            relations = self._relations[id(parent)] = _relation_names(parent)
        return qualifier not in relations


def _is_lambda_variable(node: exp.Identifier) -> bool:
    """Whether `node` is a variable of an enclosing lambda (`x -> x + 1` keeps its body's `x` bare)."""
    from sqlglot import exp

    name = node.name.lower()
    ancestor = node.parent
    while ancestor is not None:
        if isinstance(ancestor, exp.Lambda) and any(p.name.lower() == name for p in ancestor.expressions):
            return True
        ancestor = ancestor.parent
    return False


def _in_unpivot(column: exp.Column) -> bool:
    from sqlglot import exp

    ancestor = column.parent
    while ancestor is not None and not isinstance(ancestor, (exp.Select, exp.Pivot)):
        ancestor = ancestor.parent
    return isinstance(ancestor, exp.Pivot) and bool(ancestor.args.get("unpivot"))


def _relation_names(select: exp.Select) -> set[str]:
    """The names by which the relations of `select`'s FROM, joins and lateral views can be qualified."""
    from sqlglot import exp

    sources: list[exp.Expr] = []
    from_ = select.args.get("from_")
    if from_ is not None:
        sources.append(from_.this)
    sources += [join.this for join in select.args.get("joins") or ()]
    sources += list(select.args.get("laterals") or ())
    names: set[str] = set()
    for source in sources:
        if source.alias:
            names.add(source.alias.lower())
        if isinstance(source, exp.Table):
            names.add(source.name.lower())
            if source.db:
                names.add(f"{source.db.lower()}.{source.name.lower()}")
    return names


def _plain_pattern(like: exp.Like | exp.ILike) -> bool:
    """Whether `x NOT LIKE p` means `NOT (x LIKE p)`: not for `NOT LIKE ANY/ALL (...)`, nor under ESCAPE."""
    from sqlglot import exp

    return not isinstance(like.expression, (exp.Any, exp.All)) and not isinstance(like.parent, exp.Escape)


def _redundant_paren(paren: exp.Paren) -> bool:
    from sqlglot import exp

    inner = paren.this
    parent = paren.parent
    if isinstance(parent, (exp.Any, exp.All)):
        return False  # `LIKE ANY ('a%')` needs them: they are the syntax, not grouping
    if isinstance(inner, (exp.Column, exp.Literal, exp.Paren, exp.Null, exp.Boolean, exp.Star, exp.Case)):
        return True
    if isinstance(inner, exp.Func) and _is_call(inner):
        return True
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
