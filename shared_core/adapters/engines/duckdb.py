"""`DuckDBExecutor`: run one model batch on a DuckDB file with write-audit-publish semantics.

Each batch follows the one description of its kind and materialization (`shared_core.core.sql.materialize`),
rendered for DuckDB (`shared_core.core.sql.duckdb_statements`), never by transpiling DML. DuckDB has
transactions across tables, so stage, publish, audit and marker are one transaction:

- TABLE (FULL_REFRESH): build `schema.__il_stage_<table>`, audit it, then swap it in within one
  transaction; readers see the old table until the swap commits.
- VIEW: `CREATE OR REPLACE VIEW`, then audit the view; a failed BLOCK test rolls the view back.
- INCREMENTAL_BY_TIME_RANGE, and APPEND_ONLY with a `time_column`: in one transaction, delete exactly
  `[start, end)` by `time_column`, insert the batch's rows of that window, audit, and commit or roll back;
  running a batch again replaces its rows.
- APPEND_ONLY without a time column: in one transaction, insert the batch, audit, commit or roll back; a
  batch whose range overlaps one the warehouse already holds is refused (its rows cannot be told apart).
- MERGE_BY_KEY (and INSERT_OVERWRITE by partition): in one transaction, delete the rows whose `unique_key`
  (partition) arrives again, insert the new rows, audit, commit or roll back.
A `reset` batch starts from an empty table. Quality tests and contract checks run inside the transaction
against what readers would see after it commits; a BLOCK failure publishes nothing. Each statement's time is
returned with the batch (`BatchResult.statements`); `interrupt()` stops the running statements.

Each batch's marker (`shared_core.core.planning.markers`) is written in the batch's transaction into
`_ironlayer.committed_batches`, keyed by model version and range, so the warehouse itself says which
batches it holds; a reset drops the model's markers with its rows. A warehouse whose markers predate the
model version (`model_hash`) is upgraded when it opens: the column is added and old markers keep NULL.

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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from shared_core.adapters.engines.results import BatchResult, StatementStats, TestOutcome
from shared_core.core.errors import BlockedBatchError, ExecutionError
from shared_core.core.planning.markers import (
    BatchMarker,
    CommittedBatch,
    reappend_conflict,
    reappend_refusal,
)
from shared_core.core.project.headers import QualityTest
from shared_core.core.project.models import Model
from shared_core.core.sql import contracts
from shared_core.core.sql import duckdb_statements as statements
from shared_core.core.sql.materialize import BatchSpec, describe_batch
from shared_core.core.sql.render import render_query, render_test_query
from shared_core.security.scrub import scrub, scrub_engine_error

__all__ = ["MARKERS", "SANDBOX_CONFIG", "BatchResult", "DuckDBExecutor", "StatementStats", "TestOutcome", "relation",
           "test_sql"]

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
#: The batch markers: one row per committed batch of a model version and range (`model_hash` NULL: a marker
#: written before markers carried the version).
MARKERS = "_ironlayer.committed_batches"
_MARKER_COLUMNS = "model, model_hash, range_start, range_end, plan_id, step_id, rows_written"


def relation(name: str) -> str:
    """`schema.table` quoted for DuckDB."""
    return statements.relation(name)


def test_sql(test: QualityTest, rel: str) -> str:
    """A query returning the number of failing rows of a built-in quality test on relation `rel`.

    `custom_sql` tests are tenant SQL and go through the guard instead (`render_test_query`).
    """
    return statements.builtin_test(test, rel)


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
            self._create_markers()
            self._lock_session()
        except (duckdb.Error, OSError) as exc:
            raise ExecutionError(scrub(f"cannot open warehouse {self.path}: {exc}; check the path and that no "
                                       "other program holds it open")) from exc
        self._local = threading.local()
        self._catalog_lock = threading.Lock()  # DuckDB's optimistic catalog: serialize DDL on schemas
        self._cursors: list[duckdb.DuckDBPyConnection] = []  # every thread's cursor, for `interrupt`
        self._cursors_lock = threading.Lock()
        self._interrupted = threading.Event()

    def _create_markers(self) -> None:
        """Create the marker table, or upgrade one written before markers carried the model version."""
        self.root.execute(
            f"CREATE TABLE IF NOT EXISTS {MARKERS} (plan_id VARCHAR NOT NULL, step_id VARCHAR NOT NULL, "
            "model VARCHAR NOT NULL, range_start TIMESTAMP, range_end TIMESTAMP, rows_written BIGINT NOT NULL, "
            "committed_at TIMESTAMP NOT NULL DEFAULT current_timestamp, model_hash VARCHAR)"
        )
        has_hash = self.root.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = '_ironlayer' "
            "AND table_name = 'committed_batches' AND column_name = 'model_hash'"
        ).fetchone()
        if not (has_hash and has_hash[0]):  # markers keyed by plan and step: the version is unknown, kept NULL
            self.root.execute(f"ALTER TABLE {MARKERS} ADD COLUMN model_hash VARCHAR")

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
            with self._cursors_lock:
                self._cursors.append(cursor)
        return cursor

    def interrupt(self) -> None:
        """Stop the statements the worker threads are running (Ctrl-C, a cancelled step): each raises, its batch
        rolls back, and the executor runs nothing more."""
        self._interrupted.set()
        with self._cursors_lock:
            cursors = [self.root, *self._cursors]
        for cursor in cursors:
            with contextlib.suppress(duckdb.Error):
                cursor.interrupt()

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

    def committed_batches(self, models: Sequence[str]) -> dict[str, list[CommittedBatch]]:
        """The batches of `models` whose rows this warehouse holds (their markers), by model, oldest first.

        This, not the state store, is the truth about what data exists: a batch that committed just before
        a crash is here even if its run was never recorded, and a replaced warehouse has none.
        """
        rows = self.conn.execute(
            f"SELECT {_MARKER_COLUMNS} FROM {MARKERS} WHERE model IN (SELECT unnest(?::VARCHAR[])) "
            "ORDER BY model, committed_at, range_start",
            [sorted(set(models))],
        ).fetchall()
        found: dict[str, list[CommittedBatch]] = {}
        for model, model_hash, start, end, plan_id, step_id, rows_written in rows:
            found.setdefault(model, []).append(
                CommittedBatch(model, model_hash, _aware(start), _aware(end), plan_id, step_id, int(rows_written))
            )
        return found

    def run_batch(
        self, model: Model, *, start: datetime | None, end: datetime | None, reset: bool,
        marker: BatchMarker | None = None,
    ) -> BatchResult:
        """Run one batch of `model` and publish it only if no BLOCK test fails.

        `marker` (the model version, and the plan and step running the batch) is recorded in the same
        transaction as the data, so the warehouse says which batches it holds even if the process dies
        before the state store hears of it.

        Raises:
            ExecutionError: a SQL error, a BLOCK test failure, a cancellation, or a batch of an APPEND_ONLY model
                without a time column over a range the warehouse already holds (nothing published).
        """
        for attempt in range(1, _CONFLICT_RETRIES + 1):
            if self._interrupted.is_set():
                raise ExecutionError(f"{model.name}: cancelled; nothing was published")
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
        marker: BatchMarker | None,
    ) -> BatchResult:
        spec = describe_batch(model, start=start, end=end, reset=reset)
        query = render_query(model, dialect=self.DIALECT, start=start, end=end)  # guarded: raises UnsafeSqlError
        target = relation(model.name)
        tests = [(test, test_sql(test, target) if test.kind != "custom_sql" else
                  render_test_query(model, test, dialect=self.DIALECT, start=start, end=end))
                 for test in spec.tests]
        ran: list[StatementStats] = []
        try:
            with self._catalog_lock:
                self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {target.rpartition('.')[0]}")
            self.conn.execute("BEGIN TRANSACTION")
            if reset:
                self.conn.execute(f"DELETE FROM {MARKERS} WHERE model = ?", [model.name])
            else:
                self._refuse_reappend(model, start, end)
            exists = spec.publish in ("view", "swap") or self._exists(model.name)
            self._run(ran, "stage", statements.stage(spec, query))
            if spec.publish != "view":
                self._checkpoint("staged", model.name)
            rows = 0 if spec.publish == "view" else int(
                self._scalar(f"SELECT count(*) FROM {statements.staged_relation(spec)}"))
            self._run(ran, "publish", statements.publish(spec, query, target_exists=exists))
            self._run(ran, "cleanup", statements.cleanup(spec))
            self._checkpoint("written", model.name)
            outcomes = (*self._audit(tests), *self._audit_contract(spec))
            blocked = [o for o in outcomes if not o.passed and o.severity == "BLOCK"]
            if blocked:
                self.conn.execute("ROLLBACK")
                names = ", ".join(f"{o.test} ({o.failing_rows} failing)" for o in blocked)
                raise BlockedBatchError(f"{model.name}: blocked by quality tests: {names}; nothing was published",
                                        outcomes)
            self._checkpoint("audited", model.name)
            if marker is not None:
                self._write_marker(model.name, marker, start, end, rows)
            self._checkpoint("marked", model.name)
            self.conn.execute("COMMIT")
        except duckdb.TransactionException as exc:
            self._rollback()
            if "conflict" in str(exc).lower():
                raise _ConflictError(str(exc)) from exc
            raise self._engine_error(model, exc, query) from None
        except duckdb.Error as exc:
            self._rollback()
            if self._interrupted.is_set():
                raise ExecutionError(f"{model.name}: cancelled; nothing was published") from None
            raise self._engine_error(model, exc, query) from None  # the raw message may quote data: not chained
        except BaseException:
            self._rollback()  # an interruption inside the transaction publishes nothing
            raise
        self._checkpoint("committed", model.name)
        return BatchResult(rows, outcomes, True, tuple(ran))

    def _run(self, ran: list[StatementStats], label: str, sqls: Sequence[str]) -> None:
        """Run statements of the batch, timing each one."""
        for sql in sqls:
            began = time.perf_counter()
            self.conn.execute(sql)
            ran.append(StatementStats(label, time.perf_counter() - began))

    def _checkpoint(self, point: str, model: str) -> None:
        """Called at each point of a batch of `model`: `staged` (the batch's rows built, the table untouched),
        `written` (the table changed in the open transaction), `audited` (no BLOCK test failed), `marked` (the
        marker written, not yet committed) and `committed` (after the commit, before the caller records the
        batch). Does nothing; a subclass may raise here to stand for a crash at that point (a view has no
        `staged`).
        """

    def _refuse_reappend(self, model: Model, start: datetime | None, end: datetime | None) -> None:
        """Refuse, inside the batch's transaction, to append rows the warehouse already holds (an APPEND_ONLY
        model without a time column over a range one of its markers covers).

        Raises:
            ExecutionError: naming the committed batch and what to do.
        """
        header = model.header
        if header.kind != "APPEND_ONLY" or header.time_column or start is None or end is None:
            return
        held = self.conn.execute(
            f"SELECT {_MARKER_COLUMNS} FROM {MARKERS} WHERE model = ? AND range_start < ? AND range_end > ?",
            [model.name, _naive(end), _naive(start)],
        ).fetchall()
        committed = [CommittedBatch(m, h, _aware(s), _aware(e), p, st, int(n)) for m, h, s, e, p, st, n in held]
        conflict = reappend_conflict(header.kind, header.time_column, start, end, committed)
        if conflict is not None:
            raise ExecutionError(reappend_refusal(model.name, model.path, start, end, conflict)
                                 + "; nothing was published")

    def _write_marker(self, model: str, marker: BatchMarker, start: datetime | None, end: datetime | None,
                      rows: int) -> None:
        """Record the batch under its key (model, version, range), replacing that key's earlier marker."""
        self.conn.execute(
            f"DELETE FROM {MARKERS} WHERE model = ? AND model_hash = ? AND range_start IS NOT DISTINCT FROM ? "
            "AND range_end IS NOT DISTINCT FROM ?",
            [model, marker.model_hash, _naive(start), _naive(end)],
        )
        self.conn.execute(
            f"INSERT INTO {MARKERS} ({_MARKER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [model, marker.model_hash, _naive(start), _naive(end), marker.plan_id, marker.step_id, rows],
        )

    @staticmethod
    def _engine_error(model: Model, exc: duckdb.Error, query: str) -> ExecutionError:
        """The run error for an engine error: its class and position, never the data values it may quote."""
        detail = scrub_engine_error(str(exc), kind=type(exc).__name__, sql=f"{model.text}\n{query}")
        return ExecutionError(f"{model.name} ({model.path}): DuckDB error: {detail}; nothing was published")

    def _rollback(self) -> None:
        with contextlib.suppress(duckdb.Error):  # no transaction was open
            self.conn.execute("ROLLBACK")

    def _audit(self, tests: Sequence[tuple[QualityTest, str]]) -> list[TestOutcome]:
        """Run each test's query (rendered, and guarded, before the transaction began) inside the transaction."""
        return [TestOutcome(test.render(), test.severity, int(self._scalar(sql) or 0)) for test, sql in tests]

    def _audit_contract(self, spec: BatchSpec) -> list[TestOutcome]:
        """The contract checks against the target inside the transaction (what readers will see)."""
        if not spec.contract:
            return []
        sql, params = statements.columns_query(spec.model)
        columns = {str(name).lower(): str(kind) for name, kind in self.conn.execute(sql, params).fetchall()}
        target = relation(spec.model)
        total = int(self._scalar(f"SELECT count(*) FROM {target}"))
        outcomes = []
        for check in spec.contract:
            nulls = 0
            if check.column.not_null and contracts.shape_violation(check, columns) is None:
                nulls = int(self._scalar(f"SELECT count(*) FROM {target} WHERE "
                                         f"{statements.quote(check.column.name)} IS NULL"))
            failing = contracts.failing_rows(check, columns, total_rows=total, null_rows=nulls)
            outcomes.append(TestOutcome(check.name, check.severity, failing))
        return outcomes


_CONFLICT_RETRIES = 5


class _ConflictError(Exception):
    """A transient optimistic-concurrency conflict in DuckDB; the batch is retried."""


def _naive(value: datetime | None) -> datetime | None:
    """DuckDB TIMESTAMP values are naive UTC."""
    return value.replace(tzinfo=None) if value is not None else None


def _aware(value: datetime | None) -> datetime | None:
    """A naive UTC TIMESTAMP read from DuckDB, made aware."""
    return value.replace(tzinfo=UTC) if value is not None else None
