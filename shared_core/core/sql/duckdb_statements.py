"""The DuckDB rendering of a batch description (`materialize.BatchSpec`): the statements `DuckDBExecutor` runs
inside one transaction.

DuckDB has transactions across tables, so the publish needs no idempotent form: the executor stages, publishes,
audits the target (inside the transaction it is exactly the prospective relation), records the marker and
commits, or rolls back on a BLOCK failure. Statements, per publish:

- `view`: `CREATE OR REPLACE VIEW`;
- `swap`: `CREATE OR REPLACE TABLE schema.__il_stage_<table> AS query`, then drop the target and rename the stage;
- otherwise: the batch into the temporary table `__il_batch`, the target created empty when it is missing or
  the batch resets it, then `replace_window` deletes `[start, end)`, `merge` and `replace_partitions` delete
  the rows whose key (partition) arrives again, and the batch is inserted by name.
Pure: text in, text out.
"""

from __future__ import annotations

from shared_core.core.project.headers import QualityTest
from shared_core.core.sql.materialize import BatchSpec, Window, builtin_test_query

BATCH_TABLE = "__il_batch"


def quote(name: str) -> str:
    """An identifier quoted for DuckDB.

    >>> quote('odd"name')
    '"odd""name"'
    """
    return '"' + name.replace('"', '""') + '"'


def relation(name: str) -> str:
    """`schema.table` quoted for DuckDB.

    >>> relation("gold.revenue"), relation("solo")
    ('"gold"."revenue"', '"solo"')
    """
    schema, _, table = name.rpartition(".")
    return f"{quote(schema)}.{quote(table)}" if schema else quote(table)


def stage_relation(model: str) -> str:
    """The staging table of a FULL_REFRESH table: `schema.__il_stage_<table>`."""
    schema, _, table = model.rpartition(".")
    return relation(f"{schema}.__il_stage_{table}" if schema else f"__il_stage_{table}")


def window_predicate(window: Window) -> str:
    """`column >= start AND column < end` as DuckDB TIMESTAMP literals (naive UTC).

    >>> from shared_core.core.project.headers import parse_instant as t
    >>> window_predicate(Window("ts", t("2024-01-01"), t("2024-01-02")))
    '"ts" >= TIMESTAMP \\'2024-01-01 00:00:00\\' AND "ts" < TIMESTAMP \\'2024-01-02 00:00:00\\''
    """
    column = quote(window.column)
    return (f"{column} >= TIMESTAMP '{window.start:%Y-%m-%d %H:%M:%S}' AND "
            f"{column} < TIMESTAMP '{window.end:%Y-%m-%d %H:%M:%S}'")


def batch_select(spec: BatchSpec, query: str) -> str:
    """The batch's rows: the model's query, restricted to the window when there is one."""
    batch = f"SELECT * FROM ({query}) AS q"
    return f"{batch} WHERE {window_predicate(spec.window)}" if spec.window is not None else batch


def stage(spec: BatchSpec, query: str) -> list[str]:
    """Build the staged rows (none for a view: its query is published as it is)."""
    if spec.publish == "view":
        return []
    if spec.publish == "swap":
        return [f"CREATE OR REPLACE TABLE {stage_relation(spec.model)} AS {query}"]
    return [f"CREATE OR REPLACE TEMP TABLE {BATCH_TABLE} AS {batch_select(spec, query)}"]


def staged_relation(spec: BatchSpec) -> str:
    """The relation holding the staged rows (counted for `rows_written`)."""
    return stage_relation(spec.model) if spec.publish == "swap" else BATCH_TABLE


def publish(spec: BatchSpec, query: str, *, target_exists: bool) -> list[str]:
    """Publish the staged rows into the target (inside the executor's transaction)."""
    target = relation(spec.model)
    if spec.publish == "view":
        return [f"CREATE OR REPLACE VIEW {target} AS {query}"]
    if spec.publish == "swap":
        return [f"DROP TABLE IF EXISTS {target}",
                f"ALTER TABLE {stage_relation(spec.model)} RENAME TO {quote(spec.model.rpartition('.')[2])}"]
    statements = []
    if spec.reset or not target_exists:
        statements.append(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM {BATCH_TABLE} LIMIT 0")
    if spec.publish == "replace_window" and spec.window is not None:
        statements.append(f"DELETE FROM {target} WHERE {window_predicate(spec.window)}")
    elif spec.publish in ("merge", "replace_partitions"):
        keys = ", ".join(quote(k) for k in spec.keys)
        statements.append(f"DELETE FROM {target} WHERE ({keys}) IN (SELECT {keys} FROM {BATCH_TABLE})")
    statements.append(f"INSERT INTO {target} BY NAME SELECT * FROM {BATCH_TABLE}")
    return statements


def cleanup(spec: BatchSpec) -> list[str]:
    """Drop what the batch staged and the publish left behind (the swap's stage became the target)."""
    return [] if spec.publish in ("view", "swap") else [f"DROP TABLE {BATCH_TABLE}"]


def builtin_test(test: QualityTest, rel: str) -> str:
    """A query returning the number of failing rows of a built-in quality test on relation `rel`.

    `custom_sql` tests are tenant SQL and go through the guard instead (`render_test_query`).

    >>> builtin_test(QualityTest("not_null", "id"), '"s"."t"')
    'SELECT count(*) FROM "s"."t" WHERE "id" IS NULL'
    """
    return builtin_test_query(test, rel, "duckdb")


def columns_query(model: str) -> tuple[str, list[str]]:
    """The query (and its parameters) listing `(column, type)` of a relation, for contract checks."""
    schema, _, table = model.rpartition(".")
    return ("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND "
            "table_name = ? ORDER BY ordinal_position", [schema or "main", table])
