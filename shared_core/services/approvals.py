"""Approvals: ask for one (a signed link on the commit status), decide one, and set the tenant's approval policy.

A plan waits for a decision made either through the API (`POST /api/plans/{id}/decision`, an
authenticated principal) or through the link in the commit status (a signed, single-use token). Both
edges establish who decides, then call `decide_plan`, which runs the one ordered operation:

1. checks: the link is not revoked; the plan's job is awaiting approval (a link that was already used
   says so); separation of duties for an approval (the tenant's `allow_self_approval` policy);
2. the link is used (its `jti` recorded once; a second use is refused);
3. the audit entry (`plan.approved` / `plan.rejected`);
4. the `approval` event on the plan's orchestration;
5. the job's status and detail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import quote

from shared_core.core.errors import ConflictError, InvalidTokenError, NotFoundError
from shared_core.ports import ApprovalStore, JSONValue, RaiseEvent, SecurityStore, StatusPublisher
from shared_core.security.approval_tokens import ApprovalClaims, issue_approval_token, reused_token_error
from shared_core.security.roles import OPERATOR, check_separation
from shared_core.services.audit import record_audit

Decision = Literal["approve", "reject"]
#: The past tense of each decision, as the audit entry and the job's detail say it.
DECIDED: Mapping[Decision, str] = {"approve": "approved", "reject": "rejected"}
#: The orchestration event a decision raises; the orchestrator waits for it.
APPROVAL_EVENT = "approval"
#: Who an approval link is issued to: whoever reviews the commit status, named when they decide.
LINK_SUBJECT = "reviewers"
#: The tenant settings `set_approval_policy` accepts.
POLICY_SETTINGS = ("allow_self_approval",)


@dataclass(frozen=True)
class Approver:
    """Who decides, and through which edge: an API principal, or the holder of an approval link."""

    subject: str  # the API principal's subject, or the link's `sub`
    role: str  # recorded in the audit entry
    via: Literal["api", "approval link"]
    link: ApprovalClaims | None = None  # the verified link: checked for revocation and used once


def link_approver(claims: ApprovalClaims) -> Approver:
    """The approver behind a verified approval link: its subject, acting as an operator."""
    return Approver(subject=claims.subject, role=OPERATOR, via="approval link", link=claims)


async def request_approval(store: ApprovalStore, publisher: StatusPublisher, *, secret: str, approval_url: str,
                           tenant_id: str, plan_id: str, instance_id: str, target: str, ttl_hours: int,
                           now: datetime | None = None) -> str:
    """Sign a `decide` link for the plan, mark plan and job as awaiting approval, and set the pending status.

    Args:
        store: the state store (plan status, job).
        publisher: sets the commit status that carries the link.
        secret: the approval links' signing secret (IRONLAYER_APPROVAL_SECRET).
        approval_url: the approval page of this plan; the token is appended as `?token=`.
        tenant_id, plan_id, instance_id: the plan and its orchestration.
        target: the pushed commit that gets the status.
        ttl_hours: how long the link stays valid.
        now: when the link's validity starts (the current time when not given).

    Returns:
        The link.

    Raises:
        AuthSettingsError: the signing secret is shorter than 32 bytes.
        SourceError: the commit status could not be set.
    """
    token = issue_approval_token(secret, tenant_id=tenant_id, plan_id=plan_id, action="decide", subject=LINK_SUBJECT,
                                 now=now or datetime.now(UTC), ttl=timedelta(hours=ttl_hours))
    link = f"{approval_url}?token={quote(token)}"
    await store.set_plan_status(tenant_id, plan_id, "awaiting_approval")
    await store.upsert_job(tenant_id, instance_id, status="awaiting_approval", detail="waiting for approval")
    await asyncio.to_thread(publisher.publish, target, "pending", f"IronLayer plan {plan_id[:12]} awaits approval",
                            link)
    return link


async def decide_plan(store: ApprovalStore, raise_event: RaiseEvent, *, tenant_id: str, plan_id: str,
                      decision: Decision, approver: Approver, comment: str, now: datetime | None = None) -> str:
    """Approve or reject a plan that awaits approval, in the one order of the module docstring.

    Args:
        store: the state store.
        raise_event: raises the decision on the plan's orchestration.
        tenant_id: the tenant the approver acts for (the token's).
        plan_id: the plan decided.
        decision: `approve` or `reject`.
        approver: who decides (`Approver`, or `link_approver(claims)`).
        comment: the approver's comment (already bounded by the edge).
        now: the audit entry's time (the current time when not given).

    Returns:
        The orchestration instance the event was raised on.

    Raises:
        InvalidTokenError: the link was revoked.
        ReusedTokenError: the link was used before.
        NotFoundError: the plan has no job in this tenant.
        ConflictError: the plan's job is not awaiting approval.
        AuthorizationError: the approver pushed the change and the tenant does not allow self-approval.
    """
    link = approver.link
    if link is not None and await store.is_revoked(tenant_id, link.token_id):
        raise InvalidTokenError("this approval link was revoked; ask for a new link")
    job = await store.job_for_plan(tenant_id, plan_id)
    if job is None or job["status"] != "awaiting_approval":
        if link is not None and await store.token_used(tenant_id, link.token_id):
            raise reused_token_error(link)
        if job is None:
            raise NotFoundError(f"plan {plan_id[:12]} not found; nothing was changed")
        raise ConflictError(f"plan {plan_id[:12]} is {job['status']}, not awaiting approval; nothing was changed")
    if decision == "approve":
        policy = await store.tenant_settings(tenant_id)
        check_separation(approver.subject, job["author"],
                         allow_self_approval=bool(policy.get("allow_self_approval", False)))
    if link is not None and not await store.use_token(tenant_id, link.token_id, plan_id, decision, approver.subject):
        raise reused_token_error(link)
    await record_audit(store, tenant_id, actor=approver.subject, role=approver.role, action=f"plan.{DECIDED[decision]}",
                       target=plan_id, details={"comment": comment, "via": approver.via}, now=now)
    instance: str = job["instance_id"]
    await raise_event(instance, APPROVAL_EVENT, {"decision": decision, "by": approver.subject, "comment": comment})
    await store.upsert_job(tenant_id, instance, status="running" if decision == "approve" else None,
                           detail=f"{DECIDED[decision]} by {approver.subject}")
    return instance


async def set_approval_policy(store: SecurityStore, tenant_id: str, changes: Mapping[str, bool], *, actor: str,
                              role: str, now: datetime | None = None) -> dict[str, JSONValue]:
    """Change the tenant's approval policy (today: `allow_self_approval`) and audit before and after.

    Args:
        changes: the settings to change, each one of `POLICY_SETTINGS` (checked by the edge).

    Returns:
        The tenant's settings after the change.
    """
    current = await store.tenant_settings(tenant_id)
    updated: dict[str, JSONValue] = {**current, **changes}
    await store.set_tenant_settings(tenant_id, updated)
    await record_audit(store, tenant_id, actor=actor, role=role, action="settings.changed", target="tenant",
                       details={"before": current, "after": updated}, now=now)
    return updated
