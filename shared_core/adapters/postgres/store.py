"""`PostgresStateStore`: plans, the watermark ledger and migrations in PostgreSQL, through asyncpg.

Every query names its tenant. Migrations are the numbered SQL files of `shared_core/migrations`,
applied in order, each in its own transaction, under an advisory lock so that two processes never
migrate at once; an up-to-date schema costs one query to confirm.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg

from shared_core.core.errors import StateError, StateUnavailableError
from shared_core.core.planning.intervals import Range, merge_ranges
from shared_core.security.scrub import scrub, scrub_mapping

_MIGRATION_LOCK = 0x1A0_1A7E  # pg_advisory_xact_lock key of the migrator
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError)


def migrations() -> list[tuple[int, str, str]]:
    """`(version, name, sql)` of every migration file, in version order."""
    found = []
    for entry in resources.files("shared_core.adapters.postgres.migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    return sorted(found)


class _SessionlessConnection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection released without asyncpg's reset query (`RESET ALL`, `UNLISTEN *`, ...).

    The store keeps no session state: its advisory locks and settings are transaction-scoped, and asyncpg
    still rolls back a transaction left open. Skipping the reset saves one round trip per store call.
    """

    def get_reset_query(self) -> str:
        return ""


class PostgresStateStore:
    """The state store over one asyncpg pool (created lazily, reused)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(
                    self.url, min_size=1, max_size=4, command_timeout=60, connection_class=_SessionlessConnection
                )
            except _UNAVAILABLE as exc:
                raise StateUnavailableError(
                    f"state store unreachable at {_redact(self.url)}: {exc}; start PostgreSQL or fix "
                    "IRONLAYER_DATABASE_URL"
                ) from exc
            except asyncpg.PostgresError as exc:
                raise StateError(f"state store at {_redact(self.url)} refused the connection: {exc}") from exc
        return self._pool

    async def _tenant_pool(self, tenant_id: str) -> _TenantPool:
        """The pool, with every statement run in a transaction bound to `tenant_id` (row-level security)."""
        return _TenantPool(await self.pool(), tenant_id)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def migrate(self) -> list[int]:
        """Apply every pending migration; returns the versions applied (empty when up to date)."""
        pool = await self.pool()
        known = migrations()
        async with pool.acquire() as conn:
            current = await self._current_version(conn)
            if current >= known[-1][0]:
                return []
            applied = []
            for version, name, sql in known:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                    await conn.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                        "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                    )
                    done = await conn.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", version)
                    if done:
                        continue
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
                    applied.append(version)
            return applied

    @staticmethod
    async def _current_version(conn: Any) -> int:
        exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not exists:
            return 0
        return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))

    async def schema_version(self) -> int:
        pool = await self.pool()
        async with pool.acquire() as conn:
            return await self._current_version(conn)

    async def ensure_tenant(self, tenant_id: str, name: str) -> None:
        pool = await self._tenant_pool(tenant_id)
        try:
            await pool.execute(
                "INSERT INTO tenants (tenant_id, name) VALUES ($1, $2) ON CONFLICT (tenant_id) DO NOTHING",
                tenant_id, name,
            )
        except asyncpg.CheckViolationError:
            raise StateError(
                f"invalid tenant id '{tenant_id}'; use lower-case letters, digits, '-' and '_'"
            ) from None

    async def load_ledger(self, tenant_id: str, models: Sequence[str] | None = None) -> dict[str, list[Range]]:
        """The completed ranges per model (merged), for `models` or all."""
        pool = await self._tenant_pool(tenant_id)
        rows = await pool.fetch(
            "SELECT model, range_start, range_end FROM watermarks WHERE tenant_id = $1 "
            "AND ($2::text[] IS NULL OR model = ANY($2::text[])) ORDER BY model, range_start",
            tenant_id, list(models) if models is not None else None,
        )
        return _ledger(rows)

    async def record_completed(
        self, tenant_id: str, model: str, start: datetime, end: datetime, *, plan_id: str | None = None,
        step_id: str | None = None, reset: bool = False,
    ) -> None:
        """Add `[start, end)` to the model's ledger; with `reset`, the ledger first forgets the model."""
        pool = await self._tenant_pool(tenant_id)
        async with pool.acquire() as conn, conn.transaction():
            if reset:
                await conn.execute("DELETE FROM watermarks WHERE tenant_id = $1 AND model = $2", tenant_id, model)
            await conn.execute(
                "INSERT INTO watermarks (tenant_id, model, range_start, range_end, plan_id, step_id) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                tenant_id, model, start, end, plan_id, step_id,
            )

    async def ledger_before(self, tenant_id: str, models: Sequence[str], plan_id: str) -> dict[str, list[Range]]:
        """The ledger of `models` without the ranges recorded by plan `plan_id` (for the staleness check)."""
        pool = await self._tenant_pool(tenant_id)
        rows = await pool.fetch(
            "SELECT model, range_start, range_end FROM watermarks WHERE tenant_id = $1 AND model = ANY($2::text[]) "
            "AND plan_id IS DISTINCT FROM $3 ORDER BY model, range_start",
            tenant_id, list(models), plan_id,
        )
        return _ledger(rows)

    async def save_plan(self, tenant_id: str, plan: dict[str, Any], plan_json: str) -> bool:
        """Store a plan's exact bytes; returns False when that plan was already stored."""
        pool = await self._tenant_pool(tenant_id)
        result: str = await pool.execute(
            "INSERT INTO plans (tenant_id, plan_id, base, target, as_of, inputs_hash, plan_json) "
            "VALUES ($1, $2, $3, $4, $5::text::timestamptz, $6, $7) ON CONFLICT (tenant_id, plan_id) DO NOTHING",
            tenant_id, plan["plan_id"], plan["base"], plan["target"], plan["as_of"], plan["inputs_hash"], plan_json,
        )
        return result.endswith(" 1")

    async def get_plan(self, tenant_id: str, plan_id: str) -> str | None:
        """The exact bytes of a stored plan, or None."""
        pool = await self._tenant_pool(tenant_id)
        value = await pool.fetchval(
            "SELECT plan_json FROM plans WHERE tenant_id = $1 AND plan_id = $2", tenant_id, plan_id
        )
        return str(value) if value is not None else None


    async def set_plan_status(self, tenant_id: str, plan_id: str, status: str) -> None:
        pool = await self._tenant_pool(tenant_id)
        await pool.execute(
            "UPDATE plans SET status = $3, updated_at = now() WHERE tenant_id = $1 AND plan_id = $2",
            tenant_id, plan_id, status,
        )

    async def list_plans(self, tenant_id: str, limit: int = 20) -> list[dict[str, Any]]:
        pool = await self._tenant_pool(tenant_id)
        rows = await pool.fetch(
            "SELECT plan_id, base, target, as_of, status, created_at, updated_at FROM plans WHERE tenant_id = $1 "
            "ORDER BY created_at DESC, plan_id LIMIT $2",
            tenant_id, limit,
        )
        return [dict(row) for row in rows]

    # -- runs -------------------------------------------------------------------------------------------

    async def successful_batches(self, tenant_id: str, plan_id: str) -> set[tuple[str, datetime | None]]:
        """`(step_id, batch_start)` of every batch of the plan that succeeded."""
        pool = await self._tenant_pool(tenant_id)
        rows = await pool.fetch(
            "SELECT DISTINCT step_id, batch_start FROM runs "
            "WHERE tenant_id = $1 AND plan_id = $2 AND status = 'success'",
            tenant_id, plan_id,
        )
        return {(row["step_id"], row["batch_start"]) for row in rows}

    async def start_run(
        self, tenant_id: str, plan_id: str, step_id: str, model: str, start: datetime | None, end: datetime | None
    ) -> int:
        """Insert a `running` run for one batch; the attempt number counts earlier runs of that batch."""
        pool = await self._tenant_pool(tenant_id)
        run_id: int = await pool.fetchval(
            "INSERT INTO runs (tenant_id, plan_id, step_id, model, batch_start, batch_end, attempt, status, "
            "started_at) "
            "SELECT $1, $2, $3, $4, $5, $6, 1 + count(*), 'running', now() FROM runs "
            "WHERE tenant_id = $1 AND plan_id = $2 AND step_id = $3 AND batch_start IS NOT DISTINCT FROM $5 "
            "RETURNING run_id",
            tenant_id, plan_id, step_id, model, start, end,
        )
        return run_id

    async def finish_run(
        self, tenant_id: str, run_id: int, status: str, *, rows_written: int | None = None,
        error: str | None = None, tests: Sequence[tuple[str, str, bool, int]] = (),
        completed: tuple[str, datetime, datetime, str, str, bool] | None = None,
    ) -> None:
        error = scrub(error) if error else error
        """Close a run with its status, rows, error and `(test, severity, passed, failing_rows)` results.

        `completed` = (model, start, end, plan_id, step_id, reset) adds the batch to the ledger in the
        same transaction, so a recorded success and its watermark never part.
        """
        pool = await self._tenant_pool(tenant_id)
        if completed is None and not tests:  # one statement: no transaction round trips
            await pool.execute(
                "UPDATE runs SET status = $3, finished_at = now(), rows_written = $4, error = $5 "
                "WHERE tenant_id = $1 AND run_id = $2",
                tenant_id, run_id, status, rows_written, error,
            )
            return
        async with pool.acquire() as conn, conn.transaction():
            if completed is not None:
                model, start, end, plan_id, step_id, reset = completed
                if reset:
                    await conn.execute("DELETE FROM watermarks WHERE tenant_id = $1 AND model = $2", tenant_id, model)
                await conn.execute(
                    "INSERT INTO watermarks (tenant_id, model, range_start, range_end, plan_id, step_id) "
                    "VALUES ($1, $2, $3, $4, $5, $6)",
                    tenant_id, model, start, end, plan_id, step_id,
                )
            await conn.execute(
                "UPDATE runs SET status = $3, finished_at = now(), rows_written = $4, error = $5 "
                "WHERE tenant_id = $1 AND run_id = $2",
                tenant_id, run_id, status, rows_written, error,
            )
            if tests:
                await conn.executemany(
                    "INSERT INTO test_results (tenant_id, run_id, test, severity, passed, failing_rows) "
                    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    [(tenant_id, run_id, name, severity, passed, failing) for name, severity, passed, failing in tests],
                )

    async def record_skipped(self, tenant_id: str, plan_id: str, step_id: str, model: str, reason: str) -> None:
        reason = scrub(reason)
        pool = await self._tenant_pool(tenant_id)
        await pool.execute(
            "INSERT INTO runs (tenant_id, plan_id, step_id, model, status, started_at, finished_at, error) "
            "VALUES ($1, $2, $3, $4, 'skipped', now(), now(), $5)",
            tenant_id, plan_id, step_id, model, reason,
        )

    async def list_runs(self, tenant_id: str, plan_id: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        pool = await self._tenant_pool(tenant_id)
        rows = await pool.fetch(
            "SELECT r.run_id, r.plan_id, r.step_id, r.model, r.batch_start, r.batch_end, r.attempt, r.status, "
            "r.started_at, r.finished_at, r.rows_written, r.error, "
            "(SELECT count(*) FROM test_results t WHERE t.tenant_id = r.tenant_id AND t.run_id = r.run_id "
            " AND NOT t.passed) AS failed_tests "
            "FROM runs r WHERE r.tenant_id = $1 AND ($2::text IS NULL OR r.plan_id = $2) "
            "ORDER BY r.run_id DESC LIMIT $3",
            tenant_id, plan_id, limit,
        )
        return [dict(row) for row in reversed(rows)]

    async def record_telemetry(
        self, tenant_id: str, plan_id: str | None, step_id: str | None, metrics: Mapping[str, float],
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        pool = await self._tenant_pool(tenant_id)
        await pool.executemany(_TELEMETRY_SQL, _telemetry_rows(tenant_id, plan_id, step_id, metrics, attributes))

    async def record_model_version(
        self, tenant_id: str, name: str, kind: str, materialization: str, content_hash: str, canonical_sql: str,
        header: Mapping[str, str],
    ) -> None:
        """Remember a deployed model version and make it the model's current one."""
        pool = await self._tenant_pool(tenant_id)
        async with pool.acquire() as conn, conn.transaction():
            await self._record_model_version(conn, tenant_id, name, kind, materialization, content_hash,
                                             canonical_sql, header)

    @staticmethod
    async def _record_model_version(
        conn: Any, tenant_id: str, name: str, kind: str, materialization: str, content_hash: str, canonical_sql: str,
        header: Mapping[str, str],
    ) -> None:
        await conn.execute(
            "INSERT INTO model_versions (tenant_id, name, content_hash, canonical_sql, header) "
            "VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT DO NOTHING",
            tenant_id, name, content_hash, canonical_sql, json.dumps(dict(header), sort_keys=True),
        )
        await conn.execute(
            "INSERT INTO models (tenant_id, name, kind, materialization, current_hash) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (tenant_id, name) DO UPDATE SET kind = EXCLUDED.kind, "
            "materialization = EXCLUDED.materialization, current_hash = EXCLUDED.current_hash, updated_at = now()",
            tenant_id, name, kind, materialization, content_hash,
        )

    # -- locks ------------------------------------------------------------------------------------------

    async def try_lock(
        self, tenant_id: str, model: str, start: datetime | None, end: datetime | None, holder: str, ttl_seconds: int,
        *, interrupted: tuple[str, str] | None = None,
    ) -> tuple[int | None, str | None]:
        """Take a range lock unless an unexpired lock of another holder overlaps it.

        With `interrupted` = (plan_id, step_id), the same transaction marks as failed the runs of that step
        left `running` by a process that died (see `fail_interrupted_runs`) once the lock is taken.

        Returns:
            `(lock_id, None)` when taken, `(None, holder description)` when someone else holds it.
        """
        pool = await self._tenant_pool(tenant_id)
        async with pool.acquire() as conn, conn.transaction():
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
                return None, f"{other['holder']} (since {other['acquired_at']:%Y-%m-%d %H:%M:%S}Z, " \
                             f"expires {other['expires_at']:%H:%M:%S}Z)"
            lock_id: int = await conn.fetchval(
                "INSERT INTO range_locks (tenant_id, model, range_start, range_end, holder, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) RETURNING lock_id",
                tenant_id, model, start, end, holder, float(ttl_seconds),
            )
            if interrupted is not None:
                await conn.execute(_FAIL_INTERRUPTED_SQL, tenant_id, *interrupted)
            return lock_id, None

    async def finish_step(
        self, tenant_id: str, lock_id: int, plan_id: str, step_id: str, metrics: Mapping[str, float],
        attributes: Mapping[str, Any], version: tuple[str, str, str, str, str, Mapping[str, str]] | None,
    ) -> None:
        """End a step in one transaction: release its lock, record its telemetry and, when `version` =
        (name, kind, materialization, content_hash, canonical_sql, header) is given, its deployed model version."""
        pool = await self._tenant_pool(tenant_id)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM range_locks WHERE tenant_id = $1 AND lock_id = $2", tenant_id, lock_id)
            await conn.executemany(_TELEMETRY_SQL, _telemetry_rows(tenant_id, plan_id, step_id, metrics, attributes))
            if version is not None:
                await self._record_model_version(conn, tenant_id, *version)

    async def renew_lock(self, tenant_id: str, lock_id: int, ttl_seconds: int) -> None:
        pool = await self._tenant_pool(tenant_id)
        await pool.execute(
            "UPDATE range_locks SET expires_at = now() + make_interval(secs => $3) "
            "WHERE tenant_id = $1 AND lock_id = $2",
            tenant_id, lock_id, float(ttl_seconds),
        )

    async def break_locks(self, tenant_id: str, holder: str) -> None:
        """Drop every lock of `holder` (a process known to be dead)."""
        pool = await self._tenant_pool(tenant_id)
        await pool.execute("DELETE FROM range_locks WHERE tenant_id = $1 AND holder = $2", tenant_id, holder)

    async def fail_interrupted_runs(self, tenant_id: str, plan_id: str, step_id: str) -> None:
        """Mark as failed the runs of a step left `running` by a process that died (we hold its lock now)."""
        pool = await self._tenant_pool(tenant_id)
        await pool.execute(_FAIL_INTERRUPTED_SQL, tenant_id, plan_id, step_id)

    async def release_lock(self, tenant_id: str, lock_id: int) -> None:
        pool = await self._tenant_pool(tenant_id)
        await pool.execute("DELETE FROM range_locks WHERE tenant_id = $1 AND lock_id = $2", tenant_id, lock_id)

    # -- orchestration (Functions app) ---------------------------------------------------------------------

    async def claim_delivery(self, tenant_id: str, delivery_id: str, event: str, instance: str | None) -> bool:
        """Record a webhook delivery; False when it was seen before (a redelivery starts nothing)."""
        pool = await self._tenant_pool(tenant_id)
        result: str = await pool.execute(
            "INSERT INTO webhook_deliveries (tenant_id, delivery_id, event, instance_id) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (tenant_id, delivery_id) DO NOTHING",
            tenant_id, delivery_id, event, instance,
        )
        return result.endswith(" 1")

    async def release_delivery(self, tenant_id: str, delivery_id: str) -> None:
        """Forget a delivery whose orchestration could not be started, so that a redelivery may retry."""
        pool = await self._tenant_pool(tenant_id)
        await pool.execute(
            "DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND delivery_id = $2", tenant_id, delivery_id
        )

    async def upsert_job(
        self, tenant_id: str, instance: str, *, kind: str | None = None, repository: str | None = None,
        target: str | None = None, plan_id: str | None = None, status: str | None = None, detail: str | None = None,
        author: str | None = None,
    ) -> None:
        """Create a job row or update the given fields of it (free text is scrubbed of secrets and PII)."""
        detail = scrub(detail) if detail else detail
        pool = await self._tenant_pool(tenant_id)
        await pool.execute(
            "INSERT INTO jobs (tenant_id, instance_id, kind, repository, target, plan_id, status, detail, author) "
            "VALUES ($1, $2, coalesce($3, 'push'), coalesce($4, ''), coalesce($5, ''), $6, coalesce($7, 'queued'), $8, "
            "coalesce($9, '')) ON CONFLICT (tenant_id, instance_id) DO UPDATE SET "
            "plan_id = coalesce(EXCLUDED.plan_id, jobs.plan_id), "
            "status = CASE WHEN $7 IS NULL THEN jobs.status ELSE EXCLUDED.status END, "
            "detail = coalesce($8, jobs.detail), author = CASE WHEN $9 IS NULL THEN jobs.author ELSE $9 END, "
            "updated_at = now()",
            tenant_id, instance, kind, repository, target, plan_id, status, detail, author,
        )

    async def get_job(self, tenant_id: str, instance: str) -> dict[str, Any] | None:
        pool = await self._tenant_pool(tenant_id)
        row = await pool.fetchrow("SELECT * FROM jobs WHERE tenant_id = $1 AND instance_id = $2", tenant_id, instance)
        return dict(row) if row else None

    async def job_for_plan(self, tenant_id: str, plan_id: str) -> dict[str, Any] | None:
        pool = await self._tenant_pool(tenant_id)
        row = await pool.fetchrow(
            "SELECT * FROM jobs WHERE tenant_id = $1 AND plan_id = $2 ORDER BY created_at DESC LIMIT 1",
            tenant_id, plan_id,
        )
        return dict(row) if row else None

    async def list_jobs(self, tenant_id: str, limit: int = 100) -> list[dict[str, Any]]:
        pool = await self._tenant_pool(tenant_id)
        rows = await pool.fetch(
            "SELECT * FROM jobs WHERE tenant_id = $1 ORDER BY created_at DESC, instance_id LIMIT $2", tenant_id, limit
        )
        return [dict(row) for row in rows]

    async def use_token(self, tenant_id: str, jti: str, plan_id: str, action: str, subject: str) -> bool:
        """Record an approval token as used; False when it had been used already (single use)."""
        pool = await self._tenant_pool(tenant_id)
        result: str = await pool.execute(
            "INSERT INTO used_tokens (tenant_id, jti, plan_id, action, subject) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (tenant_id, jti) DO NOTHING",
            tenant_id, jti, plan_id, action, subject,
        )
        return result.endswith(" 1")

    async def token_used(self, tenant_id: str, jti: str) -> bool:
        pool = await self._tenant_pool(tenant_id)
        return bool(await pool.fetchval(
            "SELECT 1 FROM used_tokens WHERE tenant_id = $1 AND jti = $2", tenant_id, jti))

    async def cancel_runs(self, tenant_id: str, plan_id: str) -> int:
        """Mark the plan's pending and running runs cancelled; returns how many."""
        pool = await self._tenant_pool(tenant_id)
        result: str = await pool.execute(
            "UPDATE runs SET status = 'cancelled', finished_at = now(), error = 'cancelled by request' "
            "WHERE tenant_id = $1 AND plan_id = $2 AND status IN ('pending', 'running')",
            tenant_id, plan_id,
        )
        return int(result.split()[-1])

    # -- security: audit chain, credentials, token revocation, rate limits, tenant routing ---------------

    async def append_audit(
        self, tenant_id: str, build: Callable[[dict[str, Any] | None, str | None], dict[str, Any]]
    ) -> dict[str, Any]:
        """Append one audit row built from the previous row and the recorded head; returns the row.

        The application role may only INSERT and SELECT audit rows; appends are serialized with a
        transaction-scoped advisory lock, and the tenant row keeps the newest hash (the chain's head), so
        `build` can chain to the head even when the newest rows were removed: a truncation stays visible.
        """
        pool = await self._tenant_pool(tenant_id)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('audit/' || $1))", tenant_id)
            last = await conn.fetchrow(
                "SELECT * FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1", tenant_id
            )
            head = await conn.fetchval("SELECT audit_head FROM tenants WHERE tenant_id = $1", tenant_id)
            row = build(_audit_row(last) if last else None, head)
            await conn.execute(
                "INSERT INTO audit_log (tenant_id, seq, at, actor, role, action, target, details, prev_hash, hash) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                row["tenant_id"], row["seq"], row["at"], row["actor"], row["role"], row["action"], row["target"],
                row["details"], row["prev_hash"], row["hash"],
            )
            await conn.execute("UPDATE tenants SET audit_head = $2 WHERE tenant_id = $1", tenant_id, row["hash"])
        return row

    async def audit_rows(self, tenant_id: str) -> tuple[list[dict[str, Any]], str | None]:
        """Every audit row of the tenant in `seq` order, and the head hash kept on the tenant row."""
        pool = await self._tenant_pool(tenant_id)
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch("SELECT * FROM audit_log WHERE tenant_id = $1 ORDER BY seq", tenant_id)
            head = await conn.fetchval("SELECT audit_head FROM tenants WHERE tenant_id = $1", tenant_id)
        return [_audit_row(r) for r in rows], head

    async def set_credential(self, tenant_id: str, name: str, ciphertext: str) -> None:
        pool = await self._tenant_pool(tenant_id)
        await pool.execute(
            "INSERT INTO credentials (tenant_id, name, ciphertext) VALUES ($1, $2, $3) ON CONFLICT (tenant_id, name) "
            "DO UPDATE SET ciphertext = EXCLUDED.ciphertext, updated_at = now()",
            tenant_id, name, ciphertext,
        )

    async def get_credential(self, tenant_id: str, name: str) -> str | None:
        pool = await self._tenant_pool(tenant_id)
        value = await pool.fetchval(
            "SELECT ciphertext FROM credentials WHERE tenant_id = $1 AND name = $2", tenant_id, name
        )
        return str(value) if value is not None else None

    async def list_credentials(self, tenant_id: str) -> list[tuple[str, str]]:
        pool = await self._tenant_pool(tenant_id)
        rows = await pool.fetch(
            "SELECT name, ciphertext FROM credentials WHERE tenant_id = $1 ORDER BY name", tenant_id
        )
        return [(r["name"], r["ciphertext"]) for r in rows]

    async def all_tenants(self) -> list[str]:
        """Tenant IDs, for owner-level maintenance (key rotation); the application role sees only its own."""
        pool = await self.pool()
        return [r["tenant_id"] for r in await pool.fetch("SELECT tenant_id FROM tenants ORDER BY tenant_id")]

    async def revoke_token(self, tenant_id: str, jti: str, expires_at: datetime) -> None:
        pool = await self._tenant_pool(tenant_id)
        await pool.execute(
            "INSERT INTO revoked_tokens (tenant_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            tenant_id, jti, expires_at,
        )

    async def is_revoked(self, tenant_id: str, jti: str) -> bool:
        pool = await self._tenant_pool(tenant_id)
        return bool(await pool.fetchval(
            "SELECT 1 FROM revoked_tokens WHERE tenant_id = $1 AND jti = $2", tenant_id, jti))

    async def rate_limit(
        self, tenant_id: str, key: str, decide: Callable[[tuple[datetime, int, int] | None], Any]
    ) -> Any:
        """Apply `decide` to the stored (window_start, count, previous_count) of `key` atomically.

        `decide` returns an object with `new_state` = (window_start, count, previous_count); it is stored
        in the same transaction, under a row lock, so concurrent function instances share one budget.
        """
        pool = await self._tenant_pool(tenant_id)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('rate/' || $1 || '/' || $2))", tenant_id, key)
            row = await conn.fetchrow(
                "SELECT window_start, count, previous_count FROM rate_limits WHERE tenant_id = $1 AND key = $2",
                tenant_id, key,
            )
            decision = decide((row["window_start"], row["count"], row["previous_count"]) if row else None)
            start, count, previous = decision.new_state
            await conn.execute(
                "INSERT INTO rate_limits (tenant_id, key, window_start, count, previous_count) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, key) DO UPDATE SET "
                "window_start = EXCLUDED.window_start, count = EXCLUDED.count, "
                "previous_count = EXCLUDED.previous_count",
                tenant_id, key, start, count, previous,
            )
        return decision

    async def map_repository(self, tenant_id: str, repository: str, installation_id: int | None = None) -> None:
        pool = await self._tenant_pool(tenant_id)
        await pool.execute(
            "INSERT INTO repository_tenants (tenant_id, repository, installation_id) VALUES ($1, $2, $3) "
            "ON CONFLICT (repository) DO UPDATE SET installation_id = EXCLUDED.installation_id",
            tenant_id, repository.lower(), installation_id,
        )

    async def tenant_for_repository(self, repository: str) -> str | None:
        """The tenant a repository's webhooks belong to (readable before any tenant is bound)."""
        pool = await self.pool()
        value = await pool.fetchval(
            "SELECT tenant_id FROM repository_tenants WHERE repository = $1", repository.lower()
        )
        return str(value) if value is not None else None

    async def tenant_settings(self, tenant_id: str) -> dict[str, Any]:
        pool = await self._tenant_pool(tenant_id)
        value = await pool.fetchval("SELECT settings FROM tenants WHERE tenant_id = $1", tenant_id)
        return dict(json.loads(value)) if value else {}

    async def set_tenant_settings(self, tenant_id: str, settings: Mapping[str, Any]) -> None:
        pool = await self._tenant_pool(tenant_id)
        await pool.execute(
            "UPDATE tenants SET settings = $2::jsonb WHERE tenant_id = $1", tenant_id,
            json.dumps(dict(settings), sort_keys=True),
        )

    async def health(self) -> None:
        """Raise StateUnavailableError unless the store answers."""
        pool = await self.pool()
        try:
            await pool.fetchval("SELECT 1")
        except _UNAVAILABLE as exc:
            raise StateUnavailableError(f"state store unreachable at {_redact(self.url)}: {exc}") from exc


_FAIL_INTERRUPTED_SQL = (
    "UPDATE runs SET status = 'failed', finished_at = now(), error = 'interrupted: the process running it stopped "
    "before it finished' WHERE tenant_id = $1 AND plan_id = $2 AND step_id = $3 AND status = 'running'"
)
_TELEMETRY_SQL = (
    "INSERT INTO telemetry (tenant_id, plan_id, step_id, metric, value, attributes) "
    "VALUES ($1, $2, $3, $4, $5, $6::jsonb)"
)


def _telemetry_rows(
    tenant_id: str, plan_id: str | None, step_id: str | None, metrics: Mapping[str, float],
    attributes: Mapping[str, Any] | None,
) -> list[tuple[Any, ...]]:
    text = json.dumps(scrub_mapping(dict(attributes or {})), sort_keys=True)
    return [(tenant_id, plan_id, step_id, name, float(value), text) for name, value in sorted(metrics.items())]


_BIND = "SELECT set_config('app.tenant_id', $1, true)"


def _ledger(rows: Sequence[Any]) -> dict[str, list[Range]]:
    """Watermark rows grouped per model into merged ranges."""
    ledger: dict[str, list[Range]] = {}
    for row in rows:
        ledger.setdefault(row["model"], []).append((row["range_start"], row["range_end"]))
    return {model: merge_ranges(ranges) for model, ranges in ledger.items()}


def _audit_row(record: Any) -> dict[str, Any]:
    return dict(record)  # `details` stays the canonical JSON text it was hashed as


class _TenantPool:
    """Runs each statement, or each transaction opened on an acquired connection, bound to one tenant.

    Row-level security compares every row's tenant_id with `app.tenant_id`, which is set per transaction
    (`set_config(..., true)`), so a pooled connection never carries a tenant from one use to the next.
    """

    def __init__(self, pool: Any, tenant_id: str) -> None:
        if not tenant_id:
            raise StateError("no tenant given; every state store call is bound to a tenant")
        self._pool, self._tenant = pool, tenant_id

    async def _run(self, method: str, sql: str, *args: Any) -> Any:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_BIND, self._tenant)
            return await getattr(conn, method)(sql, *args)

    async def execute(self, sql: str, *args: Any) -> Any:
        return await self._run("execute", sql, *args)

    async def executemany(self, sql: str, args: Any) -> Any:
        return await self._run("executemany", sql, args)

    async def fetch(self, sql: str, *args: Any) -> Any:
        return await self._run("fetch", sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchval", sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._run("fetchrow", sql, *args)

    def acquire(self) -> _BoundAcquire:
        return _BoundAcquire(self._pool, self._tenant)


class _BoundAcquire:
    def __init__(self, pool: Any, tenant_id: str) -> None:
        self._pool, self._tenant = pool, tenant_id
        self._cm: Any = None

    async def __aenter__(self) -> _BoundConnection:
        self._cm = self._pool.acquire()
        conn = await self._cm.__aenter__()
        return _BoundConnection(conn, self._tenant)

    async def __aexit__(self, *exc: Any) -> Any:
        assert self._cm is not None
        return await self._cm.__aexit__(*exc)


class _BoundConnection:
    """A pooled connection whose transactions bind the tenant first."""

    def __init__(self, conn: Any, tenant_id: str) -> None:
        self._conn, self._tenant = conn, tenant_id

    def transaction(self) -> _BoundTransaction:
        return _BoundTransaction(self._conn, self._tenant)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _BoundTransaction:
    def __init__(self, conn: Any, tenant_id: str) -> None:
        self._conn, self._tenant = conn, tenant_id
        self._tx: Any = None

    async def __aenter__(self) -> None:
        self._tx = self._conn.transaction()
        await self._tx.__aenter__()
        await self._conn.execute(_BIND, self._tenant)

    async def __aexit__(self, *exc: Any) -> Any:
        assert self._tx is not None
        return await self._tx.__aexit__(*exc)


APP_ROLE = "ironlayer_app"


def app_url_for(owner_url: str) -> str:
    """The same server and database as `owner_url`, as the application role (trust or peer auth locally).

    >>> app_url_for("postgresql://postgres@127.0.0.1:5432/ironlayer")
    'postgresql://ironlayer_app@127.0.0.1:5432/ironlayer'
    """
    scheme, _, rest = owner_url.partition("://")
    host = rest.rsplit("@", 1)[-1]
    return f"{scheme}://{APP_ROLE}@{host}"


async def open_store(app_url: str, migration_url: str | None, tenant_id: str) -> PostgresStateStore:
    """The application's store: migrates first (as the owner) when the schema is behind, binds nothing.

    Raises:
        StateError: the schema is behind and no migration URL (owner role) is configured.
    """
    latest = migrations()[-1][0]
    store = PostgresStateStore(app_url)
    try:
        current = await store.schema_version()
    except asyncpg.PostgresError:
        current = -1  # the application role cannot read the schema yet: it may not exist before 0003
    except StateError:
        if not migration_url:
            raise
        current = -1
    if current < latest:
        if not migration_url:
            await store.close()
            raise StateError(
                f"the state store schema is at version {max(current, 0)}, this IronLayer needs {latest}; run "
                "'ironlayer migrate' with IRONLAYER_MIGRATION_DATABASE_URL set to the owner role"
            )
        owner = PostgresStateStore(migration_url)
        try:
            await owner.migrate()
        finally:
            await owner.close()
        await store.close()
        store = PostgresStateStore(app_url)
    await store.ensure_tenant(tenant_id, tenant_id)
    return store


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
