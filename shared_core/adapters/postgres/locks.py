"""Partition-range locks in PostgreSQL, and the end of a step: release, telemetry, deployed model version.

A lock covers `[start, end)` of one model (a NULL range covers the whole model) for one holder
(`host:pid`) until its TTL expires; the holder renews it between batches. Taking a lock is serialized per
model with a transaction-scoped advisory lock, and drops expired locks of that model on the way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime

from shared_core.adapters.postgres._connection import Connection, PostgresConnection
from shared_core.adapters.postgres.billing import insert_usage
from shared_core.core.billing import meter_identifier
from shared_core.core.state import JSONValue, ModelVersion
from shared_core.security.scrub import scrub_mapping

_FAIL_INTERRUPTED_SQL = (
    "UPDATE runs SET status = 'failed', finished_at = now(), error = 'interrupted: the process running it stopped "
    "before it finished' WHERE tenant_id = $1 AND plan_id = $2 AND step_id = $3 AND status = 'running'"
)
_TELEMETRY_SQL = (
    "INSERT INTO telemetry (tenant_id, plan_id, step_id, metric, value, attributes) "
    "VALUES ($1, $2, $3, $4, $5, $6::jsonb)"
)
_RELEASE_SQL = "DELETE FROM range_locks WHERE tenant_id = $1 AND lock_id = $2"


class PostgresLockStore(PostgresConnection):
    """Takes, renews and releases range locks; ends steps (the locks half of the `RunStore` port)."""

    async def try_lock(
        self, tenant_id: str, model: str, start: datetime | None, end: datetime | None, holder: str, ttl_seconds: int,
        *, interrupted: tuple[str, str] | None = None,
    ) -> tuple[int | None, str | None]:
        """Take a range lock unless an unexpired lock of another holder overlaps it.

        With `interrupted` = (plan_id, step_id), the same transaction marks as failed the runs of that step
        left `running` by a process that died, once the lock is taken (whoever holds the lock owns the step).

        Returns:
            `(lock_id, None)` when taken, `(None, holder description)` when someone else holds it.
        """
        async with self._transaction(tenant_id) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2))", tenant_id, model)
            other = await conn.fetchrow(  # the CTE drops expired locks; the query reads the snapshot before it
                "WITH expired AS (DELETE FROM range_locks WHERE tenant_id = $1 AND model = $2 AND expires_at <= now()) "
                "SELECT holder, acquired_at, expires_at FROM range_locks WHERE tenant_id = $1 AND model = $2 "
                "AND expires_at > now() AND holder <> $5 "
                "AND tstzrange(range_start, range_end) && tstzrange($3::timestamptz, $4::timestamptz) "
                "ORDER BY acquired_at LIMIT 1",
                tenant_id, model, start, end, holder,
            )
            if other is not None:
                return None, (f"{other['holder']} (since {other['acquired_at']:%Y-%m-%d %H:%M:%S}Z, "
                              f"expires {other['expires_at']:%H:%M:%S}Z)")
            lock_id = await conn.fetchval(
                "INSERT INTO range_locks (tenant_id, model, range_start, range_end, holder, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING lock_id",
                tenant_id, model, start, end, holder, float(ttl_seconds),
            )
            if interrupted is not None:
                await conn.execute(_FAIL_INTERRUPTED_SQL, tenant_id, *interrupted)
            return int(lock_id), None

    async def finish_step(
        self, tenant_id: str, lock_id: int, plan_id: str, step_id: str, metrics: Mapping[str, float],
        attributes: Mapping[str, JSONValue], version: ModelVersion | None,
    ) -> None:
        """End a step in one transaction: release its lock, record its telemetry (`metrics`, with `attributes`
        scrubbed) and, when `version` = (name, kind, materialization, content_hash, canonical_sql, header, tests)
        is given, its deployed model version, which becomes the model's current one (deployed by `plan_id`).

        The step is metered in the same transaction: one `step_executed` usage event and its engine time as
        `compute_seconds` (whole seconds, rounded up), identified by the lock it ran under."""
        async with self._transaction(tenant_id) as conn:
            await conn.execute(_RELEASE_SQL, tenant_id, lock_id)
            await conn.executemany(_TELEMETRY_SQL, _telemetry_rows(tenant_id, plan_id, step_id, metrics, attributes))
            run = (plan_id, step_id, str(lock_id))
            await insert_usage(conn, tenant_id, meter_identifier(tenant_id, "step_executed", *run), "step_executed", 1,
                               plan_id, step_id)
            compute = math.ceil(max(float(metrics.get("engine_seconds", 0.0)), 0.0))
            if compute:
                await insert_usage(conn, tenant_id, meter_identifier(tenant_id, "compute_seconds", *run),
                                   "compute_seconds", compute, plan_id, step_id)
            if version is not None:
                await _record_model_version(conn, tenant_id, plan_id, *version)

    async def renew_lock(self, tenant_id: str, lock_id: int, ttl_seconds: int) -> None:
        """Push a held lock's expiry to `ttl_seconds` from now."""
        await self._execute(
            tenant_id,
            "UPDATE range_locks SET expires_at = now() + make_interval(secs => $3) "
            "WHERE tenant_id = $1 AND lock_id = $2",
            tenant_id, lock_id, float(ttl_seconds),
        )

    async def break_locks(self, tenant_id: str, holder: str) -> None:
        """Drop every lock of `holder` (a process known to be dead)."""
        await self._execute(
            tenant_id, "DELETE FROM range_locks WHERE tenant_id = $1 AND holder = $2", tenant_id, holder
        )

    async def release_lock(self, tenant_id: str, lock_id: int) -> None:
        """Drop one lock (no-op when it is gone already)."""
        await self._execute(tenant_id, _RELEASE_SQL, tenant_id, lock_id)


def _telemetry_rows(
    tenant_id: str, plan_id: str, step_id: str, metrics: Mapping[str, float], attributes: Mapping[str, JSONValue],
) -> list[tuple[str, str, str, str, float, str]]:
    text = json.dumps(scrub_mapping(dict(attributes)), sort_keys=True)
    return [(tenant_id, plan_id, step_id, name, float(value), text) for name, value in sorted(metrics.items())]


async def _record_model_version(
    conn: Connection, tenant_id: str, plan_id: str, name: str, kind: str, materialization: str, content_hash: str,
    canonical_sql: str, header: Mapping[str, str], tests: str,
) -> None:
    await conn.execute(
        "INSERT INTO model_versions (tenant_id, name, content_hash, canonical_sql, header) "
        "VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT DO NOTHING",
        tenant_id, name, content_hash, canonical_sql, json.dumps(dict(header), sort_keys=True),
    )
    await conn.execute(
        "INSERT INTO models (tenant_id, name, kind, materialization, current_hash, tests, plan_id) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, name) DO UPDATE SET kind = EXCLUDED.kind, "
        "materialization = EXCLUDED.materialization, current_hash = EXCLUDED.current_hash, tests = EXCLUDED.tests, "
        "plan_id = EXCLUDED.plan_id, updated_at = now()",
        tenant_id, name, kind, materialization, content_hash, tests, plan_id,
    )
