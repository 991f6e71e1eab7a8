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

The session is a sandbox for tenant SQL, as defence in depth behind the guard (`core/sql/guard.py`), which
has already refused anything below: the database opens with external access off (no file, URL, COPY,
ATTACH, EXPORT, INSTALL or LOAD beyond the warehouse file itself), extensions neither installed nor loaded
on demand, community extensions refused, and no Python variable of this process read as a table; the
executor then creates its own `_ironlayer` schema, pins `TimeZone` to UTC (so the host's `TZ` never changes
a timestamp) and locks the configuration, so no later statement can `SET`, `RESET` or `PRAGMA` a setting.
The executor reads or writes no file itself. An engine error that reaches a run's stored error keeps only
its class and position (`scrub_engine_error`): messages can quote data.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from shared_core.core.errors import BlockedBatchError, ExecutionError
from shared_core.core.project.headers import QualityTest
from shared_core.core.project.models import Model
from shared_core.core.sql.render import render_query, render_test_query
from shared_core.security.scrub import scrub, scrub_engine_error

#: Settings fixed when the database opens (they cannot be set later, or must hold from the start).
SANDBOX_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "python_enable_replacements": False,  # never read a Python variable of this process as a table
}
#: Set once after the executor's own set-up, just before the configuration is locked.
SESSION_TIME_ZONE = "UTC"


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
    """A query returning the number of failing rows of a built-in quality test on relation `rel`.

    `custom_sql` tests are tenant SQL and go through the guard instead (`render_test_query`).
    """
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
    raise ValueError(f"{test.kind} is not a built-in test; render custom_sql with render_test_query")


class DuckDBExecutor:
    """Executes model batches on one DuckDB database file."""

    DIALECT = "duckdb"
    SUPPORTS_REPLACE_WHERE = False  # DuckDB has no REPLACE WHERE: delete + insert in one transaction

    def __init__(self, path: str | Path, *, wait_seconds: float = 0.0) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.root = self._connect(wait_seconds)
            self.root.execute("CREATE SCHEMA IF NOT EXISTS _ironlayer")
            self.root.execute(
                "CREATE TABLE IF NOT EXISTS _ironlayer.committed_batches (plan_id VARCHAR NOT NULL, "
                "step_id VARCHAR NOT NULL, model VARCHAR NOT NULL, range_start TIMESTAMP, range_end TIMESTAMP, "
                "rows_written BIGINT NOT NULL, committed_at TIMESTAMP NOT NULL DEFAULT current_timestamp)"
            )
            self._lock_session()
        except (duckdb.Error, OSError) as exc:
            raise ExecutionError(scrub(f"cannot open warehouse {self.path}: {exc}; check the path and that no "
                                       "other program holds it open")) from exc
        self._local = threading.local()
        self._catalog_lock = threading.Lock()  # DuckDB's optimistic catalog: serialize DDL on schemas

    def _lock_session(self) -> None:
        """Pin the time zone and lock the configuration; or, when another executor of this process already
        did (DuckDB shares one database instance per file and process), check that it did."""
        settings = self.root.execute(
            "SELECT current_setting('lock_configuration'), current_setting('TimeZone'), "
            "current_setting('enable_external_access')"
        ).fetchone()
        assert settings is not None  # a SELECT without FROM returns one row
        locked, zone, external = settings
        if not locked:
            self.root.execute(f"SET GLOBAL TimeZone = '{SESSION_TIME_ZONE}'")
            self.root.execute("SET GLOBAL lock_configuration = true")
        elif zone != SESSION_TIME_ZONE or external:
            raise ExecutionError(f"warehouse {self.path} is already open in this process without IronLayer's "
                                 "sandbox settings; close that connection first")

    def _connect(self, wait_seconds: float) -> duckdb.DuckDBPyConnection:
        """Open the file; while another process holds it (DuckDB allows one writer), wait up to `wait_seconds`."""
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                return duckdb.connect(str(self.path), config=dict(SANDBOX_CONFIG))
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    holder = str(exc).split("Conflicting lock is held in")[-1].split("See also")[0].strip()
                    raise ExecutionError(
                        f"warehouse {self.path} is in use by another process ({holder}); waited {wait_seconds:g}s. "
                        "Wait for it to finish, or raise --lock-timeout"
                    ) from None
                time.sleep(0.1)

    @property
    def conn(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor on the warehouse (DuckDB cursors are per thread)."""
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self.root.cursor()
        return cursor

    def close(self) -> None:
        self.root.close()

    def _scalar(self, sql: str, params: Sequence[object] = ()) -> Any:  # Any: a value as DuckDB returns it
        row = self.conn.execute(sql, list(params)).fetchone()
        return row[0] if row else None

    def _exists(self, name: str) -> bool:
        schema, _, table = name.rpartition(".")
        return bool(self._scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", (schema, table)
        ))

    def committed_batches(self, plan_id: str, step_id: str) -> dict[datetime | None, int]:
        """The batches of a step that committed in this warehouse (batch start -> rows written).

        This, not the state store, is the truth about what data exists: a batch that committed just before
        a crash is here even if its run was never recorded, and a replaced warehouse has none.
        """
        rows = self.conn.execute(
            "SELECT range_start, rows_written FROM _ironlayer.committed_batches WHERE plan_id = ? AND step_id = ?",
            [plan_id, step_id],
        ).fetchall()
        return {(start.replace(tzinfo=UTC) if start is not None else None): int(n) for start, n in rows}

    def committed_plan_batches(self, plan_id: str) -> dict[str, dict[datetime | None, int]]:
        """`committed_batches` of every step of a plan at once: step ID -> batch start -> rows written."""
        rows = self.conn.execute(
            "SELECT step_id, range_start, rows_written FROM _ironlayer.committed_batches WHERE plan_id = ?", [plan_id]
        ).fetchall()
        found: dict[str, dict[datetime | None, int]] = {}
        for step_id, start, n in rows:
            found.setdefault(step_id, {})[start.replace(tzinfo=UTC) if start is not None else None] = int(n)
        return found

    def run_batch(
        self, model: Model, *, start: datetime | None, end: datetime | None, reset: bool,
        marker: tuple[str, str] | None = None,
    ) -> BatchResult:
        """Run one batch of `model` and publish it only if no BLOCK test fails.

        `marker` (plan ID, step ID) is recorded in the same transaction as the data, so a batch that
        committed is never applied twice, even if the process dies before the state store hears of it.

        Raises:
            ExecutionError: a SQL error (nothing published) or a BLOCK test failure (nothing published).
        """
        for attempt in range(1, _CONFLICT_RETRIES + 1):
            try:
                return self._run_batch_once(model, start=start, end=end, reset=reset, marker=marker)
            except _ConflictError:
                if attempt == _CONFLICT_RETRIES:
                    raise ExecutionError(
                        f"{model.name}: DuckDB kept reporting write conflicts with concurrent steps; lower "
                        "--parallelism and apply again"
                    ) from None
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")

    def _run_batch_once(
        self, model: Model, *, start: datetime | None, end: datetime | None, reset: bool,
        marker: tuple[str, str] | None,
    ) -> BatchResult:
        header = model.header
        query = render_query(model, dialect=self.DIALECT, start=start, end=end)  # guarded: raises UnsafeSqlError
        tests = [(test, test_sql(test, relation(model.name)) if test.kind != "custom_sql" else
                  render_test_query(model, test, dialect=self.DIALECT, start=start, end=end))
                 for test in header.tests]
        target = relation(model.name)
        schema = relation(model.name).rpartition(".")[0]
        try:
            with self._catalog_lock:
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
            outcomes = tuple(self._audit(tests))
            blocked = [o for o in outcomes if not o.passed and o.severity == "BLOCK"]
            if blocked:
                self.conn.execute("ROLLBACK")
                names = ", ".join(f"{o.test} ({o.failing_rows} failing)" for o in blocked)
                raise BlockedBatchError(f"{model.name}: blocked by quality tests: {names}; nothing was published",
                                        outcomes)
            if marker is not None:
                self.conn.execute(
                    "INSERT INTO _ironlayer.committed_batches (plan_id, step_id, model, range_start, range_end, "
                    "rows_written) VALUES (?, ?, ?, ?, ?, ?)",
                    [marker[0], marker[1], model.name, _naive(start), _naive(end), rows],
                )
            self.conn.execute("COMMIT")
            return BatchResult(rows, outcomes, True)
        except duckdb.TransactionException as exc:
            self._rollback()
            if "conflict" in str(exc).lower():
                raise _ConflictError(str(exc)) from exc
            raise self._engine_error(model, exc, query) from None
        except duckdb.Error as exc:
            self._rollback()
            raise self._engine_error(model, exc, query) from None  # the raw message may quote data: not chained

    @staticmethod
    def _engine_error(model: Model, exc: duckdb.Error, query: str) -> ExecutionError:
        """The run error for an engine error: its class and position, never the data values it may quote."""
        detail = scrub_engine_error(str(exc), kind=type(exc).__name__, sql=f"{model.text}\n{query}")
        return ExecutionError(f"{model.name} ({model.path}): DuckDB error: {detail}; nothing was published")

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

    def _audit(self, tests: Sequence[tuple[QualityTest, str]]) -> list[TestOutcome]:
        """Run each test's query (rendered, and guarded, before the transaction began) inside the transaction."""
        return [TestOutcome(test.render(), test.severity, int(self._scalar(sql) or 0)) for test, sql in tests]


_CONFLICT_RETRIES = 5


class _ConflictError(Exception):
    """A transient optimistic-concurrency conflict in DuckDB; the batch is retried."""


def _naive(value: datetime | None) -> datetime | None:
    """DuckDB TIMESTAMP values are naive UTC."""
    return value.replace(tzinfo=None) if value is not None else None
