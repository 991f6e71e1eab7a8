"""Audit use cases: append an entry to a tenant's hash-chained audit log, and verify the chain.

Every caller (the CLI's commands, the apply service, the API, the approval page) records through
`record_audit`, so entries are built, scrubbed and chained one way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared_core.core.state import AuditRow


async def record_audit(store: Any, tenant_id: str, *, actor: str, role: str, action: str, target: str,
                       details: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Append one entry to the tenant's audit chain (the time never goes back past the chain's head)."""
    from dataclasses import replace

    from shared_core.security.audit import entry_from_row, entry_hash, entry_to_row, next_entry
    from shared_core.security.scrub import scrub_mapping

    moment = now or datetime.now(UTC)

    def build(previous_row: AuditRow | None, head: str | None) -> AuditRow:
        previous = entry_from_row(previous_row) if previous_row else None
        at = max(moment, previous.at) if previous else moment
        entry = next_entry(previous, tenant_id=tenant_id, at=at, actor=actor, role=role, action=action,
                           target=target, details=scrub_mapping(details))
        if head and entry.prev_hash != head:
            # The newest rows are gone (the head says so): chain to the head, so that the gap stays
            # visible to `verify_chain` instead of being papered over by this append.
            linked = replace(entry, prev_hash=head)
            entry = replace(linked, hash=entry_hash(linked))
        return entry_to_row(entry)

    row: dict[str, Any] = await store.append_audit(tenant_id, build)
    return row


async def verify_audit(store: Any, tenant_id: str) -> Any:
    """The `ChainReport` of the tenant's audit log, checked against the head kept on the tenant row."""
    from shared_core.security.audit import entry_from_row, verify_chain

    rows, head = await store.audit_rows(tenant_id)
    return verify_chain([entry_from_row(r) for r in rows], expected_head=head, tenant_id=tenant_id)
