"""The Databricks SQL rendering of a batch description (`materialize.BatchSpec`), statement by statement.

Databricks runs each statement as its own atomic Delta commit and has no transaction across tables, so
every operation is rendered in a form that can be repeated without changing its result (the executor's
docstring gives the argument). Relations are three-part names, every identifier in backticks, every value
a named parameter marker (`:name`) bound by the connector. Per operation:

- stage: `CREATE OR REPLACE TABLE <catalog>.<schema>.__il_stage_<table>_<batch> AS SELECT * FROM (query) WHERE
  window`: a table per batch, named by the batch, so a re-run replaces it;
- audit: `CREATE OR REPLACE TEMPORARY VIEW __il_audit_<batch>` over the prospective rows (the target as the
  publish will leave it), then the quality tests and contract checks against that view;
- publish, per `Publish`: `view` `CREATE OR REPLACE VIEW`; `swap` (and any batch that resets or creates
  the target) `CREATE OR REPLACE TABLE ... [PARTITIONED BY] AS SELECT * FROM stage`; `replace_window`
  `INSERT INTO ... REPLACE WHERE window SELECT * FROM stage`; `replace_partitions`
  `INSERT INTO ... REPLACE USING (partition columns)` (DBR 16.3+, current SQL warehouses); `merge`
  `MERGE INTO ... USING ... ON key` in the delete-and-insert form (rows whose key arrives again are replaced by
  the arriving rows, as on DuckDB, also when a batch carries a key twice); `append` without a window
  `INSERT INTO ... SELECT * FROM stage`, guarded by an intent marker;
- mark: `MERGE INTO <catalog>._ironlayer.committed_batches` keyed by the batch ID (model, model version and
  range, as on DuckDB: `shared_core.core.planning.markers`); a reset first forgets the model's markers;
- cleanup: `DROP TABLE IF EXISTS` the stage, `DROP VIEW IF EXISTS` the audit view.
Pure: text in, text out.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared_core.core.errors import ModelError
from shared_core.core.sql.materialize import BatchSpec, Window, quote_identifier, quote_literal

DIALECT = "databricks"
MARKER_SCHEMA = "_ironlayer"
MARKER_TABLE = "committed_batches"


def quote(name: str) -> str:
    """An identifier in backticks.

    >>> quote("order_date"), quote("odd`name")
    ('`order_date`', '`odd``name`')
    """
    return quote_identifier(name, DIALECT)


def target_parts(model: str, catalog: str, *, path: str = "") -> tuple[str, str, str]:
    """`(catalog, schema, table)` of a model: `schema.table` under `catalog`, a bare name in its `default`
    schema; a three-part model name must name `catalog` itself (a model never writes outside it).

    >>> target_parts("gold.revenue", "main"), target_parts("main.gold.revenue", "main")
    (('main', 'gold', 'revenue'), ('main', 'gold', 'revenue'))

    Raises:
        ModelError: a three-part name in another catalog.
    """
    parts = model.split(".")
    if len(parts) == 3:
        if parts[0] != catalog.lower():
            raise ModelError(f"model {model} names catalog {parts[0]}, but this repository writes to catalog "
                             f"{catalog}; name it {parts[1]}.{parts[2]}", path=path)
        return catalog, parts[1], parts[2]
    if len(parts) == 2:
        return catalog, parts[0], parts[1]
    return catalog, "default", parts[0]


def three_part(catalog: str, schema: str, table: str) -> str:
    """`catalog`.`schema`.`table` in backticks.

    >>> three_part("main", "gold", "revenue")
    '`main`.`gold`.`revenue`'
    """
    return f"{quote(catalog)}.{quote(schema)}.{quote(table)}"


class DatabricksBatch:
    """The statements of one batch of one model on Databricks (see the module docstring)."""

    def __init__(self, spec: BatchSpec, *, catalog: str, batch: str, path: str = "") -> None:
        self.spec = spec
        self.batch = batch
        self.catalog, self.schema, self.table = target_parts(spec.model, catalog, path=path)
        self.target = three_part(self.catalog, self.schema, self.table)
        self.stage = three_part(self.catalog, self.schema, f"__il_stage_{self.table}_{batch}")
        self.audit = quote(f"__il_audit_{batch}")

    def create_schema(self) -> str:
        """The target's schema, created when missing."""
        return f"CREATE SCHEMA IF NOT EXISTS {quote(self.catalog)}.{quote(self.schema)}"

    def target_exists(self) -> str:
        """Lists the target if it exists (`SHOW TABLES` works in Unity Catalog and the Hive metastore alike)."""
        return f"SHOW TABLES IN {quote(self.catalog)}.{quote(self.schema)} LIKE '{self.table}'"

    def create_stage(self, query: str) -> list[str]:
        """Stage the batch's rows into the batch's own table (for a view: a temporary view of its query)."""
        if self.spec.publish == "view":
            return [f"CREATE OR REPLACE TEMPORARY VIEW {self.audit} AS {query}"]
        rows = f"SELECT * FROM ({query}) AS __il_query"
        if self.spec.window is not None:
            rows += f" WHERE {window_predicate(self.spec.window)}"
        return [f"CREATE OR REPLACE TABLE {self.stage} AS {rows}"]

    def count_staged(self) -> str:
        """The number of staged rows (a view's rows are not counted: nothing is written)."""
        return f"SELECT count(*) FROM {self.stage}"

    def describe_staged(self) -> str:
        """The staged columns and their types (contract checks, the merge's column list)."""
        return f"DESCRIBE TABLE {self.audit if self.spec.publish == 'view' else self.stage}"

    def effective_publish(self, *, target_exists: bool) -> str:
        """How the batch publishes here: a reset or a missing target is a swap."""
        spec = self.spec
        if spec.publish == "view":
            return "view"
        if spec.publish == "swap" or spec.reset or not target_exists:
            return "swap"
        return spec.publish

    def create_audit_view(self, *, target_exists: bool) -> list[str]:
        """The prospective relation as a temporary view: the target as the publish will leave it."""
        publish = self.effective_publish(target_exists=target_exists)
        if publish == "view":
            return []  # staged as the audit view itself
        staged = f"SELECT * FROM {self.stage}"
        if publish == "swap":
            rows = staged
        elif publish == "replace_window":
            assert self.spec.window is not None
            rows = (f"SELECT * FROM {self.target} WHERE ({window_predicate(self.spec.window)}) IS NOT TRUE "
                    f"UNION ALL {staged}")
        elif publish in ("merge", "replace_partitions"):
            matches = " AND ".join(f"__il_s.{quote(k)} = __il_t.{quote(k)}" for k in self.spec.keys)
            rows = (f"SELECT * FROM {self.target} AS __il_t WHERE NOT EXISTS (SELECT 1 FROM {self.stage} AS __il_s "
                    f"WHERE {matches}) UNION ALL {staged}")
        else:
            rows = f"SELECT * FROM {self.target} UNION ALL {staged}"
        return [f"CREATE OR REPLACE TEMPORARY VIEW {self.audit} AS {rows}"]

    def publish(self, query: str, columns: Sequence[str], *, target_exists: bool) -> list[str]:
        """Publish the staged rows; each statement is one atomic commit that can be repeated."""
        spec = self.spec
        publish = self.effective_publish(target_exists=target_exists)
        staged = f"SELECT * FROM {self.stage}"
        if publish == "view":
            return [f"CREATE OR REPLACE VIEW {self.target} AS {query}"]
        if publish == "swap":
            layout = f" PARTITIONED BY ({', '.join(quote(c) for c in spec.partition_by)})" if spec.partition_by else ""
            return [f"CREATE OR REPLACE TABLE {self.target}{layout} AS {staged}"]
        if publish == "replace_window":
            assert spec.window is not None
            return [f"INSERT INTO {self.target} REPLACE WHERE {window_predicate(spec.window)} {staged}"]
        if publish == "replace_partitions":
            return [f"INSERT INTO {self.target} REPLACE USING ({', '.join(quote(k) for k in spec.keys)}) {staged}"]
        if publish == "merge":
            return [self._merge(columns)]
        return [f"INSERT INTO {self.target} {staged}"]

    def _merge(self, columns: Sequence[str]) -> str:
        """Delete the target rows whose key arrives again and insert every staged row, in one MERGE.

        The source carries each distinct staged key once as a delete row (`__il_delete` true, matched on the
        key) and every staged row as an insert row (never matched): a target row matches at most one source
        row, so the MERGE is valid even when the batch carries a key twice, and repeating it gives the same
        table.
        """
        keys = self.spec.keys
        listed = ", ".join(quote(c) for c in columns)
        deletes = ", ".join(quote(c) if c in keys else f"NULL AS {quote(c)}" for c in columns)
        key_list = ", ".join(quote(k) for k in keys)
        matches = " AND ".join(f"__il_t.{quote(k)} = __il_s.{quote(k)}" for k in keys)
        values = ", ".join(f"__il_s.{quote(c)}" for c in columns)
        return (
            f"MERGE INTO {self.target} AS __il_t USING ("
            f"SELECT {deletes}, true AS __il_delete FROM (SELECT DISTINCT {key_list} FROM {self.stage}) AS __il_k "
            f"UNION ALL SELECT {listed}, false AS __il_delete FROM {self.stage}) AS __il_s "
            f"ON __il_s.__il_delete AND {matches} "
            f"WHEN MATCHED THEN DELETE "
            f"WHEN NOT MATCHED AND NOT __il_s.__il_delete THEN INSERT ({listed}) VALUES ({values})"
        )

    def target_version(self) -> str:
        """The target's latest Delta version (the intent marker of a guarded append records it)."""
        return f"DESCRIBE HISTORY {self.target} LIMIT 1"

    def target_history(self) -> str:
        """The target's commits, newest first (checked when an interrupted guarded append resumes)."""
        return f"DESCRIBE HISTORY {self.target}"

    def cleanup(self) -> list[str]:
        """Drop the stage and the audit view (both may be missing)."""
        if self.spec.publish == "view":
            return [f"DROP VIEW IF EXISTS {self.audit}"]
        return [f"DROP VIEW IF EXISTS {self.audit}", f"DROP TABLE IF EXISTS {self.stage}"]


def window_predicate(window: Window) -> str:
    """`column >= start AND column < end` as TIMESTAMP literals, read in the session's UTC time zone.

    >>> from shared_core.core.project.headers import parse_instant as t
    >>> window_predicate(Window("ts", t("2024-01-01"), t("2024-01-02")))
    "`ts` >= TIMESTAMP '2024-01-01 00:00:00' AND `ts` < TIMESTAMP '2024-01-02 00:00:00'"
    """
    column = quote(window.column)
    return (f"{column} >= TIMESTAMP '{window.start:%Y-%m-%d %H:%M:%S}' AND "
            f"{column} < TIMESTAMP '{window.end:%Y-%m-%d %H:%M:%S}'")


# -- the batch markers ------------------------------------------------------------------------------------

#: The columns a marker is read back with (`shared_core.core.planning.markers.CommittedBatch`).
MARKER_COLUMNS = "model, model_hash, range_start, range_end, plan_id, step_id, rows_written"


def marker_table(catalog: str) -> str:
    """`<catalog>._ironlayer.committed_batches`."""
    return three_part(catalog, MARKER_SCHEMA, MARKER_TABLE)


def create_markers(catalog: str) -> list[str]:
    """The reserved schema and the marker table: one row per batch of a model version and range, keyed by
    `batch_id` (derived from model, version and range), with the plan and step that wrote it last."""
    return [
        f"CREATE SCHEMA IF NOT EXISTS {quote(catalog)}.{quote(MARKER_SCHEMA)}",
        f"CREATE TABLE IF NOT EXISTS {marker_table(catalog)} (batch_id STRING NOT NULL, model STRING NOT NULL, "
        "model_hash STRING, range_start TIMESTAMP, range_end TIMESTAMP, plan_id STRING NOT NULL, "
        "step_id STRING NOT NULL, state STRING NOT NULL, target_version BIGINT, rows_written BIGINT NOT NULL, "
        "updated_at TIMESTAMP NOT NULL) USING DELTA "
        # deletion vectors give concurrent MERGEs of different batches row-level concurrency (DBR 14.2+)
        "TBLPROPERTIES ('delta.enableDeletionVectors' = true)",
    ]


def write_marker(catalog: str) -> str:
    """Insert or replace the batch's marker row; the values are named parameters.

    Parameters: `batch_id`, `model`, `model_hash`, `range_start`, `range_end`, `plan_id`, `step_id`, `state`
    (`publishing`: an intent before an append that cannot be repeated; `committed`), `target_version`,
    `rows_written`.
    """
    columns = ("batch_id", "model", "model_hash", "range_start", "range_end", "plan_id", "step_id", "state",
               "target_version", "rows_written")
    source = ", ".join(f":{c} AS {c}" for c in columns)
    updates = ", ".join(f"{c} = __il_s.{c}" for c in columns[1:])
    listed = ", ".join((*columns, "updated_at"))
    values = ", ".join((*(f"__il_s.{c}" for c in columns), "current_timestamp()"))
    return (
        f"MERGE INTO {marker_table(catalog)} AS __il_m USING (SELECT {source}) AS __il_s "
        f"ON __il_m.batch_id = __il_s.batch_id "
        f"WHEN MATCHED THEN UPDATE SET {updates}, updated_at = current_timestamp() "
        f"WHEN NOT MATCHED THEN INSERT ({listed}) VALUES ({values})"
    )


def read_marker(catalog: str) -> str:
    """The state, recorded target version and rows of one batch (parameter `batch_id`)."""
    return (f"SELECT state, target_version, rows_written FROM {marker_table(catalog)} "
            "WHERE batch_id = :batch_id")


def delete_markers(catalog: str) -> str:
    """Forget every marker of a model (parameter `model`): a reset is about to replace all its rows."""
    return f"DELETE FROM {marker_table(catalog)} WHERE model = :model"


def committed_markers(catalog: str, models: Sequence[str]) -> str:
    """The committed batches of `models`, oldest first (model names are validated identifiers, quoted here).

    >>> committed_markers("main", ["s.b", "s.a"]).split(" WHERE ")[1]
    "state = 'committed' AND model IN ('s.a', 's.b') ORDER BY model, updated_at, range_start"
    """
    names = ", ".join(quote_literal(name, DIALECT) for name in sorted(set(models)))
    return (f"SELECT {MARKER_COLUMNS} FROM {marker_table(catalog)} WHERE state = 'committed' AND model IN ({names}) "
            "ORDER BY model, updated_at, range_start")


def overlapping_markers(catalog: str) -> str:
    """The committed batches of a model (parameter `model`) that overlap `[:range_start, :range_end)`."""
    return (f"SELECT {MARKER_COLUMNS} FROM {marker_table(catalog)} WHERE state = 'committed' AND model = :model "
            "AND range_start < :range_end AND range_end > :range_start")
