"""`PostgresStateStore`: plans, the watermark ledger and migrations in PostgreSQL, through asyncpg.

Every query names its tenant. Migrations are the numbered SQL files of `shared_core/migrations`,
applied in order, each in its own transaction, under an advisory lock so that two processes never
migrate at once; an up-to-date schema costs one query to confirm.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from typing import Any

import asyncpg

from shared_core.errors import StateError, StateUnavailableError
from shared_core.intervals import Range, merge_ranges

_MIGRATION_LOCK = 0x1A0_1A7E  # pg_advisory_xact_lock key of the migrator
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_UNAVAILABLE = (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError)


def migrations() -> list[tuple[int, str, str]]:
    """`(version, name, sql)` of every migration file, in version order."""
    found = []
    for entry in resources.files("shared_core.migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    return sorted(found)


class PostgresStateStore:
    """The state store over one asyncpg pool (created lazily, reused)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None

    async def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=4, command_timeout=60)
            except _UNAVAILABLE as exc:
                raise StateUnavailableError(
                    f"state store unreachable at {_redact(self.url)}: {exc}; start PostgreSQL or fix "
                    "IRONLAYER_DATABASE_URL"
                ) from exc
            except asyncpg.PostgresError as exc:
                raise StateError(f"state store at {_redact(self.url)} refused the connection: {exc}") from exc
        return self._pool

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
        pool = await self.pool()
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
        pool = await self.pool()
        rows = await pool.fetch(
            "SELECT model, range_start, range_end FROM watermarks WHERE tenant_id = $1 "
            "AND ($2::text[] IS NULL OR model = ANY($2::text[])) ORDER BY model, range_start",
            tenant_id, list(models) if models is not None else None,
        )
        ledger: dict[str, list[Range]] = {}
        for row in rows:
            ledger.setdefault(row["model"], []).append((row["range_start"], row["range_end"]))
        return {model: merge_ranges(ranges) for model, ranges in ledger.items()}

    async def record_completed(
        self, tenant_id: str, model: str, start: datetime, end: datetime, plan_id: str | None
    ) -> None:
        """Add `[start, end)` to the model's ledger (idempotent: re-recording never shrinks a range)."""
        pool = await self.pool()
        await pool.execute(
            "INSERT INTO watermarks (tenant_id, model, range_start, range_end, plan_id) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (tenant_id, model, range_start) DO UPDATE "
            "SET range_end = GREATEST(watermarks.range_end, EXCLUDED.range_end), plan_id = EXCLUDED.plan_id",
            tenant_id, model, start, end, plan_id,
        )

    async def save_plan(self, tenant_id: str, plan: dict[str, Any], plan_json: str) -> bool:
        """Store a plan's exact bytes; returns False when that plan was already stored."""
        pool = await self.pool()
        result: str = await pool.execute(
            "INSERT INTO plans (tenant_id, plan_id, base, target, as_of, inputs_hash, plan_json) "
            "VALUES ($1, $2, $3, $4, $5::text::timestamptz, $6, $7) ON CONFLICT (tenant_id, plan_id) DO NOTHING",
            tenant_id, plan["plan_id"], plan["base"], plan["target"], plan["as_of"], plan["inputs_hash"], plan_json,
        )
        return result.endswith(" 1")

    async def get_plan(self, tenant_id: str, plan_id: str) -> str | None:
        """The exact bytes of a stored plan, or None."""
        pool = await self.pool()
        value = await pool.fetchval(
            "SELECT plan_json FROM plans WHERE tenant_id = $1 AND plan_id = $2", tenant_id, plan_id
        )
        return str(value) if value is not None else None


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
