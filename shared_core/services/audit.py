"""Record and verify the tenant's audit log: the one way every use case writes an audit entry.

The chain rules live in `shared_core.security.audit` (pure); this service applies them to the state
store under its append lock. Details are scrubbed of secrets and PII before they are hashed and stored.
The clock is read here, at the service edge, only when the caller passes no `now`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

from shared_core.ports import AuditRow, SecurityStore
from shared_core.security.audit import ChainReport, entry_from_row, entry_hash, entry_to_row, next_entry, verify_chain
from shared_core.security.scrub import scrub_mapping


async def record_audit(store: SecurityStore, tenant_id: str, *, actor: str, role: str, action: str, target: str,
                       details: Mapping[str, object], now: datetime | None = None) -> AuditRow:
    """Append one entry to the tenant's audit chain (the time never goes back past the chain's head).

    Args:
        store: the state store (its audit chain).
        tenant_id: whose chain.
        actor, role: who did it (the authenticated subject and its role).
        action: what was done, e.g. `plan.approved`, `credential.set`.
        target: what it was done to, e.g. a plan ID or a credential name.
        details: a JSON object; scrubbed of secrets and PII before it is hashed.
        now: when it happened; the current UTC time when not given.

    Returns:
        The stored row.

    Raises:
        AuditError: a field is malformed (empty actor, unknown action format, details too large).
    """
    build = audit_entry(tenant_id, actor=actor, role=role, action=action, target=target, details=details, now=now)
    return await store.append_audit(tenant_id, build)


def audit_entry(tenant_id: str, *, actor: str, role: str, action: str, target: str, details: Mapping[str, object],
                now: datetime | None = None) -> Callable[[AuditRow | None, str | None], AuditRow]:
    """The builder of one audit entry, for a store to call under its append lock with the previous row and head
    (`record_audit` appends it alone; a decision appends it inside its own transaction)."""
    moment = now or datetime.now(UTC)

    def build(previous_row: AuditRow | None, head: str | None) -> AuditRow:
        previous = entry_from_row(previous_row) if previous_row else None
        at = max(moment, previous.at) if previous else moment
        entry = next_entry(previous, tenant_id=tenant_id, at=at, actor=actor, role=role, action=action,
                           target=target, details=scrub_mapping(dict(details)))
        if head and entry.prev_hash != head:
            # The newest rows are gone (the head says so): chain to the head, so that the gap stays
            # visible to `verify_chain` instead of being papered over by this append.
            linked = replace(entry, prev_hash=head)
            entry = replace(linked, hash=entry_hash(linked))
        return entry_to_row(entry)

    return build


async def verify_audit(store: SecurityStore, tenant_id: str) -> ChainReport:
    """The `ChainReport` of the tenant's audit log, checked against the head kept on the tenant row."""
    rows, head = await store.audit_rows(tenant_id)
    return verify_chain([entry_from_row(r) for r in rows], expected_head=head, tenant_id=tenant_id)


async def list_audit(store: SecurityStore, tenant_id: str) -> list[AuditRow]:
    """Every audit row of the tenant, oldest first (for reading; `verify_audit` checks them)."""
    rows, _ = await store.audit_rows(tenant_id)
    return rows
