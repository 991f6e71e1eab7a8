"""Runs in PostgreSQL: one row per attempt at one batch of a plan step, with its quality-test results.

A successful incremental batch enters the ledger in the same transaction as its run (`finish_run` with
`completed`), so a recorded success and its watermark never part. Free text (errors, skip reasons) is
scrubbed of secrets and PII before it is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared_core.adapters.postgres._connection import PostgresConnection, Record
from shared_core.adapters.postgres.ledger import record_range
from shared_core.core.state import CompletedBatch, QualityResult, RunRow, RunStatus
from shared_core.security.scrub import scrub

_FINISH_SQL = (
    "UPDATE runs SET status = $3, finished_at = now(), rows_written = $4, error = $5 "
    "WHERE tenant_id = $1 AND run_id = $2"
)


class PostgresRunStore(PostgresConnection):
    """Starts, finishes, lists and cancels runs (the runs half of the `RunStore` port)."""

    async def successful_batches(self, tenant_id: str, plan_id: str) -> set[tuple[str, datetime | None]]:
        """`(step_id, batch_start)` of every batch of the plan that succeeded."""
        rows = await self._fetch(
            tenant_id,
            "SELECT DISTINCT step_id, batch_start FROM runs "
            "WHERE tenant_id = $1 AND plan_id = $2 AND status = 'success'",
            tenant_id, plan_id,
        )
        return {(row["step_id"], row["batch_start"]) for row in rows}

    async def start_run(
        self, tenant_id: str, plan_id: str, step_id: str, model: str, start: datetime | None, end: datetime | None
    ) -> int:
        """Insert a `running` run for one batch; the attempt number counts earlier runs of that batch."""
        run_id = await self._fetchval(
            tenant_id,
            "INSERT INTO runs (tenant_id, plan_id, step_id, model, batch_start, batch_end, attempt, status, "
            "started_at) "
            "SELECT $1, $2, $3, $4, $5, $6, 1 + count(*), 'running', now() FROM runs "
            "WHERE tenant_id = $1 AND plan_id = $2 AND step_id = $3 AND batch_start IS NOT DISTINCT FROM $5 "
            "RETURNING run_id",
            tenant_id, plan_id, step_id, model, start, end,
        )
        return int(run_id)

    async def finish_run(
        self, tenant_id: str, run_id: int, status: RunStatus, *, rows_written: int | None = None,
        error: str | None = None, tests: Sequence[QualityResult] = (), completed: CompletedBatch | None = None,
    ) -> None:
        """Close a run with its status, rows, error (scrubbed) and `(test, severity, passed, failing_rows)` results.

        `completed` = (model, start, end, plan_id, step_id, reset) adds the batch to the ledger in the
        same transaction, so a recorded success and its watermark never part.
        """
        error = scrub(error) if error else error
        if completed is None and not tests:  # one statement: no transaction round trips beyond it
            await self._execute(tenant_id, _FINISH_SQL, tenant_id, run_id, status, rows_written, error)
            return
        async with self._transaction(tenant_id) as conn:
            if completed is not None:
                model, start, end, plan_id, step_id, reset = completed
                await record_range(conn, tenant_id, model, start, end, plan_id, step_id, reset=reset)
            await conn.execute(_FINISH_SQL, tenant_id, run_id, status, rows_written, error)
            if tests:
                await conn.executemany(
                    "INSERT INTO test_results (tenant_id, run_id, test, severity, passed, failing_rows) "
                    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    [(tenant_id, run_id, name, severity, passed, failing) for name, severity, passed, failing in tests],
                )

    async def record_skipped(self, tenant_id: str, plan_id: str, step_id: str, model: str, reason: str) -> None:
        """Record a step that did not run (an upstream step failed) with its reason (scrubbed)."""
        await self._execute(
            tenant_id,
            "INSERT INTO runs (tenant_id, plan_id, step_id, model, status, started_at, finished_at, error) "
            "VALUES ($1, $2, $3, $4, 'skipped', now(), now(), $5)",
            tenant_id, plan_id, step_id, model, scrub(reason),
        )

    async def list_runs(self, tenant_id: str, plan_id: str | None = None, limit: int = 200) -> list[RunRow]:
        """The newest `limit` runs (of one plan, or all), oldest first, with their failed-test counts."""
        rows = await self._fetch(
            tenant_id,
            "SELECT r.run_id, r.plan_id, r.step_id, r.model, r.batch_start, r.batch_end, r.attempt, r.status, "
            "r.started_at, r.finished_at, r.rows_written, r.error, "
            "(SELECT count(*) FROM test_results t WHERE t.tenant_id = r.tenant_id AND t.run_id = r.run_id "
            " AND NOT t.passed) AS failed_tests "
            "FROM runs r WHERE r.tenant_id = $1 AND ($2::text IS NULL OR r.plan_id = $2) "
            "ORDER BY r.run_id DESC LIMIT $3",
            tenant_id, plan_id, limit,
        )
        return [_run_row(row) for row in reversed(rows)]

    async def cancel_runs(self, tenant_id: str, plan_id: str) -> int:
        """Mark the plan's pending and running runs cancelled; returns how many."""
        result = await self._execute(
            tenant_id,
            "UPDATE runs SET status = 'cancelled', finished_at = now(), error = 'cancelled by request' "
            "WHERE tenant_id = $1 AND plan_id = $2 AND status IN ('pending', 'running')",
            tenant_id, plan_id,
        )
        return int(result.split()[-1])


def _run_row(row: Record) -> RunRow:
    return RunRow(
        run_id=row["run_id"], plan_id=row["plan_id"], step_id=row["step_id"], model=row["model"],
        batch_start=row["batch_start"], batch_end=row["batch_end"], attempt=row["attempt"], status=row["status"],
        started_at=row["started_at"], finished_at=row["finished_at"], rows_written=row["rows_written"],
        error=row["error"], failed_tests=row["failed_tests"],
    )
