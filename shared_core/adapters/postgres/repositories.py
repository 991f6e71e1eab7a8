"""Per-repository settings in PostgreSQL: the execution resources a job of a mapped repository runs with.

A row names the repository's git source, the credential holding its token, the engine and its target, the
blob prefix, the planned branches and the commit-status target (migration 0004). It is bound to the tenant
the repository is mapped to: the composite foreign key refuses settings for a repository mapped elsewhere,
and row-level security hides them from every other tenant. The routing map itself stays readable without a
tenant (`repository_mappings`), because the schedule tick and the webhook find a tenant through it.
"""

from __future__ import annotations

import asyncpg

from shared_core.adapters.postgres._connection import PostgresConnection, Record
from shared_core.core.errors import StateError
from shared_core.core.state import RepositorySettingsFields, RepositorySettingsRow

_COLUMNS = (
    "tenant_id, repository, source_kind, source, github_token_credential, engine, warehouse, databricks_host, "
    "databricks_http_path, databricks_catalog, databricks_token_credential, blob_prefix, branches, "
    "status_repository, updated_at"
)
_FIELDS = (
    "source_kind", "source", "github_token_credential", "engine", "warehouse", "databricks_host",
    "databricks_http_path", "databricks_catalog", "databricks_token_credential", "blob_prefix", "branches",
    "status_repository",
)
_UPSERT = (
    f"INSERT INTO repository_settings (tenant_id, repository, {', '.join(_FIELDS)}) "
    f"VALUES ($1, $2, {', '.join(f'${i + 3}' for i in range(len(_FIELDS)))}) "
    "ON CONFLICT (tenant_id, repository) DO UPDATE SET "
    + ", ".join(f"{name} = EXCLUDED.{name}" for name in _FIELDS) + ", updated_at = now()"
)


class PostgresRepositoryStore(PostgresConnection):
    """Repository settings and the repository -> tenant map as a list (the `RepositoryStore` port)."""

    async def set_repository_settings(self, tenant_id: str, settings: RepositorySettingsFields) -> None:
        """Store (or replace) the settings of a repository mapped to the tenant.

        Raises:
            StateError: the repository is not mapped to this tenant, or a value breaks the table's rules
                (the service validates first, so this names a bug or a race with an unmapping).
        """
        repository = settings["repository"].lower()
        try:
            await self._execute(
                tenant_id, _UPSERT, tenant_id, repository, settings["source_kind"], settings["source"],
                settings["github_token_credential"], settings["engine"], settings["warehouse"],
                settings["databricks_host"], settings["databricks_http_path"], settings["databricks_catalog"],
                settings["databricks_token_credential"], settings["blob_prefix"], list(settings["branches"]),
                settings["status_repository"],
            )
        except asyncpg.ForeignKeyViolationError:
            raise StateError(
                f"repository {repository} is not mapped to tenant {tenant_id}; map it first "
                "(`ironlayer repositories map`)"
            ) from None
        except asyncpg.CheckViolationError as exc:
            raise StateError(
                f"settings of repository {repository} refused by the state store ({exc.constraint_name}); "
                "check the values"
            ) from None

    async def repository_settings(self, tenant_id: str, repository: str) -> RepositorySettingsRow | None:
        """The settings of one repository of the tenant, or None (none stored, or mapped to another tenant)."""
        row = await self._fetchrow(
            tenant_id,
            f"SELECT {_COLUMNS} FROM repository_settings WHERE tenant_id = $1 AND repository = $2",
            tenant_id, repository.lower(),
        )
        return _row(row) if row is not None else None

    async def list_repository_settings(self, tenant_id: str) -> list[RepositorySettingsRow]:
        """The settings of every repository of the tenant, by repository."""
        rows = await self._fetch(
            tenant_id, f"SELECT {_COLUMNS} FROM repository_settings WHERE tenant_id = $1 ORDER BY repository",
            tenant_id,
        )
        return [_row(row) for row in rows]

    async def repository_mappings(self) -> list[tuple[str, str]]:
        """`(repository, tenant_id)` of every mapped repository, by repository (readable without a tenant)."""
        async with self._connection() as conn:
            rows = await conn.fetch("SELECT repository, tenant_id FROM repository_tenants ORDER BY repository")
        return [(str(row["repository"]), str(row["tenant_id"])) for row in rows]


def _row(record: Record) -> RepositorySettingsRow:
    return RepositorySettingsRow(
        tenant_id=record["tenant_id"], repository=record["repository"], source_kind=record["source_kind"],
        source=record["source"], github_token_credential=record["github_token_credential"],
        engine=record["engine"], warehouse=record["warehouse"], databricks_host=record["databricks_host"],
        databricks_http_path=record["databricks_http_path"], databricks_catalog=record["databricks_catalog"],
        databricks_token_credential=record["databricks_token_credential"], blob_prefix=record["blob_prefix"],
        branches=list(record["branches"]), status_repository=record["status_repository"],
        updated_at=record["updated_at"],
    )
