"""`DatabricksExecutor`: run one model batch on a Databricks SQL warehouse, write-audit-publish, resumable.

Each batch follows the one description of its kind and materialization (`shared_core.core.sql.materialize`),
rendered for Databricks (`shared_core.core.sql.databricks_statements`): three-part names in backticks under
the repository's catalog, values as bound parameters. Sessions, retries, query tags, timeouts and
cancellation are `_databricks_session`'s; error messages `_databricks_errors`'.

**Why a crash at any point resumes without duplicates.** Databricks commits each statement atomically on
one Delta table and has no transaction across tables (multi-statement transactions are a preview limited to
catalog-managed tables), so the data and its marker cannot commit together as on DuckDB. Instead every step
of a batch is idempotent and keyed by the batch, and the marker is written last:

1. stage: `CREATE OR REPLACE TABLE ...__il_stage_<table>_<batch>` from the model's query, restricted to the
   window. The batch ID is derived from the model, its version and the window (the key of the batch's
   marker, as on DuckDB: `shared_core.core.planning.markers`), so a re-run replaces the same table; nothing
   readers see has changed.
2. audit: quality tests and contract checks against a temporary view of the prospective rows (the target
   as the publish will leave it). A BLOCK failure drops the stage and publishes nothing.
3. publish: one statement, one Delta commit on the target, whose result depends only on the staged rows:
   `CREATE OR REPLACE TABLE ... AS SELECT * FROM stage` (swap, reset, first batch), `INSERT INTO ... REPLACE
   WHERE <window>` (time ranges, and appends with a time column), `INSERT INTO ... REPLACE USING
   (<partitions>)`, or the delete-and-insert `MERGE` on the key. Publishing the same rows twice leaves the
   target as publishing them once; readers see the old rows or the new, never a mix. A reset batch first
   deletes the model's markers (a marker may go missing, which only makes a batch run again; it may never
   claim rows a reset removed).
4. cleanup: drop the stage and the audit view.
5. mark: `MERGE` the batch's row into `<catalog>._ironlayer.committed_batches`, keyed by the batch ID.

A crash before 3 leaves the target untouched and no marker: the batch runs again. A crash after 3 and
before 5 leaves the batch published without a marker: it runs again, and step 3 converges to the same
target (a stage left behind by a crash is replaced by the re-run and dropped by it). After 5 the batch is
committed: the runner records it without running it (`committed_batches`), exactly as it does for DuckDB.
The one publish that is not idempotent is an append without a time column or partitions: its rows cannot
be told apart from earlier batches', so (as on DuckDB) a range the catalog already holds is never appended
again, and an interrupted append is guarded by an intent marker: before the `INSERT`, the marker
records state `publishing` with the target's current Delta version and the staged row count. A re-run that
finds that intent reads the target's history: no commit since that version means the append never
happened (it runs); exactly one blind append of that many rows means it did (the batch is only marked);
anything else is refused with a message naming the versions, rather than risking a duplicate or a loss.

Concurrent Delta writes that conflict with a publish (`DELTA_CONCURRENT_*`) re-run the whole batch, at most
`Limits.conflict_retries` times; range locks in the state store keep IronLayer's own batches of a model
apart. Engine errors that reach a run's stored error keep only their class, SQLSTATE and (for errors
about the SQL) the names the SQL contains, with the model's file and line.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from shared_core.adapters.engines import _databricks_errors as errors
from shared_core.adapters.engines._databricks_session import Credentials, Limits, Result, Session, Target
from shared_core.adapters.engines.results import BatchResult, StatementStats, TestOutcome
from shared_core.core.errors import BlockedBatchError, CoreError, ExecutionError
from shared_core.core.planning.markers import BatchMarker, CommittedBatch, reappend_conflict, reappend_refusal
from shared_core.core.project.models import Model
from shared_core.core.sql import contracts
from shared_core.core.sql import databricks_statements as sql
from shared_core.core.sql.materialize import BatchSpec, batch_id, builtin_test_query, describe_batch
from shared_core.core.sql.render import render_query, render_test_query

__all__ = ["Credentials", "DatabricksExecutor", "Limits", "Target"]


class DatabricksExecutor:
    """Executes model batches on one Databricks SQL warehouse, in one catalog, for one tenant."""

    DIALECT = sql.DIALECT
    SUPPORTS_REPLACE_WHERE = True
    TRANSACTIONAL = False  # no transaction across tables: idempotent steps and a marker written last

    def __init__(self, target: Target, credentials: Credentials, *, tenant: str, limits: Limits | None = None) -> None:
        """Open a first session (failing fast with a one-line error) and create the marker table.

        Raises:
            ExecutionError: the workspace, warehouse, credentials or catalog cannot be used.
        """
        self.target, self.tenant = target, tenant
        self.limits = limits or Limits()
        self._credentials = credentials
        self._cancelled = threading.Event()
        self._local = threading.local()
        self._sessions: list[Session] = []
        self._sessions_lock = threading.Lock()
        tags = {"ironlayer_tenant": tenant}
        try:
            if target.catalog:
                self.catalog = target.catalog.lower()
            else:  # the workspace's default catalog
                self.catalog = str(self._statement("SELECT current_catalog()", label="setup", tags=tags).rows[0][0])
            for statement in sql.create_markers(self.catalog):
                self._statement(statement, label="setup", tags=tags)
        except BaseException:
            self.close()
            raise

    # -- sessions and statements -------------------------------------------------------------------------

    def _session(self) -> Session:
        session: Session | None = getattr(self._local, "session", None)
        if session is None:
            session = Session(self.target, self._credentials, self.limits, tenant=self.tenant,
                              cancelled=self._cancelled)
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _statement(self, statement: str, parameters: Mapping[str, Any] | None = None, *, label: str,
                   tags: Mapping[str, str], model: Model | None = None, ran: list[StatementStats] | None = None,
                   ) -> Result:
        """Run one statement, record its cost in `ran`, and turn connector errors into ours."""
        try:
            result = self._session().run(statement, parameters, label=label, tags=tags)
        except ExecutionError as exc:  # cancelled, or past the statement timeout
            if self._cancelled.is_set():
                raise ExecutionError(f"{model.name if model else 'setup'}: cancelled; nothing was published") from None
            if model is None:
                raise
            raise ExecutionError(f"{model.name} ({model.path}): {exc}; nothing was published") from None
        except CoreError:
            raise
        except Exception as exc:
            raise self._failure(exc, statement, model) from None  # the raw message may quote data: not chained
        if ran is not None:
            ran.append(result.stats)
        return result

    def _failure(self, exc: Exception, statement: str, model: Model | None) -> Exception:
        if self._cancelled.is_set():
            return ExecutionError(f"{model.name if model else 'setup'}: cancelled; nothing was published")
        if errors.is_conflict(str(exc)):
            return _ConflictError(str(exc))
        if errors.error_class(str(exc))[0] == "" and errors.connection_kind(exc) != "other":
            return errors.connection_error(exc, host=self.target.host, port=self.target.port,
                                           http_path=self.target.http_path, principal=self._credentials.principal,
                                           credential=self._credentials.source,
                                           waited=self.limits.request_retry_seconds)
        if model is None:
            return errors.connection_error(exc, host=self.target.host, port=self.target.port,
                                           http_path=self.target.http_path, principal=self._credentials.principal,
                                           credential=self._credentials.source, waited=0,
                                           catalog=getattr(self, "catalog", self.target.catalog))
        return errors.statement_error(exc, model=model, sql=statement, catalog=getattr(self, "catalog", ""))

    # -- markers -------------------------------------------------------------------------------------------

    def committed_batches(self, models: Sequence[str]) -> dict[str, list[CommittedBatch]]:
        """The batches of `models` whose rows this catalog holds (their committed markers), by model, oldest
        first. This, not the state store, is the truth about what data exists (as for DuckDB)."""
        if not models:
            return {}
        result = self._statement(sql.committed_markers(self.catalog, models), label="markers",
                                 tags={"ironlayer_tenant": self.tenant})
        found: dict[str, list[CommittedBatch]] = {}
        for model, model_hash, start, end, plan_id, step_id, rows in result.rows:
            found.setdefault(str(model), []).append(CommittedBatch(
                str(model), model_hash, _utc(start), _utc(end), str(plan_id), str(step_id), int(rows)))
        return found

    # -- batches -------------------------------------------------------------------------------------------

    def run_batch(
        self, model: Model, *, start: datetime | None, end: datetime | None, reset: bool,
        marker: BatchMarker | None = None,
    ) -> BatchResult:
        """Run one batch of `model` and publish it only if no BLOCK test or contract check fails.

        `marker` (the model version, and the plan and step running the batch) is recorded after the publish,
        keyed by model version and range (see the module docstring for why a crash anywhere still resumes
        without duplicates).

        Raises:
            ExecutionError: a SQL error, a BLOCK failure (`BlockedBatchError`), a cancellation, a batch of an
                APPEND_ONLY model without a time column over a range the catalog already holds, or the
                warehouse cannot be used; nothing was published.
        """
        for attempt in range(1, self.limits.conflict_retries + 1):
            if self._cancelled.is_set():
                raise ExecutionError(f"{model.name}: cancelled; nothing was published")
            try:
                return self._run_batch_once(model, start=start, end=end, reset=reset, marker=marker)
            except _ConflictError:
                if attempt == self.limits.conflict_retries:
                    raise ExecutionError(f"{model.name}: concurrent writes to its tables kept conflicting "
                                         f"({attempt} attempts); apply again when the other writer is done") from None
                time.sleep(min(2.0 * attempt, 10.0))
        raise AssertionError("unreachable")

    def _run_batch_once(self, model: Model, *, start: datetime | None, end: datetime | None, reset: bool,
                        marker: BatchMarker | None) -> BatchResult:
        spec = describe_batch(model, start=start, end=end, reset=reset)
        plan_id, step_id = (marker.plan_id, marker.step_id) if marker else ("", "")
        key = batch_id(model.name, marker.model_hash if marker else "", start, end)
        batch = sql.DatabricksBatch(spec, catalog=self.catalog, batch=key, path=model.path)
        query = render_query(model, dialect=self.DIALECT, start=start, end=end, catalog=self.catalog)
        tests = [(test, builtin_test_query(test, batch.audit, self.DIALECT) if test.kind != "custom_sql" else
                  render_test_query(model, test, dialect=self.DIALECT, start=start, end=end, catalog=self.catalog,
                                    relation=batch.audit.strip("`")))
                 for test in spec.tests]
        tags = self._tags(plan_id, step_id, model.name)
        ran: list[StatementStats] = []

        def run(statement: str, label: str, parameters: Mapping[str, Any] | None = None) -> Result:
            return self._statement(statement, parameters, label=label, tags=tags, model=model, ran=ran)

        guarded = marker is not None and not spec.idempotent
        if marker is not None and guarded:
            resumed = self._resume_guarded(batch, model, run, start, end, marker)
            if resumed is not None:
                return BatchResult(resumed, (), True, tuple(ran))
        if not reset:
            self._refuse_reappend(model, start, end, run)
        try:
            run(batch.create_schema(), "setup")
            exists = spec.publish == "view" or bool(run(batch.target_exists(), "setup").rows)
            for statement in batch.create_stage(query):
                run(statement, "stage")
            rows = 0 if spec.publish == "view" else int(run(batch.count_staged(), "count").rows[0][0])
            columns = self._columns(run(batch.describe_staged(), "describe"))
            for statement in batch.create_audit_view(target_exists=exists):
                run(statement, "audit")
            outcomes = (*[TestOutcome(test.render(), test.severity, int(run(query_, "audit").rows[0][0] or 0))
                          for test, query_ in tests], *self._contract(spec, batch, columns, run))
            blocked = [o for o in outcomes if not o.passed and o.severity == "BLOCK"]
            if blocked:
                names = ", ".join(f"{o.test} ({o.failing_rows} failing)" for o in blocked)
                raise BlockedBatchError(f"{model.name}: blocked by quality tests: {names}; nothing was published",
                                        outcomes)
            if reset:  # the table is about to hold this batch only: forget its markers first, never after
                self._repeat_on_conflict(run, sql.delete_markers(self.catalog), "mark", {"model": model.name})
            if marker is not None and guarded and batch.effective_publish(target_exists=exists) == "append":
                version = self._target_version(batch, run)
                self._mark(run, batch, model, marker, start, end, "publishing", version, rows)
            for statement in batch.publish(query, list(columns), target_exists=exists):
                run(statement, "publish")
        except (CoreError, _ConflictError):
            with contextlib.suppress(CoreError, _ConflictError):  # a failed batch leaves no stage behind
                self._cleanup(batch, run)
            raise
        self._cleanup(batch, run)
        if marker is not None:
            self._mark(run, batch, model, marker, start, end, "committed", None, rows)
        return BatchResult(rows, outcomes, True, tuple(ran))

    def _resume_guarded(self, batch: sql.DatabricksBatch, model: Model, run: Any, start: datetime | None,
                        end: datetime | None, marker: BatchMarker) -> int | None:
        """For an append that cannot be repeated: the rows of the batch when an earlier run already appended
        it (it is marked now, not appended again), else None (it runs).

        Raises:
            ExecutionError: an earlier run may have appended it, and the target's history cannot tell.
        """
        found = run(sql.read_marker(self.catalog), "markers", {"batch_id": batch.batch}).rows
        if not found:
            return None
        state, version, rows = found[0]
        if state == "committed":
            return None  # refused as a re-append of a committed range (`_refuse_reappend`), as on DuckDB
        newer = [entry for entry in self._history(batch, run) if version is None or int(entry["version"]) > version]
        if not newer:
            return None  # the append never committed
        appended = [entry for entry in newer if entry.get("operation") == "WRITE"
                    and _metric(entry, "numOutputRows") == int(rows)]
        if len(newer) == 1 and appended:
            self._cleanup(batch, run)
            self._mark(run, batch, model, marker, start, end, "committed", None, int(rows))
            return int(rows)
        raise ExecutionError(
            f"{model.name} ({model.path}): an interrupted run may have appended batch {batch.batch} to {batch.target}; "
            f"{len(newer)} commit(s) since version {version} cannot tell. Check DESCRIBE HISTORY {batch.target}, "
            "remove the batch's rows if they are there, and apply again")

    def _refuse_reappend(self, model: Model, start: datetime | None, end: datetime | None, run: Any) -> None:
        """Refuse to append rows the catalog already holds: an APPEND_ONLY model without a time column over a
        range one of its committed markers covers (the range locks keep other applies off it meanwhile).

        Raises:
            ExecutionError: naming the committed batch and what to do.
        """
        header = model.header
        if header.kind != "APPEND_ONLY" or header.time_column or start is None or end is None:
            return
        held = run(sql.overlapping_markers(self.catalog), "markers",
                   {"model": model.name, "range_start": start, "range_end": end}).rows
        committed = [CommittedBatch(str(m), h, _utc(s), _utc(e), str(p), str(st), int(n))
                     for m, h, s, e, p, st, n in held]
        conflict = reappend_conflict(header.kind, header.time_column, start, end, committed)
        if conflict is not None:
            raise ExecutionError(reappend_refusal(model.name, model.path, start, end, conflict)
                                 + "; nothing was published")

    def _contract(self, spec: BatchSpec, batch: sql.DatabricksBatch, columns: Mapping[str, str],
                  run: Any) -> list[TestOutcome]:
        """The contract checks against the audit view (what readers will see)."""
        if not spec.contract:
            return []
        total = int(run(f"SELECT count(*) FROM {batch.audit}", "audit").rows[0][0])
        outcomes = []
        for check in spec.contract:
            nulls = 0
            if check.column.not_null and contracts.shape_violation(check, columns) is None:
                nulls = int(run(f"SELECT count(*) FROM {batch.audit} WHERE {sql.quote(check.column.name)} IS NULL",
                                "audit").rows[0][0])
            outcomes.append(TestOutcome(check.name, check.severity,
                                        contracts.failing_rows(check, columns, total_rows=total, null_rows=nulls)))
        return outcomes

    @staticmethod
    def _columns(described: Result) -> dict[str, str]:
        """`DESCRIBE TABLE` rows as column name -> type, in order (stopping at the partition information)."""
        columns: dict[str, str] = {}
        for row in described.rows:
            name = str(row[0] or "").strip()
            if not name or name.startswith("#"):
                break
            columns[name.lower()] = str(row[1])
        return columns

    def _target_version(self, batch: sql.DatabricksBatch, run: Any) -> int:
        return int(run(batch.target_version(), "setup").rows[0][0])

    def _history(self, batch: sql.DatabricksBatch, run: Any) -> list[dict[str, Any]]:
        result = run(batch.target_history(), "setup")
        return [dict(zip(result.columns, row, strict=False)) for row in result.rows]

    def _mark(self, run: Any, batch: sql.DatabricksBatch, model: Model, marker: BatchMarker,
              start: datetime | None, end: datetime | None, state: str, version: int | None, rows: int) -> None:
        self._repeat_on_conflict(run, sql.write_marker(self.catalog), "mark", {
            "batch_id": batch.batch, "model": model.name, "model_hash": marker.model_hash, "range_start": start,
            "range_end": end, "plan_id": marker.plan_id, "step_id": marker.step_id, "state": state,
            "target_version": version, "rows_written": rows})

    @staticmethod
    def _repeat_on_conflict(run: Any, statement: str, label: str, parameters: Mapping[str, Any]) -> None:
        """Run an idempotent statement on the marker table, again when a concurrent batch's marker write
        conflicted with it (every batch of every model writes there), rather than re-running the whole batch."""
        for attempt in range(1, _MARKER_ATTEMPTS + 1):
            try:
                run(statement, label, parameters)
                return
            except _ConflictError:
                if attempt == _MARKER_ATTEMPTS:
                    raise
                time.sleep(0.2 * attempt)

    @staticmethod
    def _cleanup(batch: sql.DatabricksBatch, run: Any) -> None:
        for statement in batch.cleanup():
            run(statement, "cleanup")

    def _tags(self, plan_id: str, step_id: str, model: str) -> dict[str, str]:
        tags = {"ironlayer_tenant": self.tenant, "ironlayer_plan": plan_id, "ironlayer_step": step_id,
                "ironlayer_model": model}
        return {key: value for key, value in tags.items() if value}

    # -- lifecycle -----------------------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Cancel the running statements of every session, from any thread and without blocking it (the
        cancellation requests leave from a thread of their own); nothing more runs. Never raises."""
        self._cancelled.set()
        with self._sessions_lock:
            sessions = list(self._sessions)

        def cancel_all() -> None:
            for session in sessions:
                session.cancel()

        threading.Thread(target=cancel_all, name="ironlayer-cancel", daemon=True).start()

    def close(self) -> None:
        """Close every session."""
        with self._sessions_lock:
            sessions, self._sessions = list(self._sessions), []
        for session in sessions:
            with contextlib.suppress(Exception):
                session.close()


_MARKER_ATTEMPTS = 5


class _ConflictError(Exception):
    """A concurrent Delta write conflicted with the batch; the (idempotent) batch is run again."""


def _utc(value: Any) -> datetime | None:
    """A marker's TIMESTAMP as an aware UTC datetime (the session runs in UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _metric(entry: Mapping[str, Any], name: str) -> int | None:
    """One operation metric of a `DESCRIBE HISTORY` row (a map, however the connector returns it)."""
    metrics: Any = entry.get("operationMetrics")
    if isinstance(metrics, str):
        with contextlib.suppress(ValueError):
            metrics = json.loads(metrics)
    if isinstance(metrics, Sequence) and not isinstance(metrics, str):
        metrics = dict(metrics)
    value = metrics.get(name) if isinstance(metrics, Mapping) else None
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None
