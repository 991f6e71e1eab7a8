"""Schema migrations of the state store: the numbered SQL files beside this module, applied in order.

Each migration runs in its own transaction under an advisory lock, so two processes never migrate at
once; an up-to-date schema costs one query to confirm. Migrations run as the owner role (the application
role may only read `schema_migrations`).
"""

from __future__ import annotations

import re
from importlib import resources

from shared_core.adapters.postgres._connection import Connection, PostgresConnection

_MIGRATION_LOCK = 0x1A0_1A7E  # pg_advisory_xact_lock key of the migrator
_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """`(version, name, sql)` of every migration file, in version order.

    >>> [(version, name) for version, name, _ in migrations()][:2]
    [(1, 'initial'), (2, 'orchestration')]
    """
    found = []
    for entry in resources.files("shared_core.adapters.postgres.migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    return sorted(found)


class PostgresMigrations(PostgresConnection):
    """Applies and reports the schema version (connect as the owner role to migrate)."""

    async def migrate(self) -> list[int]:
        """Apply every pending migration; returns the versions applied (empty when up to date)."""
        known = migrations()
        async with self._connection() as conn:
            current = await _current_version(conn)
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

    async def schema_version(self) -> int:
        """The newest applied migration (0 for an empty database)."""
        async with self._connection() as conn:
            return await _current_version(conn)


async def _current_version(conn: Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))
