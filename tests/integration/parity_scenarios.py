"""One scenario per kind and materialization, shared by the parity suite (DuckDB and the Databricks rendering),
the golden Databricks SQL and the `remote` suite on a real workspace.

A scenario is a model under test and a sequence of runs; before each run the seed model `raw.events` is
rebuilt from that run's rows, so a later run sees changed data (late rows, corrections, new keys). The
expected final rows are written out by hand: every engine must end with exactly them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from shared_core.core.project.headers import parse_instant
from shared_core.core.project.models import ModelSource, Project, load_project

Row = tuple[int, str, str, int]  # (id, region, ts, amount)

DAY1 = [(1, "eu", "2024-01-01 09:00:00", 10), (2, "us", "2024-01-01 18:00:00", 20)]
DAY2 = [(3, "eu", "2024-01-02 08:00:00", 30), (4, "apac", "2024-01-02 23:00:00", 40)]
LATE = [(5, "us", "2024-01-01 12:00:00", 50)]  # a late row of day 1
CHANGED = [(2, "us", "2024-01-01 18:00:00", 21), (6, "eu", "2024-01-03 01:00:00", 60)]


def seed(rows: list[Row]) -> str:
    """The seed model: `raw.events` from inline rows (an empty seed keeps the columns)."""
    values = ", ".join(f"({i}, '{r}', CAST('{ts}' AS TIMESTAMP), {a})" for i, r, ts, a in rows) or \
        "(0, 'none', CAST('2000-01-01 00:00:00' AS TIMESTAMP), 0)"
    where = "" if rows else " WHERE id > 0"
    return ("-- name: raw.events\n-- kind: FULL_REFRESH\n"
            f"SELECT id, region, ts, amount FROM VALUES {values} AS t(id, region, ts, amount){where}\n")


@dataclass(frozen=True)
class Run:
    seed: list[Row]
    start: str | None = None
    end: str | None = None
    reset: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    about: str
    model: str  # the model under test
    runs: tuple[Run, ...]
    expected: list[tuple[Any, ...]]  # its final rows, normalized (`normalize`)
    tests: list[tuple[str, str, int]] | None = None  # the last run's (test, severity, failing rows), when checked
    blocked: bool = False  # the last run is blocked by a BLOCK test: nothing of it is published

    @property
    def target(self) -> str:
        return self.model.split("\n", 1)[0].removeprefix("-- name: ").strip()

    def project(self, run: Run) -> Project:
        return load_project([ModelSource("models/raw/events.sql", seed(run.seed)),
                             ModelSource(f"models/{self.name}.sql", self.model)])

    @staticmethod
    def window(run: Run) -> tuple[datetime | None, datetime | None]:
        return (parse_instant(run.start) if run.start else None, parse_instant(run.end) if run.end else None)


def normalize(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows as plain comparable values: timestamps as naive UTC text, decimals and numbers as int or float."""
    def value(v: Any) -> Any:
        if isinstance(v, datetime):
            return (v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v).strftime("%Y-%m-%d %H:%M:%S")
        if isinstance(v, date):
            return v.isoformat()
        if isinstance(v, Decimal):
            return int(v) if v == v.to_integral_value() else float(v)
        return v

    return sorted((tuple(value(v) for v in row) for row in rows), key=repr)


SCENARIOS = [
    Scenario(
        "full_refresh_table", "FULL_REFRESH / TABLE: staged, audited, swapped in; the second run replaces the table",
        "-- name: gold.region_totals\n-- kind: FULL_REFRESH\n-- materialization: TABLE\n-- partition_by: region\n"
        "-- tests: not_null(region), unique(region), row_count_min(1)\n"
        "SELECT region, SUM(amount) AS amount FROM {{ ref('raw.events') }} GROUP BY region\n",
        (Run(DAY1), Run(DAY1 + DAY2)),
        [("apac", 40), ("eu", 40), ("us", 20)],
        [("not_null(region)@BLOCK", "BLOCK", 0), ("row_count_min(1)@BLOCK", "BLOCK", 0),
         ("unique(region)@BLOCK", "BLOCK", 0)],
    ),
    Scenario(
        "full_refresh_view", "FULL_REFRESH / VIEW: the view is audited before it is replaced",
        "-- name: gold.big_events\n-- kind: FULL_REFRESH\n-- materialization: VIEW\n"
        "-- tests: accepted_values(region:eu|us|apac)\n"
        "SELECT id, region FROM {{ ref('raw.events') }} WHERE amount >= 20\n",
        (Run(DAY1 + DAY2),),
        [(2, "us"), (3, "eu"), (4, "apac")],
        [("accepted_values(region:eu|us|apac)@BLOCK", "BLOCK", 0)],
    ),
    Scenario(
        "incremental_by_time_range", "INCREMENTAL_BY_TIME_RANGE: each day replaced exactly; re-running day 1 "
        "after a late row replaces it, never duplicates",
        "-- name: silver.events\n-- kind: INCREMENTAL_BY_TIME_RANGE\n-- time_column: ts\n-- start: 2024-01-01\n"
        "-- tests: not_null(id), unique(id)\n"
        "SELECT id, region, ts, amount FROM {{ ref('raw.events') }}\n"
        "WHERE ts >= '{{ start_date }}' AND ts < '{{ end_date }}'\n",
        (Run(DAY1 + DAY2, "2024-01-01", "2024-01-02", reset=True), Run(DAY1 + DAY2, "2024-01-02", "2024-01-03"),
         Run(DAY1 + DAY2 + LATE, "2024-01-01", "2024-01-02")),
        [(1, "eu", "2024-01-01 09:00:00", 10), (2, "us", "2024-01-01 18:00:00", 20),
         (3, "eu", "2024-01-02 08:00:00", 30), (4, "apac", "2024-01-02 23:00:00", 40),
         (5, "us", "2024-01-01 12:00:00", 50)],
        [("not_null(id)@BLOCK", "BLOCK", 0), ("unique(id)@BLOCK", "BLOCK", 0)],
    ),
    Scenario(
        "insert_overwrite_by_partition", "INCREMENTAL_BY_TIME_RANGE / INSERT_OVERWRITE partitioned by day: each "
        "batch overwrites its window's partitions, also one it leaves empty",
        "-- name: gold.daily\n-- kind: INCREMENTAL_BY_TIME_RANGE\n-- materialization: INSERT_OVERWRITE\n"
        "-- time_column: day\n-- partition_by: day\n-- start: 2024-01-01\n"
        "SELECT CAST(ts AS DATE) AS day, region, SUM(amount) AS amount FROM {{ ref('raw.events') }}\n"
        "WHERE ts >= '{{ start_date }}' AND ts < '{{ end_date }}' GROUP BY CAST(ts AS DATE), region\n",
        (Run(DAY1 + DAY2, "2024-01-01", "2024-01-03", reset=True), Run(DAY1, "2024-01-02", "2024-01-03")),
        [("2024-01-01", "eu", 10), ("2024-01-01", "us", 20)],
    ),
    Scenario(
        "append_only", "APPEND_ONLY with a time column: each batch's rows are added once",
        "-- name: silver.appended\n-- kind: APPEND_ONLY\n-- time_column: ts\n-- start: 2024-01-01\n"
        "-- tests: not_null(ts)@WARN\n"
        "SELECT id, ts, amount FROM {{ ref('raw.events') }}\n"
        "WHERE ts >= '{{ start_date }}' AND ts < '{{ end_date }}'\n",
        (Run(DAY1 + DAY2, "2024-01-01", "2024-01-02", reset=True), Run(DAY1 + DAY2, "2024-01-02", "2024-01-03")),
        [(1, "2024-01-01 09:00:00", 10), (2, "2024-01-01 18:00:00", 20), (3, "2024-01-02 08:00:00", 30),
         (4, "2024-01-02 23:00:00", 40)],
        [("not_null(ts)@WARN", "WARN", 0)],
    ),
    Scenario(
        "append_only_without_time_column", "APPEND_ONLY without a time column: a plain append (on Databricks "
        "guarded by an intent marker)",
        "-- name: silver.ledger\n-- kind: APPEND_ONLY\n-- start: 2024-01-01\n"
        "SELECT id, amount FROM {{ ref('raw.events') }}\n"
        "WHERE ts >= '{{ start_date }}' AND ts < '{{ end_date }}'\n",
        (Run(DAY1 + DAY2, "2024-01-01", "2024-01-02", reset=True), Run(DAY1 + DAY2, "2024-01-02", "2024-01-03")),
        [(1, 10), (2, 20), (3, 30), (4, 40)],
    ),
    Scenario(
        "append_only_insert_overwrite", "APPEND_ONLY / INSERT_OVERWRITE by partition without a time column: a "
        "batch replaces the partitions it carries",
        "-- name: silver.latest_by_region\n-- kind: APPEND_ONLY\n-- materialization: INSERT_OVERWRITE\n"
        "-- partition_by: region\n-- start: 2024-01-01\n"
        "SELECT region, id, amount FROM {{ ref('raw.events') }}\n"
        "WHERE ts >= '{{ start_date }}' AND ts < '{{ end_date }}'\n",
        (Run(DAY1 + DAY2, "2024-01-01", "2024-01-02", reset=True), Run(DAY1 + DAY2, "2024-01-02", "2024-01-03")),
        [("apac", 4, 40), ("eu", 3, 30), ("us", 2, 20)],
    ),
    Scenario(
        "merge_by_key", "MERGE_BY_KEY / MERGE: rows whose key arrives again are replaced, new keys added, "
        "others kept",
        "-- name: silver.accounts\n-- kind: MERGE_BY_KEY\n-- materialization: MERGE\n-- unique_key: id\n"
        "-- contract_mode: STRICT\n-- contract_columns: id:INT:NOT_NULL, region:STRING, amount:INT\n"
        "SELECT id, region, amount FROM {{ ref('raw.events') }}\n",
        (Run(DAY1 + DAY2), Run(CHANGED)),
        [(1, "eu", 10), (2, "us", 21), (3, "eu", 30), (4, "apac", 40), (6, "eu", 60)],
        [("contract(id:INT:NOT_NULL)", "BLOCK", 0), ("contract(region:STRING)", "BLOCK", 0),
         ("contract(amount:INT)", "BLOCK", 0)],
    ),
    Scenario(
        "reset", "A reset step starts from an empty table: only the reset batch remains",
        "-- name: silver.reset_events\n-- kind: INCREMENTAL_BY_TIME_RANGE\n-- time_column: ts\n-- start: 2024-01-01\n"
        "SELECT id, ts FROM {{ ref('raw.events') }}\nWHERE ts >= '{{ start_date }}' AND ts < '{{ end_date }}'\n",
        (Run(DAY1 + DAY2, "2024-01-01", "2024-01-02", reset=True), Run(DAY1 + DAY2, "2024-01-02", "2024-01-03"),
         Run(DAY1 + DAY2, "2024-01-02", "2024-01-03", reset=True)),
        [(3, "2024-01-02 08:00:00"), (4, "2024-01-02 23:00:00")],
    ),
    Scenario(
        "contract_warn", "A WARN contract that the batch breaks (a missing column, a NULL): published, recorded",
        "-- name: gold.contracted\n-- kind: FULL_REFRESH\n-- contract_mode: WARN\n"
        "-- contract_columns: id:BIGINT:NOT_NULL, note:STRING, region:STRING:NOT_NULL\n"
        "SELECT id, CASE WHEN region = 'us' THEN NULL ELSE region END AS region FROM {{ ref('raw.events') }}\n",
        (Run(DAY1),),
        [(1, "eu"), (2, None)],
        [("contract(id:BIGINT:NOT_NULL)", "WARN", 2), ("contract(note:STRING)", "WARN", 2),
         ("contract(region:STRING:NOT_NULL)", "WARN", 1)],
    ),
    Scenario(
        "blocked", "A BLOCK test fails on the second run: the table keeps the first run's rows",
        "-- name: gold.positive\n-- kind: INCREMENTAL_BY_TIME_RANGE\n-- time_column: ts\n-- start: 2024-01-01\n"
        "-- tests: custom_sql(SELECT * FROM {model} WHERE amount > 45)\n"
        "SELECT id, ts, amount FROM {{ ref('raw.events') }}\nWHERE ts >= '{{ start_date }}' AND ts < '{{ end_date }}'\n",
        (Run(DAY1, "2024-01-01", "2024-01-02", reset=True), Run(DAY1 + LATE, "2024-01-01", "2024-01-02")),
        [(1, "2024-01-01 09:00:00", 10), (2, "2024-01-01 18:00:00", 20)],
        [("custom_sql(SELECT * FROM {model} WHERE amount > 45)@BLOCK", "BLOCK", 1)],
        blocked=True,
    ),
]
