"""One description of how a batch of a model is written, whatever the engine: `describe_batch`.

Every kind and materialization is the same sequence of abstract operations; each engine renders them
(`duckdb_statements`, `databricks_statements`) and its executor runs them:

1. **stage**: the batch's rows (the model's query, restricted to the batch window `[start, end)` on the time
   column for incremental kinds) are built once into a staging relation;
2. **audit**: quality tests and contract checks run against what readers will see once the batch is
   published (the *prospective* relation: the staged rows merged into the target as the publish will do);
   a failing BLOCK check stops the batch here, with nothing published;
3. **publish**: the staged rows reach the target (see `Publish`), atomically for readers;
4. **mark**: the batch marker is recorded in the warehouse, so a committed batch is never applied twice;
5. **cleanup**: the staging relation is dropped.

A transactional engine (DuckDB) runs 2-4 in one transaction: it publishes first and audits the target inside
the transaction, which *is* the prospective relation, and rolls back on a BLOCK failure. An engine without
multi-statement transactions (Databricks) audits the prospective relation before publishing and makes each
operation idempotent instead (see `shared_core.adapters.engines.databricks`).

How each kind and materialization publishes (`Publish`):

| kind                      | materialization          | publish                                                  |
|---------------------------|--------------------------|----------------------------------------------------------|
| any                       | VIEW                     | `view`: replace the view                                 |
| FULL_REFRESH              | a table                  | `swap`: replace the whole table with the stage           |
| INCREMENTAL_BY_TIME_RANGE | a table                  | `replace_window`: exactly the rows of `[start, end)`     |
| APPEND_ONLY with a time column | a table             | `replace_window` (its rows are exactly that range's)     |
| APPEND_ONLY               | INSERT_OVERWRITE (1)     | `replace_partitions`: the partitions the batch carries   |
| APPEND_ONLY               | any other table          | `append`: add the batch's rows                           |
| MERGE_BY_KEY              | a table                  | `merge`: rows whose key arrives again are replaced       |

(1) with `partition_by` and no time column.

A `reset` batch, or one whose target does not exist yet, publishes as a swap: the table then holds exactly
that batch. `INSERT_OVERWRITE` on an incremental model overwrites the window's partitions (`replace_window`
on a table partitioned by `partition_by`): replacing the whole window also clears partitions the batch
left empty, which a dynamic partition overwrite would keep. Pure: values in, values out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared_core.core.planning.markers import replaces_by_time
from shared_core.core.project.headers import QualityTest
from shared_core.core.project.models import Model
from shared_core.core.sql.contracts import ContractCheck, contract_checks

Publish = Literal["view", "swap", "replace_window", "replace_partitions", "append", "merge"]
#: The abstract operations of a batch, in order.
OPERATIONS = ("stage", "audit", "publish", "mark", "cleanup")


@dataclass(frozen=True)
class Window:
    """The batch window `[start, end)` on the model's time column."""

    column: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class BatchSpec:
    """How one batch of one model is written: the description every engine renders."""

    model: str  # schema.table (or table)
    publish: Publish
    window: Window | None  # the staged rows are restricted to it; replace_window replaces exactly it
    keys: tuple[str, ...]  # merge: the unique key; replace_partitions: the partition columns
    partition_by: tuple[str, ...]  # the table's layout, where the engine partitions tables
    reset: bool  # start from an empty table: the batch's rows become the whole table
    tests: tuple[QualityTest, ...]
    contract: tuple[ContractCheck, ...]

    @property
    def idempotent(self) -> bool:
        """Whether publishing the same staged rows twice leaves the target as publishing them once.

        Only an append (APPEND_ONLY without a time column) is not: its rows cannot be told apart from earlier
        batches' rows.
        """
        return self.publish != "append"


def describe_batch(model: Model, *, start: datetime | None, end: datetime | None, reset: bool) -> BatchSpec:
    """The description of the batch `[start, end)` of `model` (`start`/`end` None for a whole-table step).

    >>> from shared_core.core.project.models import ModelSource, load_project
    >>> from shared_core.core.project.headers import parse_instant as t
    >>> text = ("-- name: s.e\\n-- kind: INCREMENTAL_BY_TIME_RANGE\\n-- time_column: ts\\n-- start: 2024-01-01\\n"
    ...         "SELECT 1")
    >>> spec = describe_batch(load_project([ModelSource("e.sql", text)])["s.e"], start=t("2024-01-01"),
    ...                       end=t("2024-01-02"), reset=False)
    >>> spec.publish, spec.window.column, spec.idempotent
    ('replace_window', 'ts', True)
    """
    header = model.header
    window = None
    if header.is_incremental and header.time_column and start is not None and end is not None:
        window = Window(header.time_column, start, end)
    publish: Publish
    keys: tuple[str, ...] = ()
    if header.materialization == "VIEW":
        publish = "view"
    elif header.kind == "FULL_REFRESH":
        publish = "swap"
    elif header.kind == "MERGE_BY_KEY":
        publish, keys = "merge", header.unique_key
    elif replaces_by_time(header.kind, header.time_column) and window is not None:
        publish = "replace_window"  # APPEND_ONLY with a time column too: running a batch again replaces it
    elif header.materialization == "INSERT_OVERWRITE" and header.partition_by and window is None:
        publish, keys = "replace_partitions", header.partition_by
    else:
        publish = "append"
    return BatchSpec(
        model=model.name, publish=publish, window=window, keys=keys, partition_by=header.partition_by,
        reset=reset and publish not in ("view", "swap"), tests=header.tests, contract=contract_checks(header),
    )


def batch_id(*parts: str | datetime | None) -> str:
    """A short, stable identifier of a batch from what identifies it (e.g. model, plan, step, window).

    The same parts give the same ID in any process, so a staging relation or a marker named by it is found
    again when an interrupted batch runs a second time.

    >>> batch_id("s.e", "plan", "step", None)
    'e78dfc781a70e857'
    """
    text = "\x1f".join("" if part is None else part.isoformat() if isinstance(part, datetime) else part
                       for part in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def quote_identifier(name: str, dialect: str) -> str:
    """An identifier quoted for `dialect` (`"x"` in DuckDB, backticks in Databricks).

    >>> quote_identifier('a"b', "duckdb"), quote_identifier("a`b", "databricks")
    ('"a""b"', '`a``b`')
    """
    from sqlglot import exp

    return exp.to_identifier(name).sql(dialect=dialect, identify=True)


def quote_literal(value: str, dialect: str) -> str:
    """A string literal for `dialect` (Databricks escapes with backslashes, DuckDB doubles the quote).

    >>> quote_literal("it's", "duckdb"), quote_literal("it's", "databricks")
    ("'it''s'", "'it\\\\'s'")
    """
    from sqlglot import exp

    return exp.Literal.string(value).sql(dialect=dialect)


def builtin_test_query(test: QualityTest, rel: str, dialect: str) -> str:
    """A query returning the number of failing rows of a built-in quality test on relation `rel`, in the SQL
    that DuckDB and Databricks share (identifiers and literals quoted for `dialect`).

    `custom_sql` tests are tenant SQL and go through the guard instead (`render_test_query`).

    >>> builtin_test_query(QualityTest("accepted_values", "status:a|b"), "t", "databricks")
    "SELECT count(*) FROM t WHERE `status` NOT IN ('a', 'b')"
    """
    def q(name: str) -> str:
        return quote_identifier(name, dialect)

    if test.kind == "not_null":
        return f"SELECT count(*) FROM {rel} WHERE {q(test.arg)} IS NULL"
    if test.kind == "unique":
        column = q(test.arg)
        return (f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {rel} WHERE {column} IS NOT NULL "
                f"GROUP BY {column} HAVING count(*) > 1) AS __il_dupes")
    if test.kind == "accepted_values":
        column, _, values = test.arg.partition(":")
        allowed = ", ".join(quote_literal(v.strip(), dialect) for v in values.split("|"))
        return f"SELECT count(*) FROM {rel} WHERE {q(column.strip())} NOT IN ({allowed})"
    if test.kind == "row_count_min":
        return f"SELECT CASE WHEN count(*) < {int(test.arg)} THEN 1 ELSE 0 END FROM {rel}"
    if test.kind == "row_count_max":
        return f"SELECT CASE WHEN count(*) > {int(test.arg)} THEN 1 ELSE 0 END FROM {rel}"
    raise ValueError(f"{test.kind} is not a built-in test; render custom_sql with render_test_query")
