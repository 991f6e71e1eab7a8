"""Execution telemetry in PostgreSQL: a row per executed step and per batch (`step_telemetry`).

Records arrive from the telemetry function (or the CLI's apply) with their attributes already scrubbed; they
are scrubbed again here, since nothing reaches a table unscrubbed. A record's key makes the write idempotent:
a retried telemetry write replaces its rows instead of adding more.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from shared_core.adapters.postgres._connection import PostgresConnection
from shared_core.core.telemetry import StepSample, TelemetryRecord
from shared_core.security.scrub import scrub, scrub_mapping

_UPSERT_SQL = (
    "INSERT INTO step_telemetry (tenant_id, record_key, kind, plan_id, step_id, run_id, instance_id, model, engine, "
    "status, batch_start, batch_end, batches, seconds, engine_seconds, rows_read, rows_written, bytes, cost_usd, "
    "attributes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, "
    "$20::jsonb) ON CONFLICT (tenant_id, record_key) DO UPDATE SET status = EXCLUDED.status, "
    "batches = EXCLUDED.batches, seconds = EXCLUDED.seconds, engine_seconds = EXCLUDED.engine_seconds, "
    "rows_read = EXCLUDED.rows_read, rows_written = EXCLUDED.rows_written, bytes = EXCLUDED.bytes, "
    "cost_usd = EXCLUDED.cost_usd, attributes = EXCLUDED.attributes, recorded_at = now()"
)


class PostgresTelemetryStore(PostgresConnection):
    """Writes and reads execution telemetry (the `TelemetryStore` port)."""

    async def record_telemetry(self, tenant_id: str, records: Sequence[TelemetryRecord]) -> int:
        """Write (or replace, by record key) the records in one transaction; returns how many."""
        rows = [
            (tenant_id, r["record_key"], r["kind"], r["plan_id"], r["step_id"], r["run_id"], r["instance_id"],
             scrub(r["model"]), r["engine"], r["status"], r["batch_start"], r["batch_end"], r["batches"],
             max(r["seconds"], 0.0), max(r["engine_seconds"], 0.0), r["rows_read"], r["rows_written"], r["bytes"],
             max(r["cost_usd"], 0.0), json.dumps(scrub_mapping(dict(r["attributes"])), sort_keys=True))
            for r in records
        ]
        if rows:
            async with self._transaction(tenant_id) as conn:
                await conn.executemany(_UPSERT_SQL, rows)
        return len(rows)

    async def step_samples(self, tenant_id: str, model: str | None = None, limit: int = 10_000) -> list[StepSample]:
        """The newest `limit` executed steps (of one model, or all), oldest first."""
        rows = await self._fetch(
            tenant_id,
            "SELECT model, engine, status, seconds, rows_written, cost_usd, recorded_at FROM step_telemetry "
            "WHERE tenant_id = $1 AND kind = 'step' AND ($2::text IS NULL OR model = $2) "
            "ORDER BY recorded_at DESC, id DESC LIMIT $3",
            tenant_id, model, limit,
        )
        return [StepSample(model=r["model"], engine=r["engine"], status=r["status"], seconds=r["seconds"],
                           rows_written=r["rows_written"], cost_usd=r["cost_usd"], recorded_at=r["recorded_at"])
                for r in reversed(rows)]
