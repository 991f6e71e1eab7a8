"""Deployed model versions and plan bases in PostgreSQL (the `DeploymentStore` port).

A model's current deployed version lives on its `models` row: the content hash a successful step wrote
(`PostgresLockStore.finish_step` records it), the quality tests deployed with it, and the plan that
deployed it. A plan's base (what was deployed for each model it touches when it was made) is stored in
`plan_bases` beside the plan, as the canonical document and its hash that `shared_core.core.planning.base`
defines; this module stores and returns the text, it never interprets it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shared_core.adapters.postgres._connection import PostgresConnection
from shared_core.core.state import DeployedVersion


class PostgresDeploymentStore(PostgresConnection):
    """Reads deployed versions, records what a plan was built against and the tests it deployed."""

    async def deployed_versions(self, tenant_id: str, models: Sequence[str]) -> dict[str, DeployedVersion]:
        """The current deployed version of each of `models` that has one."""
        rows = await self._fetch(
            tenant_id,
            "SELECT name, current_hash, tests, plan_id FROM models WHERE tenant_id = $1 AND name = ANY($2::text[])",
            tenant_id, list(models),
        )
        return {row["name"]: DeployedVersion(content_hash=row["current_hash"], tests=row["tests"],
                                             plan_id=row["plan_id"]) for row in rows}

    async def save_plan_base(self, tenant_id: str, plan_id: str, document: str, base_hash: str) -> None:
        """Record the base of a plan; a plan made again (same ID) records what is deployed now instead."""
        await self._execute(
            tenant_id,
            "INSERT INTO plan_bases (tenant_id, plan_id, document, base_hash) VALUES ($1, $2, $3, $4) "
            "ON CONFLICT (tenant_id, plan_id) DO UPDATE SET document = EXCLUDED.document, "
            "base_hash = EXCLUDED.base_hash, recorded_at = now()",
            tenant_id, plan_id, document, base_hash,
        )

    async def plan_base(self, tenant_id: str, plan_id: str) -> tuple[str, str] | None:
        """`(document, base_hash)` of the plan's recorded base, or None."""
        row = await self._fetchrow(
            tenant_id, "SELECT document, base_hash FROM plan_bases WHERE tenant_id = $1 AND plan_id = $2",
            tenant_id, plan_id,
        )
        return (row["document"], row["base_hash"]) if row else None

    async def deploy_tests(self, tenant_id: str, plan_id: str, versions: Mapping[str, tuple[str, str | None]]) -> int:
        """Record the tests a succeeded plan deployed without running a model: only where the model's deployed
        content hash is the one given (a model deployed at another version keeps its tests)."""
        if not versions:
            return 0
        async with self._transaction(tenant_id) as conn:
            await conn.executemany(
                "UPDATE models SET tests = $4, plan_id = $5, updated_at = now() "
                "WHERE tenant_id = $1 AND name = $2 AND current_hash = $3",
                [(tenant_id, name, content_hash, tests, plan_id)
                 for name, (content_hash, tests) in sorted(versions.items())],
            )
            updated = await conn.fetchval(
                "SELECT count(*) FROM models WHERE tenant_id = $1 AND plan_id = $2 AND name = ANY($3::text[])",
                tenant_id, plan_id, sorted(versions),
            )
        return int(updated)
