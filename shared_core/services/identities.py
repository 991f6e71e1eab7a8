"""Identities that may decide: register, change, remove and list them, each change audited.

A tenant registers each way a person signs in to decide plans: an API token subject (`api`) or an App
Service Authentication principal (`appservice:<idp>`, by its stable ID), with the tenant's role for it and
its GitHub login (what separation of duties compares with the pusher's). Admins manage them through
`ironlayer identities` and `PUT/DELETE /api/identities`; `services.approvals.decide_plan` reads them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from shared_core.core.errors import NotFoundError
from shared_core.ports import IdentityRow, IdentityStore, SecurityStore
from shared_core.security.identities import check_provider, check_role, check_subject, normalize_login
from shared_core.services.audit import record_audit


class IdentityAdminStore(IdentityStore, SecurityStore, Protocol):
    """What managing identities touches: the identities and the audit chain."""


async def set_identity(store: IdentityAdminStore, tenant_id: str, *, provider: str, subject: str, role: str,
                       github_login: str | None, name: str = "", actor: str, actor_role: str,
                       now: datetime | None = None) -> IdentityRow:
    """Register an identity (or change its role, GitHub login and name) and audit it.

    Args:
        provider: `api` or `appservice:<idp>`.
        subject: the API token's `sub`, or the App Service principal's ID.
        role: viewer, operator, engineer or admin.
        github_login: the person's GitHub login (None: none; then it may not approve pushed changes).
        name: a display name (shown, never compared).
        actor, actor_role: the admin making the change.

    Returns:
        The stored identity.

    Raises:
        InputError: a malformed provider, subject, role or GitHub login.
    """
    provider, subject, role = check_provider(provider), check_subject(subject), check_role(role)
    login = normalize_login(github_login)
    shown = name.strip()[:200]
    await store.set_identity(tenant_id, provider, subject, role=role, github_login=login, name=shown)
    await record_audit(store, tenant_id, actor=actor, role=actor_role, action="identity.set",
                       target=f"{provider}/{subject}", details={"role": role, "github_login": login, "name": shown},
                       now=now)
    stored = await store.find_identity(tenant_id, provider, subject)
    assert stored is not None  # just written in this tenant
    return stored


async def remove_identity(store: IdentityAdminStore, tenant_id: str, *, provider: str, subject: str, actor: str,
                          actor_role: str, now: datetime | None = None) -> None:
    """Forget an identity (it may no longer decide) and audit it.

    Raises:
        InputError: a malformed provider or subject.
        NotFoundError: no such identity is registered.
    """
    provider, subject = check_provider(provider), check_subject(subject)
    if not await store.remove_identity(tenant_id, provider, subject):
        raise NotFoundError(f"identity {provider}/{subject[:120]} is not registered for tenant {tenant_id}")
    await record_audit(store, tenant_id, actor=actor, role=actor_role, action="identity.removed",
                       target=f"{provider}/{subject}", details={}, now=now)


async def list_identities(store: IdentityStore, tenant_id: str) -> list[IdentityRow]:
    """Every identity registered for the tenant, by provider and subject."""
    return await store.list_identities(tenant_id)
