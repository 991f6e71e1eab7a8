"""Approvals in PostgreSQL: the identities a tenant registered for deciding, and a decision as one transaction.

`record_decision` is the ordered operation of `shared_core.services.approvals.decide_plan` at the store:
under a transaction-scoped advisory lock on the plan's decision it re-checks the link and the job (a
concurrent decision may have won since the service's checks), uses the link, moves job and plan, calls
`deliver()` (the orchestration event) and only then appends the audit row, then commits. Whatever fails,
the event delivery included, rolls the whole transaction back: the link stays usable and no audit row
claims a decision that did not happen. `settled_plan_status` takes the same lock (shared), so the
orchestration, woken by the event, reads the plan only after the decision committed or rolled back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from shared_core.adapters.postgres._connection import PostgresConnection, Record
from shared_core.adapters.postgres.security import append_audit_row
from shared_core.core.state import AuditRow, DecisionOutcome, DecisionRecord, IdentityRow, PlanStatus
from shared_core.security.scrub import scrub

_DECISION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('decision/' || $1 || '/' || $2))"
_DECISION_LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared(hashtext('decision/' || $1 || '/' || $2))"
_IDENTITY_COLUMNS = "provider, subject, role, github_login, name, created_at, updated_at"


class PostgresApprovalStore(PostgresConnection):
    """Identities (the `IdentityStore` port) and decisions (the `DecisionStore` port)."""

    # -- identities --------------------------------------------------------------------------------------

    async def set_identity(self, tenant_id: str, provider: str, subject: str, *, role: str,
                           github_login: str | None, name: str) -> None:
        """Register an identity, or change its role, GitHub login and name."""
        await self._execute(
            tenant_id,
            "INSERT INTO identities (tenant_id, provider, subject, role, github_login, name) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, provider, subject) DO UPDATE SET "
            "role = EXCLUDED.role, github_login = EXCLUDED.github_login, name = EXCLUDED.name, updated_at = now()",
            tenant_id, provider, subject, role, github_login, name,
        )

    async def remove_identity(self, tenant_id: str, provider: str, subject: str) -> bool:
        """Forget an identity; False when it was not registered."""
        result = await self._execute(
            tenant_id, "DELETE FROM identities WHERE tenant_id = $1 AND provider = $2 AND subject = $3",
            tenant_id, provider, subject,
        )
        return result.endswith(" 1")

    async def find_identity(self, tenant_id: str, provider: str, subject: str) -> IdentityRow | None:
        """The registered identity `(provider, subject)` of the tenant, or None."""
        row = await self._fetchrow(
            tenant_id,
            f"SELECT {_IDENTITY_COLUMNS} FROM identities WHERE tenant_id = $1 AND provider = $2 AND subject = $3",
            tenant_id, provider, subject,
        )
        return _identity(row) if row else None

    async def list_identities(self, tenant_id: str) -> list[IdentityRow]:
        """Every identity of the tenant, by provider and subject."""
        rows = await self._fetch(
            tenant_id, f"SELECT {_IDENTITY_COLUMNS} FROM identities WHERE tenant_id = $1 ORDER BY provider, subject",
            tenant_id,
        )
        return [_identity(row) for row in rows]

    # -- decisions ---------------------------------------------------------------------------------------

    async def record_decision(
        self, tenant_id: str, record: DecisionRecord, build_audit: Callable[[AuditRow | None, str | None], AuditRow],
        deliver: Callable[[], Awaitable[None]],
    ) -> DecisionOutcome:
        """Use the link, move job and plan, deliver the event, append the audit row: one transaction, in order.

        Returns `token_used` or `not_awaiting` when the re-check under the lock refuses (nothing written,
        nothing delivered), else `recorded`. Any exception (from `deliver` too) rolls everything back.
        """
        plan_id, token_id = record["plan_id"], record["token_id"]
        async with self._transaction(tenant_id) as conn:
            await conn.execute(_DECISION_LOCK, tenant_id, plan_id)
            if token_id is not None and await conn.fetchval(
                    "SELECT 1 FROM used_tokens WHERE tenant_id = $1 AND jti = $2", tenant_id, token_id):
                return "token_used"
            status = await conn.fetchval(
                "SELECT status FROM jobs WHERE tenant_id = $1 AND instance_id = $2 FOR UPDATE",
                tenant_id, record["instance_id"],
            )
            if status != "awaiting_approval":
                return "not_awaiting"
            if token_id is not None:
                await conn.execute(
                    "INSERT INTO used_tokens (tenant_id, jti, plan_id, action, subject) VALUES ($1, $2, $3, $4, $5)",
                    tenant_id, token_id, plan_id, record["token_action"], record["token_subject"],
                )
            await conn.execute(
                "UPDATE jobs SET status = coalesce($3, status), detail = $4, updated_at = now() "
                "WHERE tenant_id = $1 AND instance_id = $2",
                tenant_id, record["instance_id"], record["job_status"], scrub(record["job_detail"]),
            )
            await conn.execute(
                "UPDATE plans SET status = $3, updated_at = now() WHERE tenant_id = $1 AND plan_id = $2",
                tenant_id, plan_id, record["plan_status"],
            )
            await deliver()
            await append_audit_row(conn, tenant_id, build_audit)
        return "recorded"

    async def settled_plan_status(self, tenant_id: str, plan_id: str) -> PlanStatus | None:
        """The plan's status, read after any decision on it in flight has committed or rolled back."""
        async with self._transaction(tenant_id) as conn:
            await conn.execute(_DECISION_LOCK_SHARED, tenant_id, plan_id)
            status = await conn.fetchval(
                "SELECT status FROM plans WHERE tenant_id = $1 AND plan_id = $2", tenant_id, plan_id
            )
        return status  # type: ignore[no-any-return]  # asyncpg is untyped; the column's CHECK admits PlanStatus


def _identity(row: Record) -> IdentityRow:
    return IdentityRow(
        provider=row["provider"], subject=row["subject"], role=row["role"], github_login=row["github_login"],
        name=row["name"], created_at=row["created_at"], updated_at=row["updated_at"],
    )
