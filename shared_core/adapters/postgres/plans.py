"""Plans in PostgreSQL: each plan's exact bytes, its identity columns and its status.

The stored `plan_json` is the plan file byte for byte, never re-serialized; the plan ID is its key, so
storing the same plan twice is a no-op. Storing a new plan meters it (a `plan_generated` usage event) in the
same transaction.
"""

from __future__ import annotations

from shared_core.adapters.postgres._connection import PostgresConnection, Record
from shared_core.adapters.postgres.billing import insert_usage
from shared_core.core.billing import meter_identifier
from shared_core.core.planning.plan import Plan
from shared_core.core.state import PlanStatus, PlanSummaryRow


class PostgresPlanStore(PostgresConnection):
    """Stores and lists plans (the `PlanStore` port)."""

    async def save_plan(self, tenant_id: str, plan: Plan, plan_json: str) -> bool:
        """Store a plan's exact bytes; returns False when that plan was already stored.

        `plan` gives the identity columns (`plan_id`, `base`, `target`, `as_of`, `inputs_hash`); `plan_json`
        is the text stored and served back. A plan stored for the first time is metered in the same transaction.
        """
        async with self._transaction(tenant_id) as conn:
            result = await conn.execute(
                "INSERT INTO plans (tenant_id, plan_id, base, target, as_of, inputs_hash, plan_json) "
                "VALUES ($1, $2, $3, $4, $5::text::timestamptz, $6, $7) ON CONFLICT (tenant_id, plan_id) DO NOTHING",
                tenant_id, plan.plan_id, plan.base, plan.target, plan.as_of, plan.inputs_hash, plan_json,
            )
            stored = str(result).endswith(" 1")
            if stored:
                await insert_usage(conn, tenant_id, meter_identifier(tenant_id, "plan_generated", plan.plan_id),
                                   "plan_generated", 1, plan.plan_id, None)
        return stored

    async def get_plan(self, tenant_id: str, plan_id: str) -> str | None:
        """The exact bytes of a stored plan, or None."""
        value = await self._fetchval(
            tenant_id, "SELECT plan_json FROM plans WHERE tenant_id = $1 AND plan_id = $2", tenant_id, plan_id
        )
        return str(value) if value is not None else None

    async def set_plan_status(self, tenant_id: str, plan_id: str, status: PlanStatus) -> None:
        """Move a plan to `status` (no-op for an unknown plan)."""
        await self._execute(
            tenant_id,
            "UPDATE plans SET status = $3, updated_at = now() WHERE tenant_id = $1 AND plan_id = $2",
            tenant_id, plan_id, status,
        )

    async def list_plans(self, tenant_id: str, limit: int = 20) -> list[PlanSummaryRow]:
        """The newest `limit` plans of the tenant, newest first."""
        rows = await self._fetch(
            tenant_id,
            "SELECT plan_id, base, target, as_of, status, created_at, updated_at FROM plans WHERE tenant_id = $1 "
            "ORDER BY created_at DESC, plan_id LIMIT $2",
            tenant_id, limit,
        )
        return [_plan_summary(row) for row in rows]


def _plan_summary(row: Record) -> PlanSummaryRow:
    return PlanSummaryRow(
        plan_id=row["plan_id"], base=row["base"], target=row["target"], as_of=row["as_of"], status=row["status"],
        created_at=row["created_at"], updated_at=row["updated_at"],
    )
