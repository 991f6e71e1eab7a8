"""`DuckDBExecutor`: run one model batch on a DuckDB file with write-audit-publish semantics.

Each materialization is generated here from one description (never by transpiling DML):

- TABLE (FULL_REFRESH): build `schema.__il_stage_<table>`, audit it, then swap it in within one
  transaction; readers see the old table until the swap commits.
- VIEW: `CREATE OR REPLACE VIEW`, then audit the view; a failed BLOCK test rolls the view back.
- INCREMENTAL_BY_TIME_RANGE: in one transaction, delete exactly `[start, end)` by `time_column`,
  insert the batch's rows of that window, audit, and commit or roll back.
- APPEND_ONLY: in one transaction, insert the batch, audit, commit or roll back.
- MERGE_BY_KEY: in one transaction, delete the rows whose `unique_key` arrives again, insert the
  new rows, audit, commit or roll back.
A `reset` batch starts from an empty table. Quality tests run inside the transaction against what
readers would see after it commits; a BLOCK failure publishes nothing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from shared_core.errors import CoreError
from shared_core.headers import QualityTest
from shared_core.models import Model
from shared_core.render import render_query


class ExecutionError(CoreError):
    """A batch failed on the engine (SQL error) or was blocked by a quality test."""


@dataclass(frozen=True)
class TestOutcome:
    test: str
    severity: str
    failing_rows: int

    @property
    def passed(self) -> bool:
        return self.failing_rows == 0


@dataclass(frozen=True)
class BatchResult:
    rows_written: int
    tests: tuple[TestOutcome, ...]
    published: bool


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def relation(name: str) -> str:
    """`schema.table` quoted for DuckDB."""
    schema, _, table = name.rpartition(".")
    return f"{_q(schema)}.{_q(table)}" if schema else _q(table)


def test_sql(test: QualityTest, rel: str) -> str:
    """A query returning the number of failing rows of one quality test on relation `rel`."""
    if test.kind == "not_null":
        return f"SELECT count(*) FROM {rel} WHERE {_q(test.arg)} IS NULL"
    if test.kind == "unique":
        column = _q(test.arg)
        return (f"SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM {rel} WHERE {column} IS NOT NULL "
                f"GROUP BY {column} HAVING count(*) > 1)")
    if test.kind == "accepted_values":
        column, _, values = test.arg.partition(":")
        allowed = ", ".join("'" + v.strip().replace("'", "''") + "'" for v in values.split("|"))
        return f"SELECT count(*) FROM {rel} WHERE {_q(column.strip())} NOT IN ({allowed})"
    if test.kind == "row_count_min":
        return f"SELECT CASE WHEN count(*) < {int(test.arg)} THEN 1 ELSE 0 END FROM {rel}"
    if test.kind == "row_count_max":
        return f"SELECT CASE WHEN count(*) > {int(test.arg)} THEN 1 ELSE 0 END FROM {rel}"
    return f"SELECT count(*) FROM ({test.arg.replace('{model}', rel)})"


class DuckDBExecutor:
    """Executes model batches on one DuckDB database file."""

    DIALECT = "duckdb"
    SUPPORTS_REPLACE_WHERE = False  # DuckDB has no REPLACE WHERE: delete + insert in one transaction

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = duckdb.connect(str(self.path))
        except duckdb.Error as exc:
            raise ExecutionError(f"cannot open warehouse {self.path}: {exc}") from exc

    def close(self) -> None:
        self.conn.close()

    def _scalar(self, sql: str) -> Any:
        row = self.conn.execute(sql).fetchone()
        return row[0] if row else None

    def _exists(self, name: str) -> bool:
        schema, _, table = name.rpartition(".")
        return bool(self._scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = "
            f"'{schema}' AND table_name = '{table}'"
        ))

    def run_batch(self, model: Model, *, start: datetime | None, end: datetime | None, reset: bool) -> BatchResult:
        """Run one batch of `model` and publish it only if no BLOCK test fails.

        Raises:
            ExecutionError: a SQL error (nothing published) or a BLOCK test failure (nothing published).
        """
        header = model.header
        query = render_query(model, dialect=self.DIALECT, start=start, end=end)
        target = relation(model.name)
        schema = relation(model.name).rpartition(".")[0]
        try:
            self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            self.conn.execute("BEGIN TRANSACTION")
            if header.materialization == "VIEW":
                self.conn.execute(f"CREATE OR REPLACE VIEW {target} AS {query}")
                rows = 0
            elif header.kind == "FULL_REFRESH":
                stage = relation(model.name.rpartition(".")[0] + ".__il_stage_" + model.name.rpartition(".")[2])
                self.conn.execute(f"CREATE OR REPLACE TABLE {stage} AS {query}")
                rows = int(self._scalar(f"SELECT count(*) FROM {stage}"))
                self.conn.execute(f"DROP TABLE IF EXISTS {target}")
                self.conn.execute(f"ALTER TABLE {stage} RENAME TO {_q(model.name.rpartition('.')[2])}")
            else:
                rows = self._write_rows(model, query, target, start, end, reset)
            outcomes = tuple(self._audit(model, target))
            blocked = [o for o in outcomes if not o.passed and o.severity == "BLOCK"]
            if blocked:
                self.conn.execute("ROLLBACK")
                names = ", ".join(f"{o.test} ({o.failing_rows} failing)" for o in blocked)
                raise BlockedBatchError(f"{model.name}: blocked by quality tests: {names}; nothing was published",
                                        outcomes)
            self.conn.execute("COMMIT")
            return BatchResult(rows, outcomes, True)
        except duckdb.Error as exc:
            self._rollback()
            message = str(exc).splitlines()[0]
            raise ExecutionError(
                f"{model.name} ({model.path}): DuckDB error: {message}; nothing was published"
            ) from exc

    def _rollback(self) -> None:
        with contextlib.suppress(duckdb.Error):  # no transaction was open
            self.conn.execute("ROLLBACK")

    def _write_rows(self, model: Model, query: str, target: str, start: datetime | None, end: datetime | None,
                    reset: bool) -> int:
        header = model.header
        batch = f"SELECT * FROM ({query}) AS q"
        if header.kind in ("INCREMENTAL_BY_TIME_RANGE", "APPEND_ONLY") and header.time_column and start and end:
            column = _q(header.time_column)
            low, high = f"{start:%Y-%m-%d %H:%M:%S}", f"{end:%Y-%m-%d %H:%M:%S}"
            window = f"{column} >= TIMESTAMP '{low}' AND {column} < TIMESTAMP '{high}'"
            batch += f" WHERE {window}"
        else:
            window = ""
        if reset or not self._exists(model.name):
            self.conn.execute(f"CREATE OR REPLACE TABLE {target} AS {batch} LIMIT 0")
        self.conn.execute(f"CREATE OR REPLACE TEMP TABLE __il_batch AS {batch}")
        rows = int(self._scalar("SELECT count(*) FROM __il_batch"))
        if header.kind == "INCREMENTAL_BY_TIME_RANGE" and window:
            self.conn.execute(f"DELETE FROM {target} WHERE {window}")
        elif header.kind == "MERGE_BY_KEY":
            keys = ", ".join(_q(k) for k in header.unique_key)
            self.conn.execute(f"DELETE FROM {target} WHERE ({keys}) IN (SELECT {keys} FROM __il_batch)")
        self.conn.execute(f"INSERT INTO {target} BY NAME SELECT * FROM __il_batch")
        self.conn.execute("DROP TABLE __il_batch")
        return rows

    def _audit(self, model: Model, target: str) -> list[TestOutcome]:
        return [
            TestOutcome(test.render(), test.severity, int(self._scalar(test_sql(test, target)) or 0))
            for test in model.header.tests
        ]


class BlockedBatchError(ExecutionError):
    """A BLOCK quality test failed; the batch was rolled back."""

    def __init__(self, message: str, outcomes: tuple[TestOutcome, ...]) -> None:
        self.outcomes = outcomes
        super().__init__(message)
