"""Security state in PostgreSQL: tenants and their settings, repository routing, the audit chain,
encrypted credentials, used and revoked tokens, shared rate-limit buckets.

The policies live in `shared_core.security` (pure); this module only stores their state, atomically
where it must: audit appends and rate-limit decisions run under a transaction-scoped advisory lock, so
concurrent function instances share one chain and one budget.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TypeVar

import asyncpg

from shared_core.adapters.postgres._connection import Connection, PostgresConnection, Record
from shared_core.core.errors import StateError
from shared_core.core.state import AuditRow, JSONValue, RateDecision, RateState

DecisionT = TypeVar("DecisionT", bound=RateDecision)


class PostgresSecurityStore(PostgresConnection):
    """Tenants, routing, audit, credentials, tokens and rate limits (the `SecurityStore` port)."""

    # -- tenants and routing -----------------------------------------------------------------------------

    async def ensure_tenant(self, tenant_id: str, name: str) -> None:
        """Create the tenant row unless it exists.

        Raises:
            StateError: the tenant ID is not lower-case letters, digits, '-' and '_' (at most 63).
        """
        try:
            await self._execute(
                tenant_id,
                "INSERT INTO tenants (tenant_id, name) VALUES ($1, $2) ON CONFLICT (tenant_id) DO NOTHING",
                tenant_id, name,
            )
        except asyncpg.CheckViolationError:
            raise StateError(
                f"invalid tenant id '{tenant_id}'; use lower-case letters, digits, '-' and '_'"
            ) from None

    async def tenant_exists(self, tenant_id: str) -> bool:
        """Whether the tenant has its row (a token may name a tenant this deployment never provisioned)."""
        return bool(await self._fetchval(tenant_id, "SELECT true FROM tenants WHERE tenant_id = $1", tenant_id))

    async def map_repository(self, tenant_id: str, repository: str, installation_id: int | None = None) -> None:
        """Route the webhooks of `repository` (owner/name, any case) to the tenant.

        Raises:
            StateError: the repository is mapped to another tenant (row-level security refuses to move it).
        """
        try:
            await self._execute(
                tenant_id,
                "INSERT INTO repository_tenants (tenant_id, repository, installation_id) VALUES ($1, $2, $3) "
                "ON CONFLICT (repository) DO UPDATE SET installation_id = EXCLUDED.installation_id",
                tenant_id, repository.lower(), installation_id,
            )
        except asyncpg.InsufficientPrivilegeError:
            raise StateError(
                f"repository {repository.lower()} is mapped to another tenant; it cannot be mapped to {tenant_id}"
            ) from None

    async def tenant_for_repository(self, repository: str) -> str | None:
        """The tenant a repository's webhooks belong to (readable before any tenant is bound)."""
        async with self._connection() as conn:
            value = await conn.fetchval(
                "SELECT tenant_id FROM repository_tenants WHERE repository = $1", repository.lower()
            )
        return str(value) if value is not None else None

    async def tenant_settings(self, tenant_id: str) -> dict[str, JSONValue]:
        """The tenant's settings object (e.g. `{"allow_self_approval": true}`); empty when none are set."""
        value = await self._fetchval(tenant_id, "SELECT settings FROM tenants WHERE tenant_id = $1", tenant_id)
        return dict(json.loads(value)) if value else {}

    async def set_tenant_settings(self, tenant_id: str, settings: Mapping[str, JSONValue]) -> None:
        """Replace the tenant's settings object."""
        await self._execute(
            tenant_id,
            "UPDATE tenants SET settings = $2::jsonb WHERE tenant_id = $1", tenant_id,
            json.dumps(dict(settings), sort_keys=True),
        )

    # -- the audit chain ---------------------------------------------------------------------------------

    async def append_audit(
        self, tenant_id: str, build: Callable[[AuditRow | None, str | None], AuditRow]
    ) -> AuditRow:
        """Append one audit row built from the previous row and the recorded head; returns the row.

        The application role may only INSERT and SELECT audit rows; appends are serialized with a
        transaction-scoped advisory lock, and the tenant row keeps the newest hash (the chain's head), so
        `build` can chain to the head even when the newest rows were removed: a truncation stays visible.
        """
        async with self._transaction(tenant_id) as conn:
            return await append_audit_row(conn, tenant_id, build)

    async def audit_rows(self, tenant_id: str) -> tuple[list[AuditRow], str | None]:
        """Every audit row of the tenant in `seq` order, and the head hash kept on the tenant row."""
        async with self._transaction(tenant_id) as conn:
            rows = await conn.fetch(f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE tenant_id = $1 ORDER BY seq",
                                    tenant_id)
            head = await conn.fetchval("SELECT audit_head FROM tenants WHERE tenant_id = $1", tenant_id)
        return [_audit_row(r) for r in rows], head

    # -- credentials -------------------------------------------------------------------------------------

    async def set_credential(self, tenant_id: str, name: str, ciphertext: str) -> None:
        """Store (or replace) the ciphertext of credential `name`; the store never sees the plain value."""
        await self._execute(
            tenant_id,
            "INSERT INTO credentials (tenant_id, name, ciphertext) VALUES ($1, $2, $3) ON CONFLICT (tenant_id, name) "
            "DO UPDATE SET ciphertext = EXCLUDED.ciphertext, updated_at = now()",
            tenant_id, name, ciphertext,
        )

    async def get_credential(self, tenant_id: str, name: str) -> str | None:
        """The ciphertext of the tenant's credential `name`, or None when it is not stored."""
        value = await self._fetchval(
            tenant_id, "SELECT ciphertext FROM credentials WHERE tenant_id = $1 AND name = $2", tenant_id, name
        )
        return str(value) if value is not None else None

    async def list_credentials(self, tenant_id: str) -> list[tuple[str, str]]:
        """`(name, ciphertext)` of every credential of the tenant, by name."""
        rows = await self._fetch(
            tenant_id, "SELECT name, ciphertext FROM credentials WHERE tenant_id = $1 ORDER BY name", tenant_id
        )
        return [(r["name"], r["ciphertext"]) for r in rows]

    # -- tokens ------------------------------------------------------------------------------------------

    async def use_token(self, tenant_id: str, jti: str, plan_id: str, action: str, subject: str) -> bool:
        """Record an approval token as used; False when it had been used already (single use)."""
        result = await self._execute(
            tenant_id,
            "INSERT INTO used_tokens (tenant_id, jti, plan_id, action, subject) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (tenant_id, jti) DO NOTHING",
            tenant_id, jti, plan_id, action, subject,
        )
        return result.endswith(" 1")

    async def token_used(self, tenant_id: str, jti: str) -> bool:
        """Whether the approval token `jti` was used already."""
        return bool(await self._fetchval(
            tenant_id, "SELECT 1 FROM used_tokens WHERE tenant_id = $1 AND jti = $2", tenant_id, jti))

    async def revoke_token(self, tenant_id: str, jti: str, expires_at: datetime) -> None:
        """Revoke the token `jti` (kept until `expires_at`, after which it is refused as expired anyway)."""
        await self._execute(
            tenant_id,
            "INSERT INTO revoked_tokens (tenant_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            tenant_id, jti, expires_at,
        )

    async def is_revoked(self, tenant_id: str, jti: str) -> bool:
        """Whether the token `jti` was revoked."""
        return bool(await self._fetchval(
            tenant_id, "SELECT 1 FROM revoked_tokens WHERE tenant_id = $1 AND jti = $2", tenant_id, jti))

    # -- rate limits -------------------------------------------------------------------------------------

    async def rate_limit(
        self, tenant_id: str, key: str, decide: Callable[[RateState | None], DecisionT]
    ) -> DecisionT:
        """Apply `decide` to the stored (window_start, count, previous_count) of `key` atomically.

        `decide` returns an object with `new_state` = (window_start, count, previous_count); it is stored
        in the same transaction, under a lock on the key, so concurrent function instances share one budget.
        """
        async with self._transaction(tenant_id) as conn:
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


_AUDIT_COLUMNS = "tenant_id, seq, at, actor, role, action, target, details, prev_hash, hash"


async def append_audit_row(
    conn: Connection, tenant_id: str, build: Callable[[AuditRow | None, str | None], AuditRow]
) -> AuditRow:
    """Append the audit row `build(previous row, head)` returns on `conn`, inside the caller's transaction.

    Serialized per tenant by a transaction-scoped advisory lock; moves the head kept on the tenant row.
    """
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('audit/' || $1))", tenant_id)
    last = await conn.fetchrow(
        f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1", tenant_id
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


def _audit_row(record: Record) -> AuditRow:
    return AuditRow(  # `details` stays the canonical JSON text it was hashed as
        tenant_id=record["tenant_id"], seq=record["seq"], at=record["at"], actor=record["actor"],
        role=record["role"], action=record["action"], target=record["target"], details=record["details"],
        prev_hash=record["prev_hash"], hash=record["hash"],
    )
